//! The virtual network: five regions with one-way base latencies between them, a fixed
//! per-link offset (a link's route), a last-mile delay per host, a small random jitter per
//! message, independent loss per message, partitions and a transfer time for big messages.
//!
//! Figures are round numbers for the public internet (same region ~10 ms one way, Europe–North
//! America ~45 ms, Europe–Asia ~90 ms); they shape the distributions, the comparison between the
//! designs does not hinge on them.
use crate::queue::Micros;
use crate::rng::{Rng, mix};

/// Region names, in index order.
pub const REGIONS: [&str; 5] = ["eu", "na", "as", "sa", "oc"];

/// Share of hosts per region (full nodes and visors alike).
const WEIGHTS: [f64; 5] = [0.40, 0.25, 0.25, 0.05, 0.05];

/// One-way base latency between regions, ms.
const BASE_MS: [[f64; 5]; 5] = [
    [10.0, 45.0, 90.0, 100.0, 140.0],
    [45.0, 10.0, 75.0, 60.0, 100.0],
    [90.0, 75.0, 15.0, 150.0, 60.0],
    [100.0, 60.0, 150.0, 15.0, 160.0],
    [140.0, 100.0, 60.0, 160.0, 10.0],
];

/// Link bandwidth of a full node, bytes per µs (100 Mbit/s): big pages take transfer time.
pub const BYTES_PER_MICRO: f64 = 12.5;

/// One-way base latency between two regions, µs.
pub fn base_micros(a: u8, b: u8) -> Micros {
    (BASE_MS[usize::from(a)][usize::from(b)] * 1000.0) as Micros
}

/// A host on the network.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// Stable id (links are keyed by pairs of ids).
    pub id: u64,
    /// Region index into [`REGIONS`].
    pub region: u8,
    /// Last-mile delay, µs, added to every message to or from this host.
    pub last_mile: Micros,
}

/// Latency and loss model.
#[derive(Debug, Clone)]
pub struct Net {
    /// Probability that one message is lost.
    pub loss: f64,
    seed: u64,
}

impl Net {
    /// A network losing `loss` of messages; `seed` fixes the per-link offsets.
    pub fn new(loss: f64, seed: u64) -> Net {
        Net { loss, seed }
    }

    /// A new host with id `id`: region by the weights, last mile `last_mile_ms` ± 50 %.
    pub fn endpoint(rng: &mut Rng, id: u64, last_mile_ms: f64) -> Endpoint {
        let x = rng.f64();
        let mut acc = 0.0;
        let mut region = 0;
        for (i, w) in WEIGHTS.iter().enumerate() {
            acc += w;
            if x < acc {
                region = i;
                break;
            }
        }
        Endpoint {
            id,
            region: region as u8,
            last_mile: (last_mile_ms * (0.5 + rng.f64()) * 1000.0) as Micros,
        }
    }

    /// The latency of one message from `a` to `b` of `bytes` bytes.
    pub fn latency(&self, rng: &mut Rng, a: &Endpoint, b: &Endpoint, bytes: usize) -> Micros {
        let base = BASE_MS[usize::from(a.region)][usize::from(b.region)] * 1000.0;
        let (lo, hi) = if a.id < b.id {
            (a.id, b.id)
        } else {
            (b.id, a.id)
        };
        // A link's route is up to 30 % longer than the base.
        let route = (mix(self.seed ^ lo, hi) >> 11) as f64 / (1u64 << 53) as f64;
        let jitter = rng.exp(500.0);
        let transfer = bytes as f64 / BYTES_PER_MICRO;
        (base * (1.0 + 0.3 * route) + jitter + transfer) as Micros + a.last_mile + b.last_mile
    }

    /// Whether one message is lost.
    pub fn lost(&self, rng: &mut Rng) -> bool {
        rng.chance(self.loss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_symmetric_in_the_route_and_grows_with_size() {
        let mut r = Rng::new(3);
        let net = Net::new(0.0, 9);
        let a = Endpoint {
            id: 1,
            region: 0,
            last_mile: 0,
        };
        let b = Endpoint {
            id: 2,
            region: 2,
            last_mile: 0,
        };
        let ab = net.latency(&mut r, &a, &b, 0);
        assert!((90_000..130_000).contains(&ab), "{ab}");
        let big = net.latency(&mut r, &a, &b, 4 << 20);
        assert!(big > ab + 300_000, "4 MiB at 100 Mbit/s is ~335 ms");
        assert!(!net.lost(&mut r));
    }
}
