//! Swarm events → operations: kad query progress and inbound PutRecords, identify,
//! `/skymesh/get/1` and `/skymesh/sync/1` requests (served here) and answers, connections.
//! Each event updates the operation its libp2p id maps to, then the actor drives that operation
//! on ([`super::drive`], `super::syncing`).
use libp2p::kad::{self, GetClosestPeersError, GetRecordOk, QueryResult, Record};
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use libp2p::{PeerId, StreamProtocol, identify};

use dht::Target;
use dht::value::MAX_ADDRS;

use super::push::PushEnd;
use super::{Actor, BehaviourEvent};
use crate::codec::{Request, Response};
use crate::config::KAD_PROTOCOL;
use crate::role::{self, Role};
use crate::store as istore;
use crate::sync_codec;
use itemsync::wire::{GetItems, RefuseReason, Request as SyncReq, Response as SyncRes};
use libp2p::request_response::{InboundFailure, OutboundFailure, OutboundRequestId};

impl Actor {
    pub(super) fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::Behaviour(BehaviourEvent::Kad(ev)) => self.on_kad(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(ev)) => self.on_identify(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Get(ev)) => self.on_get(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(ev)) => self.on_sync(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(_)) => {}
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(ev)) => self.on_mdns(ev),
            SwarmEvent::NewListenAddr { address, .. } => {
                let a = address.with_p2p(self.local_peer).unwrap_or_else(|a| a);
                if !self.listen_addrs.contains(&a) {
                    self.listen_addrs.push(a);
                }
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                if self.bootstrap.iter().any(|(p, _)| *p == peer_id) {
                    self.mark_bootstrapped();
                }
                self.full_nodes.on_connected(&peer_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.full_nodes.on_disconnected(&peer_id);
            }
            _ => {}
        }
    }

    /// A node found on the local network becomes a bootstrap peer (at most
    /// [`crate::config::MAX_MDNS_PEERS`]) and is dialed at once.
    fn on_mdns(&mut self, ev: libp2p::mdns::Event) {
        let libp2p::mdns::Event::Discovered(found) = ev else {
            return;
        };
        for (peer, addr) in found {
            if peer == self.local_peer || self.bootstrap.iter().any(|(p, _)| *p == peer) {
                continue;
            }
            if self.bootstrap.len() >= crate::config::MAX_MDNS_PEERS {
                break;
            }
            tracing::info!(%peer, %addr, "found a node on the local network (mDNS)");
            self.swarm.add_peer_address(peer, addr.clone());
            self.bootstrap.push((peer, addr.clone()));
            if !self.swarm.is_connected(&peer)
                && let Err(e) = self.swarm.dial(addr.clone())
            {
                tracing::debug!(%addr, error = %e, "dialing an mDNS peer failed");
            }
        }
    }

    fn on_identify(&mut self, ev: identify::Event) {
        let identify::Event::Received { peer_id, info, .. } = ev else {
            return;
        };
        let kad_proto = StreamProtocol::new(KAD_PROTOCOL);
        if info.protocols.contains(&kad_proto) {
            for a in info.listen_addrs.iter().take(MAX_ADDRS) {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer_id, a.clone());
            }
        }
        if role::role_from_agent(&info.agent_version) == Some(Role::Full)
            && self.full_nodes.on_identified(peer_id)
        {
            self.fetch_adverts_from(peer_id);
            self.maybe_join(peer_id);
        }
    }

    fn on_kad(&mut self, ev: kad::Event) {
        match ev {
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::PutRecord {
                        source,
                        record: Some(record),
                        ..
                    },
            } => self.on_inbound_put(source, record),
            kad::Event::OutboundQueryProgressed {
                id,
                result,
                stats,
                step,
            } => match result {
                QueryResult::GetClosestPeers(res) => {
                    let peers = match res {
                        Ok(ok) => ok.peers,
                        Err(GetClosestPeersError::Timeout { peers, .. }) => peers,
                    };
                    self.on_closest_peers(id, peers.into_iter().map(|p| p.peer_id).collect());
                }
                QueryResult::PutRecord(res) => {
                    let succeeded = match &res {
                        Ok(_) => None,
                        Err(
                            kad::PutRecordError::QuorumFailed { success, .. }
                            | kad::PutRecordError::Timeout { success, .. },
                        ) => Some(success.as_slice()),
                    };
                    self.on_put_done(id, stats.num_successes(), succeeded);
                }
                QueryResult::GetRecord(res) => {
                    let Some(&op) = self.read_queries.get(&id) else {
                        return;
                    };
                    if let Ok(GetRecordOk::FoundRecord(pr)) = res
                        && let Some(sender) = pr.peer
                    {
                        let for_read = self.reads.get(&op).is_some_and(|(r, _)| {
                            istore::target_of(&pr.record.key).ok() == Some(r.target())
                        });
                        if let Some(copy) = for_read
                            .then(|| self.check_copy(op, &pr.record.value))
                            .flatten()
                        {
                            let kad = &mut self.swarm.behaviour_mut().kad;
                            let hop = kad.hops().and_then(|h| h.hop_of(&sender));
                            let quorum = self
                                .reads
                                .get_mut(&op)
                                .is_some_and(|(r, _)| r.on_lookup_record(copy, hop));
                            if quorum
                                && let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id)
                            {
                                q.finish();
                            }
                        }
                    }
                    if step.last {
                        self.read_queries.remove(&id);
                        if let Some((r, _)) = self.reads.get_mut(&op) {
                            r.on_lookup_finished(stats.num_requests());
                        }
                        self.drive_read(op);
                    }
                }
                // A bootstrap counts only when some peer answered (an unreachable bootstrap peer still
                // sits in the routing table, and kad reports the query as Ok).
                QueryResult::Bootstrap(Ok(_)) if stats.num_successes() > 0 => {
                    self.mark_bootstrapped();
                }
                _ => {}
            },
            kad::Event::RoutingUpdated {
                is_new_peer: true, ..
            } => self.reputs.on_table_change(),
            kad::Event::ModeChanged { new_mode } => {
                tracing::info!(mode = %new_mode, "kad mode changed");
            }
            _ => {}
        }
    }

    fn on_inbound_put(&mut self, source: PeerId, record: Record) {
        let now = self.now;
        if !self.request_limiter.allow(source, now.mono) {
            self.metrics.inbound_put("rate_limited");
            return;
        }
        let item = match istore::target_of(&record.key)
            .map_err(|e| e.to_string())
            .and_then(|t| {
                self.store()
                    .check(&t, &record.value)
                    .map_err(|e| e.to_string())
            }) {
            Ok(item) => item,
            Err(e) => {
                tracing::debug!(peer = %source, error = %e, "inbound record refused");
                self.metrics.inbound_put("invalid");
                return;
            }
        };
        if !self.item_limiter.allow(source, now.mono) {
            self.metrics.inbound_put("peer_quota");
            return;
        }
        let is_advert = item.salt.kind() == Some(dht::SaltKind::Fullnode);
        // Writes from full nodes are pushed by them; writes from anyone else are forwarded.
        let copy = (self.cfg.role == Role::Full && !self.find_full_nodes().contains(&source))
            .then(|| item.clone());
        match self.store().insert(item, now.wall) {
            Ok(outcome) => {
                self.metrics.inbound_put("stored");
                if is_advert {
                    self.learn_advert(&record.value);
                }
                if let (
                    Some(item),
                    dht::PutOutcome::Inserted { .. } | dht::PutOutcome::Replaced { .. },
                ) = (copy, outcome)
                {
                    self.forward(&item, Some(source));
                }
            }
            Err(e) => {
                tracing::debug!(peer = %source, error = %e, "inbound item not stored");
                self.metrics.inbound_put(if e.is_item_fault() {
                    "refused"
                } else {
                    "quota"
                });
            }
        }
    }

    fn on_get(&mut self, ev: request_response::Event<Request, Response>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let response = if !self.request_limiter.allow(peer, self.now.mono) {
                        Response::Refused
                    } else {
                        match request {
                            Request::Get(t) => match self.store().get(&Target::from_bytes(t)) {
                                Some(item) => Response::Found(item.encode()),
                                None => Response::NotFound,
                            },
                            Request::FullNodes => Response::Items(self.adverts_for_response()),
                        }
                    };
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .get
                        .send_response(channel, response);
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if self.advert_requests.remove(&request_id) {
                        if let Response::Items(items) = response {
                            for bytes in items {
                                self.learn_advert(&bytes);
                            }
                        }
                    } else if let Some(op) = self.read_requests.remove(&request_id) {
                        let copy = match response {
                            Response::Found(bytes) => self.check_copy(op, &bytes),
                            _ => None,
                        };
                        if let Some((r, _)) = self.reads.get_mut(&op) {
                            r.on_full_node_answer(copy);
                        }
                        self.drive_read(op);
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                self.advert_requests.remove(&request_id);
                self.back_off_full_node(&peer);
                if let Some(op) = self.read_requests.remove(&request_id) {
                    tracing::debug!(%error, "full node read failed");
                    if let Some((r, _)) = self.reads.get_mut(&op) {
                        r.on_full_node_failure();
                    }
                    self.drive_read(op);
                }
            }
            _ => {}
        }
    }

    // ---- /skymesh/sync/1 -----------------------------------------------------------------------------

    pub(super) fn on_sync(&mut self, ev: request_response::Event<SyncReq, SyncRes>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let response = self.serve_sync(peer, request);
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .sync
                        .send_response(channel, response);
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => self.on_sync_response(peer, request_id, response),
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                let malformed =
                    matches!(&error, OutboundFailure::Io(e) if sync_codec::is_malformed(e));
                if let Some(id) = self.sync.requests.remove(&request_id) {
                    self.sync.pulls.on_failure(id, error.to_string());
                    self.finish_session(id);
                }
                if malformed {
                    self.penalise(peer, &error.to_string());
                }
                self.push_done(request_id, PushEnd::Failed);
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                if matches!(&error, InboundFailure::Io(e) if sync_codec::is_malformed(e)) {
                    self.penalise(peer, &error.to_string());
                }
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_sync_response(&mut self, peer: PeerId, rid: OutboundRequestId, response: SyncRes) {
        if let Some(id) = self.sync.requests.remove(&rid) {
            match response {
                SyncRes::Page(page) => self.on_page(id, page),
                SyncRes::Refused(reason) => {
                    self.sync.pulls.on_refused(id, reason);
                    self.finish_session(id);
                }
                SyncRes::Ack { .. } => {
                    self.sync
                        .pulls
                        .on_failure(id, "ack for a page request".into());
                    self.penalise(peer, "ack for a page request");
                    self.finish_session(id);
                }
            }
            return;
        }
        if !self.sync.push_requests.contains_key(&rid) {
            // The answer to a page request of a cancelled session: dropped unread.
            return;
        }
        match response {
            SyncRes::Ack { .. } => self.push_done(rid, PushEnd::Done),
            SyncRes::Refused(_) => self.push_done(rid, PushEnd::Refused),
            SyncRes::Page(_) => {
                self.push_done(rid, PushEnd::Done);
                self.penalise(peer, "page for a push");
            }
        }
    }

    fn serve_sync(&mut self, peer: PeerId, request: SyncReq) -> SyncRes {
        let now = self.now.mono;
        if self.sync.is_penalised(&peer, now) {
            return SyncRes::Refused(RefuseReason::NotAllowed);
        }
        if !self.sync_limiter.allow(peer, now) {
            return SyncRes::Refused(RefuseReason::RateLimited);
        }
        match request {
            SyncReq::GetItems(g) => self.serve_page(&g),
            SyncReq::Push(items) => {
                if self.cfg.role != Role::Full || !self.find_full_nodes().contains(&peer) {
                    return SyncRes::Refused(RefuseReason::NotAllowed);
                }
                self.metrics.sync.pushes_received.inc();
                let received = items.len() as u64;
                let c = self.ingest(items);
                self.metrics
                    .sync
                    .items("push", received, c.accepted, c.unchanged, c.refused);
                if c.invalid > 0 {
                    self.penalise(peer, "invalid items in a push");
                    return SyncRes::Refused(RefuseReason::NotAllowed);
                }
                let n = |v: u64| u16::try_from(v).unwrap_or(u16::MAX);
                SyncRes::Ack {
                    stored: n(c.accepted),
                    duplicate: n(c.unchanged),
                    refused: n(c.refused),
                }
            }
        }
    }

    fn serve_page(&mut self, g: &GetItems) -> SyncRes {
        let epoch = self.sync.epoch;
        match itemsync::serve::page(self.store().backend(), epoch, g) {
            Ok(page) => {
                self.metrics.sync.pages_served.inc();
                SyncRes::Page(page)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the store for a sync page");
                SyncRes::Refused(RefuseReason::BadRequest)
            }
        }
    }
}
