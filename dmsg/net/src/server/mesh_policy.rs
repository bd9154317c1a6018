//! Pure decisions of the server mesh (spec §7): which peers a server links with, in which order
//! it tries them for a destination it does not hold, the short memory of misses, and when a
//! peer link has misbehaved enough to be cut. No tokio, no sockets, no clock reads: the time
//! comes in as `now`, so the tests drive it by hand.
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use dmsg_proto::disc::Entry;
use keys::PubKey;

/// Most peers a server links with (static and DHT together). Bounds the peer table, the link
/// tasks and the per-peer metric labels; a real deployment has dozens of servers.
pub const MAX_PEERS: usize = 256;
/// Most destinations remembered as missed (a bounded map keyed by remote input: the
/// destination key of a request).
pub const MISS_CACHE_MAX: usize = 4096;
/// How long "peer P does not hold destination D" is believed: short, because visors move.
pub const MISS_TTL: Duration = Duration::from_secs(10);
/// Refusals at the per-link bound within [`FLOOD_WINDOW`] after which a peer link is cut and
/// backed off: a well-behaved peer stays under its 512 streams and is refused rarely.
pub const FLOOD_REFUSALS: u32 = 256;
/// Window of [`FLOOD_REFUSALS`].
pub const FLOOD_WINDOW: Duration = Duration::from_secs(10);

/// Which servers published in the DHT (or discovery) a server may peer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeshAllow {
    /// Every published server (`--mesh-allow any`).
    Any,
    /// Only these keys.
    Keys(HashSet<PubKey>),
}

impl MeshAllow {
    /// Whether `pk` may be a peer.
    pub fn allows(&self, pk: &PubKey) -> bool {
        match self {
            MeshAllow::Any => true,
            MeshAllow::Keys(k) => k.contains(pk),
        }
    }
}

/// A peer server: its key and where to dial it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerAddr {
    /// The peer's static key.
    pub pk: PubKey,
    /// `host:port` of its DMSG listener.
    pub address: String,
}

/// Where a peer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerSource {
    /// The configuration (`peers` in the config file, `--mesh-peer`).
    Static,
    /// A server entry found in the DHT and allowed by `--mesh-allow`.
    Dht,
}

impl PeerSource {
    /// `static` / `dht`, for the API and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerSource::Static => "static",
            PeerSource::Dht => "dht",
        }
    }
}

/// The peers wanted now: the static ones, then the allowed published servers (not ourselves,
/// not a static key again), at most [`MAX_PEERS`] in all. Entries without a server address are
/// skipped.
pub fn wanted_peers(
    own: &PubKey,
    statics: &[PeerAddr],
    published: &[Entry],
    allow: Option<&MeshAllow>,
) -> Vec<(PeerAddr, PeerSource)> {
    let mut seen: HashSet<PubKey> = HashSet::from([*own]);
    let mut out = Vec::new();
    for p in statics {
        if out.len() < MAX_PEERS && seen.insert(p.pk) {
            out.push((p.clone(), PeerSource::Static));
        }
    }
    let Some(allow) = allow else { return out };
    let mut found: Vec<PeerAddr> = published
        .iter()
        .filter_map(|e| {
            let s = e.server.as_ref()?;
            (!s.address.is_empty() && allow.allows(&e.static_pk)).then(|| PeerAddr {
                pk: e.static_pk,
                address: s.address.clone(),
            })
        })
        .collect();
    // A stable order, so the cut at MAX_PEERS does not flap between refreshes.
    found.sort_by_key(|a| a.pk);
    for p in found {
        if out.len() < MAX_PEERS && seen.insert(p.pk) {
            out.push((p, PeerSource::Dht));
        }
    }
    out
}

/// A peer link that is up, as the forwarding order sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpPeer {
    /// The peer.
    pub pk: PubKey,
    /// Last measured round trip, if any.
    pub rtt: Option<Duration>,
}

/// The order in which to offer a request for `dst` to peers: first the destination's own
/// (delegated) servers that are peers with a link up, in the entry's order; then every other
/// peer with a link up, lowest RTT first (unmeasured last). Peers that recently missed `dst`
/// are left out.
pub fn forward_order(
    dst: &PubKey,
    delegated: &[PubKey],
    up: &[UpPeer],
    misses: &MissCache,
    now: Instant,
) -> Vec<PubKey> {
    let live = |pk: &PubKey| up.iter().any(|p| p.pk == *pk) && !misses.missed(dst, pk, now);
    let mut out: Vec<PubKey> = Vec::with_capacity(up.len());
    for pk in delegated {
        if live(pk) && !out.contains(pk) {
            out.push(*pk);
        }
    }
    let mut rest: Vec<UpPeer> = up
        .iter()
        .filter(|p| !out.contains(&p.pk) && live(&p.pk))
        .copied()
        .collect();
    rest.sort_by_key(|p| (p.rtt.is_none(), p.rtt, p.pk));
    for p in rest {
        if !out.contains(&p.pk) {
            out.push(p.pk);
        }
    }
    out
}

