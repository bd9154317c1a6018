//! Which servers a client holds sessions with and which held session a dial tries first:
//! measured round-trip time (the last ping of a session with that server) and load, with
//! near-ties broken at random so that visors starting together spread over the servers. Pure:
//! the caller passes the RTTs it measured and the randomness.
//!
//! # Rules
//! * Two RTTs are *near* when the larger is within [`NEAR_FACTOR`] × the smaller plus
//!   [`NEAR_SLACK`] (loopback and LAN RTTs differ by noise, not by distance).
//! * A server we never pinged is near every other: its RTT is unknown, so it is judged by load.
//! * Servers are taken in tiers: the best-RTT server still left and every server near it form
//!   a tier; within a tier, fewer sessions in use first (the discovery entry's
//!   `available_sessions`, higher = less loaded), then a random order among equals.
//! * Held sessions are dialed in RTT order (unknown last), near-ties in random order.

use std::collections::HashMap;
use std::time::Duration;

use keys::PubKey;

/// Relative slack of a near-tie.
pub const NEAR_FACTOR: f64 = 1.5;
/// Absolute slack of a near-tie.
pub const NEAR_SLACK: Duration = Duration::from_millis(2);

/// A server from discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// Its key.
    pub pk: PubKey,
    /// Its address.
    pub address: String,
    /// Free session slots it last published.
    pub available: i64,
}

/// Whether `b` is near `a` (see the module doc).
pub fn near(a: Duration, b: Duration) -> bool {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    hi.as_secs_f64() <= lo.as_secs_f64() * NEAR_FACTOR + NEAR_SLACK.as_secs_f64()
}

/// Orders `offers` best first (tiers of near RTTs, then load, then `rand`), where `rand`
/// yields one random number per offer.
pub fn order_servers(
    offers: Vec<Offer>,
    rtts: &HashMap<PubKey, Duration>,
    mut rand: impl FnMut() -> u64,
) -> Vec<Offer> {
    let mut left: Vec<(Offer, Option<Duration>, u64)> = offers
        .into_iter()
        .map(|o| {
            let rtt = rtts.get(&o.pk).copied();
            (o, rtt, rand())
        })
        .collect();
    let mut out = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let best = left.iter().filter_map(|(_, r, _)| *r).min();
        let (mut tier, rest): (Vec<_>, Vec<_>) =
            left.into_iter().partition(|(_, r, _)| match (best, r) {
                (Some(b), Some(r)) => near(b, *r),
                _ => true,
            });
        tier.sort_by(|a, b| b.0.available.cmp(&a.0.available).then(a.2.cmp(&b.2)));
        out.extend(tier.into_iter().map(|(o, _, _)| o));
        left = rest;
    }
    out
}

/// Orders held sessions for a dial: by RTT (unknown last), near-ties in random order.
pub fn order_sessions<T>(
    held: Vec<(PubKey, T)>,
    rtts: &HashMap<PubKey, Duration>,
    mut rand: impl FnMut() -> u64,
) -> Vec<(PubKey, T)> {
    let mut v: Vec<(Option<Duration>, u64, (PubKey, T))> = held
        .into_iter()
        .map(|h| (rtts.get(&h.0).copied(), rand(), h))
        .collect();
    v.sort_by(|a, b| match (a.0, b.0) {
        (Some(x), Some(y)) if near(x, y) => a.1.cmp(&b.1),
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.1.cmp(&b.1),
    });
    v.into_iter().map(|(_, _, h)| h).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use keys::SecKey;

    fn pk(i: u8) -> PubKey {
        SecKey::from_seed(&[i; 8]).pubkey()
    }

    fn offer(i: u8, available: i64) -> Offer {
        Offer {
            pk: pk(i),
            address: format!("s{i}"),
            available,
        }
    }

    fn names(v: &[Offer]) -> Vec<String> {
        v.iter().map(|o| o.address.clone()).collect()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn near_ties() {
        assert!(near(ms(1), ms(3)));
        assert!(near(ms(10), ms(17)));
        assert!(!near(ms(10), ms(18)));
        assert!(!near(ms(1), ms(4)));
    }

    #[test]
    fn far_servers_come_after_near_ones_whatever_their_load() {
        let rtts = HashMap::from([(pk(1), ms(50)), (pk(2), ms(5)), (pk(3), ms(6))]);
        let mut r = 0u64;
        let v = order_servers(
            vec![offer(1, 100), offer(2, 1), offer(3, 50)],
            &rtts,
            || {
                r += 1;
                r
            },
        );
        // 2 and 3 are near each other: the less loaded (3) first; 1 is far.
        assert_eq!(names(&v), ["s3", "s2", "s1"]);
    }

    #[test]
    fn unknown_rtt_is_judged_by_load() {
        let rtts = HashMap::from([(pk(1), ms(5))]);
        let v = order_servers(vec![offer(1, 10), offer(2, 20)], &rtts, || 0);
        assert_eq!(names(&v), ["s2", "s1"]);
    }

    #[test]
    fn equal_servers_spread_at_random() {
        // Three equal servers, 3000 visors choosing their first: each gets about a third.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rng = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut counts = [0usize; 3];
        for _ in 0..3000 {
            let v = order_servers(
                vec![offer(0, 9), offer(1, 9), offer(2, 9)],
                &HashMap::new(),
                &mut rng,
            );
            counts[usize::from(v[0].address.as_bytes()[1] - b'0')] += 1;
        }
        assert!(
            counts.iter().all(|&c| (850..1150).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn sessions_by_rtt_unknown_last() {
        let rtts = HashMap::from([(pk(1), ms(40)), (pk(2), ms(3))]);
        let v = order_sessions(vec![(pk(3), 'c'), (pk(1), 'a'), (pk(2), 'b')], &rtts, || 0);
        let got: Vec<char> = v.into_iter().map(|(_, c)| c).collect();
        assert_eq!(got, ['b', 'a', 'c']);
    }
}
