//! Prometheus metrics of the transport manager (`skymesh_tp_*`, listed in `docs/metrics.md`).
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A label set with one label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// `up` or `down`.
    pub state: String,
}

/// Direction label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    /// `sent` or `received`.
    pub direction: String,
}

/// Outcome label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// e.g. `ok`, `error`.
    pub outcome: String,
}

/// Reason label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why an incoming link was refused.
    pub reason: String,
}

/// All transport metrics; cloning is cheap (shared atomics).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Transports by state (`up`, `down`).
    pub transports: Family<StateLabel, Gauge>,
    /// Links re-established after a drop (dialer side) or replaced by a new incoming stream.
    pub reconnects: Counter,
    /// Link bytes by direction (frames on the DMSG streams).
    pub bytes: Family<DirectionLabel, Counter>,
    /// `tp` puts by outcome.
    pub publishes: Family<OutcomeLabel, Counter>,
    /// Incoming links refused, by reason.
    pub refused: Family<ReasonLabel, Counter>,
}

impl Metrics {
    /// New metrics registered in `registry` (prefix `skymesh_tp`).
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics::default();
        let r = registry.sub_registry_with_prefix("skymesh_tp");
        r.register("transports", "Transports by state", m.transports.clone());
        r.register(
            "reconnects",
            "Links re-established after a drop",
            m.reconnects.clone(),
        );
        r.register("bytes", "Link bytes by direction", m.bytes.clone());
        r.register("publishes", "tp item puts by outcome", m.publishes.clone());
        r.register(
            "refused",
            "Incoming links refused by reason",
            m.refused.clone(),
        );
        m
    }

    pub(crate) fn bytes(&self, direction: &str, n: usize) {
        self.bytes
            .get_or_create(&DirectionLabel {
                direction: direction.to_owned(),
            })
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    pub(crate) fn publish(&self, outcome: &str) {
        self.publishes
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub(crate) fn refuse(&self, reason: &str) {
        self.refused
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub(crate) fn set_states(&self, up: usize, down: usize) {
        for (s, n) in [("up", up), ("down", down)] {
            self.transports
                .get_or_create(&StateLabel {
                    state: s.to_owned(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}
