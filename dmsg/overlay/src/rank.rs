//! Choosing DMSG servers: measured round-trip time and load.
//!
//! This is discovery's first cut: servers that do not answer a TCP connect are dropped (when
//! any does), and the rest come in this order. The DMSG client then orders them itself by the
//! RTT of its session pings (`dmsg::client::choose`), their load, and random near-ties, which
//! is what spreads visors starting together over the servers.
//!
//! A candidate is a live server entry, optionally with the server's `dmsg-server` item (which
//! carries `max_sessions`). Its RTT is the time a TCP connect to its address takes (deadline
//! [`PROBE_TIMEOUT`], cached [`RTT_CACHE_TTL`]); a server that does not answer is ranked after
//! every one that does. Among reachable servers the score is `rtt × (1 + 2 × used)`, where
//! `used` is the fraction of sessions taken (0 when unknown), so a server twice as far away
//! is preferred only when the nearer one is much fuller.
//!
//! Sockets: the RTT probe opens (and at once drops) a TCP connection to the server's address;
//! the ranking itself ([`rank`]) is pure.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dmsg_proto::disc::Entry;
use keys::PubKey;

/// Deadline of one RTT probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(800);
/// How long a measured RTT is reused.
pub const RTT_CACHE_TTL: Duration = Duration::from_secs(60);
/// Most servers probed per ranking (the rest keep discovery order, after the probed ones).
pub const MAX_PROBED: usize = 32;
/// Most cached RTTs (cleared when full).
pub const RTT_CACHE_MAX: usize = 4096;

/// A server to rank.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Its reference entry (has a `server` member).
    pub entry: Entry,
    /// `max_sessions` from its `dmsg-server` item, if known.
    pub max_sessions: Option<u32>,
    /// Measured RTT; `None` = did not answer.
    pub rtt: Option<Duration>,
}

impl Candidate {
    /// Fraction of sessions in use, 0..=1 (0 when unknown).
    pub fn used(&self) -> f64 {
        let (Some(max), Some(srv)) = (self.max_sessions, &self.entry.server) else {
            return 0.0;
        };
        if max == 0 {
            return 1.0;
        }
        let avail = srv.available_sessions.clamp(0, i64::from(max)) as f64;
        1.0 - avail / f64::from(max)
    }

    /// Lower is better; `None` when unreachable.
    pub fn score(&self) -> Option<f64> {
        self.rtt
            .map(|rtt| rtt.as_secs_f64() * 1000.0 * (1.0 + 2.0 * self.used()))
    }
}

/// Orders candidates best first: reachable by score, then unreachable in their given order.
pub fn rank(mut cands: Vec<Candidate>) -> Vec<Candidate> {
    // Stable sort keeps discovery order among equals and among the unreachable.
    cands.sort_by(|a, b| match (a.score(), b.score()) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    cands
}

/// A cached probe: when it was measured and what it found.
type Measured = (Instant, Option<Duration>);

/// Cached RTT probes, keyed by server key and address.
#[derive(Debug, Default)]
pub struct Prober {
    cache: Mutex<HashMap<(PubKey, String), Measured>>,
}

impl Prober {
    /// Fills in `rtt` for up to [`MAX_PROBED`] candidates (cached ones first), probing
    /// concurrently.
    pub async fn measure(&self, cands: &mut [Candidate]) {
        let mut todo = Vec::new();
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            for (i, c) in cands.iter_mut().enumerate() {
                let Some(addr) = c.entry.server.as_ref().map(|s| s.address.clone()) else {
                    continue;
                };
                match cache.get(&(c.entry.static_pk, addr.clone())) {
                    Some((t, rtt)) if t.elapsed() < RTT_CACHE_TTL => c.rtt = *rtt,
                    _ if todo.len() < MAX_PROBED => todo.push((i, addr)),
                    _ => {}
                }
            }
        }
        let probes = todo.iter().map(|(_, addr)| probe(addr));
        let results = futures::future::join_all(probes).await;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() + results.len() > RTT_CACHE_MAX {
            cache.clear();
        }
        for ((i, addr), rtt) in todo.into_iter().zip(results) {
            if let Some(c) = cands.get_mut(i) {
                c.rtt = rtt;
                cache.insert((c.entry.static_pk, addr), (Instant::now(), rtt));
            }
        }
    }
}

/// Time to establish a TCP connection to `addr` (`None` on failure or after
/// [`PROBE_TIMEOUT`]).
pub async fn probe(addr: &str) -> Option<Duration> {
    let start = Instant::now();
    match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Some(start.elapsed()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keys::SecKey;

    fn cand(seed: &str, avail: i64, max: Option<u32>, rtt_ms: Option<u64>) -> Candidate {
        let pk = SecKey::from_seed(seed.as_bytes()).pubkey();
        Candidate {
            entry: Entry::new_server(pk, 0, 0, format!("{seed}:1"), avail),
            max_sessions: max,
            rtt: rtt_ms.map(Duration::from_millis),
        }
    }

    fn order(c: Vec<Candidate>) -> Vec<String> {
        rank(c)
            .into_iter()
            .map(|c| c.entry.server.unwrap().address)
            .collect()
    }

    #[test]
    fn nearer_wins_unless_much_fuller() {
        assert_eq!(
            order(vec![
                cand("far", 100, Some(100), Some(10)),
                cand("near", 100, Some(100), Some(2)),
            ]),
            ["near:1", "far:1"]
        );
        // near is full (used = 1 → ×3), far is empty: 2×3=6 > 5.
        assert_eq!(
            order(vec![
                cand("near", 0, Some(100), Some(2)),
                cand("far", 100, Some(100), Some(5)),
            ]),
            ["far:1", "near:1"]
        );
    }

    #[test]
    fn unreachable_last_in_given_order() {
        assert_eq!(
            order(vec![
                cand("dead1", 100, None, None),
                cand("ok", 1, None, Some(50)),
                cand("dead2", 100, None, None),
            ]),
            ["ok:1", "dead1:1", "dead2:1"]
        );
    }

    #[test]
    fn used_fraction_is_bounded() {
        assert_eq!(cand("a", 150, Some(100), None).used(), 0.0);
        assert_eq!(cand("a", -5, Some(100), None).used(), 1.0);
        assert_eq!(cand("a", 5, Some(0), None).used(), 1.0);
        assert_eq!(cand("a", 5, None, None).used(), 0.0);
    }

    #[tokio::test]
    async fn probe_measures_a_listener_and_fails_on_a_closed_port() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        assert!(probe(&addr).await.is_some());
        drop(l);
        assert!(probe(&addr).await.is_none());
    }
}
