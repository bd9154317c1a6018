//! A deterministic simulator of skymesh's DHT at internet scale, and of the Go design, on the
//! same virtual network (see `docs/scale.md`).
//!
//! Virtual time (µs), a seeded generator ([`rng::Rng`]) and one event queue ([`queue::Queue`],
//! ties broken by insertion order) make a run a pure function of its [`Scenario`]: the same
//! seed gives the same [`Report`], field for field.
//!
//! | module | owns |
//! |---|---|
//! | [`rng`] | SplitMix64 |
//! | [`queue`] | virtual time and the event queue |
//! | [`net`] | regions, per-link latency, loss, transfer time |
//! | [`catalog`] | items, write convergence, catch-up trackers |
//! | [`sky`] | skymesh: visors and full nodes driving the real pure operations of `dhtnode` (`Read`, `Put`, `Pusher`, `FullNodeTable`), `itemsync::Puller`, `dht::rules::decide` and `tp::PublishPolicy` |
//! | [`godesign`] | the Go design (`../shared/spec/go-dht-reference.md`): K-closest puts every 60 s, iterative lookups, hourly reconcile |
//! | [`report`] | measurements and the side-by-side table |
#![deny(missing_docs)]

pub mod catalog;
pub mod godesign;
pub mod net;
pub mod queue;
pub mod report;
pub mod rng;
pub mod sky;

pub use report::{Report, table};

use queue::{Micros, SEC};

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Seeds every random choice.
    pub seed: u64,
    /// Full nodes (DMSG servers) at the start.
    pub full_nodes: usize,
    /// Visors.
    pub visors: usize,
    /// Length of the run, minutes.
    pub minutes: u64,
    /// Share of online visors leaving per hour.
    pub churn_per_hour: f64,
    /// Mean time a visor that left stays away, minutes.
    pub offline_mean_min: f64,
    /// Probability that one message is lost.
    pub loss: f64,
    /// Full node 0 is cut off from everyone at this minute for this many minutes.
    pub partition: Option<(u64, u64)>,
    /// A new full node joins at this minute.
    pub join_at_min: Option<u64>,
    /// Mean time between two reads by one online visor, minutes.
    pub read_every_min: f64,
    /// Mean time between two changes of one visor's transports, minutes.
    pub tp_change_every_min: f64,
    /// Value bytes of a `dmsg` entry and a `tp` list.
    pub value_lens: [usize; 2],
    /// Print the virtual minute to stderr every 5 minutes of virtual time.
    pub progress: bool,
}

impl Scenario {
    /// Issue 19's scenario: 100 full nodes, 100,000 visors, one hour and five minutes.
    pub fn internet(seed: u64) -> Scenario {
        Scenario {
            seed,
            full_nodes: 100,
            visors: 100_000,
            minutes: 65,
            churn_per_hour: 0.10,
            offline_mean_min: 20.0,
            loss: 0.01,
            partition: Some((20, 10)),
            join_at_min: Some(35),
            read_every_min: 10.0,
            tp_change_every_min: 60.0,
            value_lens: [330, 220],
            progress: false,
        }
    }

    /// A scenario small enough for the test suite (same shape, 40 minutes).
    pub fn small(seed: u64) -> Scenario {
        Scenario {
            full_nodes: 8,
            visors: 400,
            minutes: 40,
            partition: Some((10, 5)),
            join_at_min: Some(20),
            read_every_min: 2.0,
            ..Scenario::internet(seed)
        }
    }

    /// The run's end.
    pub fn end(&self) -> Micros {
        self.minutes * 60 * SEC
    }

    /// The partition window, µs.
    pub fn partition_window(&self) -> Option<(Micros, Micros)> {
        self.partition
            .map(|(at, len)| (at * 60 * SEC, (at + len) * 60 * SEC))
    }

    /// Writes after this are not tracked for convergence (5 minutes before the end).
    pub fn track_until(&self) -> Micros {
        self.end().saturating_sub(5 * 60 * SEC)
    }
}

/// Runs skymesh and the Go design on `sc`, each on its own thread (each run is
/// single-threaded and deterministic).
pub fn run_both(sc: &Scenario) -> [Report; 2] {
    std::thread::scope(|s| {
        let go = s.spawn(|| godesign::run(sc));
        let sky = sky::run(sc);
        [
            sky,
            go.join().unwrap_or_else(|e| std::panic::resume_unwind(e)),
        ]
    })
}

/// Prints progress every 5 virtual minutes (when asked to).
pub(crate) struct Progress {
    on: bool,
    name: &'static str,
    next: Micros,
    wall: std::time::Instant,
}

impl Progress {
    pub(crate) fn new(sc: &Scenario, name: &'static str) -> Progress {
        Progress {
            on: sc.progress,
            name,
            next: 0,
            wall: std::time::Instant::now(),
        }
    }

    pub(crate) fn at(&mut self, now: Micros) {
        if self.on && now >= self.next {
            eprintln!(
                "{}: minute {} after {:.0} s",
                self.name,
                now / (60 * SEC),
                self.wall.elapsed().as_secs_f64()
            );
            self.next = now - now % (5 * 60 * SEC) + 5 * 60 * SEC;
        }
    }
}
