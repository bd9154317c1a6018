//! Operations → swarm calls: the actor's side of reads, puts, full-node adverts and republish.
//! The decisions are the pure operations' ([`super::read`], [`super::full_nodes`]); this file
//! sends the requests and queries they ask for and keeps libp2p's ids mapped to our own.
use dht::value::{
    FORMAT_VERSION, FullnodeAdvert, MAX_ADDR_LEN, MAX_ADDRS, Role as ValueRole, ValueFormat,
};
use dht::{Item, Salt, SeqClock, Target};
use libp2p::kad::{QueryId, Quorum, Record};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;

use super::read::ReadState;
use super::strip_p2p;
use super::{Actor, MAX_ADVERTS, PendingPut, PutReport, Read, ReadMode, ReadOutcome, ReadPath};
use crate::codec::Request;
use crate::error::PutError;
use crate::identity;
use crate::role::Role;
use crate::store as istore;

impl Actor {
    // ---- puts -----------------------------------------------------------------------------

    pub(super) fn put_item(
        &mut self,
        item: Item,
        reply: Option<oneshot::Sender<Result<PutReport, PutError>>>,
    ) {
        let target = item.target();
        let seq = item.seq;
        let bytes = item.encode();
        let own = item.pk == self.sk.pubkey() && item.writer.is_none();
        let delegated = (item.writer == Some(self.sk.pubkey())).then_some(item.pk);
        let salt = item.salt.clone();
        let copy = (self.cfg.role == Role::Full).then(|| item.clone());
        let now = self.now;
        match self.store().insert(item, now.wall) {
            Err(e) => {
                // Our own slot with an equal or higher seq already stored is not news to the
                // network.
                tracing::debug!(%target, error = %e, "put refused locally");
                self.metrics.put("refused");
                if let Some(reply) = reply {
                    let _ = reply.send(Err(PutError::Refused(e)));
                }
                return;
            }
            Ok(dht::PutOutcome::Unchanged { .. }) => {}
            Ok(_) => {
                if let Some(item) = copy {
                    self.forward(&item, None);
                }
            }
        }
        if own {
            self.own_salts.insert(salt.clone(), now.mono);
        }
        if let Some(subject) = delegated {
            self.delegated.insert(target, (subject, salt, now.mono));
        }
        let record = Record::new(istore::record_key(&target), bytes);
        let report = PutReport {
            target: target.to_hex(),
            seq,
            acks: 0,
        };
        self.start_replication(record, report, reply, None);
    }

    /// Sends `record` to the known full nodes now and to the k closest peers once a
    /// `get_closest_peers` query has found them.
    pub(super) fn start_replication(
        &mut self,
        record: Record,
        report: PutReport,
        reply: Option<oneshot::Sender<Result<PutReport, PutError>>>,
        raw_reply: Option<oneshot::Sender<u32>>,
    ) {
        let op = self.next_op;
        self.next_op += 1;
        // Full nodes that just failed a request are skipped: the put waits for every peer.
        let full: Vec<PeerId> = self.reachable_full_nodes();
        let kad = &mut self.swarm.behaviour_mut().kad;
        let mut queries = 0;
        if !full.is_empty() {
            // `Quorum::All`: kad drops the copies still waiting for a dial once a put query
            // reaches its quorum, so a smaller quorum would lose copies to unconnected peers.
            let q = kad.put_record_to(record.clone(), full.iter().copied(), Quorum::All);
            self.put_queries.insert(q, op);
            self.full_put_targets.insert(q, full);
            queries += 1;
        }
        let q = kad.get_closest_peers(record.key.to_vec());
        self.closest_queries.insert(q, op);
        queries += 1;
        self.puts.insert(
            op,
            PendingPut {
                reply,
                raw_reply,
                record,
                report,
                queries,
            },
        );
    }

    pub(super) fn on_closest_peers(&mut self, id: QueryId, peers: Vec<PeerId>) {
        let Some(op) = self.closest_queries.remove(&id) else {
            return;
        };
        let Some(put) = self.puts.get_mut(&op) else {
            return;
        };
        let peers: Vec<PeerId> = peers
            .into_iter()
            .filter(|p| *p != self.local_peer)
            .collect();
        if peers.is_empty() {
            put.queries -= 1;
        } else {
            let q = self.swarm.behaviour_mut().kad.put_record_to(
                put.record.clone(),
                peers.into_iter(),
                Quorum::All,
            );
            self.put_queries.insert(q, op);
        }
        self.maybe_finish_put(op);
    }

    pub(super) fn on_put_done(&mut self, id: QueryId, acks: u32) {
        let Some(op) = self.put_queries.remove(&id) else {
            return;
        };
        if let Some(put) = self.puts.get_mut(&op) {
            put.report.acks += acks;
            put.queries -= 1;
        }
        self.maybe_finish_put(op);
    }