/// "Peer P did not hold destination D", remembered for [`MISS_TTL`], for at most
/// [`MISS_CACHE_MAX`] destinations.
#[derive(Debug)]
pub struct MissCache {
    ttl: Duration,
    max: usize,
    map: HashMap<PubKey, Vec<(PubKey, Instant)>>,
}

impl Default for MissCache {
    fn default() -> Self {
        MissCache::new(MISS_TTL, MISS_CACHE_MAX)
    }
}

impl MissCache {
    /// A cache believing misses for `ttl`, holding at most `max` destinations.
    pub fn new(ttl: Duration, max: usize) -> MissCache {
        MissCache {
            ttl,
            max: max.max(1),
            map: HashMap::new(),
        }
    }

    /// Whether `peer` missed `dst` less than the TTL before `now`.
    pub fn missed(&self, dst: &PubKey, peer: &PubKey, now: Instant) -> bool {
        self.map
            .get(dst)
            .is_some_and(|v| v.iter().any(|(p, until)| p == peer && *until > now))
    }

    /// Records that `peer` did not hold `dst` at `now`.
    pub fn record(&mut self, dst: PubKey, peer: PubKey, now: Instant) {
        if !self.map.contains_key(&dst) && self.map.len() >= self.max {
            self.purge(now);
            if self.map.len() >= self.max {
                // Still full of live entries: drop the one that expires first.
                let oldest = self
                    .map
                    .iter()
                    .min_by_key(|(_, v)| v.iter().map(|(_, u)| *u).max())
                    .map(|(k, _)| *k);
                if let Some(k) = oldest {
                    self.map.remove(&k);
                }
            }
        }
        let until = now + self.ttl;
        let v = self.map.entry(dst).or_default();
        v.retain(|(p, u)| *p != peer && *u > now);
        if v.len() < MAX_PEERS {
            v.push((peer, until));
        }
    }

    /// Forgets `dst` (it was reached).
    pub fn forget(&mut self, dst: &PubKey) {
        self.map.remove(dst);
    }

    /// Drops expired entries.
    pub fn purge(&mut self, now: Instant) {
        self.map.retain(|_, v| {
            v.retain(|(_, u)| *u > now);
            !v.is_empty()
        });
    }

    /// Destinations remembered.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Counts a peer link's refusals at its bound; says when the peer floods.
#[derive(Debug, Clone, Copy, Default)]
pub struct FloodGuard {
    window_start: Option<Instant>,
    count: u32,
}

impl FloodGuard {
    /// Counts one refusal at `now`; `true` once `limit` refusals (normally
    /// [`FLOOD_REFUSALS`]) fell within [`FLOOD_WINDOW`] (the caller cuts the link and backs
    /// the peer off).
    pub fn on_refusal(&mut self, now: Instant, limit: u32) -> bool {
        match self.window_start {
            Some(t) if now.saturating_duration_since(t) < FLOOD_WINDOW => {}
            _ => {
                self.window_start = Some(now);
                self.count = 0;
            }
        }
        self.count = self.count.saturating_add(1);
        self.count >= limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keys::SecKey;
    use proptest::prelude::*;

    fn pk(n: u8) -> PubKey {
        SecKey::from_seed(&[n; 4]).pubkey()
    }

    fn server(p: PubKey, addr: &str) -> Entry {
        Entry::new_server(p, 1, 1, addr.to_string(), 10)
    }

    #[test]
    fn wanted_peers_static_first_then_allowed_dht_without_self() {
        let (own, a, b, c) = (pk(1), pk(2), pk(3), pk(4));
        let statics = vec![PeerAddr {
            pk: a,
            address: "10.0.0.2:8081".into(),
        }];
        let published = vec![
            server(own, "10.0.0.1:8081"),
            server(a, "10.0.0.99:8081"),
            server(b, "10.0.0.3:8081"),
            server(c, "10.0.0.4:8081"),
            server(pk(5), ""),
        ];
        assert_eq!(wanted_peers(&own, &statics, &published, None).len(), 1);
        let only_b = MeshAllow::Keys(HashSet::from([b]));
        let got = wanted_peers(&own, &statics, &published, Some(&only_b));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0.address, "10.0.0.2:8081", "the static address wins");
        assert_eq!((got[1].0.pk, got[1].1), (b, PeerSource::Dht));
        let any = wanted_peers(&own, &statics, &published, Some(&MeshAllow::Any));
        let keys: HashSet<PubKey> = any.iter().map(|(p, _)| p.pk).collect();
        assert_eq!(keys, HashSet::from([a, b, c]));
    }

