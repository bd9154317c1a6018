//! Helpers shared by the sync tests and benchmarks (not part of the node's API).
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
