//! Prometheus metrics of a DMSG server (`skymesh_dmsg_*`, listed in `docs/metrics.md`).
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label: a reason string.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why.
    pub reason: String,
}

/// Label: a DMSG error code.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// The code, e.g. `307`.
    pub code: String,
}

/// Server metrics (cheap to clone: the metrics are shared handles).
#[derive(Debug, Clone, Default)]
pub struct ServerMetrics {
    /// Sessions currently open.
    pub sessions: Gauge,
    /// Sessions accepted since start.
    pub sessions_accepted: Counter,
    /// Handshake failures by reason (timeout, handshake, extra_bytes, io, overload, max_sessions).
    pub handshake_failures: Family<ReasonLabel, Counter>,
    /// Streams relayed since start.
    pub streams: Counter,
    /// Streams being relayed now.
    pub streams_active: Gauge,
    /// Payload bytes relayed (both directions).
    pub bytes_relayed: Counter,
    /// Stream requests refused, by DMSG error code.
    pub refusals: Family<CodeLabel, Counter>,
}

impl ServerMetrics {
    /// Creates the metrics and registers them under the `skymesh_dmsg` prefix.
    pub fn new(registry: &mut Registry) -> ServerMetrics {
        let m = ServerMetrics::default();
        let r = registry.sub_registry_with_prefix("skymesh_dmsg");
        r.register("sessions", "Sessions currently open", m.sessions.clone());
        r.register(
            "sessions_accepted",
            "Sessions accepted (handshake completed)",
            m.sessions_accepted.clone(),
        );
        r.register(
            "handshake_failures",
            "Failed session set-ups by reason",
            m.handshake_failures.clone(),
        );
        r.register("streams", "Streams relayed", m.streams.clone());
        r.register(
            "streams_active",
            "Streams being relayed now",
            m.streams_active.clone(),
        );
        r.register(
            "relayed_bytes",
            "Payload bytes relayed, both directions",
            m.bytes_relayed.clone(),
        );
        r.register(
            "refusals",
            "Stream requests refused, by DMSG error code",
            m.refusals.clone(),
        );
        m
    }

    /// Counts a handshake failure.
    pub fn handshake_failed(&self, reason: &str) {
        self.handshake_failures
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts a refusal.
    pub fn refused(&self, code: u16) {
        self.refusals
            .get_or_create(&CodeLabel {
                code: code.to_string(),
            })
            .inc();
    }
}
