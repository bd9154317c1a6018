//! Dialing a server's own key (`dmsg://SERVER_PK:port`: its `/health` on 80, its mailbox on
//! 44) and opening sessions on demand.
//!
//! # Which session carries such a stream
//! 1. the session with that server, when it is one of the sessions we hold anyway;
//! 2. any other such session: the server mesh forwards a request for a peer server's own key;
//! 3. a session with that server opened earlier on demand;
//! 4. unless [`ClientConfig::servers`](super::ClientConfig::servers) pins us or the caller
//!    said no, a new on-demand session with it.
//!
//! So a long-lived stream (a mailbox subscription, renewed every minute) moves back onto the
//! mesh once it is up, and the on-demand session it needed meanwhile becomes idle and is closed
//! at the next rebalancing check instead of being held for as long as the stream lives.
use std::sync::Arc;

use keys::PubKey;

use super::streams::{dial_on, reset_by_server};
use super::{Client, ClientSession, Inner, choose, connect_server};
use crate::error::{DialError, DiscError};
use crate::lock;
use crate::stream::DmsgStream;

/// Whether [`Client::dial_server_with`] may open a session with the server when no held
/// session reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewSession {
    /// Open one (unless the client is pinned to its servers).
    Allow,
    /// Fail with [`DialError::Unreachable`] instead (e.g. while the server mesh comes up).
    Never,
}

impl Client {
    /// Dials a service on `server`'s own key, opening a session with it when nothing we hold
    /// reaches it (see the module doc for the order).
    pub async fn dial_server(&self, server: PubKey, port: u16) -> Result<DmsgStream, DialError> {
        self.dial_server_with(server, port, NewSession::Allow).await
    }

    /// [`Client::dial_server`], with the caller deciding whether a new session may be opened.
    pub async fn dial_server_with(
        &self,
        server: PubKey,
        port: u16,
        new: NewSession,
    ) -> Result<DmsgStream, DialError> {
        let inner = &self.inner;
        let ordered: Vec<(PubKey, Arc<ClientSession>)> = {
            let map = lock(&inner.sessions);
            let rtts = lock(&inner.rtts);
            let all: Vec<_> = map.iter().map(|(k, s)| (*k, s.clone())).collect();
            let (demand, held): (Vec<_>, Vec<_>) = all.into_iter().partition(|(_, s)| s.on_demand);
            let mut v: Vec<_> = held.iter().filter(|(k, _)| *k == server).cloned().collect();
            let others = held.into_iter().filter(|(k, _)| *k != server).collect();
            v.extend(choose::order_sessions(others, &rtts, rand::random));
            v.extend(demand.iter().filter(|(k, _)| *k == server).cloned());
            let others = demand.into_iter().filter(|(k, _)| *k != server).collect();
            v.extend(choose::order_sessions(others, &rtts, rand::random));
            v
        };
        let mut via = Vec::new();
        let mut last = None;
        for (srv, sess) in ordered {
            match dial_on(inner, &sess, server, port).await {
                Ok(s) => return Ok(s),
                Err(e) if srv == server => return Err(e),
                Err(e) => {
                    via.push(srv);
                    if !reset_by_server(&e) {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        let pinned = !inner.cfg.servers.is_empty();
        if pinned || new == NewSession::Never || lock(&inner.sessions).contains_key(&server) {
            return Err(DialError::Unreachable {
                pk: server,
                via,
                pinned,
            });
        }
        let sess = open_session(inner, server)
            .await
            .map_err(|e| last.unwrap_or(e))?;
        dial_on(inner, &sess, server, port).await
    }
}

/// The session with `server`, opened on demand (looked up in discovery) when not held.
pub(super) async fn open_session(
    inner: &Arc<Inner>,
    server: PubKey,
) -> Result<Arc<ClientSession>, DialError> {
    let _g = inner.dialing.lock().await;
    if let Some(s) = lock(&inner.sessions).get(&server) {
        return Ok(s.clone());
    }
    if lock(&inner.sessions).len() >= inner.cfg.max_sessions {
        return Err(DialError::NoSession { pk: server });
    }
    let e = inner.disc.entry(server).await.map_err(DialError::Disc)?;
    let addr = e
        .server
        .map(|s| s.address)
        .ok_or(DialError::Disc(DiscError::NotFound { pk: server }))?;
    connect_server(inner, server, &addr, true).await
}
