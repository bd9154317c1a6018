//! Transports over a real in-process DMSG network on loopback (discovery + server + visors):
//! add, confirmation by both ends, a peer dying, removal on both ends, a misbehaving peer.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dht::value::{TransportEntries, TransportState, ValueFormat};
use dmsg::disc_server::{DiscServer, DiscServerConfig};
use dmsg::metrics::ServerMetrics;
use dmsg::{Client, ClientConfig, Server, ServerConfig};
use keys::{PubKey, SecKey};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tp::catalog::merge;
use tp::wire::Frame;
use tp::{Manager, ManagerConfig, Metrics, Publish, PublishFailed, TransportId, TransportKind};

const T: Duration = Duration::from_secs(30);

/// What every visor published last: a stand-in for the DHT (the real one is in the e2e test).
#[derive(Clone, Default)]
struct Board(Arc<Mutex<HashMap<PubKey, (TransportEntries, usize)>>>);

struct Put {
    board: Board,
    pk: PubKey,
}

impl Publish for Put {
    async fn publish(&self, value: Vec<u8>) -> Result<(), PublishFailed> {
        let list = TransportEntries::decode(&value).map_err(|_| PublishFailed)?;
        list.check_subject(&self.pk).map_err(|_| PublishFailed)?;
        let mut b = self.board.0.lock().unwrap();
        let n = b.get(&self.pk).map_or(0, |(_, n)| *n);
        b.insert(self.pk, (list, n + 1));
        Ok(())
    }
}

impl Board {
    fn list(&self, pk: &PubKey) -> TransportEntries {
        self.0.lock().unwrap().get(pk).unwrap().0.clone()
    }
    fn puts(&self, pk: &PubKey) -> usize {
        self.0.lock().unwrap().get(pk).map_or(0, |(_, n)| *n)
    }
    fn state(&self, pk: &PubKey, id: &TransportId) -> Option<TransportState> {
        let l = self.0.lock().unwrap().get(pk).map(|(l, _)| l.clone())?;
        l.transports
            .iter()
            .find(|t| t.id == id.to_string())
            .and_then(|t| t.state)
    }
    fn all(&self) -> Vec<tp::CatalogEntry> {
        let b = self.0.lock().unwrap();
        merge(b.iter().map(|(k, (l, _))| (*k, l.clone())))
    }
}

struct Net {
    _disc: DiscServer,
    disc_url: String,
    _server: Server,
}

