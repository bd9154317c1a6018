//! Bulk sync and full-node convergence on 127.0.0.1, real TCP + Noise + yamux, in one process.
//! Nothing asserts on timing; everything is polled with generous deadlines (2-core CI).
//!
//! `SYNC_TEST_ITEMS` scales the big test (default 100 000, as the issue asks).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use dht::{Item, Salt};
use dhtnode::testing::{Poll, config, load, signed_items, sync_from, wait_for, wait_sync_done};
use dhtnode::{Node, ReadMode, Role, StoreDigest, SyncRequest};
use futures::StreamExt;
use itemsync::wire;
use keys::SecKey;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, StreamProtocol, noise, tcp, yamux};

const DEADLINE: Duration = Duration::from_secs(240);
const POLL: Poll = Poll {
    deadline: DEADLINE,
    every: Duration::from_millis(20),
};

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

async fn digest(node: &Node) -> StoreDigest {
    node.store_digest().await.unwrap()
}

fn test_items() -> usize {
    std::env::var("SYNC_TEST_ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// Two full nodes: the joining one pulls everything (100k items) and ends with an identical
/// store; after 1000 more changes on the source, an incremental sync transfers exactly those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_pulls_everything_then_incremental_transfers_only_changes() {
    init_tracing();
    let n = test_items();
    let (a, _ta) = Node::spawn(quiet(config(Role::Full, vec![])))
        .await
        .unwrap();
    let t = std::time::Instant::now();
    let items = signed_items("join", n, 1, 64);
    eprintln!("signed {n} items in {:?}", t.elapsed());
    let t = std::time::Instant::now();
    assert_eq!(load(&a, items).await, n as u64);
    eprintln!("loaded them into A in {:?}", t.elapsed());
    assert!(digest(&a).await.items >= n as u64);

    // B joins: it identifies A as a full node and pulls everything on its own.
    let (b, _tb) = Node::spawn(quiet(config(Role::Full, vec![a.listen_addrs()[0].clone()])))
        .await
        .unwrap();
    // Identical: every item with every byte (each holds both adverts by now).
    let t = std::time::Instant::now();
    same_stores(&a, &b).await;
    eprintln!("B joined (identical stores) after {:?}", t.elapsed());
    // Drain whatever changed on A since the join's last page (B's own advert arriving there).
    let id = b.sync(sync_from(&a)).await.unwrap();
    assert_eq!(wait_sync_done(POLL, &b, id).await.state, "done");

    // 1000 changes on A (new items and new seqs for existing ones), not pushed (store_local is
    // for items every full node gets from a shared source).
    let mut changes = signed_items("join", 500, 2, 64); // replace 500
    changes.extend(signed_items("incr", 500, 1, 64)); // insert 500
    assert_eq!(load(&a, changes).await, 1000);
    let id = b.sync(sync_from(&a)).await.unwrap();
    let st = wait_sync_done(POLL, &b, id).await;
    assert_eq!(st.state, "done", "{st:?}");
    assert_eq!(st.items_received, 1000, "only the changes travel: {st:?}");
    assert_eq!(st.accepted, 1000);
    same_stores(&a, &b).await;

    // A full re-pull of what B already holds: every item is held identically (skipped by the
    // verification stage, `Unchanged` in the store), nothing is refused, the stores stay equal.
    let mut again = sync_from(&a);
    again.from_start = true;
    let id = b.sync(again).await.unwrap();
    let st = wait_sync_done(POLL, &b, id).await;
    assert_eq!(st.state, "done", "{st:?}");
    assert_eq!(st.refused, 0, "{st:?}");
    assert_eq!(st.unchanged, st.items_received, "{st:?}");
    same_stores(&a, &b).await;
}

/// Adverts only at start (a re-advert every second would keep changing both stores).
fn quiet(mut cfg: dhtnode::Config) -> dhtnode::Config {
    cfg.advert_interval = Duration::from_secs(600);
    cfg
}

/// Waits until both stores hold the same items. Item counts (kept by the node, no scan) are
/// polled first; the digests (a walk of the whole store inside each actor) only once they match.
async fn same_stores(a: &Node, b: &Node) {
    let count = |n: &Node| {
        let n = n.clone();
        async move { n.info().await.unwrap().items.values().sum::<u64>() }
    };
    wait_for(POLL, "identical stores", || async {
        if count(a).await != count(b).await {
            return None;
        }
        let (da, db) = (digest(a).await, digest(b).await);
        (da == db).then_some(())
    })
    .await;
}

/// A sync cancelled mid-way resumes from its cursor: the two sessions together transfer each
/// item once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_sync_resumes_from_its_cursor() {
    init_tracing();
    let n = 20_000usize;
    let (a, _ta) = Node::spawn(quiet(config(Role::Full, vec![])))
        .await
        .unwrap();
    assert_eq!(load(&a, signed_items("resume", n, 1, 32)).await, n as u64);
    let total = digest(&a).await.items;
    // A regular node: it does not join on its own, so only the sessions below run.
    let (b, _tb) = Node::spawn(config(Role::Regular, vec![])).await.unwrap();
    let tp = dht::Salt::of_kind(dht::SaltKind::Tp);
    assert!(a.holds_dataset(&tp).await, "a full node holds the dataset");
    assert!(!b.holds_dataset(&tp).await);
    let mut req = sync_from(&a);
    req.page_limit = Some(100);
    let id = b.sync(req.clone()).await.unwrap();
    wait_for(POLL, "part of the items", || async {
        let s = b.sync_status(id).await.unwrap();
        (s.items_received >= 2000).then_some(())
    })
    .await;
    assert!(b.sync_cancel(id).await);
    // What was received before the cancel is still ingested, then the session ends.
    let first = wait_sync_done(POLL, &b, id).await;
    assert_eq!(first.state, "failed");
    assert!(first.items_received < total, "{first:?}");
    // Every received item was ingested (A's advert may already have been held: B fetches the
    // adverts of a full node it identifies).
    assert_eq!(
        first.accepted + first.unchanged,
        first.items_received,
        "{first:?}"
    );
    assert_eq!(first.refused, 0);
    assert!(digest(&b).await.items >= first.accepted);
    assert!(
        !b.holds_dataset(&tp).await,
        "an interrupted sync holds only part"
    );

    let id2 = b.sync(req).await.unwrap();
    let second = wait_sync_done(POLL, &b, id2).await;
    assert_eq!(second.state, "done", "{second:?}");
    // Change numbers of A's store are 1, 2, …: the first session received exactly the
    // changes up to its cursor, the second exactly the ones after it (A may have re-put its own
    // advert meanwhile, so its last change can be above `total`).
    assert_eq!(first.items_received, first.cursor, "{first:?}");
    assert_eq!(
        second.items_received,
        second.cursor - first.cursor,
        "nothing transferred twice: {first:?} {second:?}"
    );
    assert!(second.cursor >= total);
    assert_eq!(digest(&a).await, digest(&b).await);
    assert!(b.holds_dataset(&tp).await, "a completed sync of everything");
}

