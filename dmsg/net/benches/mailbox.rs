//! Store-and-forward benchmark on loopback (issue #15), one process: a DMSG server with a
//! mailbox (its log in a temp dir on this machine's disk, fsync'd), senders and a recipient as
//! DMSG clients. Prints:
//!
//! * messages stored per second through the protocol (1 KiB payloads, 64 concurrent streams,
//!   every receipt given after fsync; group commit batches them), next to the store alone
//!   (`MailboxStore::put` without the network) and the one-thread signature-check bound;
//! * delivery latency to an online (subscribed) recipient, p50/p99: from the sender's store call
//!   to the recipient holding the envelope;
//! * a backlog of 10,000 messages delivered (received and acknowledged) after the recipient
//!   subscribes.
//!
//! Targets: ≥ 10,000 stored msgs/s; online delivery p50 ≤ 2 ms; 10,000-message backlog ≤ 2 s.
//!
//! `cargo bench -p skymesh-dmsg --bench mailbox` (env `MAILBOX_BENCH_MSGS`, default 20000).
#![allow(clippy::unwrap_used)]

mod common;

use common::cpu_secs;
use std::sync::Arc;
use std::time::Instant;

use dmsg::disc_server::{DiscServer, DiscServerConfig};
use dmsg::mailbox::client::MailboxConn;
use dmsg::mailbox::store::{Limits, MailboxStore};
use dmsg::mailbox::{Draft, Envelope, MailboxService};
use dmsg::metrics::{MailboxMetrics, ServerMetrics};
use dmsg::{Client, ClientConfig, Server, ServerConfig};
use keys::SecKey;
use prometheus_client::registry::Registry;

fn now_ms() -> u64 {
    (dmsg::now_ns() / 1_000_000) as u64
}

fn envelopes(from: &SecKey, to: &SecKey, n: usize) -> Vec<Envelope> {
    let payload = vec![0x42u8; 1024];
    let eph = SecKey::generate();
    (0..n)
        .map(|_| {
            let d = Draft {
                to: to.pubkey(),
                payload: &payload,
                ttl_secs: 3600,
                flags: 0,
            };
            Envelope::seal(from, &d, rand::random(), now_ms(), &eph).unwrap()
        })
        .collect()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let n: usize = std::env::var("MAILBOX_BENCH_MSGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let limits = Limits {
        per_recipient_msgs: 1_000_000,
        per_recipient_bytes: 1 << 34,
        total_bytes: 1 << 34,
        per_sender_per_min: u32::MAX,
        ..Limits::default()
    };
    let tmp = std::env::current_dir()
        .unwrap()
        .join("target")
        .join("mailbox-bench");
    let _ = std::fs::remove_dir_all(&tmp);

    // The signature-check bound (one thread): the server verifies every envelope.
    let (a, b) = (SecKey::generate(), SecKey::generate());
    let sample = envelopes(&a, &b, 2000);
    let t0 = Instant::now();
    for e in &sample {
        Envelope::decode(e.as_bytes()).unwrap();
    }
    let verify_rate = sample.len() as f64 / t0.elapsed().as_secs_f64();

    // The store alone.
    let direct = MailboxStore::open(&tmp.join("direct"), limits, now_ms()).unwrap();
    let msgs = envelopes(&a, &b, n);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for chunk in msgs.chunks(n.div_ceil(64)) {
        let (s, chunk) = (direct.clone(), chunk.to_vec());
        tasks.push(tokio::spawn(async move {
            for e in chunk {
                s.put(e, now_ms()).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let store_rate = n as f64 / t0.elapsed().as_secs_f64();

    // A server with a mailbox.
    let mut dc = DiscServerConfig::new("127.0.0.1:0");
    dc.test_mode = true;
    let disc = DiscServer::spawn(dc).await.unwrap();
    let url = format!("http://{}", disc.local_addr());
    let ssk = SecKey::generate();
    let mut reg = Registry::default();
    let store = MailboxStore::open(&tmp.join("server"), limits, now_ms()).unwrap();
    let mb = MailboxService::new(store, ssk.clone(), MailboxMetrics::new(&mut reg));
    let mut sc = ServerConfig::new(ssk.clone(), "127.0.0.1:0");
    sc.discovery_url(&url);
    sc.max_sessions = 10_000;
    sc.mailbox = Some(mb.clone());
    let server = Server::spawn(sc, ServerMetrics::new(&mut reg))
        .await
        .unwrap();
    let sender_sk = SecKey::generate();
    let sender = Arc::new(Client::spawn(ClientConfig::new(sender_sk.clone(), &url)));
    sender.ready().await;

    // 1. Stored per second through the protocol.
    let bob = SecKey::generate();
    let msgs = envelopes(&sender_sk, &bob, n);
    let mut conns = Vec::new();
    for _ in 0..64 {
        conns.push(MailboxConn::open(&sender, server.pk()).await.unwrap());
    }
    let cpu0 = cpu_secs();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for (mut c, chunk) in conns.into_iter().zip(msgs.chunks(n.div_ceil(64))) {
        let chunk = chunk.to_vec();
        tasks.push(tokio::spawn(async move {
            for e in &chunk {
                c.store(e).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu_us = (cpu_secs() - cpu0) * 1e6 / n as f64;
    println!(
        "mailbox store, 1 KiB payloads, 64 streams, fsync'd receipts: {:.0} msgs/s ({n} in {secs:.2} s; {cpu_us:.0} CPU-µs per message for senders and server together, so {:.0} msgs/s on 2 fully used cores)   target ≥ 10,000/s",
        n as f64 / secs,
        2e6 / cpu_us
    );
    println!(
        "  bounds on this machine: store alone (no network) {store_rate:.0} msgs/s; one-thread envelope signature check {verify_rate:.0}/s"
    );

    // 2. The backlog: 10,000 messages queued for Carol (put straight into the server's store),
    // then Carol subscribes.
    let carol = SecKey::generate();
    let backlog = 10_000;
    for e in envelopes(&sender_sk, &carol, backlog) {
        mb.store().put(e, now_ms()).await.unwrap();
    }
    let carol_client = Client::spawn(ClientConfig::new(carol.clone(), &url));
    carol_client.ready().await;
    let t0 = Instant::now();
    let mut sub = MailboxConn::open(&carol_client, server.pk()).await.unwrap();
    sub.subscribe().await.unwrap();
    for _ in 0..backlog {
        let e = sub.next().await.unwrap().unwrap();
        sub.ack(e.id).await.unwrap();
    }
    println!(
        "backlog of {backlog} messages delivered (received + acknowledged): {:.2} s   target ≤ 2 s",
        t0.elapsed().as_secs_f64()
    );

    // 3. Online delivery latency (Carol stays subscribed).
    let mut send = MailboxConn::open(&sender, server.pk()).await.unwrap();
    let live = envelopes(&sender_sk, &carol, 500);
    let mut lat = Vec::with_capacity(live.len());
    for e in &live {
        let t0 = Instant::now();
        let (stored, got) = tokio::join!(send.store(e), sub.next());
        stored.unwrap();
        let got = got.unwrap().unwrap();
        lat.push(t0.elapsed().as_secs_f64());
        assert_eq!(got.id, e.id);
        sub.ack(got.id).await.unwrap();
    }
    lat.sort_by(f64::total_cmp);
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)] * 1e3;
    println!(
        "online delivery (store call → recipient holds it), {} messages: p50 {:.3} ms, p99 {:.3} ms   target p50 ≤ 2 ms",
        lat.len(),
        p(0.5),
        p(0.99)
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&tmp);
}