    #[test]
    fn forward_order_prefers_delegated_then_rtt_and_skips_misses() {
        let (dst, a, b, c, d) = (pk(9), pk(2), pk(3), pk(4), pk(5));
        let ms = Duration::from_millis;
        let up = [
            UpPeer { pk: a, rtt: None },
            UpPeer {
                pk: b,
                rtt: Some(ms(9)),
            },
            UpPeer {
                pk: c,
                rtt: Some(ms(1)),
            },
        ];
        let now = Instant::now();
        let mut misses = MissCache::default();
        // d is delegated but not a live peer: skipped.
        let got = forward_order(&dst, &[d, b], &up, &misses, now);
        assert_eq!(got, vec![b, c, a]);
        misses.record(dst, b, now);
        assert_eq!(forward_order(&dst, &[d, b], &up, &misses, now), vec![c, a]);
        // The miss expires.
        let later = now + MISS_TTL + ms(1);
        assert_eq!(
            forward_order(&dst, &[b], &up, &misses, later),
            vec![b, c, a]
        );
        // Another destination is unaffected.
        assert_eq!(forward_order(&pk(8), &[], &up, &misses, now), vec![c, b, a]);
    }

    #[test]
    fn miss_cache_is_bounded_and_expires() {
        let now = Instant::now();
        let mut m = MissCache::new(Duration::from_secs(1), 3);
        for i in 0..10u8 {
            m.record(
                pk(100 + i),
                pk(1),
                now + Duration::from_millis(u64::from(i)),
            );
            assert!(m.len() <= 3);
        }
        assert!(m.missed(&pk(109), &pk(1), now + Duration::from_millis(20)));
        assert!(!m.missed(&pk(109), &pk(2), now));
        m.purge(now + Duration::from_secs(2));
        assert!(m.is_empty());
        m.record(pk(1), pk(2), now);
        m.forget(&pk(1));
        assert!(!m.missed(&pk(1), &pk(2), now));
    }

    #[test]
    fn flood_guard_trips_within_the_window_only() {
        let t = Instant::now();
        let mut g = FloodGuard::default();
        // One refusal per window never trips.
        for i in 0..(FLOOD_REFUSALS * 2) {
            assert!(!g.on_refusal(t + FLOOD_WINDOW * i, FLOOD_REFUSALS));
        }
        let mut g = FloodGuard::default();
        let tripped = (0..FLOOD_REFUSALS)
            .map(|_| g.on_refusal(t, FLOOD_REFUSALS))
            .filter(|x| *x)
            .count();
        assert_eq!(tripped, 1, "trips exactly at the bound");
    }

    proptest! {
        #[test]
        fn forward_order_is_a_subset_of_up_peers_without_duplicates(
            up_n in proptest::collection::vec(1u8..40, 0..20),
            del_n in proptest::collection::vec(1u8..40, 0..10),
            miss_n in proptest::collection::vec(1u8..40, 0..10),
        ) {
            let now = Instant::now();
            let dst = pk(200);
            let up: Vec<UpPeer> = up_n.iter().map(|n| UpPeer { pk: pk(*n), rtt: None }).collect();
            let del: Vec<PubKey> = del_n.iter().map(|n| pk(*n)).collect();
            let mut misses = MissCache::default();
            for n in &miss_n {
                misses.record(dst, pk(*n), now);
            }
            let got = forward_order(&dst, &del, &up, &misses, now);
            let set: HashSet<PubKey> = got.iter().copied().collect();
            prop_assert_eq!(set.len(), got.len());
            for p in &got {
                prop_assert!(up.iter().any(|u| u.pk == *p));
                prop_assert!(!misses.missed(&dst, p, now));
            }
            // Every live, unmissed peer is offered.
            for u in &up {
                prop_assert!(misses.missed(&dst, &u.pk, now) || set.contains(&u.pk));
            }
        }
    }
}