// ---- a peer serving bad pages -----------------------------------------------------------------

/// What the fake server answers to every GetItems.
#[derive(Clone)]
enum Evil {
    /// A page with a forged item (value changed after signing).
    Forged,
    /// Bytes that are not a message.
    Garbage,
    /// A message larger than any page may be.
    Oversized,
    /// A page that says "more" but carries nothing.
    NoProgress,
    /// A valid first page, then a page whose cursor goes backwards. The backwards page is held
    /// until `release` is notified: a penalty drops the pages a session holds and has not
    /// stored yet, so the test lets the first page reach the store first (the other order is
    /// `pull::tests::a_paging_violation_drops_held_pages_and_keeps_what_was_ingested`).
    Backwards { release: Arc<tokio::sync::Notify> },
    /// Three pages of three items; the second has a forged item in the middle (so the third is
    /// requested or verified while the second is checked).
    ForgedLater,
}

#[derive(Clone, Default)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        use futures::AsyncReadExt;
        let mut buf = Vec::new();
        io.take(1 << 20).read_to_end(&mut buf).await?;
        Ok(buf)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, _: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        Ok(Vec::new())
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        Ok(())
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        use futures::AsyncWriteExt;
        io.write_all(&res).await?;
        io.close().await
    }
}

fn evil_answer(mode: &Evil, request: &[u8]) -> Vec<u8> {
    let Ok(wire::Request::GetItems(req)) = wire::decode_request(request) else {
        return vec![0xff];
    };
    let good = signed_items("evil", 3, 1, 16);
    let page = |next, has_more, items: Vec<Item>| {
        wire::encode_response(&wire::Response::Page(wire::Page {
            epoch: 7,
            next_cursor: next,
            last_change: 100,
            has_more,
            items,
        }))
        .unwrap()
    };
    match mode {
        Evil::Forged => {
            let mut forged = good.clone();
            forged[1].value = b"evil 0 1 forged!".to_vec();
            page(3, false, forged)
        }
        Evil::Garbage => vec![0x00, 1, 2, 3],
        Evil::Oversized => vec![0u8; wire::MAX_RESPONSE_BYTES + 10],
        Evil::NoProgress => page(req.cursor, true, vec![]),
        Evil::ForgedLater => {
            let mut items = signed_items("evil-later", 9, 1, 16);
            items[4].value = b"evil-later forged".to_vec();
            let at = usize::try_from(req.cursor).unwrap_or(usize::MAX).min(6) / 3 * 3;
            let next = at as u64 + 3;
            page(next, next < 9, items[at..at + 3].to_vec())
        }
        Evil::Backwards { .. } => {
            if req.cursor == 0 {
                page(50, true, good)
            } else {
                page(10, true, good)
            }
        }
    }
}

