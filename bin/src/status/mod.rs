//! The status page of `skymesh node`: `GET /` on the admin listener.
//!
//! The page (`index.html`, `status.js`, `status.css` next to this file) is compiled into the
//! binary with `include_str!`: no CDN, no framework, nothing fetched from elsewhere. Its script
//! reads the JSON admin API every 2 s (`/api/v1/info`, `/api/v1/dmsg`, `/api/v1/tp`,
//! `/api/v1/msg/inbox`, `/api/v1/msg/sent` and [`SYNC_LIST`]) and fills the tables with
//! `textContent` only. When the API needs the bearer token (`admin.rs`), the page asks for it
//! (or takes it from `#token=…` in the URL) and keeps it in the tab's `sessionStorage`.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | the page |
//! | `GET /status.js`, `GET /status.css` | its script and style |
//! | `GET /api/v1/status/sync` | the sync sessions the node still holds, newest last (a JSON list of `dhtnode::SyncStatus`) |
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use dhtnode::Node;
use tokio::sync::Mutex;

/// `GET`: the page.
pub(crate) const PAGE: &str = "/";
/// `GET`: its script.
pub(crate) const SCRIPT: &str = "/status.js";
/// `GET`: its style sheet.
pub(crate) const STYLE: &str = "/status.css";
/// `GET`: the sync sessions held.
pub(crate) const SYNC_LIST: &str = "/api/v1/status/sync";

const INDEX_HTML: &str = include_str!("index.html");
const STATUS_JS: &str = include_str!("status.js");
const STATUS_CSS: &str = include_str!("status.css");

/// How many session ids below the newest are looked up: the node keeps
/// `dhtnode::node::MAX_FINISHED_SESSIONS` finished sessions plus the running ones.
const SYNC_WINDOW: u64 =
    dhtnode::node::MAX_FINISHED_SESSIONS as u64 + dhtnode::node::MAX_ACTIVE_SESSIONS as u64;
/// Unknown ids in a row after which the search for newer sessions stops. Session ids are
/// given out in order and only the oldest finished ones are forgotten, so past the newest id
/// every id is unknown; the slack covers ids forgotten before the page first looked.
const SYNC_PROBE_MISSES: u64 = 4;

/// The page's state: the node, and the newest sync session id seen so far.
struct StatusState {
    node: Node,
    newest_sync: Mutex<u64>,
}

/// The routes of the module doc.
pub(crate) fn router(node: Node) -> Router {
    let st = Arc::new(StatusState {
        node,
        newest_sync: Mutex::new(0),
    });
    Router::new()
        .route(
            PAGE,
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            SCRIPT,
            get(|| async { asset("text/javascript; charset=utf-8", STATUS_JS) }),
        )
        .route(
            STYLE,
            get(|| async { asset("text/css; charset=utf-8", STATUS_CSS) }),
        )
        .route(SYNC_LIST, get(sync_sessions))
        .with_state(st)
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            // The page loads only its own files and talks only to its own origin.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:",
            ),
        ],
        body,
    )
}

/// Sync session ids are not listed by the node, only looked up: find the newest by probing
/// past the last one seen, then answer every session still held in the window below it.
async fn sync_sessions(State(st): State<Arc<StatusState>>) -> impl IntoResponse {
    let mut newest = st.newest_sync.lock().await;
    let mut id = *newest + 1;
    let mut misses = 0;
    while misses < SYNC_PROBE_MISSES {
        if st.node.sync_status(id).await.is_some() {
            *newest = id;
            misses = 0;
        } else {
            misses += 1;
        }
        id += 1;
    }
    let top = *newest;
    drop(newest);
    let mut list = Vec::new();
    for id in top.saturating_sub(SYNC_WINDOW).max(1)..=top {
        if let Some(s) = st.node.sync_status(id).await {
            list.push(s);
        }
    }
    Json(list)
}
