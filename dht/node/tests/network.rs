//! A real network on 127.0.0.1 in one process: 3 full + 27 regular nodes over TCP + Noise +
//! yamux. Deterministic enough for a 2-core CI: no timing asserts, everything polled with
//! generous deadlines.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use dht::{Item, Salt, Target};
use dhtnode::testing::{Poll, local, node_config, wait_until};
use dhtnode::{Node, Reachability, ReadMode, ReadPath, Role};
use futures::future::join_all;
use keys::SecKey;
use tokio::task::JoinHandle;

const FULL: usize = 3;
const REGULAR: usize = 27;
const DEADLINE: Duration = Duration::from_secs(120);
const POLL: Poll = Poll {
    deadline: DEADLINE,
    every: Duration::from_millis(250),
};

struct TestNode {
    /// Index at spawn (the value each node puts names it).
    idx: usize,
    node: Node,
    sk: SecKey,
    task: JoinHandle<()>,
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Full node 0 bootstraps nobody; everyone else bootstraps from node 0 (full nodes 1 and 2 also
/// from each other's predecessor). Regular nodes alternate between server and client mode.
async fn spawn_network() -> Vec<TestNode> {
    let mut nodes: Vec<TestNode> = Vec::new();
    for i in 0..FULL + REGULAR {
        let sk = SecKey::generate();
        let bootstrap = match i {
            0 => vec![],
            _ => vec![nodes[0].node.listen_addrs()[0].clone()],
        };
        let (role, reach) = if i < FULL {
            (Role::Full, Reachability::Public)
        } else if i % 2 == 0 {
            (Role::Regular, Reachability::Public)
        } else {
            (Role::Regular, Reachability::Private)
        };
        let (node, task) = Node::spawn(node_config(&sk, role, reach, bootstrap))
            .await
            .unwrap();
        nodes.push(TestNode {
            idx: i,
            node,
            sk,
            task,
        });
    }
    nodes
}

fn salt() -> Salt {
    Salt::new(b"test".to_vec()).unwrap()
}

async fn wait_full_nodes(nodes: &[TestNode], min: usize) {
    wait_until(POLL, "every node to know the full nodes", || async {
        let counts = join_all(nodes.iter().map(|n| n.node.find_full_nodes())).await;
        counts
            .iter()
            .enumerate()
            .all(|(i, c)| c.len() >= if i < FULL { min - 1 } else { min })
    })
    .await;
}

async fn put_all(nodes: &[TestNode]) {
    for n in nodes {
        let report = n
            .node
            .put(salt(), format!("value of node {}", n.idx).into_bytes())
            .await
            .unwrap();
        assert!(report.seq > 0);
    }
}

/// Every node reads `count` items put by others (i+1, i+2, …) until all are found.
async fn read_all(nodes: &[TestNode], writers: &[usize], count: usize) {
    wait_until(POLL, "every node to read items put by others", || async {
        let checks = nodes.iter().enumerate().map(|(i, reader)| async move {
            let mut ok = true;
            for k in 1..=count {
                let w = writers[(i + k) % writers.len()];
                let pk = nodes[w].sk.pubkey();
                let got = reader.node.get(&pk, &salt()).await.unwrap();
                match got {
                    Some(item) => {
                        assert_eq!(item.pk, pk);
                        let expected = format!("value of node {}", nodes[w].idx);
                        assert_eq!(item.value, expected.into_bytes());
                    }
                    None => ok = false,
                }
            }
            ok
        });
        join_all(checks).await.into_iter().all(|b| b)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_nodes_put_get_kill_full_and_refuse_bad_items() {
    init_tracing();
    let mut nodes = spawn_network().await;
    wait_full_nodes(&nodes, FULL).await;

    // Every node can get an item put by any other: each node puts one item, and each node
    // reads every other node's item.
    put_all(&nodes).await;
    let writers: Vec<usize> = (0..nodes.len()).collect();
    read_all(&nodes, &writers, nodes.len() - 1).await;

    // The 1-RTT path is the one used: a regular node's read is answered by a full node.
    let out = nodes[FULL]
        .node
        .get_with(&nodes[FULL + 1].sk.pubkey(), &salt(), ReadMode::Auto)
        .await
        .unwrap();
    assert_eq!(out.path, ReadPath::FullNode);

    // An iterative lookup alone also finds items.
    let out = nodes[FULL + 2]
        .node
        .get_with(&nodes[FULL + 5].sk.pubkey(), &salt(), ReadMode::LookupOnly)
        .await
        .unwrap();
    assert!(out.item.is_some(), "lookup-only read failed: {out:?}");

    // Kill full node 0 (also everyone's bootstrap peer): reads still work.
    let dead = nodes.remove(0);
    dead.node.shutdown().await;
    dead.task.await.unwrap();
    let writers: Vec<usize> = (0..nodes.len()).collect();
    read_all(&nodes, &writers, 5).await;
    // Puts still complete with the dead full node among the known ones (it fails the put and
    // goes into the backoff) and reach the others.
    let after = Salt::new(b"after-kill".to_vec()).unwrap();
    for n in &nodes[FULL..FULL + 3] {
        let report = n.node.put(after.clone(), b"v".to_vec()).await.unwrap();
        assert!(report.acks > 0, "{report:?}");
    }
    // The dead node's own item survives on the other nodes.
    let dead_pk = dead.sk.pubkey();
    wait_until(POLL, "the dead full node's item", || async {
        nodes[FULL + 3]
            .node
            .get(&dead_pk, &salt())
            .await
            .unwrap()
            .is_some_and(|i| i.value == b"value of node 0")
    })
    .await;

    // Bad items, sent by a "malicious" node bypassing its own checks, against the victim's slot.
    let victim = &nodes[FULL + 4];
    let victim_pk = victim.sk.pubkey();
    let target = Target::of(&victim_pk, &salt());
    let genuine = victim.node.get(&victim_pk, &salt()).await.unwrap().unwrap();
    let attacker_sk = SecKey::generate();
    // forged: the victim's slot, a higher seq, signed by the attacker
    let mut forged =
        Item::sign(&attacker_sk, salt(), genuine.seq + 100, b"forged".to_vec()).unwrap();
    forged.pk = victim_pk;
    // foreign: the attacker's own valid item offered under the victim's target
    let foreign = Item::sign(&attacker_sk, salt(), genuine.seq + 100, b"foreign".to_vec()).unwrap();
    // stale: validly signed by the victim, but a lower seq
    let stale = Item::sign(&victim.sk, salt(), genuine.seq - 1, b"stale".to_vec()).unwrap();
    // oversized: validly signed by the victim, higher seq, value over the 64 KiB limit
    let oversized =
        Item::sign(&victim.sk, salt(), genuine.seq + 200, vec![b'x'; 70 * 1024]).unwrap();
    let attacker = &nodes[FULL + 6].node;
    for bad in [&forged, &foreign, &stale, &oversized] {
        let acks = attacker.put_raw_unchecked(target, bad.encode()).await;
        assert!(
            acks > 0,
            "the bad record must reach peers for the test to mean anything"
        );
    }
    // The local put path refuses them too.
    for bad in [&forged, &stale, &oversized] {
        assert!(attacker.put_item(bad.clone()).await.is_err());
    }
    // Give the deliveries time to be processed, then check every node's store and lookups.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (i, n) in nodes.iter().enumerate() {
        if let Some(item) = local(&n.node, &victim_pk, &salt()).await {
            assert_eq!(item, genuine, "node {i} stored a bad item");
        }
        for mode in [ReadMode::Auto, ReadMode::LookupOnly] {
            let got = n.node.get_with(&victim_pk, &salt(), mode).await.unwrap();
            assert_eq!(
                got.item.as_ref(),
                Some(&genuine),
                "node {i} {mode:?} returned {got:?}"
            );
        }
    }

    for n in nodes {
        n.node.shutdown().await;
        n.task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_reports_role_peers_and_items() {
    init_tracing();
    let sk0 = SecKey::generate();
    let (full, t0) = Node::spawn(node_config(&sk0, Role::Full, Reachability::Public, vec![]))
        .await
        .unwrap();
    let sk1 = SecKey::generate();
    let boot = vec![full.listen_addrs()[0].clone()];
    let (reg, t1) = Node::spawn(node_config(&sk1, Role::Regular, Reachability::Auto, boot))
        .await
        .unwrap();
    wait_until(POLL, "the regular node to find the full node", || async {
        reg.find_full_nodes().await == vec![full.peer_id()]
    })
    .await;
    reg.put(salt(), b"hello".to_vec()).await.unwrap();
    wait_until(POLL, "the full node to hold the item", || async {
        full.info().await.unwrap().items.get("test") == Some(&1)
    })
    .await;
    let info = reg.info().await.unwrap();
    assert_eq!(info.role, Role::Regular);
    assert_eq!(info.public_key, sk1.pubkey().to_hex());
    assert_eq!(
        info.peer_id,
        dhtnode::identity::peer_id(&sk1.pubkey())
            .unwrap()
            .to_string()
    );
    assert!(info.peers >= 1);
    assert!(info.last_bootstrap.is_some());
    assert_eq!(info.full_nodes, vec![full.peer_id().to_string()]);
    // The full node advertised itself and the regular node learnt the advert.
    let advert = reg
        .get(&sk0.pubkey(), &Salt::of_kind(dht::SaltKind::Fullnode))
        .await
        .unwrap();
    assert!(advert.is_some());
    for (n, t) in [(reg, t1), (full, t0)] {
        n.shutdown().await;
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_serves_its_items_and_seq_moves_on() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let sk = SecKey::generate();
    let mk = |republish: Duration| {
        let mut cfg = node_config(&sk, Role::Full, Reachability::Public, vec![]);
        cfg.data_dir = Some(dir.path().join("node"));
        cfg.republish_interval = republish;
        // The node is a trusted writer (e.g. a backend writing for its users).
        cfg.store.trusted_writers.insert(sk.pubkey());
        cfg
    };
    let (node, task) = Node::spawn(mk(Duration::from_secs(30 * 60))).await.unwrap();
    // "test" is no known salt kind: only the store tells the restarted node it owns it.
    let first = node.put(salt(), b"persisted".to_vec()).await.unwrap();
    let subject = SecKey::generate().pubkey();
    let dsalt = Salt::new(b"delegated".to_vec()).unwrap();
    let delegated = Item::sign_for(&sk, subject, dsalt.clone(), 1, b"for a user".to_vec()).unwrap();
    node.put_item(delegated).await.unwrap();
    let advert_salt = Salt::of_kind(dht::SaltKind::Fullnode);
    let start = tokio::time::Instant::now();
    let advert1 = loop {
        let got = local(&node, &sk.pubkey(), &advert_salt).await;
        if let Some(a) = got {
            break a;
        }
        assert!(start.elapsed() < DEADLINE, "no advert");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    node.shutdown().await;
    task.await.unwrap();

    // Restarted with a 2 s republish timer.
    let (node, task) = Node::spawn(mk(Duration::from_secs(2))).await.unwrap();
    let got = local(&node, &sk.pubkey(), &salt()).await.unwrap();
    assert_eq!(got.value, b"persisted");
    assert_eq!(got.seq, first.seq);
    // The advert is re-signed at start with a seq above the persisted one.
    wait_until(POLL, "a fresh advert", || async {
        local(&node, &sk.pubkey(), &advert_salt)
            .await
            .is_some_and(|a| a.seq > advert1.seq)
    })
    .await;
    // Own items under any salt and delegated items are republished after the restart.
    wait_until(POLL, "the own item republished", || async {
        local(&node, &sk.pubkey(), &salt())
            .await
            .is_some_and(|i| i.seq > first.seq && i.value == b"persisted")
    })
    .await;
    wait_until(POLL, "the delegated item republished", || async {
        local(&node, &subject, &dsalt)
            .await
            .is_some_and(|i| i.seq > 1 && i.writer == Some(sk.pubkey()) && i.value == b"for a user")
    })
    .await;
    let second = node.put(salt(), b"again".to_vec()).await.unwrap();
    assert!(second.seq > first.seq);
    node.shutdown().await;
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_retries_until_the_peer_is_up_and_own_items_are_republished() {
    init_tracing();
    // The full node's address and id are known before it runs.
    let full_sk = SecKey::generate();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let full_addr: libp2p::Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
    let full_peer = dhtnode::identity::peer_id(&full_sk.pubkey()).unwrap();
    let boot = full_addr.clone().with_p2p(full_peer).unwrap();

    let reg_sk = SecKey::generate();
    let mut rc = node_config(&reg_sk, Role::Regular, Reachability::Auto, vec![boot]);
    rc.bootstrap_retry = Duration::from_millis(500);
    rc.republish_interval = Duration::from_secs(1);
    // An application that refreshes its own items itself: the timer leaves them alone.
    let app_salt = Salt::new(b"app-refreshed".to_vec()).unwrap();
    rc.app_refreshed.insert(app_salt.clone());
    let metrics = rc.metrics.clone();
    let (reg, rt) = Node::spawn(rc).await.unwrap();
    // The first bootstrap attempts fail: nobody listens yet.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(reg.info().await.unwrap().last_bootstrap.is_none());

    let mut fc = node_config(&full_sk, Role::Full, Reachability::Public, vec![]);
    fc.listen = vec![full_addr];
    let (full, ft) = Node::spawn(fc).await.unwrap();
    wait_until(
        POLL,
        "the retried bootstrap to reach the full node",
        || async { reg.find_full_nodes().await == vec![full_peer] },
    )
    .await;
    assert!(reg.info().await.unwrap().last_bootstrap.is_some());

    // Own items are republished with a higher seq.
    let app = reg
        .put(app_salt.clone(), b"kept by the app".to_vec())
        .await
        .unwrap();
    let first = reg.put(salt(), b"mine".to_vec()).await.unwrap();
    wait_until(POLL, "a republished copy on the full node", || async {
        local(&full, &reg_sk.pubkey(), &salt())
            .await
            .is_some_and(|i| i.seq > first.seq && i.value == b"mine")
    })
    .await;
    // Two more ticks: the app-refreshed item is untouched, the other one keeps being re-put.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let republished = |s: &str| {
        metrics
            .republished
            .get_or_create(&dhtnode::metrics::SaltLabel { salt: s.into() })
            .get()
    };
    assert!(republished("test") >= 2, "{}", republished("test"));
    assert_eq!(republished("app-refreshed"), 0);
    let kept = local(&reg, &reg_sk.pubkey(), &app_salt).await.unwrap();
    assert_eq!(kept.seq, app.seq);
    for (n, t) in [(reg, rt), (full, ft)] {
        n.shutdown().await;
        t.await.unwrap();
    }
}

/// A peer flooding a node with kad requests (GetRecord here) is cut off at the per-peer limit;
/// a well-behaved peer is still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kad_request_flood_is_cut_off() {
    init_tracing();
    let victim_sk = SecKey::generate();
    let mut vc = node_config(&victim_sk, Role::Regular, Reachability::Public, vec![]);
    vc.max_kad_requests_per_peer = 30;
    let metrics = vc.metrics.clone();
    let (victim, vt) = Node::spawn(vc).await.unwrap();
    victim.put(salt(), b"still served".to_vec()).await.unwrap();
    let boot = vec![victim.listen_addrs()[0].clone()];

    let mut sc = node_config(
        &SecKey::generate(),
        Role::Regular,
        Reachability::Public,
        boot.clone(),
    );
    sc.query_timeout = Duration::from_secs(3);
    let (spammer, st) = Node::spawn(sc).await.unwrap();
    wait_until(POLL, "the spammer knows the victim", || async {
        spammer.info().await.unwrap().routing_table >= 1
    })
    .await;
    // 200 lookups for keys nobody holds: each asks the victim, the spammer's only peer.
    let lookups = (0..200).map(|i| {
        let spammer = spammer.clone();
        async move {
            let pk = SecKey::from_seed(format!("absent-{i}").as_bytes()).pubkey();
            let _ = tokio::time::timeout(
                Duration::from_secs(10),
                spammer.get_with(&pk, &salt(), ReadMode::LookupOnly),
            )
            .await;
        }
    });
    join_all(lookups).await;
    let limited = metrics.kad_requests_limited.get();
    println!("kad requests limited: {limited} of ≥ 200");
    assert!(limited > 0, "no request was limited");
    assert!(limited < 200, "{limited}");

    // Someone else is served as before.
    let (good, gt) = Node::spawn(node_config(
        &SecKey::generate(),
        Role::Regular,
        Reachability::Public,
        boot,
    ))
    .await
    .unwrap();
    wait_until(POLL, "the good peer knows the victim", || async {
        good.info().await.unwrap().routing_table >= 1
    })
    .await;
    let got = good
        .get_with(&victim_sk.pubkey(), &salt(), ReadMode::LookupOnly)
        .await
        .unwrap();
    assert_eq!(got.item.unwrap().value, b"still served");
    for (n, t) in [(victim, vt), (spammer, st), (good, gt)] {
        n.shutdown().await;
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_hops_are_measured_when_asked_for() {
    init_tracing();
    // The holder puts while alone, so the item lives on it only.
    let holder_sk = SecKey::generate();
    let (holder, ht) = Node::spawn(node_config(
        &holder_sk,
        Role::Regular,
        Reachability::Public,
        vec![],
    ))
    .await
    .unwrap();
    holder.put(salt(), b"one hop away".to_vec()).await.unwrap();
    let boot = vec![holder.listen_addrs()[0].clone()];
    let reader = |measure: bool| {
        let mut c = node_config(
            &SecKey::generate(),
            Role::Regular,
            Reachability::Public,
            boot.clone(),
        );
        c.lookup_quorum = 1;
        c.measure_lookup_hops = measure;
        Node::spawn(c)
    };
    let (measured, mt) = reader(true).await.unwrap();
    let (plain, pt) = reader(false).await.unwrap();
    for r in [&measured, &plain] {
        wait_until(POLL, "the reader knows the holder", || async {
            r.info().await.unwrap().routing_table >= 1
        })
        .await;
    }
    // The holder is in the reader's own table: the answer is the first hop. The count is an
    // upper bound that the node's own background queries (kad bootstraps itself while its
    // table is small) can raise by one, so the best of a few lookups must be exactly 1.
    let mut hops = Vec::new();
    for _ in 0..5 {
        let out = measured
            .get_with(&holder_sk.pubkey(), &salt(), ReadMode::LookupOnly)
            .await
            .unwrap();
        assert_eq!(out.item.as_ref().unwrap().value, b"one hop away");
        assert_eq!(out.path, ReadPath::Lookup);
        assert!(out.lookup_requests >= 1);
        hops.push(out.lookup_hops.expect("hops measured"));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(hops.iter().min(), Some(&1), "{hops:?}");
    assert!(hops.iter().all(|h| *h <= 2), "{hops:?}");
    let out = plain
        .get_with(&holder_sk.pubkey(), &salt(), ReadMode::LookupOnly)
        .await
        .unwrap();
    assert!(out.item.is_some());
    assert_eq!(out.lookup_hops, None);
    for (n, t) in [(holder, ht), (measured, mt), (plain, pt)] {
        n.shutdown().await;
        t.await.unwrap();
    }
}

/// The memory transport (for in-process networks of thousands of nodes, see the `dht_node`
/// bench) carries the same protocols: a regular node finds a full node, puts, and reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_the_memory_transport_put_and_read() {
    init_tracing();
    let memory = |mut c: dhtnode::Config| {
        c.transport = dhtnode::config::Transport::Memory;
        c.listen = vec!["/memory/0".parse().unwrap()];
        c
    };
    let sk0 = SecKey::generate();
    let (full, t0) = Node::spawn(memory(node_config(
        &sk0,
        Role::Full,
        Reachability::Public,
        vec![],
    )))
    .await
    .unwrap();
    let addr = full.listen_addrs()[0].clone();
    assert!(addr.to_string().starts_with("/memory/"), "{addr}");
    let sk1 = SecKey::generate();
    let (reg, t1) = Node::spawn(memory(node_config(
        &sk1,
        Role::Regular,
        Reachability::Auto,
        vec![addr],
    )))
    .await
    .unwrap();
    wait_until(POLL, "the regular node to find the full node", || async {
        reg.find_full_nodes().await == vec![full.peer_id()]
    })
    .await;
    reg.put(salt(), b"over memory".to_vec()).await.unwrap();
    let got = full
        .get(&sk1.pubkey(), &salt())
        .await
        .unwrap()
        .map(|i| i.value);
    assert_eq!(got.as_deref(), Some(&b"over memory"[..]));
    for (n, t) in [(reg, t1), (full, t0)] {
        n.shutdown().await;
        t.await.unwrap();
    }
}
