//! Unit tests of [`super::Pulls`]: made-up instants and pages, no network.
#![allow(clippy::unwrap_used)]
use super::*;

const EPOCH: u64 = 7;

fn page(items: Vec<Item>, next_cursor: u64, has_more: bool) -> Page {
    Page {
        epoch: EPOCH,
        next_cursor,
        last_change: 100,
        has_more,
        items,
    }
}

fn request(step: Step) -> GetItems {
    match step {
        Step::Request { req, .. } => req,
        other => panic!("no request: {other:?}"),
    }
}

fn finished(step: Step) -> Finished {
    match step {
        Step::Finished(f) => f,
        other => panic!("not finished: {other:?}"),
    }
}

fn held(items: &[Item]) -> Vec<Checked> {
    items.iter().cloned().map(Checked::Held).collect()
}

fn verified(session: u64, page: u64, items: &[Item]) -> VerifiedPage {
    VerifiedPage {
        session,
        page,
        items: Some(held(items)),
    }
}

#[test]
fn pages_flow_through_verify_and_ingest_and_the_cursor_is_saved() {
    let mut p = Pulls::default();
    let peer = PeerId::random();
    let t0 = Instant::now();
    let items = crate::testing::signed_items("pull-tests", 4, 1, 8);
    let id = p
        .start(peer, SyncRequest::default(), Kind::Request, t0)
        .unwrap();
    assert_eq!(request(p.step(id, t0)).cursor, 0);
    assert!(
        matches!(p.step(id, t0), Step::Idle),
        "one request in flight"
    );
    assert_eq!(
        p.on_page(id, page(items[..2].to_vec(), 2, true)).unwrap(),
        2
    );
    let (n1, first) = p.next_to_verify(id, MAX_VERIFYING).unwrap();
    assert_eq!(first, items[..2].to_vec());
    // One page held: the next is fetched meanwhile.
    assert_eq!(request(p.step(id, t0)).cursor, 2);
    assert_eq!(
        p.on_page(id, page(items[2..].to_vec(), 4, false)).unwrap(),
        2
    );
    // Two pages in the verification stage at once.
    let (n2, second) = p.next_to_verify(id, MAX_VERIFYING).unwrap();
    assert_eq!(second, items[2..].to_vec());
    assert!(
        p.next_to_verify(id, MAX_VERIFYING).is_none(),
        "nothing else waits"
    );
    assert!(matches!(
        p.on_verified(verified(id, n1, &first)),
        Verified::Queued(None)
    ));
    assert!(p.ingest_pending());
    assert_eq!(p.ingesting(), vec![id]);
    assert_eq!(p.take_chunk(id).unwrap().len(), 2);
    let c = Counts {
        accepted: 2,
        ..Counts::default()
    };
    let Ingested::Drained(Some(save)) = p.on_ingested(id, c) else {
        panic!("not drained");
    };
    assert_eq!(save.2.change, 2);
    p.save_cursor(save, Vec::new);
    // Still holding page 2: not finished.
    assert!(matches!(p.step(id, t0), Step::Idle));
    assert!(matches!(
        p.on_verified(verified(id, n2, &second)),
        Verified::Queued(None)
    ));
    p.take_chunk(id).unwrap();
    let Ingested::Drained(Some(save)) = p.on_ingested(id, c) else {
        panic!("not drained");
    };
    p.save_cursor(save, Vec::new);
    let t1 = t0 + Duration::from_secs(3);
    let done = finished(p.step(id, t1));
    assert!(done.ok && done.error.is_none());
    assert_eq!((done.items, done.accepted), (4, 4));
    let st = p.status(id, t1 + Duration::from_secs(60)).unwrap();
    assert_eq!((st.state, st.cursor, st.elapsed_ms), ("done", 4, 3000));
    let any = Salt::new(b"x".to_vec()).unwrap();
    assert!(p.synced_within(&any, Duration::from_secs(10), t1));
    assert!(!p.synced_within(&any, Duration::from_secs(10), t1 + Duration::from_secs(10)));
    // The next session resumes from the saved cursor.
    let id2 = p
        .start(peer, SyncRequest::default(), Kind::Repair, t1)
        .unwrap();
    let req = request(p.step(id2, t1));
    assert_eq!((req.epoch, req.cursor), (EPOCH, 4));
}

