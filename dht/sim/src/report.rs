//! What a run measures, and the side-by-side table.
use std::fmt::Write as _;

use crate::queue::Micros;

/// A distribution summary, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Dist {
    /// Samples.
    pub n: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Dist {
    /// Summary of `samples` (µs), reported in ms.
    pub fn of(mut samples: Vec<Micros>) -> Dist {
        if samples.is_empty() {
            return Dist::default();
        }
        samples.sort_unstable();
        let at = |p: f64| {
            let i = ((samples.len() - 1) as f64 * p).round() as usize;
            samples[i] as f64 / 1000.0
        };
        Dist {
            n: samples.len() as u64,
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// Reads by visors during one window.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reads {
    /// Reads of an online visor's item.
    pub n: u64,
    /// Reads that returned a copy.
    pub found: u64,
    /// Reads that returned the latest version published before the read started.
    pub current: u64,
    /// Latency.
    pub latency: Dist,
}

/// Bytes per full node per hour, by kind (sent + received).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Traffic {
    /// Full node ↔ full node push (skymesh) or PutValue/PutBatch as a holder (Go).
    pub push: f64,
    /// Repair pulls (skymesh 60 s incremental; Go hourly reconcile), both directions.
    pub repair: f64,
    /// Puts from visors.
    pub puts: f64,
    /// Reads and lookups answered, adverts served.
    pub reads: f64,
}

/// The measurements of one run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    /// Which design.
    pub design: String,
    /// Writes (item versions published) tracked for convergence.
    pub writes: u64,
    /// Of those, versions every original full node held by the end.
    pub converged: u64,
    /// Write → held by all original full nodes (ms), writes outside the partition.
    pub convergence: Dist,
    /// The same for writes published while the partition lasted.
    pub convergence_partition: Dist,
    /// Writes published while the partition lasted (converged or not).
    pub writes_partition: u64,
    /// Reads before the partition and after it healed.
    pub reads: Reads,
    /// Reads while the partition lasted.
    pub reads_partition: Reads,
    /// Mean per full node, scaled to one hour.
    pub traffic: Traffic,
    /// A full node joining mid-run: seconds until it held every item the others held when it
    /// joined (`None`: not within the run).
    pub join_secs: Option<f64>,
    /// Share of the dataset (current versions) the joining node held at the end.
    pub join_share: f64,
    /// Seconds after the partition healed until the partitioned node held every version
    /// published before the heal (`None`: not within the run).
    pub heal_secs: Option<f64>,
    /// Events processed.
    pub events: u64,
}

fn pct(a: u64, b: u64) -> String {
    if b == 0 {
        "-".into()
    } else {
        format!("{:.3} %", 100.0 * a as f64 / b as f64)
    }
}

fn dist(d: &Dist) -> String {
    if d.n == 0 {
        "-".into()
    } else {
        format!("{:.0}/{:.0}/{:.0} ms", d.p50, d.p99, d.max)
    }
}

fn mib(b: f64) -> String {
    format!("{:.1} MiB", b / f64::from(1 << 20))
}

fn secs(s: Option<f64>) -> String {
    s.map_or("not in run".into(), |s| format!("{s:.1} s"))
}

/// The table of several reports side by side (one column each).
pub fn table(reports: &[Report]) -> String {
    type Row = (&'static str, fn(&Report) -> String);
    let rows: &[Row] = &[
        ("writes tracked", |r| r.writes.to_string()),
        ("converged on all full nodes", |r| {
            pct(r.converged, r.writes)
        }),
        ("convergence p50/p99/max", |r| dist(&r.convergence)),
        ("  writes during partition", |r| {
            r.writes_partition.to_string()
        }),
        ("  their convergence p50/p99/max", |r| {
            dist(&r.convergence_partition)
        }),
        ("visor reads", |r| r.reads.n.to_string()),
        ("  found", |r| pct(r.reads.found, r.reads.n)),
        ("  latest version", |r| pct(r.reads.current, r.reads.n)),
        ("  latency p50/p90/p99/max", |r| {
            let d = &r.reads.latency;
            format!("{:.0}/{:.0}/{:.0}/{:.0} ms", d.p50, d.p90, d.p99, d.max)
        }),
        ("reads during partition", |r| {
            r.reads_partition.n.to_string()
        }),
        ("  found", |r| {
            pct(r.reads_partition.found, r.reads_partition.n)
        }),
        ("  latest version", |r| {
            pct(r.reads_partition.current, r.reads_partition.n)
        }),
        ("  latency p50/p99/max", |r| {
            dist(&r.reads_partition.latency)
        }),
        ("bytes/full node/h: push", |r| mib(r.traffic.push)),
        ("  repair / reconcile", |r| mib(r.traffic.repair)),
        (
            "  push + repair",
            |r| mib(r.traffic.push + r.traffic.repair),
        ),
        ("  puts from visors", |r| mib(r.traffic.puts)),
        ("  reads, lookups, adverts", |r| mib(r.traffic.reads)),
        ("partitioned node caught up after heal", |r| {
            secs(r.heal_secs)
        }),
        ("new full node holds the dataset", |r| secs(r.join_secs)),
        ("  share held at the end", |r| {
            format!("{:.2} %", 100.0 * r.join_share)
        }),
        ("events simulated", |r| r.events.to_string()),
    ];
    let mut out = String::new();
    let _ = write!(out, "| {:<38} |", "");
    for r in reports {
        let _ = write!(out, " {:<26} |", r.design);
    }
    out.push('\n');
    let _ = write!(out, "|{}|", "-".repeat(40));
    for _ in reports {
        let _ = write!(out, "{}|", "-".repeat(28));
    }
    out.push('\n');
    for (name, f) in rows {
        let _ = write!(out, "| {name:<38} |");
        for r in reports {
            let _ = write!(out, " {:<26} |", f(r));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let d = Dist::of((1..=100).map(|i| i * 1000).collect());
        assert_eq!((d.n, d.p50, d.p99, d.max), (100, 51.0, 99.0, 100.0));
        assert_eq!(Dist::of(Vec::new()).n, 0);
        assert!(table(&[Report::default()]).contains("visor reads"));
    }
}