    fn maybe_finish_put(&mut self, op: u64) {
        if self.puts.get(&op).is_some_and(|p| p.queries == 0)
            && let Some(put) = self.puts.remove(&op)
        {
            self.metrics.put(if put.report.acks > 0 {
                "ok"
            } else {
                "no_peers"
            });
            if let Some(reply) = put.reply {
                let _ = reply.send(Ok(put.report));
            } else if let Some(reply) = put.raw_reply {
                let _ = reply.send(put.report.acks);
            }
        }
    }

    // ---- reads ----------------------------------------------------------------------------

    /// Starts a read: asks the full nodes the read picks, then lets it run.
    pub(super) fn start_read(
        &mut self,
        target: Target,
        mode: ReadMode,
        reply: oneshot::Sender<ReadOutcome>,
    ) {
        let op = self.next_op;
        self.next_op += 1;
        let local = self.store().get(&target);
        let now = self.now;
        let mut read = Read::new(target, mode, local, self.cfg.lookup_quorum, now.mono);
        let candidates = if read.wants_full_nodes() {
            self.full_nodes
                .read_targets(now.mono, now.unix_ms(), self.cfg.read_fanout)
        } else {
            Vec::new()
        };
        for peer in read.ask_full_nodes(candidates) {
            let id = self
                .swarm
                .behaviour_mut()
                .get
                .send_request(&peer, Request::Get(*target.as_bytes()));
            self.read_requests.insert(id, op);
        }
        self.reads.insert(op, (read, reply));
        self.drive_read(op);
    }

    /// Turns what read `op` decides next into a lookup or its answer.
    pub(super) fn drive_read(&mut self, op: u64) {
        let now = self.now.mono;
        let Some((read, _)) = self.reads.get_mut(&op) else {
            return;
        };
        match read.next(now) {
            ReadState::Waiting => {}
            ReadState::StartLookup => {
                let key = istore::record_key(&read.target());
                let kad = &mut self.swarm.behaviour_mut().kad;
                if let Some(h) = kad.hops() {
                    h.start();
                }
                let q = kad.get_record(key);
                self.read_queries.insert(q, op);
            }
            ReadState::Finished(outcome) => {
                let Some((_, reply)) = self.reads.remove(&op) else {
                    return;
                };
                let secs = outcome.elapsed.as_secs_f64();
                match outcome.path {
                    ReadPath::FullNode => self.metrics.latency("full_node", secs),
                    ReadPath::Lookup => self.metrics.latency("lookup", secs),
                    _ => {}
                }
                self.metrics.get(match outcome.path {
                    ReadPath::NotFound => "not_found",
                    ReadPath::Local => "local",
                    ReadPath::FullNode => "full_node",
                    ReadPath::Lookup => "lookup",
                });
                let _ = reply.send(*outcome);
            }
        }
    }

    /// Checks a remote copy of read `op`'s target (decode, target, rules, signature); a full
    /// node keeps every valid item it sees. `None` when the read is over or the copy is bad.
    pub(super) fn check_copy(&mut self, op: u64, bytes: &[u8]) -> Option<Item> {
        let target = self.reads.get(&op).map(|(r, _)| r.target())?;
        let item = match self.store().check(&target, bytes) {
            Ok(item) => item,
            Err(e) => {
                tracing::debug!(%target, error = %e, "remote copy refused");
                return None;
            }
        };
        if self.cfg.role == Role::Full {
            let now = self.now.wall;
            let _ = self.store().insert(item.clone(), now);
        }
        Some(item)
    }

    // ---- full nodes and adverts ------------------------------------------------------------

    /// Full nodes for puts: known ones not backed off after a failed request.
    pub(super) fn reachable_full_nodes(&self) -> Vec<PeerId> {
        self.full_nodes.reachable(self.now.mono, self.now.unix_ms())
    }

    /// Backs `peer` off for reads and puts after it failed one.
    pub(super) fn back_off_full_node(&mut self, peer: &PeerId) {
        self.full_nodes.back_off(peer, self.now.mono);
    }

    pub(super) fn advertise(&mut self) {
        if self.cfg.role != Role::Full {
            return;
        }
        let advert = FullnodeAdvert {
            v: FORMAT_VERSION,
            listen: self
                .listen_addrs
                .iter()
                .take(MAX_ADDRS)
                .map(|a| a.to_string())
                .filter(|a| a.len() <= MAX_ADDR_LEN)
                .collect(),
            role: ValueRole::Full,
            since: self.started_ms,
        };
        let salt = Salt::of_kind(dht::SaltKind::Fullnode);
        match self.sign_own(salt, advert.encode()) {
            Ok(item) => self.put_item(item, None),
            Err(e) => tracing::warn!(error = %e, "cannot sign fullnode advert"),
        }
    }

    pub(super) fn fetch_adverts(&mut self) {
        let full = self.find_full_nodes();
        for peer in full.into_iter().take(self.cfg.read_fanout) {
            self.fetch_adverts_from(peer);
        }
    }

    pub(super) fn fetch_adverts_from(&mut self, peer: PeerId) {
        let id = self
            .swarm
            .behaviour_mut()
            .get
            .send_request(&peer, Request::FullNodes);
        self.advert_requests.insert(id);
    }

