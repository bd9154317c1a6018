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

/// Label set with one `source` label: `pull` (GetItems pages) or `push` (full-node pushes).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// `pull` or `push`.
    pub source: String,
}

/// Bulk sync and push metrics (`skymesh_sync_*`), see `docs/protocols/sync.md`.
#[derive(Debug, Clone, Default)]
pub struct SyncMetrics {
    /// GetItems pages served to peers.
    pub pages_served: Counter,
    /// GetItems pages received from peers (checked by the puller).
    pub pages_pulled: Counter,
    /// Items received, by source.
    pub items_received: Family<SourceLabel, Counter>,
    /// Items stored (new or replacing), by source.
    pub items_accepted: Family<SourceLabel, Counter>,
    /// Items already held identically (nothing to do), by source.
    pub items_deduplicated: Family<SourceLabel, Counter>,
    /// Items the acceptance rules refused, by source.
    pub items_refused: Family<SourceLabel, Counter>,
    /// Push requests sent to full nodes.
    pub pushes_sent: Counter,
    /// Items sent in pushes.
    pub push_items_sent: Counter,
    /// Push requests received from full nodes.
    pub pushes_received: Counter,
    /// Items not pushed because the peer's push queue was full (repaired by the periodic pull).
    pub push_items_dropped: Counter,
    /// Peers penalised (malformed or oversized messages, protocol violations, invalid items).
    pub peers_penalised: Counter,
    /// Pull sessions finished, by outcome (`ok`, `failed`).
    pub sessions: Family<OutcomeLabel, Counter>,
}

impl SyncMetrics {
    fn register(&self, r: &mut Registry) {
        r.register(
            "pages_served",
            "GetItems pages served to peers",
            self.pages_served.clone(),
        );
        r.register(
            "pages_pulled",
            "GetItems pages received from peers",
            self.pages_pulled.clone(),
        );
        r.register(
            "items_received",
            "Items received by source (pull, push)",
            self.items_received.clone(),
        );
        r.register(
            "items_accepted",
            "Items stored (new or replacing) by source",
            self.items_accepted.clone(),
        );
        r.register(
            "items_deduplicated",
            "Items received that were already held identically, by source",
            self.items_deduplicated.clone(),
        );
        r.register(
            "items_refused",
            "Items refused by the acceptance rules, by source",
            self.items_refused.clone(),
        );
        r.register(
            "pushes_sent",
            "Push requests sent to full nodes",
            self.pushes_sent.clone(),
        );
        r.register(
            "push_items_sent",
            "Items sent in pushes",
            self.push_items_sent.clone(),
        );
        r.register(
            "pushes_received",
            "Push requests received from full nodes",
            self.pushes_received.clone(),
        );
        r.register(
            "push_items_dropped",
            "Items not pushed because the peer's push queue was full",
            self.push_items_dropped.clone(),
        );
        r.register(
            "peers_penalised",
            "Peers penalised for malformed messages, protocol violations or invalid items",
            self.peers_penalised.clone(),
        );
        r.register(
            "sessions",
            "Pull sessions finished by outcome",
            self.sessions.clone(),
        );
    }

    pub(crate) fn items(&self, source: &str, received: u64, accepted: u64, dup: u64, refused: u64) {
        let l = SourceLabel {
            source: source.to_owned(),
        };
        self.items_received.get_or_create(&l).inc_by(received);
        self.items_accepted.get_or_create(&l).inc_by(accepted);
        self.items_deduplicated.get_or_create(&l).inc_by(dup);
        self.items_refused.get_or_create(&l).inc_by(refused);
    }

    pub(crate) fn session(&self, outcome: &str) {
        self.sessions
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
    }
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
    /// Own items re-signed and re-put by the republish timer, by salt.
    pub republished: Family<SaltLabel, Counter>,
    /// Re-put rounds after routing-table changes (closest-peers queries run again).
    pub reput_rounds: Counter,
    /// Copies sent by re-put rounds (peers that newly entered an item's closest set).
    pub reput_copies: Counter,
    /// Inbound kad requests dropped by the per-peer limit (the peer is disconnected).
    pub kad_requests_limited: Counter,
    /// Read latency by path.
    pub lookup_seconds: Family<PathLabel, Histogram>,
    /// Bulk sync and push (`skymesh_sync_*`).
    pub sync: SyncMetrics,
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
            republished: Family::default(),
            reput_rounds: Counter::default(),
            reput_copies: Counter::default(),
            kad_requests_limited: Counter::default(),
            lookup_seconds: Family::new_with_constructor(latency_histogram),
            sync: SyncMetrics::default(),
        }
    }
}

impl Metrics {
    /// New metrics registered in `registry` (prefixes `skymesh_dht` and `skymesh_sync`).
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics::default();
        m.sync
            .register(registry.sub_registry_with_prefix("skymesh_sync"));
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
            "kad_requests_limited",
            "Inbound kad requests dropped by the per-peer limit",
            m.kad_requests_limited.clone(),
        );
        r.register(
            "republished",
            "Own items re-put by the republish timer by salt",
            m.republished.clone(),
        );
        r.register(
            "reput_rounds",
            "Re-put rounds run after routing-table changes",
            m.reput_rounds.clone(),
        );
        r.register(
            "reput_copies",
            "Copies sent by re-put rounds to peers new in an item's closest set",
            m.reput_copies.clone(),
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
