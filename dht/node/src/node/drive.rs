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

use super::put::{Put, PutAction, PutState};
use super::read::ReadState;
use super::republish::Due;
use super::strip_p2p;
use super::{
    Actor, MAX_ADVERTS, PendingPut, PutReply, PutReport, Read, ReadMode, ReadOutcome, ReadPath,
};
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
        // What republish needs to know of the item (the item itself moves into the store).
        let (subject, writer, salt) = (item.pk, item.writer, item.salt.clone());
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
        self.republisher.on_put(subject, writer, &salt, now.mono);
        if self.cfg.reput_on_table_change {
            self.reputs.on_put(target, now.mono);
        }
        let record = Record::new(istore::record_key(&target), bytes);
        let report = PutReport {
            target: target.to_hex(),
            seq,
            acks: 0,
        };
        let reply = reply.map_or(PutReply::None, PutReply::Client);
        self.start_put(record, report, reply);
    }

    /// Starts a put of `record`: to the reachable full nodes now, to the k closest once found.
    pub(super) fn start_put(&mut self, record: Record, report: PutReport, reply: PutReply) {
        let op = self.next_op;
        self.next_op += 1;
        // Full nodes that just failed a request are skipped: the put waits for every peer.
        let (put, actions) = Put::new(report, self.reachable_full_nodes());
        self.puts.insert(op, PendingPut { put, record, reply });
        for action in actions {
            self.put_action(op, action);
        }
        self.drive_put(op);
    }

    fn put_action(&mut self, op: u64, action: PutAction) {
        let Some(p) = self.puts.get(&op) else {
            return;
        };
        let kad = &mut self.swarm.behaviour_mut().kad;
        match action {
            PutAction::PutTo { leg, peers } => {
                if let Ok(target) = istore::target_of(&p.record.key) {
                    self.reputs.on_sent(&target, &peers);
                }
                let q = kad.put_record_to(p.record.clone(), peers.into_iter(), Quorum::All);
                self.put_queries.insert(q, (op, leg));
            }
            PutAction::FindClosest => {
                let q = kad.get_closest_peers(p.record.key.to_vec());
                self.closest_queries.insert(q, op);
            }
        }
    }

    /// The closest-peers query `id` of a put (or a re-put round) ended with `peers`.
    pub(super) fn on_closest_peers(&mut self, id: QueryId, peers: Vec<PeerId>) {
        if let Some(target) = self.reput_queries.remove(&id) {
            self.reput_found(target, &peers);
            return;
        }
        let Some(op) = self.closest_queries.remove(&id) else {
            return;
        };
        let local = self.local_peer;
        let Some(p) = self.puts.get_mut(&op) else {
            return;
        };
        if let Some(action) = p.put.on_closest_peers(peers, local) {
            self.put_action(op, action);
        }
        self.drive_put(op);
    }

    /// The put query `id` ended with `acks`; `succeeded` as for [`Put::on_leg_done`].
    pub(super) fn on_put_done(&mut self, id: QueryId, acks: u32, succeeded: Option<&[PeerId]>) {
        let Some((op, leg)) = self.put_queries.remove(&id) else {
            return;
        };
        let Some(p) = self.puts.get_mut(&op) else {
            return;
        };
        // A full node that did not take the put is skipped by reads and puts for a while, so
        // one dead node does not hold every put up.
        for peer in p.put.on_leg_done(leg, acks, succeeded) {
            self.back_off_full_node(&peer);
        }
        self.drive_put(op);
    }

    fn drive_put(&mut self, op: u64) {
        let Some(p) = self.puts.get_mut(&op) else {
            return;
        };
        let PutState::Done(report) = p.put.next() else {
            return;
        };
        let Some(p) = self.puts.remove(&op) else {
            return;
        };
        self.metrics
            .put(if report.acks > 0 { "ok" } else { "no_peers" });
        match p.reply {
            PutReply::Client(reply) => {
                let _ = reply.send(Ok(report));
            }
            PutReply::Raw(reply) => {
                let _ = reply.send(report.acks);
            }
            PutReply::None => {}
        }
    }

    // ---- re-puts after routing-table changes (see `reput`) ------------------------------

    /// Runs the closest-peers query again for the followed puts that are due.
    pub(super) fn reput_tick(&mut self) {
        for target in self.reputs.due(self.now.mono) {
            if self.store().get(&target).is_none() {
                self.reputs.forget(&target);
                continue;
            }
            self.metrics.reput_rounds.inc();
            let key = istore::record_key(&target);
            let q = self
                .swarm
                .behaviour_mut()
                .kad
                .get_closest_peers(key.to_vec());
            self.reput_queries.insert(q, target);
        }
    }

    /// A re-put round's query found `peers`: the item (as stored now) goes to the new ones.
    fn reput_found(&mut self, target: Target, peers: &[PeerId]) {
        let local = self.local_peer;
        let Some(new) = self.reputs.on_closest(&target, peers, local) else {
            return;
        };
        let Some(item) = self.store().get(&target) else {
            self.reputs.forget(&target);
            return;
        };
        self.metrics.reput_copies.inc_by(new.len() as u64);
        let record = Record::new(istore::record_key(&target), item.encode());
        // Nobody waits for the answer (the query id maps to nothing: `on_put_done` ignores it).
        let _ = self
            .swarm
            .behaviour_mut()
            .kad
            .put_record_to(record, new.into_iter(), Quorum::All);
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
        let items = self.store().take_signed_at_open();
        self.republisher.on_signed_at_open(items, self.now.mono);
    }

    /// Re-signs and re-puts the items the republisher says are due.
    pub(super) fn republish(&mut self) {
        let pk = self.sk.pubkey();
        let now = self.now;
        for due in self.republisher.due(now.mono) {
            match due {
                Due::Own(salt) => {
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
                Due::Delegated {
                    target,
                    subject,
                    salt,
                } => {
                    // Still ours to write? The subject (or another writer) may have taken it
                    // over.
                    let Some(item) = self.store().get(&target).filter(|i| i.writer == Some(pk))
                    else {
                        self.republisher.forget(&target);
                        continue;
                    };
                    let seq = SeqClock::new(item.seq).next(now.wall);
                    match Item::sign_for(&self.sk, subject, salt, seq, item.value) {
                        Ok(item) => self.put_republished(item),
                        Err(e) => {
                            tracing::warn!(error = %e, "republish of a delegated item failed")
                        }
                    }
                }
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
