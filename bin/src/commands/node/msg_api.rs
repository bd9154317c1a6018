//! Store-and-forward admin routes of a visor (`--dmsg`): send a message, read the inbox, see the
//! status of sent messages. See docs/mailbox.md.
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dmsg::mailbox::agent::SendError;
use keys::PubKey;

use super::{NodeCtx, error};
use crate::api;
use crate::commands::item::error_chain;

/// Longest `wait_ms` a client may ask `GET /api/v1/msg/inbox` to wait for a change.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// The routes (present on every node; they answer 409 without a mailbox agent).
pub(super) fn router(ctx: Arc<NodeCtx>) -> Router {
    Router::new()
        .route(api::MSG_SEND, post(send))
        .route(api::MSG_INBOX, get(inbox))
        .route(api::MSG_SENT, get(sent))
        .with_state(ctx)
}

fn no_agent() -> Response {
    error(
        StatusCode::CONFLICT,
        "this node has no mailbox (a visor started with --dmsg has one)",
    )
}

async fn send(State(ctx): State<Arc<NodeCtx>>, Json(req): Json<api::MsgSendRequest>) -> Response {
    let Some(agent) = ctx.mailbox.as_deref() else {
        return no_agent();
    };
    let Ok(to) = PubKey::from_hex(req.to.trim()) else {
        return error(StatusCode::BAD_REQUEST, "to: not a public key");
    };
    let payload = match (req.text, req.payload_hex) {
        (Some(t), None) => t.into_bytes(),
        (None, Some(h)) => match hex::decode(h.trim()) {
            Ok(b) => b,
            Err(_) => return error(StatusCode::BAD_REQUEST, "payload_hex: not hex"),
        },
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "give exactly one of text and payload_hex",
            );
        }
    };
    match agent.send(to, &payload, req.ttl).await {
        Ok(out) => Json(out).into_response(),
        Err(e @ SendError::Envelope(_)) => error(StatusCode::BAD_REQUEST, error_chain(&e)),
        Err(e) => error(StatusCode::BAD_GATEWAY, error_chain(&e)),
    }
}

async fn inbox(State(ctx): State<Arc<NodeCtx>>, Query(q): Query<api::MsgInboxQuery>) -> Response {
    let Some(agent) = ctx.mailbox.as_deref() else {
        return no_agent();
    };
    let have = agent.inbox().len();
    if let Some(ms) = q.wait_ms
        && q.after.is_some_and(|n| n >= have)
    {
        // Long poll (`msg inbox --follow`): wait for a change, bounded.
        let wait = Duration::from_millis(ms).min(MAX_WAIT);
        let _ = tokio::time::timeout(wait, agent.changed()).await;
    }
    let list: Vec<api::MsgInboxEntry> = agent
        .inbox()
        .into_iter()
        .map(|e| api::MsgInboxEntry {
            text: e.text(),
            size: e.size(),
            id: e.id,
            from: e.from,
            sent_ms: e.sent_ms,
            received_ms: e.received_ms,
            expires_ms: e.expires_ms,
        })
        .collect();
    Json(list).into_response()
}

async fn sent(State(ctx): State<Arc<NodeCtx>>) -> Response {
    let Some(agent) = ctx.mailbox.as_deref() else {
        return no_agent();
    };
    let now = u64::try_from(dmsg::now_ns() / 1_000_000).unwrap_or(0);
    let list: Vec<api::MsgSentEntry> = agent
        .sent()
        .into_iter()
        .map(|s| api::MsgSentEntry {
            status: s.status(now).to_string(),
            id: s.id,
            to: s.to,
            servers: s.servers,
            sent_ms: s.sent_ms,
            expires_ms: s.expires_ms,
            delivered_ms: s.delivered_ms,
        })
        .collect();
    Json(list).into_response()
}