async fn net() -> Net {
    let mut dc = DiscServerConfig::new("127.0.0.1:0");
    dc.test_mode = true;
    let disc = DiscServer::spawn(dc).await.unwrap();
    let disc_url = format!("http://{}", disc.local_addr());
    let mut sc = ServerConfig::new(SecKey::generate(), "127.0.0.1:0");
    sc.discovery_url(&disc_url);
    let mut registry = Registry::default();
    let server = Server::spawn(sc, ServerMetrics::new(&mut registry))
        .await
        .unwrap();
    let dc = dmsg::DiscClient::new(&disc_url);
    tokio::time::timeout(T, async {
        while dc.entry(&server.pk()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    Net {
        _disc: disc,
        disc_url,
        _server: server,
    }
}

struct Visor {
    pk: PubKey,
    client: Arc<Client>,
    mgr: Manager,
    registry: Registry,
}

fn cfg() -> ManagerConfig {
    ManagerConfig {
        keepalive: Duration::from_millis(300),
        dead_after: Duration::from_secs(1),
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_millis(500),
        ..ManagerConfig::default()
    }
}

async fn visor(n: &Net, board: &Board) -> Visor {
    let client = Arc::new(Client::spawn(ClientConfig::new(
        SecKey::generate(),
        &n.disc_url,
    )));
    tokio::time::timeout(T, client.ready()).await.unwrap();
    let pk = client.pk();
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let put = Put {
        board: board.clone(),
        pk,
    };
    let mgr = Manager::spawn(cfg(), client.clone(), put, metrics).unwrap();
    Visor {
        pk,
        client,
        mgr,
        registry,
    }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < T, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

/// Waits until `v` has published transport `id` in `state`; on timeout, says what `v` lists
/// and what it published.
async fn until_published(
    board: &Board,
    v: &Visor,
    id: &TransportId,
    state: TransportState,
    what: &str,
) {
    let start = Instant::now();
    while board.state(&v.pk, id) != Some(state) {
        assert!(
            start.elapsed() < T,
            "timed out waiting for {what}: lists {:?}, published {:?}",
            v.mgr.list(),
            board.list(&v.pk)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn metrics_text(r: &Registry) -> String {
    let mut s = String::new();
    prometheus_client::encoding::text::encode(&mut s, r).unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_confirm_peer_death_and_removal() {
    let n = net().await;
    let board = Board::default();
    let a = visor(&n, &board).await;
    let b = visor(&n, &board).await;
    let c = visor(&n, &board).await;
    let ab = TransportId::derive(&a.pk, &b.pk, &TransportKind::dmsg());
    let ac = TransportId::derive(&a.pk, &c.pk, &TransportKind::dmsg());

    let t0 = Instant::now();
    assert_eq!(a.mgr.add(b.pk).unwrap().id, ab.to_string());
    assert_eq!(a.mgr.add(c.pk).unwrap().id, ac.to_string());
    // Idempotent.
    assert_eq!(a.mgr.add(b.pk).unwrap().id, ab.to_string());
    assert!(a.mgr.add(a.pk).is_err());
    until("both transports confirmed and up", || {
        let all = board.all();
        all.len() == 2
            && all.iter().all(|t| {
                t.confirmed && t.listed_by.values().all(|s| *s == Some(TransportState::Up))
            })
    })
    .await;
    let confirmed_in = t0.elapsed();
    println!("confirmed by both ends in {confirmed_in:?}");
    assert!(confirmed_in < Duration::from_secs(2), "{confirmed_in:?}");
    let ls = b.mgr.list();
    assert_eq!(ls.len(), 1);
    assert!(!ls[0].initiator);
    assert_eq!(ls[0].remote, a.pk);

    // Keepalives flow; no republish while nothing changes.
    let puts_a = board.puts(&a.pk);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(board.puts(&a.pk), puts_a, "no publish without a change");
    let info = a.mgr.list();
    assert!(
        info.iter()
            .all(|t| t.bytes_sent > 0 && t.bytes_received > 0)
    );
    let text = metrics_text(&a.registry);
    assert!(
        text.contains("skymesh_tp_transports{state=\"up\"} 2"),
        "{text}"
    );
    assert!(text.contains("skymesh_tp_bytes_total{direction=\"sent\"}"));

    // C dies: A marks A–C down and republishes.
    let t1 = Instant::now();
    drop(c);
    until_published(&board, &a, &ac, TransportState::Down, "A–C down").await;
    println!("peer death noticed and published in {:?}", t1.elapsed());
    assert_eq!(board.state(&a.pk, &ab), Some(TransportState::Up));
    let down = a
        .mgr
        .list()
        .into_iter()
        .find(|t| t.id == ac.to_string())
        .unwrap();
    assert!(down.last_error.is_some());

    // Removal on A removes it on B too.
    a.mgr.remove(&ab).unwrap();
    assert!(a.mgr.remove(&ab).is_err());
    until("A–B gone from both items", || {
        board.state(&a.pk, &ab).is_none() && board.list(&b.pk).transports.is_empty()
    })
    .await;
    assert!(b.mgr.list().is_empty());
    drop(b.client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_ends_adding_keep_one_link() {
    let n = net().await;
    let board = Board::default();
    let a = visor(&n, &board).await;
    let b = visor(&n, &board).await;
    // Both ends configure the same transport: one link, same id, confirmed.
    a.mgr.add(b.pk).unwrap();
    b.mgr.add(a.pk).unwrap();
    let id = TransportId::derive(&a.pk, &b.pk, &TransportKind::dmsg());
    until("confirmed", || {
        board.state(&a.pk, &id) == Some(TransportState::Up)
            && board.state(&b.pk, &id) == Some(TransportState::Up)
    })
    .await;
    // Stays up across several keepalive periods (no flapping between the two dials).
    let puts = (board.puts(&a.pk), board.puts(&b.pk));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!((board.puts(&a.pk), board.puts(&b.pk)), puts);
    assert!(a.mgr.list()[0].initiator && b.mgr.list()[0].initiator);
    assert_eq!(a.mgr.list()[0].state, TransportState::Up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_peers_are_closed_and_others_unaffected() {
    let n = net().await;
    let board = Board::default();
    let a = visor(&n, &board).await;
    let b = visor(&n, &board).await;
    a.mgr.add(b.pk).unwrap();
    let id = TransportId::derive(&a.pk, &b.pk, &TransportKind::dmsg());
    until("up", || board.state(&b.pk, &id) == Some(TransportState::Up)).await;

    let m = Client::spawn(ClientConfig::new(SecKey::generate(), &n.disc_url));
    tokio::time::timeout(T, m.ready()).await.unwrap();
    let port = tp::defaults::TP_PORT;
    // 1. A Hello for somebody else's transport id.
    let mut s = m.dial(b.pk, port).await.unwrap();
    s.write_all(
        &Frame::Hello {
            id,
            kind: TransportKind::dmsg(),
        }
        .to_bytes(),
    )
    .await
    .unwrap();
    let mut buf = [0u8; 16];
    let got = tokio::time::timeout(T, s.read(&mut buf)).await.unwrap();
    assert!(matches!(got, Ok(3)), "{got:?}: expected Close(BadHello)");
    assert_eq!(buf[..3], [3, 1, 3]);
    // 2. Garbage instead of a Hello.
    let mut s = m.dial(b.pk, port).await.unwrap();
    s.write_all(&[0xff; 8]).await.unwrap();
    let mut one = [0u8; 1];
    let got = tokio::time::timeout(T, s.read(&mut one)).await.unwrap();
    assert!(!matches!(got, Ok(1)), "{got:?}");
    // 3. A valid Hello, then garbage on the established link: only that link closes.
    let mid = TransportId::derive(&m.pk(), &b.pk, &TransportKind::dmsg());
    let mut s = m.dial(b.pk, port).await.unwrap();
    s.write_all(
        &Frame::Hello {
            id: mid,
            kind: TransportKind::dmsg(),
        }
        .to_bytes(),
    )
    .await
    .unwrap();
    until("accepted from M", || {
        board.state(&b.pk, &mid) == Some(TransportState::Up)
    })
    .await;
    s.write_all(&[0xee, 0xee, 0xee]).await.unwrap();
    until("M's link down", || {
        board.state(&b.pk, &mid) == Some(TransportState::Down)
    })
    .await;
    assert_eq!(board.state(&b.pk, &id), Some(TransportState::Up));
    assert_eq!(board.state(&a.pk, &id), Some(TransportState::Up));
    let text = metrics_text(&b.registry);
    assert!(
        text.contains("skymesh_tp_refused_total{reason=\"bad_hello\"} 2"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_limit_and_forgetting_dead_accepted_transports() {
    let n = net().await;
    let board = Board::default();
    let a = visor(&n, &board).await;
    let c = visor(&n, &board).await;
    // B holds at most one transport and forgets an accepted one after 1 s down.
    let client = Arc::new(Client::spawn(ClientConfig::new(
        SecKey::generate(),
        &n.disc_url,
    )));
    tokio::time::timeout(T, client.ready()).await.unwrap();
    let b_pk = client.pk();
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let b_cfg = ManagerConfig {
        max_transports: 1,
        accepted_down_ttl: Duration::from_secs(1),
        ..cfg()
    };
    let put = Put {
        board: board.clone(),
        pk: b_pk,
    };
    let b = Manager::spawn(b_cfg, client.clone(), put, metrics).unwrap();
    let ab = TransportId::derive(&a.pk, &b_pk, &TransportKind::dmsg());
    let cb = TransportId::derive(&c.pk, &b_pk, &TransportKind::dmsg());
    a.mgr.add(b_pk).unwrap();
    until("a–b up", || {
        board.state(&b_pk, &ab) == Some(TransportState::Up)
    })
    .await;
    // B is full: C's transport stays down with the refusal as its error; B lists only A–B.
    c.mgr.add(b_pk).unwrap();
    until("c refused", || {
        c.mgr.list()[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("Full"))
    })
    .await;
    until("c publishes c–b down", || {
        board.state(&c.pk, &cb) == Some(TransportState::Down)
    })
    .await;
    assert_eq!(b.list().len(), 1);
    assert!(metrics_text(&registry).contains("skymesh_tp_refused_total{reason=\"full\"}"));
    // A goes away without removing: B marks the accepted transport down, then forgets it.
    drop(a);
    // C's redial can take the freed slot right after the forget, so look for A–B being gone
    // rather than for an empty list.
    let ab_s = ab.to_string();
    until("b forgets a–b", || {
        !b.list().iter().any(|t| t.id == ab_s)
            && !board.list(&b_pk).transports.iter().any(|t| t.id == ab_s)
    })
    .await;
    // Room again: C's redial (backoff ≤ 500 ms here) gets in.
    until("c–b up", || {
        board.state(&b_pk, &cb) == Some(TransportState::Up)
            && board.state(&c.pk, &cb) == Some(TransportState::Up)
    })
    .await;
    assert_eq!(c.mgr.list()[0].reconnects, 0, "first time up");
    let held: Vec<String> = b.list().into_iter().map(|t| t.id).collect();
    assert_eq!(held, vec![cb.to_string()], "B holds only C–B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initiator_redials_after_the_peer_restarts() {
    let n = net().await;
    let board = Board::default();
    let a = visor(&n, &board).await;
    let b = visor(&n, &board).await;
    let id = TransportId::derive(&a.pk, &b.pk, &TransportKind::dmsg());
    a.mgr.add(b.pk).unwrap();
    until("up", || board.state(&b.pk, &id) == Some(TransportState::Up)).await;
    // B's manager restarts on the same DMSG client (its port is freed when the old one stops).
    let Visor { client, mgr, .. } = b;
    drop(mgr);
    until_published(&board, &a, &id, TransportState::Down, "a–b down on a").await;
    let mgr = loop {
        let put = Put {
            board: board.clone(),
            pk: client.pk(),
        };
        match Manager::spawn(cfg(), client.clone(), put, Metrics::default()) {
            Ok(m) => break m,
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    until("a–b up again on both ends", || {
        board.state(&a.pk, &id) == Some(TransportState::Up)
            && board.state(&client.pk(), &id) == Some(TransportState::Up)
    })
    .await;
    let t = &a.mgr.list()[0];
    assert_eq!(t.reconnects, 1);
    assert!(metrics_text(&a.registry).contains("skymesh_tp_reconnects_total 1"));
    assert!(!mgr.list()[0].initiator);
}
