//! `skymesh tp all`: every transport known, from the best source available.
//!
//! Sources, in order ([`collect`]):
//! 1. **local store** — when the node holds the dataset (a full node, or a node that ran
//!    `dht sync`): every `tp` item it stores, no network traffic;
//! 2. **DHT lookups** — otherwise: the `tp` items of the seed keys (our key and our transports'
//!    peers), then of every edge they name, breadth first, at most
//!    [`DEFAULT_MAX_LOOKUPS`](crate::defaults::DEFAULT_MAX_LOOKUPS) keys;
//! 3. **HTTP** — only when the lookups found nothing and a transport-discovery URL is
//!    configured: the Go transport discovery's `GET /all-transports`.
//!
//! The merge ([`merge`]) is pure: entries from different publishers are matched by
//! `(id, edges, kind)`; a transport listed by both of its edges is *confirmed*, one listed by
//! one edge only is *claimed*. A publisher can only list transports it is an edge of (the item
//! rules check that), so nobody can confirm a transport for someone else.
//!
//! Sockets: the HTTP fallback (source 3) is the only socket this module opens (a reqwest client
//! with a deadline and a size cap); sources 1 and 2 go through the caller's [`ItemSource`].
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;

use dht::value::{TransportEntries, TransportState, ValueFormat};
use futures::StreamExt;
use keys::PubKey;
use serde::Serialize;

use crate::defaults::{
    DEFAULT_LOOKUP_CONCURRENCY, DEFAULT_MAX_HTTP_BYTES, DEFAULT_MAX_HTTP_ENTRIES,
    DEFAULT_MAX_LOOKUPS,
};
use crate::error::CatalogError;

/// Where a catalog came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// This node's own store (it holds the dataset).
    LocalStore,
    /// `tp` item lookups through the DHT.
    Dht,
    /// The configured transport discovery over HTTP (fallback).
    Http,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::LocalStore => "local-store",
            Source::Dht => "dht",
            Source::Http => "http",
        })
    }
}

/// One transport in a catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogEntry {
    /// Transport id.
    pub id: String,
    /// The two edges.
    pub edges: [PubKey; 2],
    /// Transport kind.
    pub kind: String,
    /// Label.
    pub label: String,
    /// Listed by both edges.
    pub confirmed: bool,
    /// Each edge that lists it, with the state it reports (`None`: a v1 list or HTTP).
    pub listed_by: BTreeMap<PubKey, Option<TransportState>>,
}

/// The answer of `tp all`.
#[derive(Debug, Clone, Serialize)]
pub struct Catalog {
    /// Where the transports came from.
    pub source: Source,
    /// `tp` items read (local store or lookups) or entries fetched (HTTP).
    pub items: usize,
    /// Items that did not decode or named transports of other keys (skipped).
    pub refused: usize,
    /// Why the HTTP fallback failed, when it was tried and failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_error: Option<String>,
    /// The transports, sorted by id.
    pub transports: Vec<CatalogEntry>,
}

/// Merges the `tp` lists of several publishers (pure; see the module doc).
pub fn merge(lists: impl IntoIterator<Item = (PubKey, TransportEntries)>) -> Vec<CatalogEntry> {
    type Key = (String, [PubKey; 2], String);
    let mut by: BTreeMap<Key, CatalogEntry> = BTreeMap::new();
    for (publisher, list) in lists {
        for t in list.transports {
            if !t.edges.contains(&publisher) {
                continue;
            }
            let mut edges = t.edges;
            edges.sort();
            let e = by
                .entry((t.id.clone(), edges, t.kind.clone()))
                .or_insert_with(|| CatalogEntry {
                    id: t.id,
                    edges,
                    kind: t.kind,
                    label: t.label,
                    confirmed: false,
                    listed_by: BTreeMap::new(),
                });
            e.listed_by.insert(publisher, t.state);
            e.confirmed = e.edges[0] != e.edges[1] && e.listed_by.len() == 2;
        }
    }
    by.into_values().collect()
}

