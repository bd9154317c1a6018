//! Prometheus metrics of the DHT node (prometheus-client, the stack libp2p-metrics uses).
//!
//! Names follow `skymesh_dht_<thing>[_total|_seconds]`; every metric is listed in
//! `docs/metrics.md`. The actor records from its own events; gauges are refreshed by the actor
//! every [`crate::config::DEFAULT_METRICS_INTERVAL`].
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Label set with one `outcome` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// e.g. `ok`, `not_found`, `refused`.
    pub outcome: String,
}

/// Label set with one `salt` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SaltLabel {
    /// Salt as text (lossy UTF-8).
    pub salt: String,
}

/// Label set with one `path` label: `full_node` (1-RTT read) or `lookup` (iterative).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabel {
    /// `full_node` or `lookup`.
    pub path: String,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~16 s in powers of two: loopback 1-RTT reads land in the first buckets, lookups
    // over the internet in the upper ones.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0005, 2.0, 16,
    ))
}

/// All node metrics. Cloning is cheap (shared atomics); register once with [`Metrics::register`].
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Connected peers.
    pub peers: Gauge,
    /// Entries in the Kademlia routing table.
    pub routing_table: Gauge,
    /// Items in the local store, by salt.
    pub items: Family<SaltLabel, Gauge>,
    /// Local put operations by outcome.
    pub puts: Family<OutcomeLabel, Counter>,
    /// Local get operations by outcome.
    pub gets: Family<OutcomeLabel, Counter>,
    /// Records offered by peers (kad PutRecord) by outcome.
    pub inbound_puts: Family<OutcomeLabel, Counter>,
    /// Read latency by path.
    pub lookup_seconds: Family<PathLabel, Histogram>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            peers: Gauge::default(),
            routing_table: Gauge::default(),
            items: Family::default(),
            puts: Family::default(),
            gets: Family::default(),
            inbound_puts: Family::default(),
            lookup_seconds: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl Metrics {
    /// New metrics registered in `registry` (prefix `skymesh_dht`).
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics::default();
        let r = registry.sub_registry_with_prefix("skymesh_dht");
        r.register("peers", "Connected peers", m.peers.clone());
        r.register(
            "routing_table_peers",
            "Peers in the Kademlia routing table",
            m.routing_table.clone(),
        );
        r.register("items", "Items in the local store by salt", m.items.clone());
        r.register("puts", "Local put operations by outcome", m.puts.clone());
        r.register("gets", "Local get operations by outcome", m.gets.clone());
        r.register(
            "inbound_puts",
            "Records offered by peers by outcome",
            m.inbound_puts.clone(),
        );
        r.register(
            "lookup_seconds",
            "Read latency by path (full_node = one round trip, lookup = iterative)",
            m.lookup_seconds.clone(),
        );
        m
    }

    pub(crate) fn put(&self, outcome: &str) {
        self.puts
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub(crate) fn get(&self, outcome: &str) {
        self.gets
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub(crate) fn inbound_put(&self, outcome: &str) {
        self.inbound_puts
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub(crate) fn latency(&self, path: &str, secs: f64) {
        self.lookup_seconds
            .get_or_create(&PathLabel {
                path: path.to_owned(),
            })
            .observe(secs);
    }
}