#[test]
fn sessions_are_bounded_and_cancel_keeps_what_was_received() {
    let mut p = Pulls::default();
    let t0 = Instant::now();
    let ids: Vec<u64> = (0..MAX_ACTIVE_SESSIONS)
        .map(|_| {
            p.start(PeerId::random(), SyncRequest::default(), Kind::Request, t0)
                .unwrap()
        })
        .collect();
    assert!(matches!(
        p.start(PeerId::random(), SyncRequest::default(), Kind::Request, t0),
        Err(SyncError::Busy { .. })
    ));
    let id = ids[0];
    request(p.step(id, t0));
    let items = crate::testing::signed_items("pull-cancel", 1, 1, 8);
    p.on_page(id, page(items.clone(), 1, true)).unwrap();
    let (n, _) = p.next_to_verify(id, MAX_VERIFYING).unwrap();
    assert!(p.cancel(id));
    assert!(!p.cancel(id + 100));
    // Still verifying: not finished yet, and no new request.
    assert!(matches!(p.step(id, t0), Step::Idle));
    assert!(matches!(
        p.on_verified(verified(id, n, &items)),
        Verified::Queued(None)
    ));
    p.take_chunk(id).unwrap();
    assert!(matches!(
        p.on_ingested(id, Counts::default()),
        Ingested::Drained(Some(_))
    ));
    let done = finished(p.step(id, t0));
    assert!(!done.ok);
    assert_eq!(p.status(id, t0).unwrap().state, "failed");
    // A slot is free again.
    assert!(
        p.start(PeerId::random(), SyncRequest::default(), Kind::Request, t0)
            .is_ok()
    );
}

#[test]
fn a_finished_session_drops_late_results_and_invalid_items_abort() {
    let mut p = Pulls::default();
    let peer = PeerId::random();
    let t0 = Instant::now();
    let items = crate::testing::signed_items("pull-late", 2, 1, 8);
    let id = p
        .start(peer, SyncRequest::default(), Kind::Request, t0)
        .unwrap();
    request(p.step(id, t0));
    p.on_page(id, page(items.clone(), 2, true)).unwrap();
    let (n, _) = p.next_to_verify(id, MAX_VERIFYING).unwrap();
    assert!(matches!(
        p.on_verified(verified(id, n + 1, &items)),
        Verified::Dropped
    ));
    assert!(matches!(
        p.on_verified(verified(id, n, &items)),
        Verified::Queued(None)
    ));
    p.take_chunk(id).unwrap();
    let bad = Counts {
        refused: 1,
        invalid: 1,
        ..Counts::default()
    };
    assert!(matches!(p.on_ingested(id, bad), Ingested::Invalid(q) if q == peer));
    assert_eq!(p.running_with(&peer), vec![id]);
    assert!(!p.finish(id, t0).unwrap().ok);
    assert!(p.finish(id, t0).is_none(), "finished once");
    assert!(p.running_with(&peer).is_empty());
    assert!(matches!(
        p.on_verified(verified(id, n + 1, &items)),
        Verified::Dropped
    ));
    // A paging violation names the peer.
    let id = p
        .start(peer, SyncRequest::default(), Kind::Request, t0)
        .unwrap();
    request(p.step(id, t0));
    let wrong = Page {
        epoch: EPOCH,
        next_cursor: 0,
        last_change: 0,
        has_more: true,
        items: Vec::new(),
    };
    assert!(matches!(p.on_page(id, wrong), Err((q, _)) if q == peer));
}

#[test]
fn the_sync_timer_joins_then_repairs_round_robin() {
    let mut p = Pulls::default();
    let t0 = Instant::now();
    let peers: Vec<PeerId> = (0..2).map(|_| PeerId::random()).collect();
    assert!(p.next_auto(&[]).is_none());
    assert!(p.wants_join());
    let (first, kind) = p.next_auto(&peers).unwrap();
    assert_eq!((first, kind), (peers[0], Kind::Join));
    let id = p.start(first, SyncRequest::default(), kind, t0).unwrap();
    assert!(!p.wants_join(), "a join runs");
    assert!(
        p.next_auto(&peers).is_none(),
        "one automatic pull at a time"
    );
    request(p.step(id, t0));
    p.on_page(id, page(Vec::new(), 0, false)).unwrap();
    let (n, _) = p.next_to_verify(id, MAX_VERIFYING).unwrap();
    let Verified::Queued(Some(save)) = p.on_verified(verified(id, n, &[])) else {
        panic!("an empty page is done at once");
    };
    p.save_cursor(save, Vec::new);
    assert!(finished(p.step(id, t0)).ok);
    assert!(!p.wants_join(), "joined");
    assert_eq!(p.next_auto(&peers), Some((peers[1], Kind::Repair)));
}

