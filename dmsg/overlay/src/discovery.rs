//! [`DhtDiscovery`]: the DMSG [`Discovery`] of a node that has a DHT node instead of a
//! discovery URL.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dht::value::{DmsgEntry, DmsgServerEntry, FORMAT_VERSION, ValueFormat};
use dhtnode::Node;
use dmsg::discovery::{DiscFuture, Discovery};
use dmsg::error::DiscError;
use dmsg_proto::disc::{ClientInfo, Entry};
use keys::{PubKey, SecKey};

use crate::entries::{SERVER_FRESHNESS, dmsg_salt, dmsg_server_salt, entry_of, is_live_server};
use crate::metrics::OverlayMetrics;
use crate::rank::{Candidate, Prober, rank};

/// Most full nodes asked for their server entries per [`Discovery::available_servers`] call.
pub const MAX_FULL_NODES_ASKED: usize = 32;
/// Most local `dmsg` items scanned for server entries per call.
pub const MAX_LOCAL_SCAN: usize = 20_000;

/// What a DMSG server publishes beyond its reference entry (its `dmsg-server` item).
#[derive(Debug, Clone)]
pub struct ServerExtras {
    /// Session limit.
    pub max_sessions: u32,
    /// Whether the server is a DHT bootstrap node (full nodes are).
    pub dht_bootstrap: bool,
    /// Protocols spoken.
    pub protocols: Vec<String>,
}

/// DMSG discovery through the DHT (see the crate doc).
pub struct DhtDiscovery {
    node: Node,
    extras: Option<ServerExtras>,
    prober: Prober,
    state: Mutex<Published>,
    freshness: Duration,
    metrics: OverlayMetrics,
    fallback: Vec<crate::deploy::DmsgServer>,
}

#[derive(Default)]
struct Published {
    /// Highest sequence published (or seen published) for our key.
    seq: Option<u64>,
    /// The last entry published, for [`Discovery::withdraw`] and republishing.
    last: Option<Entry>,
}

