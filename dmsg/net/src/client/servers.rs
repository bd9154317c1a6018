//! The client's servers: announcing our multiplexer before the first session, pinging every
//! session (the last RTT per server), and the servers to hold sessions with
//! ([`super::choose`] orders them).
use std::sync::Arc;
use std::sync::atomic::Ordering;

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
