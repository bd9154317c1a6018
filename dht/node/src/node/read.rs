//! A read as a state machine: the one-round-trip full-node path, then the fallback lookup, the
//! lookup quorum and its hop count. Pure: the actor feeds it checked copies and time, and turns
//! [`Read::next`] into requests (shaped like libp2p-kad's `ClosestPeersIter`: `on_*` events in,
//! `next(now)` out).
//!
//! 1. [`Read::ask_full_nodes`]: the full nodes to send `Get(target)` to over `/skymesh/get/1`
//!    (modes [`ReadMode::Auto`] and [`ReadMode::FullNodesOnly`]).
//! 2. Each answer or failure ([`Read::on_full_node_answer`], [`Read::on_full_node_failure`]);
//!    the first valid copy finishes the read ([`ReadState::Finished`]: full nodes hold a write
//!    one push round trip after it, and waiting for every answer made one lost request cost the
//!    whole request timeout); once all are in without one, [`Read::next`] says
//!    [`ReadState::StartLookup`] (modes `Auto` and `LookupOnly`), else `Finished`.
//! 3. Each valid record the lookup finds ([`Read::on_lookup_record`]) counts toward the quorum;
//!    the hop of the copy that completes it (or of the last one before) is the read's hop
//!    count. `true` back means "quorum reached: finish the kad query".
//! 4. [`Read::on_lookup_finished`] with kad's request count; then [`ReadState::Finished`].
//!
//! The local copy competes at the end: the highest seq wins, an equal seq goes to the remote.
//! Copies are checked (target, signature, rules) by the actor before they come in here.
use std::time::Instant;

use dht::{Item, Target};
use libp2p::PeerId;

use super::{ReadMode, ReadOutcome, ReadPath};

/// kad's parallelism α, for the rough `requests / α` round estimate.
const ALPHA: u32 = libp2p::kad::ALPHA_VALUE.get() as u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for this many full-node answers.
    FullNodes { outstanding: usize },
    /// The lookup runs; `Some(requests)` once it has ended.
    Lookup { requests: Option<u32> },
    /// [`ReadState::Finished`] was returned.
    Done,
}

/// What the driver does next for a read.
#[derive(Debug)]
pub enum ReadState {
    /// Answers are outstanding.
    Waiting,
    /// Start an iterative kad `get_record` for [`Read::target`] (and reset the hop tracker).
    StartLookup,
    /// The read is over: reply with this.
    Finished(Box<ReadOutcome>),
}

/// One read in progress.
#[derive(Debug)]
pub struct Read {
    target: Target,
    mode: ReadMode,
    /// Valid remote copies after which a lookup stops (≥ 1).
    quorum: usize,
    started: Instant,
    best: Option<Item>,
    best_path: ReadPath,
    /// The local store's copy when the read started.
    local: Option<Item>,
    remote_valid: usize,
    lookup_hops: Option<u32>,
    phase: Phase,
}

impl Read {
    /// A read of `target` that started at `now`, with the local store's copy.
    pub fn new(
        target: Target,
        mode: ReadMode,
        local: Option<Item>,
        quorum: usize,
        now: Instant,
    ) -> Read {
        Read {
            target,
            mode,
            quorum: quorum.max(1),
            started: now,
            best: None,
            best_path: ReadPath::NotFound,
            local,
            remote_valid: 0,
            lookup_hops: None,
            phase: Phase::FullNodes { outstanding: 0 },
        }
    }

    /// The target read.
    pub fn target(&self) -> Target {
        self.target
    }

    /// Whether the mode asks full nodes (so the driver knows whether to pick them).
    pub fn wants_full_nodes(&self) -> bool {
        matches!(self.mode, ReadMode::Auto | ReadMode::FullNodesOnly)
    }

    /// Of `candidates` (reachable full nodes in the order to ask, at most the fanout), those to
    /// send `Get(target)` to now; each owes one answer or failure.
    pub fn ask_full_nodes(&mut self, candidates: Vec<PeerId>) -> Vec<PeerId> {
        let asked = if self.wants_full_nodes() {
            candidates
        } else {
            Vec::new()
        };
        if let Phase::FullNodes { outstanding } = &mut self.phase {
            *outstanding += asked.len();
        }
        asked
    }

    /// A full node answered; `copy` is its item if it had one that checks out.
    pub fn on_full_node_answer(&mut self, copy: Option<Item>) {
        if let Some(item) = copy {
            self.offer(item, ReadPath::FullNode);
        }
        self.full_node_done();
    }