    /// Checks and stores an advert; records the advertised node and its addresses.
    pub(super) fn learn_advert(&mut self, bytes: &[u8]) {
        let Ok(item) = Item::decode(bytes) else {
            return;
        };
        let target = item.target();
        let Ok(item) = self.store().check(&target, bytes) else {
            return;
        };
        if item.salt.kind() != Some(dht::SaltKind::Fullnode) || item.pk == self.sk.pubkey() {
            return;
        }
        let Ok(advert) = FullnodeAdvert::decode(&item.value) else {
            return;
        };
        if advert.role != ValueRole::Full {
            return;
        }
        let Ok(peer) = identity::peer_id(&item.pk) else {
            return;
        };
        let seq = item.seq;
        let now = self.now.wall;
        let _ = self.store().insert(item, now);
        if !self.full_nodes.on_advert(peer, seq) {
            return;
        }
        for a in advert
            .listen
            .iter()
            .filter_map(|a| a.parse::<Multiaddr>().ok())
        {
            let a = strip_p2p(a);
            self.swarm.add_peer_address(peer, a.clone());
            self.swarm.behaviour_mut().kad.add_address(&peer, a);
        }
    }

    pub(super) fn adverts_for_response(&mut self) -> Vec<Vec<u8>> {
        let salt = Salt::of_kind(dht::SaltKind::Fullnode);
        let now = self.now.unix_ms();
        let fresh = self.full_nodes.fresh_ms();
        let mut items = self.store().with_salt(&salt, dht::store::MAX_LIST_LIMIT);
        items.retain(|i| i.seq.saturating_add(fresh) >= now);
        items.sort_by_key(|i| std::cmp::Reverse(i.seq));
        items.truncate(MAX_ADVERTS);
        items.iter().map(Item::encode).collect()
    }

    // ---- republish ----------------------------------------------------------------------

    pub(super) fn signed_items_from_store(&mut self) {
        // Own and delegated items survive restarts in the persistent store; the store reports
        // the ones signed by our key (found by the walk it makes at open anyway), so they are
        // republished whatever their salt.
        let pk = self.sk.pubkey();
        // Age unknown: due at the first tick.
        let now = self.now.mono;
        let due = now.checked_sub(self.cfg.republish_interval).unwrap_or(now);
        for item in self.store().take_signed_at_open() {
            match item.writer {
                None if item.pk == pk => {
                    self.own_salts.insert(item.salt, due);
                }
                Some(w) if w == pk => {
                    self.delegated
                        .insert(item.target(), (item.pk, item.salt, due));
                }
                _ => {}
            }
        }
    }

    /// Re-signs and re-puts own items not put for a whole interval, except those refreshed by
    /// someone else: adverts (their own timer), `dmsg` entries (entry-signed, see
    /// [`Config::app_refreshed`]) and the configured application salts.
    pub(super) fn republish(&mut self) {
        let pk = self.sk.pubkey();
        // A put less than an interval ago keeps the item alive past the next tick (a little
        // slack for timer jitter).
        let now = self.now;
        let fresh_after = now
            .mono
            .checked_sub(self.cfg.republish_interval.mul_f64(0.9))
            .unwrap_or(now.mono);
        let salts: Vec<Salt> = self
            .own_salts
            .iter()
            .filter(|(_, at)| **at <= fresh_after)
            .map(|(s, _)| s.clone())
            .collect();
        for salt in salts {
            if matches!(
                salt.kind(),
                Some(dht::SaltKind::Fullnode | dht::SaltKind::Dmsg)
            ) || self.cfg.app_refreshed.contains(&salt)
            {
                continue;
            }
            let Some(item) = self.store().get(&Target::of(&pk, &salt)) else {
                continue;
            };
            if item.writer.is_some() {
                continue;
            }
            match self.sign_own(salt, item.value) {
                Ok(item) => self.put_republished(item),
                Err(e) => tracing::warn!(error = %e, "republish failed"),
            }
        }
        let due: Vec<Target> = self
            .delegated
            .iter()
            .filter(|(_, (_, _, at))| *at <= fresh_after)
            .map(|(t, _)| *t)
            .collect();
        for target in due {
            let Some((subject, salt, _)) = self.delegated.get(&target).cloned() else {
                continue;
            };
            // Still ours to write? The subject (or another writer) may have taken it over.
            let Some(item) = self.store().get(&target).filter(|i| i.writer == Some(pk)) else {
                self.delegated.remove(&target);
                continue;
            };
            let seq = SeqClock::new(item.seq).next(now.wall);
            match Item::sign_for(&self.sk, subject, salt, seq, item.value) {
                Ok(item) => self.put_republished(item),
                Err(e) => tracing::warn!(error = %e, "republish of a delegated item failed"),
            }
        }
    }

    /// Puts an item the republish timer re-signed, counting it by salt.
    fn put_republished(&mut self, item: Item) {
        let label = crate::metrics::SaltLabel {
            salt: String::from_utf8_lossy(item.salt.as_bytes()).into_owned(),
        };
        self.metrics.republished.get_or_create(&label).inc();
        self.put_item(item, None);
    }
}
