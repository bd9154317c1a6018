//! The small scenario (8 full nodes, 400 visors, 40 minutes, a 5-minute partition and a full
//! node joining at minute 20) with fixed seeds: determinism and the properties the design
//! promises. The 100,000-visor run is `cargo run --release -p skymesh-dhtsim --bin dhtsim`.
#![allow(clippy::unwrap_used)]

use dhtsim::{Scenario, godesign, sky};

#[test]
fn the_same_seed_gives_the_same_report() {
    let sc = Scenario::small(7);
    assert_eq!(sky::run(&sc), sky::run(&sc));
    assert_eq!(godesign::run(&sc), godesign::run(&sc));
    let other = sky::run(&Scenario::small(8));
    assert_ne!(sky::run(&sc), other, "another seed, another run");
}

#[test]
fn skymesh_converges_reads_and_catches_up() {
    for seed in [1, 2] {
        let sc = Scenario::small(seed);
        let r = sky::run(&sc);
        assert!(r.writes > 500, "{r:?}");
        // Every write reaches every full node, the partitioned one included.
        assert_eq!(r.converged, r.writes, "{r:?}");
        // Outside the partition: a push round trip, or a repair pull after a lost message.
        assert!(r.convergence.p50 < 1_000.0, "{r:?}");
        assert!(r.convergence.p99 < 70_000.0, "{r:?}");
        // Writes during the partition wait for the heal and a repair pull.
        assert!(r.writes_partition > 0);
        let heal_ms = 5.0 * 60e3;
        assert!(r.convergence_partition.max < heal_ms + 4.0 * 60e3, "{r:?}");
        let heal = r.heal_secs.unwrap();
        assert!(heal < 180.0, "{r:?}");
        // Reads: every online visor's item is found; the first valid copy answers, so a lost
        // message costs the 5 s request timeout only when every asked full node's is lost.
        assert!(r.reads.n > 5_000);
        assert_eq!(r.reads.found, r.reads.n, "{r:?}");
        assert!(r.reads.current as f64 >= 0.999 * r.reads.n as f64, "{r:?}");
        assert!(r.reads.latency.p50 < 300.0, "{r:?}");
        assert!(r.reads.latency.p99 < 1_000.0, "{r:?}");
        assert!(r.reads.latency.max <= 6_000.0, "{r:?}");
        assert_eq!(r.reads_partition.found, r.reads_partition.n);
        // The joining full node pulls everything.
        assert!(r.join_secs.unwrap() < 60.0, "{r:?}");
        assert_eq!(r.join_share, 1.0);
    }
}

#[test]
fn the_go_design_converges_only_through_hourly_reconcile() {
    let sc = Scenario::small(1);
    let (sky, go) = (sky::run(&sc), godesign::run(&sc));
    assert!(go.writes > 0);
    assert!(go.converged < go.writes / 2, "{go:?}");
    assert!(
        go.convergence.p50 > 60_000.0 || go.convergence.n == 0,
        "{go:?}"
    );
    assert!(go.join_share < 1.0, "only what full nodes hold: {go:?}");
    // Reads find items (re-put every 60 s) but pay a whole iterative lookup.
    assert!(go.reads.found as f64 > 0.99 * go.reads.n as f64, "{go:?}");
    assert!(
        go.reads.latency.p50 > 3.0 * sky.reads.latency.p50,
        "{go:?} {sky:?}"
    );
}