    /// A full node's request failed (the driver backs it off).
    pub fn on_full_node_failure(&mut self) {
        self.full_node_done();
    }

    fn full_node_done(&mut self) {
        if let Phase::FullNodes { outstanding } = &mut self.phase {
            *outstanding = outstanding.saturating_sub(1);
        }
    }

    /// The lookup found a valid copy, from a request of hop `hop` (if hops are measured).
    /// `true`: the quorum is reached, finish the query.
    pub fn on_lookup_record(&mut self, copy: Item, hop: Option<u32>) -> bool {
        self.offer(copy, ReadPath::Lookup);
        if self.remote_valid <= self.quorum {
            self.lookup_hops = hop;
        }
        self.remote_valid >= self.quorum
    }

    /// The lookup ended (quorum, exhausted or timed out) after `requests` requests.
    pub fn on_lookup_finished(&mut self, requests: u32) {
        self.phase = Phase::Lookup {
            requests: Some(requests),
        };
    }

    fn offer(&mut self, item: Item, path: ReadPath) {
        self.remote_valid += 1;
        if self.best.as_ref().is_none_or(|b| item.seq > b.seq) {
            self.best = Some(item);
            self.best_path = path;
        }
    }

    /// What to do next at `now`.
    pub fn next(&mut self, now: Instant) -> ReadState {
        match self.phase {
            Phase::FullNodes { outstanding } if outstanding > 0 && self.best.is_none() => {
                ReadState::Waiting
            }
            Phase::FullNodes { .. }
                if self.best.is_none()
                    && matches!(self.mode, ReadMode::Auto | ReadMode::LookupOnly) =>
            {
                self.phase = Phase::Lookup { requests: None };
                ReadState::StartLookup
            }
            Phase::FullNodes { .. } => self.finish(0, now),
            Phase::Lookup { requests: None } | Phase::Done => ReadState::Waiting,
            Phase::Lookup {
                requests: Some(requests),
            } => self.finish(requests, now),
        }
    }

