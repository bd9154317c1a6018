//! The client's servers: announcing our multiplexer before the first session, pinging every
//! session (the last RTT per server), the servers to hold sessions with ([`super::choose`]
//! orders them), and moving off a server that became much fuller than a near one.
//!
//! # Rebalancing
//! Visors that start together see the same loads and spread only by chance. So a few seconds
//! after start, and then every [`BALANCE_EVERY`] (± half, at random), a client holding just
//! its `min_sessions` compares each held server's published free slots with the other servers
//! near it in RTT ([`choose::near`]; unknown RTTs count as near): when one has at least
//! [`BALANCE_MARGIN`] more free slots, the client moves there with probability ½ (so the
//! clients of a crowded server do not all move at once); the old session keeps its streams for
//! at most [`DRAIN_GRACE`], new dials use the new one. Sessions beyond `min_sessions` (opened to reach a peer while the server mesh
//! could not) are closed at such a check once idle, the nearest kept.
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use dmsg_proto::disc::Entry;
use keys::PubKey;

use super::{
    ClientSession, Inner, RTT_TABLE_MAX, SESSION_PING_FAILURES, SESSION_PING_INTERVAL,
    SESSION_PING_TIMEOUT, choose,
};
use crate::error::{DialError, DiscError};
use crate::lock;
use crate::mux::Protocol;

/// Our client entry with the sessions held now (and our multiplexer, when it is smux).
pub(super) fn client_entry(inner: &Inner, servers: Vec<PubKey>) -> Entry {
    let mut e = Entry::new_client(inner.pk, 0, crate::now_ns(), Some(servers));
    e.protocol = inner.cfg.mux.protocol.entry_member().to_string();
    e
}

/// A server learns that we speak smux from our discovery entry, right after the handshake:
/// post it before the first smux session (yamux needs nothing: it is what servers assume).
pub(super) async fn announce_protocol(inner: &Arc<Inner>) -> Result<(), DialError> {
    if inner.cfg.mux.protocol != Protocol::Smux || inner.announced.load(Ordering::Acquire) {
        return Ok(());
    }
    let mut servers: Vec<PubKey> = lock(&inner.sessions).keys().copied().collect();
    servers.sort();
    let e = client_entry(inner, servers);
    inner
        .disc
        .put_entry(inner.cfg.sk.clone(), e)
        .await
        .map_err(DialError::Disc)?;
    inner.announced.store(true, Ordering::Release);
    Ok(())
}

/// Pings the session with `server` at once and then every [`SESSION_PING_INTERVAL`], keeps
/// the last RTT, and closes the session after [`SESSION_PING_FAILURES`] failures in a row.
pub(super) async fn ping_loop(
    inner: std::sync::Weak<Inner>,
    server: PubKey,
    sess: std::sync::Weak<ClientSession>,
) {
    let mut failures = 0;
    loop {
        let Some(s) = sess.upgrade() else { return };
        match tokio::time::timeout(SESSION_PING_TIMEOUT, s.est.session.ping()).await {
            Ok(Ok(rtt)) => {
                failures = 0;
                let Some(inner) = inner.upgrade() else { return };
                let mut rtts = lock(&inner.rtts);
                if rtts.len() >= RTT_TABLE_MAX && !rtts.contains_key(&server) {
                    rtts.clear();
                }
                rtts.insert(server, rtt);
                tracing::trace!(%server, ?rtt, "session ping");
            }
            _ if s.est.session.is_closed() => return,
            _ => {
                failures += 1;
                tracing::debug!(%server, failures, "session ping failed");
                if failures >= SESSION_PING_FAILURES {
                    s.est.session.close();
                    return;
                }
            }
        }
        drop(s);
        tokio::time::sleep(SESSION_PING_INTERVAL).await;
    }
}

/// Servers to hold sessions with, best first: `available_servers` ordered by our measured RTTs
/// and their load, near-ties at random ([`choose::order_servers`]), or with
/// [`ClientConfig::servers`] exactly those (looked up by key when not listed).
pub(super) async fn candidates(inner: &Arc<Inner>) -> Result<Vec<(PubKey, String)>, DiscError> {
    let pinned = &inner.cfg.servers;
    let listed = inner.disc.available_servers().await;
    let listed: Vec<choose::Offer> = match (listed, pinned.is_empty()) {
        (Ok(l), _) => l
            .into_iter()
            .filter_map(|e| {
                let s = e.server?;
                Some(choose::Offer {
                    pk: e.static_pk,
                    address: s.address,
                    available: s.available_sessions,
                })
            })
            .collect(),
        (Err(e), true) => return Err(e),
        (Err(_), false) => Vec::new(),
    };
    if pinned.is_empty() {
        let rtts = lock(&inner.rtts).clone();
        return Ok(choose::order_servers(listed, &rtts, rand::random)
            .into_iter()
            .map(|o| (o.pk, o.address))
            .collect());
    }
    let listed: Vec<(PubKey, String)> = listed.into_iter().map(|o| (o.pk, o.address)).collect();
    let mut out = Vec::new();
    for pk in pinned {
        if let Some(found) = listed.iter().find(|(k, _)| k == pk) {
            out.push(found.clone());
        } else if let Ok(e) = inner.disc.entry(*pk).await
            && let Some(s) = e.server
        {
            out.push((*pk, s.address));
        }
    }
    Ok(out)
}