fn unavailable(reason: impl std::fmt::Display) -> DiscError {
    DiscError::Unavailable {
        source_name: "dht",
        reason: reason.to_string(),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl DhtDiscovery {
    /// Discovery through `node`. `extras`: set for a DMSG server, which then also publishes its
    /// `dmsg-server` item with every entry update.
    pub fn new(node: Node, extras: Option<ServerExtras>, metrics: OverlayMetrics) -> DhtDiscovery {
        DhtDiscovery {
            node,
            extras,
            prober: Prober::default(),
            state: Mutex::new(Published::default()),
            freshness: SERVER_FRESHNESS,
            metrics,
            fallback: Vec::new(),
        }
    }

    /// DMSG servers to try when the DHT knows none yet (the deployment's `dmsg_servers`).
    pub fn with_fallback(mut self, servers: Vec<crate::deploy::DmsgServer>) -> DhtDiscovery {
        self.fallback = servers;
        self
    }

    /// The metrics.
    pub fn metrics(&self) -> &OverlayMetrics {
        &self.metrics
    }

    /// The DHT node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The last entry this discovery published, if any.
    pub fn last_published(&self) -> Option<Entry> {
        self.lock().last.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Published> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn get_entry(&self, pk: PubKey) -> Result<Option<Entry>, DiscError> {
        let r = match self.node.get(&pk, &dmsg_salt()).await {
            Ok(Some(item)) => Ok(entry_of(&item)),
            Ok(None) => Ok(None),
            Err(e) => Err(unavailable(e)),
        };
        self.metrics.lookup(match &r {
            Ok(Some(_)) => "ok",
            Ok(None) => "not_found",
            Err(_) => "error",
        });
        r
    }

    async fn server_item(&self, pk: PubKey) -> Option<DmsgServerEntry> {
        let item = self.node.get(&pk, &dmsg_server_salt()).await.ok()??;
        DmsgServerEntry::decode(&item.value).ok()
    }

    /// Live server entries known locally and from the full nodes, with their `max_sessions`
    /// when their `dmsg-server` item is found.
    async fn candidates(&self) -> Vec<Candidate> {
        let now = dmsg::now_ns();
        let mut found: HashMap<PubKey, Entry> = HashMap::new();
        for item in self.node.local_items(dmsg_salt(), MAX_LOCAL_SCAN).await {
            if let Some(e) = entry_of(&item)
                && is_live_server(&e, now, self.freshness)
            {
                found.insert(e.static_pk, e);
            }
        }
        let full: Vec<PubKey> = self
            .node
            .find_full_nodes()
            .await
            .iter()
            .filter_map(|p| dhtnode::identity::pubkey(p).ok())
            .take(MAX_FULL_NODES_ASKED)
            .collect();
        // Asked even when a local copy exists: a server republishes when its free sessions
        // change, and clients choose by load, so the newest entry wins.
        let asks = full.iter().map(|pk| self.get_entry(*pk));
        for e in futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .flatten()
        {
            let newer = found
                .get(&e.static_pk)
                .is_none_or(|old| old.sequence < e.sequence);
            if newer && is_live_server(&e, now, self.freshness) {
                found.insert(e.static_pk, e);
            }
        }
        let keys: Vec<PubKey> = found.keys().copied().collect();
        let extras = futures::future::join_all(keys.iter().map(|pk| self.server_item(*pk))).await;
        keys.into_iter()
            .zip(extras)
            .filter_map(|(pk, x)| {
                let entry = found.remove(&pk)?;
                Some(Candidate {
                    entry,
                    max_sessions: x.filter(|x| x.pk == pk).map(|x| x.max_sessions),
                    rtt: None,
                })
            })
            .collect()
    }

    async fn publish(&self, sk: &SecKey, mut e: Entry) -> Result<Entry, DiscError> {
        let pk = sk.pubkey();
        let known = self.lock().seq;
        let floor = match known {
            Some(s) => s,
            // First publication: start above whatever the DHT holds for us (a restart).
            None => self
                .get_entry(pk)
                .await
                .ok()
                .flatten()
                .map_or(0, |old| old.sequence),
        };
        e.static_pk = pk;
        e.sequence = floor.saturating_add(1).max(now_ms()).max(e.sequence);
        e.timestamp = dmsg::now_ns();
        e.signature.clear();
        e.sign(sk);
        let item = DmsgEntry(e.clone()).to_item().map_err(unavailable)?;
        if let Err(err) = self.node.put_item(item).await {
            self.metrics.publish("error");
            return Err(unavailable(err));
        }
        self.metrics.publish("ok");
        {
            let mut st = self.lock();
            st.seq = Some(e.sequence);
            st.last = Some(e.clone());
        }
        if let (Some(x), Some(srv)) = (&self.extras, &e.server) {
            let value = DmsgServerEntry {
                v: FORMAT_VERSION,
                pk,
                address: srv.address.clone(),
                max_sessions: x.max_sessions,
                available_sessions: u32::try_from(srv.available_sessions.max(0))
                    .unwrap_or(u32::MAX)
                    .min(x.max_sessions),
                dht_bootstrap: x.dht_bootstrap,
                protocols: x.protocols.clone(),
            };
            if let Err(err) = self.node.put(dmsg_server_salt(), value.encode()).await {
                tracing::warn!(error = %err, "publishing the dmsg-server item failed");
            }
        }
        tracing::debug!(
            seq = e.sequence,
            server = e.server.is_some(),
            "dmsg entry published to the DHT"
        );
        Ok(e)
    }
}

impl Discovery for DhtDiscovery {
    fn entry(&self, pk: PubKey) -> DiscFuture<'_, Entry> {
        Box::pin(async move { self.get_entry(pk).await?.ok_or(DiscError::NotFound { pk }) })
    }

    fn all_servers(&self) -> DiscFuture<'_, Vec<Entry>> {
        // Every fresh server entry, full or not: the mesh's peer candidates.
        Box::pin(async move {
            Ok(self
                .candidates()
                .await
                .into_iter()
                .map(|c| c.entry)
                .collect())
        })
    }

    fn available_servers(&self) -> DiscFuture<'_, Vec<Entry>> {
        Box::pin(async move {
            let mut cands: Vec<Candidate> = self
                .candidates()
                .await
                .into_iter()
                .filter(|c| {
                    c.entry
                        .server
                        .as_ref()
                        .is_some_and(|s| s.available_sessions > 0)
                })
                .collect();
            if cands.is_empty() {
                // A fresh node whose DHT has not answered yet: the deployment's servers.
                let now = dmsg::now_ns();
                cands = self
                    .fallback
                    .iter()
                    .map(|s| Candidate {
                        entry: Entry::new_server(s.pk, 0, now, s.address.clone(), 1),
                        max_sessions: None,
                        rtt: None,
                    })
                    .collect();
            }
            self.prober.measure(&mut cands).await;
            self.metrics.servers_found.set(cands.len() as i64);
            self.metrics
                .servers_reachable
                .set(cands.iter().filter(|c| c.rtt.is_some()).count() as i64);
            // The probe is a reachability check: servers that answered come first (the client
            // orders them by its session pings and their load), the silent ones only when no
            // server answered.
            let ranked = rank(cands);
            let any = ranked.iter().any(|c| c.rtt.is_some());
            Ok(ranked
                .into_iter()
                .filter(|c| !any || c.rtt.is_some())
                .map(|c| c.entry)
                .collect())
        })
    }

    fn put_entry(&self, sk: SecKey, e: Entry) -> DiscFuture<'_, Entry> {
        Box::pin(async move { self.publish(&sk, e).await })
    }

    fn withdraw(&self, sk: SecKey) -> DiscFuture<'_, ()> {
        Box::pin(async move {
            let Some(mut e) = self.last_published() else {
                return Ok(());
            };
            if let Some(s) = e.server.as_mut() {
                s.available_sessions = 0;
            }
            if e.client.is_some() {
                e.client = Some(ClientInfo {
                    delegated_servers: Some(Vec::new()),
                });
            }
            self.publish(&sk, e).await.map(|_| ())
        })
    }

    fn describe(&self) -> String {
        "dht".to_string()
    }
}

/// Republishes the last published entry every `every` (with a new sequence and timestamp), so
/// an unchanged client entry never reaches the item TTL. Runs until the returned task is
/// aborted.
pub fn spawn_republisher(
    disc: Arc<DhtDiscovery>,
    sk: SecKey,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Some(e) = disc.last_published()
                && let Err(err) = disc.publish(&sk, e).await
            {
                tracing::warn!(error = %err, "republishing the dmsg entry failed");
            }
        }
    })
}
