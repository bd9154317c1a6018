//! Per-peer rate limit on inbound Kademlia requests (FindNode, GetRecord, PutRecord,
//! GetProviders, AddProvider).
//!
//! libp2p-kad answers FindNode and GetRecord inside the behaviour and reports them without the
//! asking peer, so the limit sits in front of it: [`PeerLimited`] wraps any behaviour, sees every
//! event a connection handler reports together with its peer, and drops the inbound requests a
//! peer sends beyond [`crate::Config::max_kad_requests_per_peer`] per
//! [`crate::Config::limit_window`]. Such a peer is also disconnected (all its connections), so
//! the requests it still has in flight end with the connection; everyone else is served as
//! before. Responses to our own queries are never counted or dropped.
//!
//! Which handler events are inbound requests is decided by a classifier given at construction;
//! for kad it is [`is_kad_inbound_request`].
//!
//! The wrapper is also where a node's own lookups can be watched request by request: with
//! [`PeerLimited::measure_hops`] it feeds a [`HopTracker`] (see [`crate::hops`]).
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::task::{Context, Poll};
use std::time::Instant;

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::swarm::{
    CloseConnection, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};
use prometheus_client::metrics::counter::Counter;

use crate::hops::HopTracker;
use crate::limits::PeerLimiter;

/// Peers waiting to be disconnected; a peer already queued is not queued twice, and beyond
/// this many the oldest entries are served first (the limit keeps dropping their requests
/// meanwhile).
const MAX_PENDING_CLOSES: usize = 256;

/// A behaviour whose inbound requests are rate-limited per peer.
pub struct PeerLimited<B: NetworkBehaviour> {
    inner: B,
    is_request: fn(&THandlerOutEvent<B>) -> bool,
    limiter: PeerLimiter,
    closing: VecDeque<PeerId>,
    limited: Counter,
    hops: Option<Hops<B>>,
}

/// Hop measurement: the tracker and how to tell lookup requests and their answers.
struct Hops<B: NetworkBehaviour> {
    tracker: HopTracker,
    is_send: fn(&THandlerInEvent<B>) -> bool,
    is_answer: fn(&THandlerOutEvent<B>) -> bool,
}

impl<B: NetworkBehaviour> PeerLimited<B> {
    /// Wraps `inner`; `is_request` tells inbound requests from other handler events.
    pub fn new(
        inner: B,
        is_request: fn(&THandlerOutEvent<B>) -> bool,
        limiter: PeerLimiter,
        limited: Counter,
    ) -> PeerLimited<B> {
        PeerLimited {
            inner,
            is_request,
            limiter,
            closing: VecDeque::new(),
            limited,
            hops: None,
        }
    }

    /// Turns hop measurement on: `is_send` tells the requests our queries send (to a connected
    /// peer; a dial kad asks for counts as one too), `is_answer` their successful answers.
    pub fn measure_hops(
        &mut self,
        is_send: fn(&THandlerInEvent<B>) -> bool,
        is_answer: fn(&THandlerOutEvent<B>) -> bool,
    ) {
        self.hops = Some(Hops {
            tracker: HopTracker::default(),
            is_send,
            is_answer,
        });
    }

    /// The hop tracker, when measurement is on.
    pub fn hops(&mut self) -> Option<&mut HopTracker> {
        self.hops.as_mut().map(|h| &mut h.tracker)
    }
}

impl<B: NetworkBehaviour> std::ops::Deref for PeerLimited<B> {
    type Target = B;
    fn deref(&self) -> &B {
        &self.inner
    }
}

impl<B: NetworkBehaviour> std::ops::DerefMut for PeerLimited<B> {
    fn deref_mut(&mut self) -> &mut B {
        &mut self.inner
    }
}

impl<B: NetworkBehaviour> NetworkBehaviour for PeerLimited<B> {
    type ConnectionHandler = B::ConnectionHandler;
    type ToSwarm = B::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner.handle_established_inbound_connection(
            connection_id,
            peer,
            local_addr,
            remote_addr,
        )
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner.handle_pending_outbound_connection(
            connection_id,
            maybe_peer,
            addresses,
            effective_role,
        )
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner.handle_established_outbound_connection(
            connection_id,
            peer,
            addr,
            role_override,
            port_use,
        )
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        if (self.is_request)(&event) && !self.limiter.allow(peer_id, Instant::now()) {
            self.limited.inc();
            if !self.closing.contains(&peer_id) {
                if self.closing.len() >= MAX_PENDING_CLOSES {
                    self.closing.pop_front();
                }
                tracing::info!(peer = %peer_id, "kad request limit exceeded; disconnecting");
                self.closing.push_back(peer_id);
            }
            return;
        }
        if let Some(h) = &mut self.hops
            && (h.is_answer)(&event)
        {
            h.tracker.answered(&peer_id);
        }
        self.inner
            .on_connection_handler_event(peer_id, connection_id, event);
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        if let Some(peer_id) = self.closing.pop_front() {
            return Poll::Ready(ToSwarm::CloseConnection {
                peer_id,
                connection: CloseConnection::All,
            });
        }
        let out = self.inner.poll(cx);
        if let (Some(h), Poll::Ready(ev)) = (&mut self.hops, &out) {
            match ev {
                ToSwarm::NotifyHandler { peer_id, event, .. } if (h.is_send)(event) => {
                    h.tracker.sent(*peer_id)
                }
                ToSwarm::Dial { opts } => {
                    if let Some(peer) = opts.get_peer_id() {
                        h.tracker.sent(peer);
                    }
                }
                _ => {}
            }
        }
        out
    }
}

