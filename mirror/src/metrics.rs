//! `skymesh_mirror_*` Prometheus metrics of the full-node feed (see `docs/metrics.md`).
//!
//! The feed counts into [`FeedStats`] (plain atomics, no registry needed to run it); a node
//! that exports metrics registers [`FeedMetrics`] and copies the counters into it with
//! [`FeedMetrics::update`] (the node does so every second).
use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::feed::FeedStats;

/// The feed's gauges, registered in a node's registry.
#[derive(Debug, Clone, Default)]
pub struct FeedMetrics {
    /// `skymesh_mirror_scanned_items`: items delivered by full scans.
    pub scanned: Gauge,
    /// `skymesh_mirror_followed_items`: items delivered from the change streams.
    pub followed: Gauge,
    /// `skymesh_mirror_refused_items`: items found in Redis that failed verification.
    pub refused: Gauge,
    /// `skymesh_mirror_rescans`: shard rescans after a change stream was trimmed past us.
    pub rescans: Gauge,
    /// `skymesh_mirror_redis_errors`: Redis connection or command failures of the feed.
    pub redis_errors: Gauge,
    /// `skymesh_mirror_live`: 1 when the feed is connected and caught up.
    pub live: Gauge,
}

impl FeedMetrics {
    /// Registers the gauges in `registry`.
    pub fn register(registry: &mut Registry) -> FeedMetrics {
        let m = FeedMetrics::default();
        for (name, help, g) in [
            (
                "skymesh_mirror_scanned_items",
                "Items delivered by full scans of the mirror",
                &m.scanned,
            ),
            (
                "skymesh_mirror_followed_items",
                "Items delivered from the mirror's change streams",
                &m.followed,
            ),
            (
                "skymesh_mirror_refused_items",
                "Items found in Redis that failed verification",
                &m.refused,
            ),
            (
                "skymesh_mirror_rescans",
                "Shard rescans after the change stream was trimmed past us",
                &m.rescans,
            ),
            (
                "skymesh_mirror_redis_errors",
                "Redis connection or command failures of the feed",
                &m.redis_errors,
            ),
            (
                "skymesh_mirror_live",
                "1 when the feed is connected and caught up",
                &m.live,
            ),
        ] {
            registry.register(name, help, g.clone());
        }
        m
    }

    /// Copies the feed's counters into the gauges.
    pub fn update(&self, stats: &FeedStats) {
        let set = |g: &Gauge, v: u64| {
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        set(&self.scanned, stats.scanned.load(Relaxed));
        set(&self.followed, stats.followed.load(Relaxed));
        set(&self.refused, stats.refused.load(Relaxed));
        set(&self.rescans, stats.rescans.load(Relaxed));
        set(&self.redis_errors, stats.redis_errors.load(Relaxed));
        set(&self.live, stats.live.load(Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_every_gauge_and_copies_the_counters() {
        let mut registry = Registry::default();
        let m = FeedMetrics::register(&mut registry);
        let stats = FeedStats::default();
        stats.scanned.store(3, Relaxed);
        stats.live.store(1, Relaxed);
        m.update(&stats);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encode");
        assert!(out.contains("skymesh_mirror_scanned_items 3"), "{out}");
        assert!(out.contains("skymesh_mirror_live 1"), "{out}");
        assert!(out.contains("skymesh_mirror_redis_errors 0"), "{out}");
    }
}