/// Spawns a libp2p peer that speaks `/skymesh/sync/1` badly; returns its address.
async fn spawn_evil(mode: Evil) -> Multiaddr {
    let kp = dhtnode::identity::keypair(&SecKey::generate()).unwrap();
    let peer = kp.public().to_peer_id();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(kp)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                RawCodec,
                [(dhtnode::sync_codec::PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default(),
            )
        })
        .unwrap()
        .build();
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address.with_p2p(peer).unwrap();
        }
    };
    let gate = match &mode {
        Evil::Backwards { release } => Some(Arc::clone(release)),
        _ => None,
    };
    tokio::spawn(async move {
        // The backwards page, until the test releases it.
        let mut held = None;
        loop {
            tokio::select! {
                ev = swarm.select_next_some() => {
                    let SwarmEvent::Behaviour(request_response::Event::Message {
                        message:
                            request_response::Message::Request {
                                request, channel, ..
                            },
                        ..
                    }) = ev
                    else {
                        continue;
                    };
                    let answer = evil_answer(&mode, &request);
                    let later = matches!(
                        wire::decode_request(&request),
                        Ok(wire::Request::GetItems(r)) if r.cursor != 0
                    );
                    if gate.is_some() && later {
                        held = Some((channel, answer));
                    } else {
                        let _ = swarm.behaviour_mut().send_response(channel, answer);
                    }
                }
                () = released(gate.as_deref()), if held.is_some() => {
                    if let Some((channel, answer)) = held.take() {
                        let _ = swarm.behaviour_mut().send_response(channel, answer);
                    }
                }
            }
        }
    });
    addr
}

/// Returns once `gate` is notified (never without one).
async fn released(gate: Option<&tokio::sync::Notify>) {
    match gate {
        Some(g) => g.notified().await,
        None => std::future::pending().await,
    }
}

