//! [`DhtEntries`]: the reference discovery API's storage on a full node, backed by the DHT.
//!
//! * GET entry → the verified `dmsg` item of the key (this node's store and the other full
//!   nodes, one round trip).
//! * POST entry → after the API's reference checks (signature, validation, sequence), the
//!   entry becomes a `dmsg` item put into the DHT: stored here, sent to the other full nodes
//!   and the k closest nodes. Every node re-verifies it against the owner's key.
//! * DELETE entry / deregister → a DHT item cannot be deleted by anyone but its owner's newer
//!   item, so the key is hidden *on this node* from listings and GETs until an entry with a
//!   higher sequence arrives (at most [`MAX_HIDDEN`] keys; the oldest is forgotten first).
//! * `available_servers` / `all_servers` / `entries` → the local store's `dmsg` items (a full
//!   node holds the whole dataset); server entries count while younger than
//!   [`crate::entries::SERVER_FRESHNESS`].
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use dht::value::DmsgEntry;
use dhtnode::Node;
use dmsg::disc_server::{BackendFuture, EntryBackend, StoreUnavailable};
use dmsg_proto::disc::Entry;
use keys::PubKey;

use crate::entries::{SERVER_FRESHNESS, dmsg_salt, entry_of, is_live_server};

/// Most keys hidden after a DELETE at once.
pub const MAX_HIDDEN: usize = 10_000;
/// Most `dmsg` items a listing scans.
pub const MAX_LISTED: usize = 100_000;

/// Discovery API storage on the DHT (see the module doc).
pub struct DhtEntries {
    node: Node,
    hidden: Mutex<Hidden>,
}

#[derive(Default)]
struct Hidden {
    seq: HashMap<PubKey, u64>,
    order: VecDeque<PubKey>,
}

impl Hidden {
    fn hide(&mut self, pk: PubKey, seq: u64) {
        if self.seq.insert(pk, seq).is_none() {
            self.order.push_back(pk);
        }
        while self.order.len() > MAX_HIDDEN {
            if let Some(old) = self.order.pop_front() {
                self.seq.remove(&old);
            }
        }
    }

    fn shows(&self, e: &Entry) -> bool {
        self.seq.get(&e.static_pk).is_none_or(|s| e.sequence > *s)
    }
}

impl DhtEntries {
    /// Storage through `node` (a full node).
    pub fn new(node: Node) -> DhtEntries {
        DhtEntries {
            node,
            hidden: Mutex::new(Hidden::default()),
        }
    }

    fn hidden(&self) -> std::sync::MutexGuard<'_, Hidden> {
        self.hidden.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry of `pk`: this full node's store and the other full nodes (one round trip;
    /// full nodes hold the whole dataset, so no iterative lookup is needed for a 404).
    async fn lookup(&self, pk: PubKey) -> Result<Option<Entry>, StoreUnavailable> {
        let out = self
            .node
            .get_with(&pk, &dmsg_salt(), dhtnode::ReadMode::FullNodesOnly)
            .await
            .map_err(|_| StoreUnavailable)?;
        Ok(out.item.as_ref().and_then(entry_of))
    }

    async fn local(&self) -> Vec<Entry> {
        let items = self.node.local_items(dmsg_salt(), MAX_LISTED).await;
        let hidden = self.hidden();
        items
            .iter()
            .filter_map(entry_of)
            .filter(|e| hidden.shows(e))
            .collect()
    }
}

impl EntryBackend for DhtEntries {
    fn get(&self, pk: PubKey) -> BackendFuture<'_, Option<(Entry, String)>> {
        Box::pin(async move {
            let e = self.lookup(pk).await?;
            Ok(e.filter(|e| self.hidden().shows(e)).map(|e| {
                let j = e.canonical_json();
                (e, j)
            }))
        })
    }

    fn put(&self, e: Entry, _new: bool, _ttl: Option<Duration>) -> BackendFuture<'_, ()> {
        // TTLs: server entries age out by timestamp (SERVER_FRESHNESS); items by the DHT TTL.
        Box::pin(async move {
            let item = DmsgEntry(e).to_item().map_err(|err| {
                tracing::debug!(error = %err, "posted entry is not a valid dmsg item");
                StoreUnavailable
            })?;
            self.node.put_item(item).await.map_err(|err| {
                tracing::warn!(error = %err, "storing a posted entry in the DHT failed");
                StoreUnavailable
            })?;
            Ok(())
        })
    }

    fn remove(&self, pks: Vec<PubKey>) -> BackendFuture<'_, ()> {
        Box::pin(async move {
            for pk in pks {
                let seq = self.lookup(pk).await?.map_or(u64::MAX, |e| e.sequence);
                self.hidden().hide(pk, seq);
            }
            Ok(())
        })
    }

    fn clients(&self) -> BackendFuture<'_, Vec<String>> {
        Box::pin(async move {
            Ok(self
                .local()
                .await
                .into_iter()
                .filter(|e| e.client.is_some())
                .map(|e| e.static_pk.to_hex())
                .collect())
        })
    }

    fn servers(&self) -> BackendFuture<'_, Vec<(Entry, String)>> {
        Box::pin(async move {
            let now = dmsg::now_ns();
            Ok(self
                .local()
                .await
                .into_iter()
                .filter(|e| is_live_server(e, now, SERVER_FRESHNESS))
                .map(|e| {
                    let j = e.canonical_json();
                    (e, j)
                })
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keys::SecKey;

    #[test]
    fn hidden_keys_reappear_with_a_newer_entry_and_are_bounded() {
        let mut h = Hidden::default();
        let pk = SecKey::from_seed(b"h").pubkey();
        let e = |seq| Entry::new_client(pk, seq, 0, Some(vec![]));
        assert!(h.shows(&e(1)));
        h.hide(pk, 5);
        assert!(!h.shows(&e(5)));
        assert!(h.shows(&e(6)));
        for i in 0..(MAX_HIDDEN as u64 + 10) {
            h.hide(SecKey::from_seed(&i.to_be_bytes()).pubkey(), 0);
        }
        assert_eq!(h.seq.len(), MAX_HIDDEN);
        assert_eq!(h.order.len(), MAX_HIDDEN);
        assert!(h.shows(&e(1)), "oldest hidden key forgotten first");
    }
}
