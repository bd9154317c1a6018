//! Test support shared by the integration tests (`tests/network.rs`, `tests/sync.rs`) and the
//! benchmarks: signed items, loopback configurations and network fixtures (not part of the
//! node's API).
use std::time::Duration;

use dht::{Item, Salt};
use keys::SecKey;

use crate::{Config, Node, Reachability, Role};

/// Items per key in [`signed_items`]: under the store's default per-key quota (64).
pub const ITEMS_PER_KEY: usize = 60;

/// `n` distinct signed owner items, opaque values of ~`value_len` bytes, seq `seq`; keys derived
/// from `tag` (same tag and n → same items). Signed on all cores.
pub fn signed_items(tag: &str, n: usize, seq: u64, value_len: usize) -> Vec<Item> {
    let threads = std::thread::available_parallelism().map_or(2, |t| t.get());
    let keys = n.div_ceil(ITEMS_PER_KEY);
    let per_thread = keys.div_ceil(threads).max(1);
    let mut out: Vec<Vec<Item>> = Vec::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut v = Vec::new();
                    for k in t * per_thread..((t + 1) * per_thread).min(keys) {
                        let sk = SecKey::from_seed(format!("{tag}/{k}").as_bytes());
                        for j in 0..ITEMS_PER_KEY {
                            if k * ITEMS_PER_KEY + j >= n {
                                break;
                            }
                            let salt = Salt::new(format!("s{j}").into_bytes()).unwrap_or_default();
                            let mut value = format!("{tag} {k} {j} ").into_bytes();
                            value.resize(value_len.max(value.len()), b'.');
                            if let Ok(item) = Item::sign(&sk, salt, seq, value) {
                                v.push(item);
                            }
                        }
                    }
                    v
                })
            })
            .collect();
        for h in handles {
            out.push(h.join().unwrap_or_default());
        }
    });
    out.into_iter().flatten().collect()
}

/// A node configuration for loopback tests: server mode, fast adverts, no periodic repair pull
/// unless asked.
pub fn config(role: Role, bootstrap: Vec<libp2p::Multiaddr>) -> Config {
    let mut cfg = Config::new(SecKey::generate(), role);
    cfg.reachability = Reachability::Public;
    cfg.bootstrap = bootstrap;
    cfg.advert_interval = Duration::from_secs(1);
    cfg.bootstrap_retry = Duration::from_secs(1);
    cfg.sync_interval = Duration::from_secs(3600);
    cfg
}

/// Loads `items` into `node`'s own store in chunks (acceptance rules apply); returns how many
/// were accepted.
pub async fn load(node: &Node, items: Vec<Item>) -> u64 {
    let mut accepted = 0;
    let mut it = items.into_iter().peekable();
    while it.peek().is_some() {
        let chunk: Vec<Item> = it.by_ref().take(2000).collect();
        if let Some(r) = node.store_local(chunk).await {
            accepted += u64::from(r.accepted);
        }
    }
    accepted
}

// ---- network fixtures (used by `tests/network.rs` and `tests/sync.rs`) ----------------------

/// How a test waits for the network: give up after `deadline`, look again every `every`.
#[derive(Debug, Clone, Copy)]
pub struct Poll {
    /// Panic with "timed out waiting for …" after this long.
    pub deadline: Duration,
    /// Pause between two looks.
    pub every: Duration,
}

/// Polls `f` until it is true; panics after `poll.deadline`, naming `what`.
pub async fn wait_until<F, Fut>(poll: Poll, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_for(poll, what, || {
        let fut = f();
        async move { fut.await.then_some(()) }
    })
    .await
}

/// Polls `f` until it returns `Some`; panics after `poll.deadline`, naming `what`.
pub async fn wait_for<T, F, Fut>(poll: Poll, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < poll.deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(poll.every).await;
    }
}

/// A loopback node configuration with key `sk`, `role` and `reach`: faster adverts and
/// bootstrap retries than production (tests poll, they never assert on timing).
pub fn node_config(
    sk: &SecKey,
    role: Role,
    reach: Reachability,
    bootstrap: Vec<libp2p::Multiaddr>,
) -> Config {
    let mut cfg = Config::new(sk.clone(), role);
    cfg.reachability = reach;
    cfg.bootstrap = bootstrap;
    cfg.advert_interval = Duration::from_secs(3);
    cfg.bootstrap_retry = Duration::from_secs(2);
    cfg
}

/// The item `node` holds itself at `(pk, salt)`.
pub async fn local(node: &Node, pk: &keys::PubKey, salt: &Salt) -> Option<Item> {
    node.get_with(pk, salt, crate::ReadMode::LocalOnly)
        .await
        .expect("the node is running")
        .item
}

/// Waits until sync session `id` of `node` is no longer running; its final status.
pub async fn wait_sync_done(poll: Poll, node: &Node, id: u64) -> crate::SyncStatus {
    wait_for(poll, "the sync session to end", || async {
        let s = node.sync_status(id).await.expect("a known sync session");
        (s.state != "running").then_some(s)
    })
    .await
}

/// A sync request pulling from `node`'s first listen address.
pub fn sync_from(node: &Node) -> crate::SyncRequest {
    crate::SyncRequest {
        from: node.listen_addrs().first().cloned(),
        ..Default::default()
    }
}