/// Decodes a `tp` value of `publisher`; `None` when it is not a valid list for that key.
pub fn decode_list(publisher: &PubKey, value: &[u8]) -> Option<TransportEntries> {
    let list = TransportEntries::decode(value).ok()?;
    list.check_subject(publisher).ok()?;
    Some(list)
}

/// A lookup that failed (the DHT could not be asked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupFailed;

/// What [`collect`] needs from the DHT node (implemented in `bin` over `dhtnode::Node`).
pub trait ItemSource: Send + Sync {
    /// Whether this node holds the whole dataset (full node, or synced).
    fn holds_dataset(&self) -> impl Future<Output = bool> + Send;
    /// Every `tp` item in the local store as `(subject, value)`.
    fn local_tp_items(&self) -> impl Future<Output = Vec<(PubKey, Vec<u8>)>> + Send;
    /// The `tp` value of `pk` through the DHT; `Ok(None)` when none exists.
    fn lookup_tp(
        &self,
        pk: PubKey,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, LookupFailed>> + Send;
}

/// Builds the catalog: local store, else DHT lookups from `seeds`, else `tpd_url` (see the
/// module doc).
pub async fn collect<S: ItemSource>(
    src: &S,
    seeds: &[PubKey],
    tpd_url: Option<&str>,
) -> Result<Catalog, CatalogError> {
    if src.holds_dataset().await {
        let items = src.local_tp_items().await;
        let n = items.len();
        let lists: Vec<(PubKey, TransportEntries)> = items
            .into_iter()
            .filter_map(|(pk, v)| decode_list(&pk, &v).map(|l| (pk, l)))
            .collect();
        return Ok(Catalog {
            source: Source::LocalStore,
            items: n,
            refused: n - lists.len(),
            fallback_error: None,
            transports: merge(lists),
        });
    }
    let (lists, items, refused) = crawl(src, seeds, DEFAULT_MAX_LOOKUPS).await;
    let dht = Catalog {
        source: Source::Dht,
        items,
        refused,
        fallback_error: None,
        transports: merge(lists),
    };
    match tpd_url {
        Some(url) if dht.items == 0 => match fetch_http(url).await {
            Ok(c) => Ok(c),
            Err(e) => Ok(Catalog {
                fallback_error: Some(e.to_string()),
                ..dht
            }),
        },
        _ => Ok(dht),
    }
}

/// One lookup's answer.
type Lookup = Result<Option<Vec<u8>>, LookupFailed>;

/// Breadth-first `tp` lookups from `seeds` over the edges found, at most `max` keys.
async fn crawl<S: ItemSource>(
    src: &S,
    seeds: &[PubKey],
    max: usize,
) -> (Vec<(PubKey, TransportEntries)>, usize, usize) {
    let mut seen: BTreeSet<PubKey> = BTreeSet::new();
    let mut queue: VecDeque<PubKey> = VecDeque::new();
    for s in seeds {
        if seen.len() < max && seen.insert(*s) {
            queue.push_back(*s);
        }
    }
    let (mut lists, mut items, mut refused) = (Vec::new(), 0, 0);
    while !queue.is_empty() {
        let batch: Vec<PubKey> = queue.drain(..).collect();
        let answers: Vec<(PubKey, Lookup)> = futures::stream::iter(batch)
            .map(|pk| async move { (pk, src.lookup_tp(pk).await) })
            .buffer_unordered(DEFAULT_LOOKUP_CONCURRENCY)
            .collect()
            .await;
        for (pk, answer) in answers {
            let Ok(Some(value)) = answer else { continue };
            items += 1;
            let Some(list) = decode_list(&pk, &value) else {
                refused += 1;
                continue;
            };
            for t in &list.transports {
                for e in t.edges {
                    if seen.len() < max && seen.insert(e) {
                        queue.push_back(e);
                    }
                }
            }
            lists.push((pk, list));
        }
    }
    (lists, items, refused)
}

/// One entry of the Go transport discovery's `GET /all-transports`.
#[derive(serde::Deserialize)]
struct TpdEntry {
    t_id: String,
    edges: [String; 2],
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    label: String,
}

/// Fetches `GET {url}/all-transports` (body ≤ [`DEFAULT_MAX_HTTP_BYTES`], ≤
/// [`DEFAULT_MAX_HTTP_ENTRIES`] entries; entries with bad keys are counted as refused).
pub async fn fetch_http(url: &str) -> Result<Catalog, CatalogError> {
    let endpoint = format!("{}/all-transports", url.trim_end_matches('/'));
    let http = |source| CatalogError::Http {
        url: endpoint.clone(),
        source,
    };
    let client = reqwest::Client::builder()
        .timeout(crate::defaults::DEFAULT_HTTP_TIMEOUT)
        .build()
        .map_err(http)?;
    let mut res = client
        .get(&endpoint)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(http)?;
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(http)? {
        body.extend_from_slice(&chunk);
        if body.len() > DEFAULT_MAX_HTTP_BYTES {
            return Err(CatalogError::TooLarge {
                url: endpoint,
                max: DEFAULT_MAX_HTTP_BYTES,
            });
        }
    }
    let entries: Vec<TpdEntry> =
        serde_json::from_slice(&body).map_err(|source| CatalogError::Json {
            url: endpoint.clone(),
            source,
        })?;
    if entries.len() > DEFAULT_MAX_HTTP_ENTRIES {
        return Err(CatalogError::TooLarge {
            url: endpoint,
            max: DEFAULT_MAX_HTTP_ENTRIES,
        });
    }
    let n = entries.len();
    let mut transports: Vec<CatalogEntry> = entries
        .into_iter()
        .filter_map(|e| {
            let a = PubKey::from_hex(&e.edges[0]).ok()?;
            let b = PubKey::from_hex(&e.edges[1]).ok()?;
            let mut edges = [a, b];
            edges.sort();
            let short = |s: String| s.len() <= dht::value::MAX_NAME_LEN;
            (!e.t_id.is_empty() && short(e.t_id.clone()) && short(e.kind.clone())).then(|| {
                CatalogEntry {
                    id: e.t_id,
                    edges,
                    kind: e.kind,
                    label: e.label.chars().take(64).collect(),
                    confirmed: false,
                    listed_by: BTreeMap::new(),
                }
            })
        })
        .collect();
    transports.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Catalog {
        source: Source::Http,
        items: n,
        refused: n - transports.len(),
        fallback_error: None,
        transports,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use dht::value::TransportEntry;
    use keys::SecKey;

    fn pk(s: &str) -> PubKey {
        SecKey::from_seed(s.as_bytes()).pubkey()
    }

    fn entry(id: &str, a: PubKey, b: PubKey, s: TransportState) -> TransportEntry {
        let mut edges = [a, b];
        edges.sort();
        TransportEntry {
            id: id.into(),
            edges,
            kind: "dmsg".into(),
            label: String::new(),
            state: Some(s),
        }
    }

    #[test]
    fn confirmed_claimed_and_foreign_entries() {
        let (a, b, c, m) = (pk("a"), pk("b"), pk("c"), pk("m"));
        let up = TransportState::Up;
        let lists = vec![
            (
                a,
                TransportEntries::v2(vec![
                    entry("ab", a, b, up),
                    entry("ac", a, c, TransportState::Down),
                ]),
            ),
            (b, TransportEntries::v2(vec![entry("ab", a, b, up)])),
            // m claims a transport between a and b: not its own, ignored.
            (m, TransportEntries::v2(vec![entry("ab", a, b, up)])),
        ];
        let got = merge(lists);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id, "ab");
        assert!(got[0].confirmed);
        assert_eq!(got[0].listed_by.len(), 2);
        assert_eq!(got[1].id, "ac");
        assert!(!got[1].confirmed);
        assert_eq!(got[1].listed_by.get(&a), Some(&Some(TransportState::Down)));
    }

    #[test]
    fn decode_list_checks_the_subject() {
        let (a, b) = (pk("a"), pk("b"));
        let v = TransportEntries::v2(vec![entry("ab", a, b, TransportState::Up)]).encode();
        assert!(decode_list(&a, &v).is_some());
        assert!(decode_list(&pk("c"), &v).is_none());
        assert!(decode_list(&a, b"{").is_none());
    }

    struct Fake {
        full: bool,
        items: BTreeMap<PubKey, Vec<u8>>,
        fail: bool,
    }

    impl ItemSource for Fake {
        async fn holds_dataset(&self) -> bool {
            self.full
        }
        async fn local_tp_items(&self) -> Vec<(PubKey, Vec<u8>)> {
            self.items.iter().map(|(k, v)| (*k, v.clone())).collect()
        }
        async fn lookup_tp(&self, pk: PubKey) -> Result<Option<Vec<u8>>, LookupFailed> {
            if self.fail {
                return Err(LookupFailed);
            }
            Ok(self.items.get(&pk).cloned())
        }
    }

    #[tokio::test]
    async fn local_store_first_then_lookups_then_http() {
        let (a, b, c) = (pk("a"), pk("b"), pk("c"));
        let up = TransportState::Up;
        let mut items = BTreeMap::new();
        items.insert(
            a,
            TransportEntries::v2(vec![entry("ab", a, b, up)]).encode(),
        );
        items.insert(
            b,
            TransportEntries::v2(vec![entry("ab", a, b, up), entry("bc", b, c, up)]).encode(),
        );
        items.insert(c, b"garbage".to_vec());
        let full = Fake {
            full: true,
            items: items.clone(),
            fail: false,
        };
        let cat = collect(&full, &[], None).await.unwrap();
        assert_eq!(cat.source, Source::LocalStore);
        assert_eq!((cat.items, cat.refused, cat.transports.len()), (3, 1, 2));
        // A regular node crawls from its own key over the edges.
        let regular = Fake {
            full: false,
            items,
            fail: false,
        };
        let cat = collect(&regular, &[a], Some("http://127.0.0.1:1"))
            .await
            .unwrap();
        assert_eq!(cat.source, Source::Dht);
        assert_eq!((cat.items, cat.refused), (3, 1));
        assert!(cat.transports[0].confirmed);
        assert!(!cat.transports[1].confirmed);
        // Nothing in the DHT: the HTTP fallback is tried; its failure is reported.
        let empty = Fake {
            full: false,
            items: BTreeMap::new(),
            fail: true,
        };
        let cat = collect(&empty, &[a], Some("http://127.0.0.1:1"))
            .await
            .unwrap();
        assert_eq!(cat.source, Source::Dht);
        assert!(cat.fallback_error.is_some());
    }

    /// A one-shot HTTP server answering every request with `body`.
    async fn serve_once(status: &'static str, body: String) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut req = [0u8; 4096];
                let _ = s.read(&mut req).await;
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn http_fallback_reads_the_go_format() {
        let (a, b) = (pk("a"), pk("b"));
        let body = format!(
            r#"[{{"t_id":"5b0e5b6a-0000-4000-8000-000000000001","edges":["{}","{}"],"type":"stcpr","label":"user"}},{{"t_id":"x","edges":["zz","{}"],"type":"dmsg"}}]"#,
            b.to_hex(),
            a.to_hex(),
            a.to_hex()
        );
        let url = serve_once("200 OK", body).await;
        let empty = Fake {
            full: false,
            items: BTreeMap::new(),
            fail: false,
        };
        let cat = collect(&empty, &[a], Some(&url)).await.unwrap();
        assert_eq!(cat.source, Source::Http);
        assert_eq!((cat.items, cat.refused), (2, 1));
        let t = &cat.transports[0];
        assert_eq!((t.kind.as_str(), t.label.as_str()), ("stcpr", "user"));
        assert!(t.edges[0] < t.edges[1] && !t.confirmed);
        // Error statuses and bad JSON are errors of the fallback, reported in the catalog.
        for (status, body) in [
            ("500 Internal Server Error", "[]".to_string()),
            ("200 OK", "{".to_string()),
        ] {
            let url = serve_once(status, body).await;
            assert!(fetch_http(&url).await.is_err());
            let cat = collect(&empty, &[a], Some(&url)).await.unwrap();
            assert_eq!(cat.source, Source::Dht);
            assert!(cat.fallback_error.is_some());
        }
    }
}
