//! Prometheus metrics of DMSG over the DHT (`skymesh_overlay_*`, listed in `docs/metrics.md`).
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label: an outcome (`ok`, `not_found`, `error`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// The outcome.
    pub outcome: &'static str,
}

/// Label: a DMSG server's key (hex).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabel {
    /// The server's key.
    pub server: String,
}

/// Overlay metrics (cheap to clone: shared handles). `Default` gives unregistered metrics.
#[derive(Debug, Clone, Default)]
pub struct OverlayMetrics {
    /// Own `dmsg` entries published to the DHT, by outcome (`ok`, `error`).
    pub entry_publishes: Family<OutcomeLabel, Counter>,
    /// `dmsg` entry lookups of peers and servers, by outcome (`ok`, `not_found`, `error`).
    pub entry_lookups: Family<OutcomeLabel, Counter>,
    /// Live servers found by the last server listing.
    pub servers_found: Gauge,
    /// Of those, servers that answered the RTT probe.
    pub servers_reachable: Gauge,
    /// DMSG sessions the visor's client holds now.
    pub client_sessions: Gauge,
    /// Last ping RTT of each server the visor's client holds a session with, seconds.
    pub client_server_rtt: Family<ServerLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl OverlayMetrics {
    /// Creates the metrics and registers them under the `skymesh_overlay` prefix.
    pub fn new(registry: &mut Registry) -> OverlayMetrics {
        let m = OverlayMetrics::default();
        let r = registry.sub_registry_with_prefix("skymesh_overlay");
        r.register(
            "entry_publishes",
            "Own dmsg entries published to the DHT, by outcome",
            m.entry_publishes.clone(),
        );
        r.register(
            "entry_lookups",
            "dmsg entry lookups of peers and servers, by outcome",
            m.entry_lookups.clone(),
        );
        r.register(
            "servers_found",
            "Live DMSG servers found by the last server listing",
            m.servers_found.clone(),
        );
        r.register(
            "servers_reachable",
            "Servers of the last listing that answered the RTT probe",
            m.servers_reachable.clone(),
        );
        r.register(
            "client_sessions",
            "DMSG sessions the visor's client holds",
            m.client_sessions.clone(),
        );
        r.register(
            "client_server_rtt_seconds",
            "Last ping RTT of each DMSG server the visor's client holds a session with",
            m.client_server_rtt.clone(),
        );
        m
    }

    pub(crate) fn publish(&self, outcome: &'static str) {
        self.entry_publishes
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    pub(crate) fn lookup(&self, outcome: &'static str) {
        self.entry_lookups
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }
}