/// The two orders in which a page whose cursor goes backwards can meet the valid page before
/// it (the next page is requested while the previous one is verified). Received pages are
/// not stored until ingested, and a penalised session drops what it holds: whether page one
/// is stored depends only on whether it was ingested before the violation arrived. Either way
/// the saved cursor matches the store (page one is fetched again unless stored), and what is
/// stored stays.
#[test]
fn a_paging_violation_drops_held_pages_and_keeps_what_was_ingested() {
    let items = crate::testing::signed_items("pull-backwards", 3, 1, 8);
    let backwards = || page(items.clone(), 10, true);
    let t0 = Instant::now();
    let t1 = t0 + Duration::from_millis(40);
    let peer = PeerId::random();

    // The violation overtakes page one while it is being verified.
    let mut p = Pulls::default();
    let id = p
        .start(peer, SyncRequest::default(), Kind::Request, t0)
        .unwrap();
    assert_eq!(request(p.step(id, t0)).cursor, 0);
    p.on_page(id, page(items.clone(), 50, true)).unwrap();
    let (n1, _) = p.next_to_verify(id, MAX_VERIFYING).unwrap();
    assert_eq!(
        request(p.step(id, t0)).cursor,
        50,
        "fetched while verifying"
    );
    let Err((q, e)) = p.on_page(id, backwards()) else {
        panic!("a backwards cursor is a paging violation");
    };
    assert_eq!(q, peer);
    // The driver penalises the peer: abort and finish.
    p.abort(id, PullError::Failed(format!("peer penalised: {e}")));
    assert!(!p.finish(id, t1).unwrap().ok);
    assert!(matches!(
        p.on_verified(verified(id, n1, &items)),
        Verified::Dropped
    ));
    assert!(!p.ingest_pending() && p.ingesting().is_empty());
    let st = p.status(id, t1).unwrap();
    assert_eq!(
        (
            st.state,
            st.items_received,
            st.accepted + st.unchanged,
            st.cursor
        ),
        ("failed", 3, 0, 0)
    );
    // Nothing saved: a later session from this peer starts before page one again.
    let again = p
        .start(peer, SyncRequest::default(), Kind::Request, t1)
        .unwrap();
    assert_eq!(request(p.step(again, t1)).cursor, 0);

    // Page one is ingested before the violation arrives.
    let mut p = Pulls::default();
    let id = p
        .start(peer, SyncRequest::default(), Kind::Request, t0)
        .unwrap();
    request(p.step(id, t0));
    p.on_page(id, page(items.clone(), 50, true)).unwrap();
    let (n1, _) = p.next_to_verify(id, MAX_VERIFYING).unwrap();
    assert_eq!(request(p.step(id, t0)).cursor, 50);
    assert!(matches!(
        p.on_verified(verified(id, n1, &items)),
        Verified::Queued(None)
    ));
    assert_eq!(p.take_chunk(id).unwrap().len(), 3);
    let c = Counts {
        accepted: 1,
        unchanged: 2,
        ..Counts::default()
    };
    let Ingested::Drained(Some(save)) = p.on_ingested(id, c) else {
        panic!("not drained");
    };
    assert_eq!(save.2.change, 50);
    p.save_cursor(save, Vec::new);
    assert!(matches!(p.step(id, t0), Step::Idle), "page two in flight");
    assert!(p.on_page(id, backwards()).is_err());
    p.abort(id, PullError::Failed("peer penalised".into()));
    assert!(!p.finish(id, t1).unwrap().ok);
    let st = p.status(id, t1).unwrap();
    assert_eq!(
        (
            st.state,
            st.items_received,
            st.accepted,
            st.unchanged,
            st.cursor
        ),
        ("failed", 3, 1, 2, 50)
    );
    // The cursor stays saved: a later session resumes after page one.
    let again = p
        .start(peer, SyncRequest::default(), Kind::Request, t1)
        .unwrap();
    assert_eq!(request(p.step(again, t1)).cursor, 50);
}

/// Pages come back from the verification stage in any order and go into the backlog in page
/// order; at most `MAX_VERIFYING` are in the stage and `MAX_HELD_PAGES` held.
#[test]
fn verified_pages_are_taken_back_in_page_order() {
    let mut p = Pulls::default();
    let t0 = Instant::now();
    let items = crate::testing::signed_items("pull-order", 3, 1, 8);
    let id = p
        .start(PeerId::random(), SyncRequest::default(), Kind::Request, t0)
        .unwrap();
    let mut numbers = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let req = request(p.step(id, t0));
        assert_eq!(req.cursor, i as u64);
        p.on_page(id, page(vec![item.clone()], i as u64 + 1, true))
            .unwrap();
        if let Some((n, _)) = p.next_to_verify(id, MAX_VERIFYING) {
            numbers.push(n);
        }
    }
    assert_eq!(numbers.len(), MAX_VERIFYING, "the third page waits");
    assert!(matches!(p.step(id, t0), Step::Idle), "three pages held");
    // The second page is back first: kept, nothing to ingest yet.
    assert!(matches!(
        p.on_verified(verified(id, numbers[1], &items[1..2])),
        Verified::Queued(None)
    ));
    assert!(!p.ingest_pending());
    assert!(matches!(
        p.on_verified(verified(id, numbers[1], &items[1..2])),
        Verified::Dropped
    ));
    // Then the first: both go into the backlog, in page order.
    assert!(matches!(
        p.on_verified(verified(id, numbers[0], &items[..1])),
        Verified::Queued(None)
    ));
    let chunk = p.take_chunk(id).unwrap();
    let got: Vec<&Item> = chunk
        .iter()
        .map(|c| match c {
            Checked::Held(item) => item,
            _ => panic!("not held"),
        })
        .collect();
    assert_eq!(got, vec![&items[0], &items[1]]);
    // The third page enters the stage; a failed verification fails the session.
    let (n3, _) = p.next_to_verify(id, MAX_VERIFYING).unwrap();
    let failed = VerifiedPage {
        session: id,
        page: n3,
        items: None,
    };
    assert!(matches!(p.on_verified(failed), Verified::Failed));
}