/// The kad handler events that are requests from the peer.
const KAD_REQUESTS: [&str; 5] = [
    "FindNodeReq",
    "GetRecord",
    "PutRecord",
    "GetProvidersReq",
    "AddProvider",
];

/// Whether a kad handler event is an inbound request.
///
/// The handler's event type is private to libp2p-kad, so its variant is read from the derived
/// `Debug` output, of which only the name is formatted: the writer stops the formatting at the
/// first character after it, so a 64 KiB record costs nothing. The integration test
/// `kad_request_flood_is_cut_off` (dht/node/tests/network.rs) pins the names against the kad
/// version in use: a rename fails it.
pub fn is_kad_inbound_request<E: std::fmt::Debug>(event: &E) -> bool {
    let name = variant_name(event);
    KAD_REQUESTS.contains(&name.as_str())
}

/// Whether a kad handler input is a request one of our queries sends (FindNode, GetRecord).
/// Names are read as in [`is_kad_inbound_request`].
pub fn is_kad_lookup_request<E: std::fmt::Debug>(event: &E) -> bool {
    matches!(variant_name(event).as_str(), "FindNodeReq" | "GetRecord")
}

/// Whether a kad handler event is an answer to one of our queries (peers or a record; a
/// failure carries neither and moves no hop).
pub fn is_kad_lookup_answer<E: std::fmt::Debug>(event: &E) -> bool {
    matches!(variant_name(event).as_str(), "FindNodeRes" | "GetRecordRes")
}

/// The leading identifier of `event`'s `Debug` output (at most 32 characters).
fn variant_name<E: std::fmt::Debug>(event: &E) -> String {
    struct Name(String, bool);
    impl std::fmt::Write for Name {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            for c in s.chars() {
                if self.1 || !(c.is_ascii_alphanumeric() || c == '_') || self.0.len() >= 32 {
                    self.1 = true;
                    return Err(std::fmt::Error);
                }
                self.0.push(c);
            }
            Ok(())
        }
    }
    let mut n = Name(String::new(), false);
    let _ = write!(n, "{event:?}");
    n.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    #[allow(dead_code)]
    enum Fake {
        FindNodeReq { key: Vec<u8> },
        FindNodeRes { peers: Vec<u8> },
        GetRecord { key: Vec<u8> },
        GetRecordRes { record: Vec<u8> },
        PutRecord { record: Vec<u8> },
        PutRecordRes { record: Vec<u8> },
        ProtocolConfirmed,
    }

    #[test]
    fn requests_are_told_from_responses() {
        let big = vec![7u8; 1 << 16];
        assert!(is_kad_inbound_request(&Fake::FindNodeReq { key: vec![1] }));
        assert!(is_kad_inbound_request(&Fake::GetRecord { key: vec![1] }));
        assert!(is_kad_inbound_request(&Fake::PutRecord {
            record: big.clone()
        }));
        assert!(!is_kad_inbound_request(&Fake::FindNodeRes {
            peers: vec![]
        }));
        assert!(!is_kad_inbound_request(&Fake::GetRecordRes {
            record: big.clone()
        }));
        assert!(!is_kad_inbound_request(&Fake::PutRecordRes { record: big }));
        assert!(!is_kad_inbound_request(&Fake::ProtocolConfirmed));
        assert!(is_kad_lookup_request(&Fake::FindNodeReq { key: vec![1] }));
        assert!(is_kad_lookup_request(&Fake::GetRecord { key: vec![1] }));
        assert!(!is_kad_lookup_request(&Fake::PutRecord { record: vec![] }));
        assert!(is_kad_lookup_answer(&Fake::FindNodeRes { peers: vec![] }));
        assert!(is_kad_lookup_answer(&Fake::GetRecordRes { record: vec![] }));
        assert!(!is_kad_lookup_answer(&Fake::PutRecordRes {
            record: vec![]
        }));
        assert!(!is_kad_lookup_answer(&Fake::FindNodeReq { key: vec![] }));
        assert_eq!(variant_name(&Fake::ProtocolConfirmed), "ProtocolConfirmed");
    }
}