/// Closes idle sessions beyond `want` (opened for a dial while the mesh could not reach the
/// target), keeping those we hold anyway, then the nearest; `true` when one was closed.
fn trim(inner: &Arc<Inner>, held: Vec<(PubKey, Arc<ClientSession>)>, want: usize) -> bool {
    let rtts = lock(&inner.rtts).clone();
    let mut ordered = choose::order_sessions(held, &rtts, rand::random);
    // Sessions we hold anyway first (kept), then those opened on demand; each kind by RTT.
    ordered.sort_by_key(|(_, s)| s.on_demand);
    let mut closed = false;
    for (pk, sess) in ordered.into_iter().skip(want) {
        if sess.est.session.num_streams() > 0 {
            continue;
        }
        tracing::debug!(server = %pk, "closing an idle session beyond min_sessions");
        let mut map = lock(&inner.sessions);
        if map.get(&pk).is_some_and(|s| Arc::ptr_eq(s, &sess)) {
            map.remove(&pk);
        }
        drop(map);
        sess.est.session.close();
        closed = true;
    }
    if closed {
        inner.changed.notify_one();
    }
    closed
}

/// First rebalancing check after start (× a random factor in 1..2).
pub const BALANCE_FIRST: Duration = Duration::from_secs(3);
/// Rebalancing checks after the first (× a random factor in 0.5..1.5).
pub const BALANCE_EVERY: Duration = Duration::from_secs(20);
/// How long the streams of a session we moved off may go on before it is closed.
pub const DRAIN_GRACE: Duration = Duration::from_secs(10);
/// Free-slot difference that makes a client move to another server.
pub const BALANCE_MARGIN: i64 = 2;

/// The delay to the next rebalancing check.
pub(super) fn balance_delay(first: bool) -> Duration {
    let r: f64 = rand::random();
    if first {
        BALANCE_FIRST.mul_f64(1.0 + r)
    } else {
        BALANCE_EVERY.mul_f64(0.5 + r)
    }
}

/// One rebalancing check (see the module doc); `true` when the client moved or trimmed.
pub(super) async fn rebalance(inner: &Arc<Inner>, want: usize) -> bool {
    let held: Vec<(PubKey, Arc<ClientSession>)> = lock(&inner.sessions)
        .iter()
        .map(|(k, s)| (*k, s.clone()))
        .collect();
    if want == 0 {
        return false;
    }
    if held.len() > want {
        return trim(inner, held, want);
    }
    let Ok(list) = inner.disc.available_servers().await else {
        return false;
    };
    let rtts = lock(&inner.rtts).clone();
    let free = |pk: &PubKey| {
        list.iter()
            .find(|e| e.static_pk == *pk)
            .and_then(|e| e.server.as_ref())
            .map(|s| s.available_sessions)
    };
    for (from, sess) in held {
        let Some(from_free) = free(&from) else {
            continue;
        };
        if !rand::random::<bool>() {
            continue;
        }
        let near_from = |pk: &PubKey| match (rtts.get(&from), rtts.get(pk)) {
            (Some(a), Some(b)) => choose::near(*a, *b),
            _ => true,
        };
        let best = list
            .iter()
            .filter(|e| !lock(&inner.sessions).contains_key(&e.static_pk))
            .filter(|e| near_from(&e.static_pk))
            .filter_map(|e| Some((e.static_pk, e.server.as_ref()?)))
            .filter(|(_, s)| s.available_sessions >= from_free + BALANCE_MARGIN)
            .max_by_key(|(_, s)| s.available_sessions)
            .map(|(pk, s)| (pk, s.address.clone()));
        let Some((to, addr)) = best else {
            continue;
        };
        let _g = inner.dialing.lock().await;
        // Held meanwhile (an on-demand dial): a second session would close that one.
        if lock(&inner.sessions).contains_key(&to) {
            continue;
        }
        if super::connect_server(inner, to, &addr, false).await.is_ok() {
            tracing::info!(%from, %to, from_free, "moving to a less loaded DMSG server");
            let mut map = lock(&inner.sessions);
            if map.get(&from).is_some_and(|s| Arc::ptr_eq(s, &sess)) {
                map.remove(&from);
            }
            drop(map);
            inner.changed.notify_one();
            // New dials use the new session; streams on the old one get DRAIN_GRACE to end.
            tokio::spawn(async move {
                let t0 = std::time::Instant::now();
                while sess.est.session.num_streams() > 0 && t0.elapsed() < DRAIN_GRACE {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                sess.est.session.close();
            });
            return true;
        }
    }
    false
}
