//! Admin endpoints of bulk sync (`skymesh dht sync` calls them):
//!
//! | route | answer |
//! |---|---|
//! | `POST /api/v1/sync` | body `{"from": MULTIADDR?, "salt": S?, "from_start": bool?, "page_limit": N?}`: starts a sync session (from `from`, else a known full node); `202 {"id": N}`; `400` bad body or address, `409` peer penalised or too many sessions, `503` no full node known |
//! | `GET /api/v1/sync/{id}` | the session's status (`state` = `running`, `done`, `failed`; `pages`, `items_received`, `accepted`, `unchanged`, `refused`, `bytes`, `elapsed_ms`, `cursor`, `remote_last_change`, `error`); `404` unknown |
//! | `DELETE /api/v1/sync/{id}` | cancels a running session (its cursor stays saved: the next sync resumes there); `{"cancelled": bool}` |
//!
//! Sessions run inside the node; the CLI polls the status (no long-lived HTTP request).
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dhtnode::{Node, SyncError, SyncRequest};

use super::error;
use crate::api;

/// The sync admin routes, state applied.
pub(super) fn router(node: Node) -> Router {
    Router::new()
        .route(api::SYNC, post(start))
        .route(api::SYNC_SESSION, get(status).delete(cancel))
        .with_state(node)
}

async fn start(State(node): State<Node>, Json(body): Json<api::SyncRequest>) -> Response {
    let mut req = SyncRequest::default();
    if let Some(from) = &body.from {
        match from.parse() {
            Ok(addr) => req.from = Some(addr),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("from: {e}")),
        }
    }
    if let Some(salt) = body.salt {
        match dht::Salt::new(salt.into_bytes()) {
            Ok(s) => req.salt = Some(s),
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        }
    }
    req.from_start = body.from_start;
    req.page_limit = body.page_limit;
    match node.sync(req).await {
        Ok(id) => (StatusCode::ACCEPTED, Json(api::SyncStarted { id })).into_response(),
        Err(e @ SyncError::NoFullNode) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e @ (SyncError::Penalised { .. } | SyncError::Busy { .. })) => {
            error(StatusCode::CONFLICT, e)
        }
        Err(e @ SyncError::Shutdown) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn status(State(node): State<Node>, Path(id): Path<u64>) -> Response {
    match node.sync_status(id).await {
        Some(s) => Json(s).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no sync session {id}")),
    }
}

async fn cancel(State(node): State<Node>, Path(id): Path<u64>) -> Response {
    let cancelled = node.sync_cancel(id).await;
    Json(api::SyncCancelled { cancelled }).into_response()
}
