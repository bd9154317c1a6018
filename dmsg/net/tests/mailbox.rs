//! Store-and-forward (issue #15), in-process over loopback sockets: the durable store across
//! restarts and torn writes, its bounds, and the protocol between a sender, a mailbox server and
//! a recipient that was never online.
#![allow(clippy::unwrap_used)]

mod common;

use common::{T, metrics_text as metrics, until};

use std::time::Duration;

use dmsg::disc_server::{DiscServer, DiscServerConfig};
use dmsg::mailbox::client::{MailboxConn, MailboxError};
use dmsg::mailbox::store::{Limits, MailboxStore, Put};
use dmsg::mailbox::{Draft, Envelope, MailboxService, Reason};
use dmsg::metrics::{MailboxMetrics, ServerMetrics};
use dmsg::{Client, ClientConfig, Server, ServerConfig};
use keys::SecKey;
use prometheus_client::registry::Registry;

const NOW: u64 = 1_800_000_000_000;

fn env(from: &SecKey, to: &SecKey, text: &[u8], ttl: u32, now: u64) -> Envelope {
    let d = Draft {
        to: to.pubkey(),
        payload: text,
        ttl_secs: ttl,
        flags: 0,
    };
    Envelope::seal(from, &d, rand::random(), now, &SecKey::generate()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_survives_restarts_and_torn_tails() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (SecKey::generate(), SecKey::generate());
    let msgs: Vec<Envelope> = (0..3).map(|i| env(&a, &b, &[i; 10], 3600, NOW)).collect();
    {
        let s = MailboxStore::open(dir.path(), Limits::default(), NOW).unwrap();
        for m in &msgs {
            assert_eq!(s.put(m.clone(), NOW).await, Ok(Put::Stored));
        }
        assert_eq!(s.put(msgs[0].clone(), NOW).await, Ok(Put::Duplicate));
        assert!(s.ack(b.pubkey(), msgs[0].id, NOW).await);
    }
    // "kill -9": nothing but the file is left. A torn record at the end is cut off.
    let log = dir.path().join("mailbox.log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(&[0, 0, 1, 0, 1, 2, 3]);
    std::fs::write(&log, &bytes).unwrap();
    let s = MailboxStore::open(dir.path(), Limits::default(), NOW).unwrap();
    let q = s.queued(&b.pubkey(), NOW);
    assert_eq!(
        q,
        msgs[1..].to_vec(),
        "acknowledged gone, the rest intact, in order"
    );
    // The acknowledged id is remembered: a replay is refused.
    assert_eq!(s.put(msgs[0].clone(), NOW).await, Err(Reason::Replay));
    // Expiry.
    assert_eq!(s.purge(NOW + 3600 * 1000), 2);
    assert!(s.queued(&b.pubkey(), NOW).is_empty());
    let late = env(&a, &b, b"late", 60, NOW);
    assert_eq!(s.put(late, NOW + 61_000).await, Err(Reason::Expired));
    let future = env(&a, &b, b"future", 60, NOW + 3_600_000);
    assert_eq!(s.put(future, NOW).await, Err(Reason::Expired));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_refuse_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let lim = Limits {
        per_recipient_msgs: 3,
        per_recipient_bytes: 1 << 20,
        total_bytes: 2000,
        per_sender_per_min: 4,
        ..Limits::default()
    };
    let s = MailboxStore::open(dir.path(), lim, NOW).unwrap();
    let (a, b, c) = (SecKey::generate(), SecKey::generate(), SecKey::generate());
    for _ in 0..3 {
        assert_eq!(
            s.put(env(&a, &b, b"x", 60, NOW), NOW).await,
            Ok(Put::Stored)
        );
    }
    assert_eq!(
        s.put(env(&a, &b, b"x", 60, NOW), NOW).await,
        Err(Reason::RecipientQuota)
    );
    assert_eq!(
        s.put(env(&a, &c, b"x", 60, NOW), NOW).await,
        Ok(Put::Stored)
    );
    assert_eq!(
        s.put(env(&a, &c, b"x", 60, NOW), NOW).await,
        Err(Reason::SenderRate)
    );
    let d = SecKey::generate();
    assert_eq!(
        s.put(env(&d, &c, &[0; 1500], 60, NOW), NOW).await,
        Err(Reason::ServerFull)
    );
    assert_eq!(s.stats().messages, 4);
}

async fn mailbox_server(dir: &std::path::Path, disc: &str) -> (Server, Registry) {
    mailbox_server_with(dir, disc, Limits::default()).await
}

async fn mailbox_server_with(
    dir: &std::path::Path,
    disc: &str,
    limits: Limits,
) -> (Server, Registry) {
    let sk = SecKey::generate();
    let mut reg = Registry::default();
    let store = MailboxStore::open(dir, limits, dmsg_now_ms()).unwrap();
    let mb = MailboxService::new(store, sk.clone(), MailboxMetrics::new(&mut reg));
    let mut sc = ServerConfig::new(sk, "127.0.0.1:0");
    sc.discovery_url(disc);
    sc.mailbox = Some(mb);
    let server = Server::spawn(sc, ServerMetrics::new(&mut reg))
        .await
        .unwrap();
    (server, reg)
}

fn dmsg_now_ms() -> u64 {
    (dmsg::now_ns() / 1_000_000) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_wait_for_a_recipient_that_was_never_online() {
    let mut dc = DiscServerConfig::new("127.0.0.1:0");
    dc.test_mode = true;
    let disc = DiscServer::spawn(dc).await.unwrap();
    let url = format!("http://{}", disc.local_addr());
    let dir = tempfile::tempdir().unwrap();
    let (server, reg) = mailbox_server(dir.path(), &url).await;
    let sender_sk = SecKey::generate();
    let sender = Client::spawn(ClientConfig::new(sender_sk.clone(), &url));
    tokio::time::timeout(T, sender.ready()).await.unwrap();
    let bob = SecKey::generate(); // never online so far
    let mut conn = MailboxConn::open(&sender, server.pk()).await.unwrap();
    let mut sent = Vec::new();
    for i in 0..3u8 {
        let e = env(
            &sender_sk,
            &bob,
            format!("hello {i}").as_bytes(),
            3600,
            dmsg_now_ms(),
        );
        let r = conn.store(&e).await.unwrap();
        assert_eq!((r.id, r.server), (e.id, server.pk()));
        r.verify().unwrap();
        sent.push(e);
    }
    // A forged envelope (altered after signing) is refused; the stream keeps serving.
    let mut forged = sent[0].as_bytes().to_vec();
    forged[140] ^= 1;
    let r = conn.store_bytes(&forged, sent[0].id).await;
    assert!(
        matches!(
            r,
            Err(MailboxError::Refused {
                reason: Reason::Invalid,
                ..
            })
        ),
        "{r:?}"
    );
    // A retry of a stored message is receipted again (idempotent).
    assert!(
        conn.store(&sent[1]).await.is_ok(),
        "duplicate still receipted"
    );
    // Bob comes online and subscribes: all three, in order; then he acknowledges them.
    let bob_client = Client::spawn(ClientConfig::new(bob.clone(), &url));
    tokio::time::timeout(T, bob_client.ready()).await.unwrap();
    let mut sub = MailboxConn::open(&bob_client, server.pk()).await.unwrap();
    sub.subscribe().await.unwrap();
    for want in &sent {
        let got = tokio::time::timeout(T, sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got.id, want.id);
        assert_eq!(got.open(&bob).unwrap(), want.open(&bob).unwrap());
        sub.ack(got.id).await.unwrap();
    }
    // Online now: a new message is pushed at once.
    let t0 = std::time::Instant::now();
    let live = env(&sender_sk, &bob, b"live", 60, dmsg_now_ms());
    conn.store(&live).await.unwrap();
    let got = tokio::time::timeout(T, sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got.id, live.id);
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    sub.ack(got.id).await.unwrap();
    // Replays of acknowledged ids are refused.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = conn.store(&sent[0]).await;
    assert!(
        matches!(
            r,
            Err(MailboxError::Refused {
                reason: Reason::Replay,
                ..
            })
        ),
        "{r:?}"
    );
    // Someone else cannot read Bob's queue: a subscription is always for the stream's own key.
    let mut nosy = MailboxConn::open(&sender, server.pk()).await.unwrap();
    nosy.subscribe().await.unwrap();
    let r = tokio::time::timeout(Duration::from_millis(300), nosy.next()).await;
    assert!(
        r.is_err(),
        "the sender's own queue is empty: nothing arrives"
    );
    let m = metrics(&reg);
    assert!(m.contains("skymesh_mailbox_stored_total 4"), "{m}");
    assert!(m.contains("skymesh_mailbox_delivered_total 4"), "{m}");
    assert!(m.contains("reason=\"replay\""), "{m}");
    assert!(m.contains("reason=\"invalid\""), "{m}");
    assert!(m.contains("skymesh_mailbox_queued_messages 0"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_deliver_exactly_once_through_two_mailbox_servers() {
    use dmsg::mailbox::MailboxAgent;
    let mut dc = DiscServerConfig::new("127.0.0.1:0");
    dc.test_mode = true;
    let disc = DiscServer::spawn(dc).await.unwrap();
    let url = format!("http://{}", disc.local_addr());
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let (s1, _r1) = mailbox_server(d1.path(), &url).await;
    let (_s2, _r2) = mailbox_server(d2.path(), &url).await;
    let dc = dmsg::DiscClient::new(&url);
    for s in [&s1, &_s2] {
        while dc.entry(&s.pk()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let disc_arc: std::sync::Arc<dyn dmsg::Discovery> =
        std::sync::Arc::new(dmsg::DiscClient::new(&url));
    let agent = |sk: SecKey, dir: &std::path::Path| {
        let c = std::sync::Arc::new(Client::spawn(ClientConfig::new(sk.clone(), &url)));
        MailboxAgent::spawn(sk, c, disc_arc.clone(), dir).unwrap()
    };
    let alice_dir = tempfile::tempdir().unwrap();
    let alice_sk = SecKey::generate();
    let alice = agent(alice_sk.clone(), alice_dir.path());
    let bob = SecKey::generate();
    let mut ids = Vec::new();
    for i in 0..3 {
        let out = alice
            .send(bob.pubkey(), format!("msg {i}").as_bytes(), None)
            .await
            .unwrap();
        assert_eq!(out.stored_on.len(), 2, "{out:?}");
        ids.push(out.id);
    }
    assert!(alice.sent().iter().all(|s| s.status(0) == "stored"));
    // Bob comes online for the first time: three messages, once each (two servers sent them).
    let bob_dir = tempfile::tempdir().unwrap();
    let bob_agent = agent(bob.clone(), bob_dir.path());
    until("bob's inbox holds 3", || bob_agent.inbox().len() == 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let inbox = bob_agent.inbox();
    assert_eq!(inbox.len(), 3, "duplicates: {inbox:?}");
    let got: Vec<String> = inbox.iter().map(|e| e.id.clone()).collect();
    for id in &ids {
        assert!(got.contains(id));
    }
    assert_eq!(inbox[0].from, alice_sk.pubkey().to_hex());
    assert!(inbox.iter().any(|e| e.text().as_deref() == Some("msg 1")));
    // Alice learns they were delivered.
    until("alice sees 3 delivered", || {
        alice
            .sent()
            .iter()
            .filter(|s| s.delivered_ms.is_some())
            .count()
            == 3
    })
    .await;
    // Bob restarts: the inbox is read back, nothing arrives twice.
    drop(bob_agent);
    let bob_agent = agent(bob.clone(), bob_dir.path());
    assert_eq!(bob_agent.inbox().len(), 3);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(bob_agent.inbox().len(), 3);
    // The servers hold nothing any more (Bob's messages and Alice's receipts acknowledged).
    // These servers are not meshed, so a subscription reaches the server Bob holds no session
    // with only after MESH_TRIES failed mesh dials (≈ 8 s with backoff): wait for it.
    for r in [&_r1, &_r2] {
        until("both servers' queues are empty", || {
            metrics(r).contains("skymesh_mailbox_queued_messages 0")
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_refuses_and_counts_quota_expiry_and_bad_envelopes() {
    let mut dc = DiscServerConfig::new("127.0.0.1:0");
    dc.test_mode = true;
    let disc = DiscServer::spawn(dc).await.unwrap();
    let url = format!("http://{}", disc.local_addr());
    let dir = tempfile::tempdir().unwrap();
    let lim = Limits {
        per_recipient_msgs: 1,
        ..Limits::default()
    };
    let (server, reg) = mailbox_server_with(dir.path(), &url, lim).await;
    let sk = SecKey::generate();
    let c = Client::spawn(ClientConfig::new(sk.clone(), &url));
    tokio::time::timeout(T, c.ready()).await.unwrap();
    let mut conn = MailboxConn::open(&c, server.pk()).await.unwrap();
    let bob = SecKey::generate();
    conn.store(&env(&sk, &bob, b"1", 60, dmsg_now_ms()))
        .await
        .unwrap();
    let refused = |r: Result<_, MailboxError>| match r {
        Err(MailboxError::Refused { reason, .. }) => reason,
        other => panic!("not refused: {other:?}"),
    };
    // Quota: one message per recipient here.
    let r = conn.store(&env(&sk, &bob, b"2", 60, dmsg_now_ms())).await;
    assert_eq!(refused(r), Reason::RecipientQuota);
    // Expired at arrival (created two minutes ago with a one-minute TTL).
    let carol = SecKey::generate();
    let old = env(&sk, &carol, b"old", 60, dmsg_now_ms() - 120_000);
    assert_eq!(refused(conn.store(&old).await), Reason::Expired);
    // Garbage in a Store frame.
    assert_eq!(
        refused(conn.store_bytes(&[0x55; 300], [7; 16]).await),
        Reason::Invalid
    );
    // The stream kept serving throughout.
    conn.store(&env(&sk, &carol, b"ok", 60, dmsg_now_ms()))
        .await
        .unwrap();
    let m = metrics(&reg);
    for reason in ["recipient_quota", "expired", "invalid"] {
        assert!(m.contains(&format!("reason=\"{reason}\"")), "{reason}: {m}");
    }
    assert!(m.contains("skymesh_mailbox_stored_total 2"), "{m}");
}