/// Peers serving forged items, garbage, oversized messages, or pages that make no progress are
/// refused and penalised; the store keeps only what passed the rules; an honest full node is
/// still served and synced from afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pages_are_refused_and_the_peer_penalised() {
    init_tracing();
    let mut cfg = config(Role::Regular, vec![]);
    let mut registry = prometheus_client::registry::Registry::default();
    cfg.metrics = dhtnode::Metrics::register(&mut registry);
    let metrics = cfg.metrics.clone();
    let (b, _tb) = Node::spawn(cfg).await.unwrap();
    let before = digest(&b).await;
    let modes = [
        Evil::Forged,
        Evil::Garbage,
        Evil::Oversized,
        Evil::NoProgress,
        Evil::Backwards {
            release: Arc::new(tokio::sync::Notify::new()),
        },
        Evil::ForgedLater,
    ];
    for (i, mode) in modes.iter().enumerate() {
        let addr = spawn_evil(mode.clone()).await;
        let mut req = SyncRequest::default();
        req.from = Some(addr.clone());
        let id = b.sync(req.clone()).await.unwrap();
        if let Evil::Backwards { release } = mode {
            // The next page is requested while page one is verified; answer it only once page
            // one is stored (its cursor saved).
            wait_for(POLL, "page one stored", || async {
                let s = b.sync_status(id).await.unwrap();
                (s.cursor == 50 || s.state != "running").then_some(())
            })
            .await;
            release.notify_one();
        }
        let st = wait_sync_done(POLL, &b, id).await;
        assert_eq!(st.state, "failed", "mode {i}: {st:?}");
        assert_eq!(metrics.sync.peers_penalised.get(), i as u64 + 1, "mode {i}");
        // Penalised: a second attempt is refused at once.
        assert!(b.sync(req).await.is_err(), "mode {i}");
        match mode {
            // The forged page's two valid items are stored (they pass the rules on their own);
            // the forged one is not.
            Evil::Forged => {
                let forged_pk = signed_items("evil", 3, 1, 16)[1].pk;
                let got = b
                    .get_with(
                        &forged_pk,
                        &Salt::new(&b"s1"[..]).unwrap(),
                        ReadMode::LocalOnly,
                    )
                    .await
                    .unwrap();
                assert!(got.item.is_none(), "forged item stored");
                assert_eq!(digest(&b).await.items, before.items + 2);
            }
            // The backwards peer's first page is valid and was stored before the penalty: its 3
            // genuine items stay (one of them, the genuine version of the item forged above, is
            // new; the other two were held) and so does its cursor.
            Evil::Backwards { .. } => {
                assert_eq!((st.accepted, st.unchanged, st.cursor), (1, 2, 50), "{st:?}");
                let genuine = &signed_items("evil", 3, 1, 16)[1];
                let got = b
                    .get_with(&genuine.pk, &genuine.salt, ReadMode::LocalOnly)
                    .await
                    .unwrap();
                assert_eq!(got.item.as_ref(), Some(genuine), "genuine item missing");
                assert_eq!(digest(&b).await.items, before.items + 3);
            }
            // Page one and the genuine items of page two are stored; the forged one is not.
            // Page three may have been verified and ingested in the same chunk as page two (it
            // passes the rules on its own), or dropped with the finished session.
            Evil::ForgedLater => {
                let later = signed_items("evil-later", 9, 1, 16);
                let got = b
                    .get_with(&later[4].pk, &later[4].salt, ReadMode::LocalOnly)
                    .await
                    .unwrap();
                assert!(got.item.is_none(), "forged item stored");
                for item in later
                    .iter()
                    .take(6)
                    .filter(|i| i.pk != later[4].pk || i.salt != later[4].salt)
                {
                    let got = b
                        .get_with(&item.pk, &item.salt, ReadMode::LocalOnly)
                        .await
                        .unwrap();
                    assert_eq!(got.item.as_ref(), Some(item), "genuine item missing");
                }
                let n = digest(&b).await.items;
                assert!(
                    (before.items + 3 + 5..=before.items + 3 + 8).contains(&n),
                    "{n} items"
                );
            }
            _ => assert_eq!(digest(&b).await.items, before.items + 2, "mode {i}"),
        }
    }
    // An honest full node is still synced from.
    let (a, _ta) = Node::spawn(config(Role::Full, vec![])).await.unwrap();
    load(&a, signed_items("honest", 500, 1, 16)).await;
    let id = b.sync(sync_from(&a)).await.unwrap();
    let st = wait_sync_done(POLL, &b, id).await;
    assert_eq!(st.state, "done", "{st:?}");
    assert_eq!(st.accepted + st.unchanged, st.items_received, "{st:?}");
    assert!(st.accepted >= 500);
}

/// Ten full nodes: a write accepted by any one of them reaches all ten (push, no waiting for
/// the periodic pull, which is off here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_full_nodes_converge_by_push() {
    init_tracing();
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..10 {
        let bootstrap = if i == 0 {
            vec![]
        } else {
            vec![nodes[0].listen_addrs()[0].clone()]
        };
        let (n, _t) = Node::spawn(config(Role::Full, bootstrap)).await.unwrap();
        nodes.push(n);
    }
    wait_for(POLL, "every full node to know the nine others", || async {
        for n in &nodes {
            if n.find_full_nodes().await.len() < 9 {
                return None;
            }
        }
        Some(())
    })
    .await;
    let writes = signed_items("conv", 30, 1, 40);
    for (k, item) in writes.iter().enumerate() {
        nodes[k % 10].put_item(item.clone()).await.unwrap();
    }
    for item in &writes {
        for n in &nodes {
            wait_for(POLL, "the write on every full node", || async {
                let got = n
                    .get_with(&item.pk, &item.salt, ReadMode::LocalOnly)
                    .await
                    .unwrap();
                got.item.filter(|i| i == item).map(|_| ())
            })
            .await;
        }
    }
}
