//! A put as a state machine: one `put_record_to` leg to the known full nodes, one
//! `get_closest_peers` query, then a `put_record_to` leg to the k closest it found. Pure: the
//! actor starts the legs it is told to, feeds back their results and answers when
//! [`Put::next`] says [`PutState::Done`].
//!
//! Both legs wait for every peer they send to (`Quorum::All`: kad drops the copies still waiting
//! for a dial once a put query reaches its quorum, so a smaller quorum would lose copies to
//! unconnected peers), bounded by the kad query timeout. The report counts acknowledgements (kad
//! acks a PutRecord even when the receiver's filter drops the record, so these are
//! *deliveries*). A full node that did not take the put is handed back for the backoff.
use libp2p::PeerId;

use super::PutReport;

/// Which leg of a put a kad put query is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    /// To the known full nodes.
    FullNodes,
    /// To the k closest peers found by the `get_closest_peers` query.
    Closest,
}

/// What the driver starts for a put.
#[derive(Debug, PartialEq, Eq)]
pub enum PutAction {
    /// `put_record_to(peers, Quorum::All)`; report the result with [`Put::on_leg_done`].
    PutTo { leg: Leg, peers: Vec<PeerId> },
    /// `get_closest_peers(key)`; report the peers with [`Put::on_closest_peers`].
    FindClosest,
}

/// Where a put stands.
#[derive(Debug)]
pub enum PutState {
    /// Legs or the closest-peers query are outstanding.
    Waiting,
    /// Every leg is done: answer with this report.
    Done(PutReport),
}

/// One put in progress.
#[derive(Debug)]
pub struct Put {
    report: PutReport,
    /// Legs and queries outstanding.
    outstanding: usize,
    /// The full nodes the full-node leg went to.
    full_nodes: Vec<PeerId>,
    done: bool,
}

impl Put {
    /// A put of the record `report` describes (acks 0) to `full_nodes` (reachable ones, not
    /// backed off) and the k closest; returns what to start.
    pub fn new(report: PutReport, full_nodes: Vec<PeerId>) -> (Put, Vec<PutAction>) {
        let mut actions = Vec::with_capacity(2);
        if !full_nodes.is_empty() {
            actions.push(PutAction::PutTo {
                leg: Leg::FullNodes,
                peers: full_nodes.clone(),
            });
        }
        actions.push(PutAction::FindClosest);
        let put = Put {
            report,
            outstanding: actions.len(),
            full_nodes,
            done: false,
        };
        (put, actions)
    }

    /// The closest-peers query found `peers` (this node, `local`, is left out): the put to
    /// them, if any.
    pub fn on_closest_peers(&mut self, peers: Vec<PeerId>, local: PeerId) -> Option<PutAction> {
        let peers: Vec<PeerId> = peers.into_iter().filter(|p| *p != local).collect();
        if peers.is_empty() {
            self.outstanding = self.outstanding.saturating_sub(1);
            return None;
        }
        // The query turns into the leg: still one outstanding.
        Some(PutAction::PutTo {
            leg: Leg::Closest,
            peers,
        })
    }

    /// A leg ended with `acks` acknowledgements; `succeeded` lists the peers that took it when
    /// the leg failed its quorum or timed out (`None` when it succeeded). Returns the full nodes
    /// to back off: those of the full-node leg that did not take it.
    pub fn on_leg_done(
        &mut self,
        leg: Leg,
        acks: u32,
        succeeded: Option<&[PeerId]>,
    ) -> Vec<PeerId> {
        self.report.acks += acks;
        self.outstanding = self.outstanding.saturating_sub(1);
        match (leg, succeeded) {
            (Leg::FullNodes, Some(ok)) => std::mem::take(&mut self.full_nodes)
                .into_iter()
                .filter(|p| !ok.contains(p))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Done once no leg is outstanding (once).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> PutState {
        if self.outstanding > 0 || self.done {
            return PutState::Waiting;
        }
        self.done = true;
        PutState::Done(self.report.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> PutReport {
        PutReport {
            target: "t".into(),
            seq: 9,
            acks: 0,
        }
    }

    fn done(s: PutState) -> PutReport {
        match s {
            PutState::Done(r) => r,
            PutState::Waiting => panic!("still waiting"),
        }
    }

    #[test]
    fn full_nodes_and_closest_peers_both_count() {
        let full: Vec<PeerId> = (0..2).map(|_| PeerId::random()).collect();
        let (mut put, actions) = Put::new(report(), full.clone());
        assert_eq!(
            actions,
            vec![
                PutAction::PutTo {
                    leg: Leg::FullNodes,
                    peers: full.clone()
                },
                PutAction::FindClosest
            ]
        );
        assert!(put.on_leg_done(Leg::FullNodes, 2, None).is_empty());
        assert!(matches!(put.next(), PutState::Waiting));
        let local = PeerId::random();
        let closest: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        let mut found = closest.clone();
        found.push(local);
        assert_eq!(
            put.on_closest_peers(found, local),
            Some(PutAction::PutTo {
                leg: Leg::Closest,
                peers: closest
            })
        );
        assert!(matches!(put.next(), PutState::Waiting));
        put.on_leg_done(Leg::Closest, 3, None);
        let r = done(put.next());
        assert_eq!((r.acks, r.seq), (5, 9));
        assert!(matches!(put.next(), PutState::Waiting), "done once");
    }

    #[test]
    fn without_peers_a_put_reports_zero_acks() {
        let (mut put, actions) = Put::new(report(), Vec::new());
        assert_eq!(actions, vec![PutAction::FindClosest]);
        let local = PeerId::random();
        assert_eq!(put.on_closest_peers(vec![local], local), None);
        assert_eq!(done(put.next()).acks, 0);
    }

    #[test]
    fn full_nodes_that_miss_a_put_are_backed_off() {
        let full: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        let (mut put, _) = Put::new(report(), full.clone());
        let back_off = put.on_leg_done(Leg::FullNodes, 1, Some(&full[1..2]));
        assert_eq!(back_off, vec![full[0], full[2]]);
        // The closest leg never backs anyone off.
        assert!(
            put.on_closest_peers(full.clone(), PeerId::random())
                .is_some()
        );
        assert!(put.on_leg_done(Leg::Closest, 0, Some(&[])).is_empty());
        assert_eq!(done(put.next()).acks, 1);
    }
}