    fn finish(&mut self, lookup_requests: u32, now: Instant) -> ReadState {
        self.phase = Phase::Done;
        let mut best = self.best.take();
        let mut path = self.best_path;
        if let Some(local) = self.local.take()
            && best.as_ref().is_none_or(|b| local.seq > b.seq)
        {
            best = Some(local);
            path = ReadPath::Local;
        }
        if best.is_none() {
            path = ReadPath::NotFound;
        }
        ReadState::Finished(Box::new(ReadOutcome {
            item: best,
            path,
            lookup_requests,
            lookup_rounds: lookup_requests.div_ceil(ALPHA),
            lookup_hops: self.lookup_hops,
            elapsed: now.saturating_duration_since(self.started),
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use dht::Salt;
    use keys::SecKey;

    use super::*;

    fn item(seq: u64) -> Item {
        let sk = SecKey::from_seed(b"read-tests");
        Item::sign(&sk, Salt::new(b"svc".to_vec()).unwrap(), seq, b"v".to_vec()).unwrap()
    }

    fn finished(s: ReadState) -> ReadOutcome {
        match s {
            ReadState::Finished(o) => *o,
            other => panic!("not finished: {other:?}"),
        }
    }

    fn read(mode: ReadMode, local: Option<Item>, t0: Instant) -> Read {
        Read::new(item(1).target(), mode, local, 2, t0)
    }

    #[test]
    fn a_full_node_answer_is_one_round_trip() {
        let t0 = Instant::now();
        let mut r = read(ReadMode::Auto, None, t0);
        let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        assert_eq!(r.ask_full_nodes(peers.clone()), peers);
        // A miss and a failure leave the read waiting for the third answer...
        r.on_full_node_answer(None);
        r.on_full_node_failure();
        assert!(matches!(r.next(t0), ReadState::Waiting));
        // ...which, valid, finishes it.
        r.on_full_node_answer(Some(item(7)));
        let o = finished(r.next(t0 + Duration::from_micros(330)));
        assert_eq!(o.item.unwrap().seq, 7);
        assert_eq!(o.path, ReadPath::FullNode);
        assert_eq!(o.lookup_requests, 0);
        assert_eq!(o.lookup_hops, None);
        assert_eq!(o.elapsed, Duration::from_micros(330));
        assert!(matches!(r.next(t0), ReadState::Waiting), "finished once");
        // Late answers after the end change nothing.
        r.on_full_node_answer(Some(item(9)));
        assert!(matches!(r.next(t0), ReadState::Waiting));
    }

    #[test]
    fn the_first_valid_copy_finishes_without_waiting_for_the_others() {
        let t0 = Instant::now();
        let mut r = read(ReadMode::Auto, None, t0);
        let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        r.ask_full_nodes(peers);
        assert!(matches!(r.next(t0), ReadState::Waiting));
        r.on_full_node_answer(Some(item(5)));
        // Two requests outstanding (one may be lost): the read does not wait for them.
        let o = finished(r.next(t0 + Duration::from_millis(40)));
        assert_eq!((o.path, o.item.unwrap().seq), (ReadPath::FullNode, 5));
        assert_eq!(o.elapsed, Duration::from_millis(40));
    }

    #[test]
    fn no_valid_copy_falls_back_to_the_lookup() {
        let t0 = Instant::now();
        let mut r = read(ReadMode::Auto, None, t0);
        assert_eq!(r.ask_full_nodes(vec![PeerId::random()]).len(), 1);
        r.on_full_node_answer(None);
        assert!(matches!(r.next(t0), ReadState::StartLookup));
        assert!(matches!(r.next(t0), ReadState::Waiting));
        // Quorum 2: the second valid copy finishes the query; its hop is the read's.
        assert!(!r.on_lookup_record(item(3), Some(1)));
        assert!(r.on_lookup_record(item(4), Some(2)));
        // A copy arriving after the quorum does not move the hop count.
        r.on_lookup_record(item(4), Some(5));
        assert!(matches!(r.next(t0), ReadState::Waiting));
        r.on_lookup_finished(7);
        let o = finished(r.next(t0 + Duration::from_millis(15)));
        assert_eq!(o.item.unwrap().seq, 4);
        assert_eq!(o.path, ReadPath::Lookup);
        assert_eq!((o.lookup_requests, o.lookup_rounds), (7, 3));
        assert_eq!(o.lookup_hops, Some(2));
    }

    #[test]
    fn without_full_nodes_the_lookup_starts_at_once() {
        let t0 = Instant::now();
        let mut r = read(ReadMode::Auto, None, t0);
        assert!(r.ask_full_nodes(Vec::new()).is_empty());
        assert!(matches!(r.next(t0), ReadState::StartLookup));
        r.on_lookup_finished(4);
        let o = finished(r.next(t0));
        assert_eq!(o.path, ReadPath::NotFound);
        assert!(o.item.is_none());
    }

    #[test]
    fn modes_pick_the_paths() {
        let t0 = Instant::now();
        // Full nodes only: no lookup after a miss.
        let mut r = read(ReadMode::FullNodesOnly, None, t0);
        assert_eq!(r.ask_full_nodes(vec![PeerId::random()]).len(), 1);
        r.on_full_node_answer(None);
        assert_eq!(finished(r.next(t0)).path, ReadPath::NotFound);
        // Lookup only: full nodes are never asked.
        let mut r = read(ReadMode::LookupOnly, None, t0);
        assert!(!r.wants_full_nodes());
        assert!(r.ask_full_nodes(vec![PeerId::random()]).is_empty());
        assert!(matches!(r.next(t0), ReadState::StartLookup));
        // Local only: the local copy, nothing sent.
        let mut r = read(ReadMode::LocalOnly, Some(item(2)), t0);
        assert!(r.ask_full_nodes(vec![PeerId::random()]).is_empty());
        let o = finished(r.next(t0));
        assert_eq!((o.path, o.item.unwrap().seq), (ReadPath::Local, 2));
    }

    #[test]
    fn the_local_copy_wins_only_with_a_higher_seq() {
        let t0 = Instant::now();
        let mut r = read(ReadMode::Auto, Some(item(5)), t0);
        r.ask_full_nodes(vec![PeerId::random()]);
        r.on_full_node_answer(Some(item(5)));
        let o = finished(r.next(t0));
        assert_eq!(
            o.path,
            ReadPath::FullNode,
            "an equal seq goes to the remote copy"
        );
        let mut r = read(ReadMode::Auto, Some(item(6)), t0);
        r.ask_full_nodes(vec![PeerId::random()]);
        r.on_full_node_answer(Some(item(5)));
        let o = finished(r.next(t0));
        assert_eq!((o.path, o.item.unwrap().seq), (ReadPath::Local, 6));
    }
}
