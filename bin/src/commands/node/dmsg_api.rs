//! DMSG admin routes and, on full nodes running a DMSG server, the reference discovery API.
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use dmsg::disc_server::{DiscApi, DiscServerConfig, read_body};

use super::{NodeCtx, error};
use crate::api;
use crate::commands::item::error_chain;

/// Largest body `GET /api/v1/dmsg/fetch` returns.
const MAX_FETCH_BODY: usize = 16 * 1024 * 1024;
/// Deadline of one fetch (dial + transfer).
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// The routes: `/api/v1/dmsg`, `/api/v1/dmsg/fetch`, and `/dmsg-discovery/…` when the node runs
/// a DMSG server.
pub(super) fn router(ctx: Arc<NodeCtx>) -> Router {
    let mut r = Router::new()
        .route(api::DMSG, get(status))
        .route(api::DMSG_FETCH, get(fetch))
        .with_state(ctx.clone());
    if ctx.dmsg_server.is_some() {
        let mut cfg = DiscServerConfig::new("");
        cfg.test_mode = ctx.disc_test_mode;
        let backend = Arc::new(overlay::DhtEntries::new(ctx.node.clone()));
        let api = Arc::new(DiscApi::new(cfg, backend));
        r = r.merge(
            Router::new()
                .route(api::DMSG_DISCOVERY, any(discovery))
                .with_state(api),
        );
    }
    r
}

async fn discovery(State(api): State<Arc<DiscApi>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = read_body(body).await;
    api.respond(axum::http::Request::from_parts(parts, body))
        .await
        .into_response()
}

async fn status(State(ctx): State<Arc<NodeCtx>>) -> Response {
    let server = ctx.dmsg_server.as_ref().map(|s| {
        let m = s.server.metrics();
        api::DmsgServerStatus {
            pk: s.server.pk().to_hex(),
            address: s.server.local_addr().to_string(),
            mailbox: ctx.server_mailbox.as_ref().map(|mb| {
                let (st, limits) = (mb.store().stats(), mb.store().limits());
                api::MailboxStoreStatus {
                    messages: st.messages,
                    bytes: st.bytes,
                    recipients: st.recipients,
                    capacity_bytes: limits.total_bytes,
                }
            }),
            sessions: s.server.num_sessions(),
            streams_active: m.streams_active.get(),
            streams_total: m.streams.get(),
            bytes_relayed: m.bytes_relayed.get(),
            mesh: api::MeshStatus {
                enabled: s.server.mesh_enabled(),
                peers: s.server.mesh_peers(),
                forwarded_streams: m.mesh.forwarded_streams.get(),
                forwarded_bytes: m.mesh.forwarded_bytes.get(),
                relayed_in_streams: m.mesh.relayed_in.get(),
                misses: m.mesh.misses.get(),
            },
        }
    });
    let client = ctx.dmsg_client.as_ref().map(|c| api::DmsgClientStatus {
        pk: c.client.pk().to_hex(),
        servers: c.client.servers().iter().map(|k| k.to_hex()).collect(),
        server_rtt_ms: c
            .client
            .server_rtts()
            .into_iter()
            .filter_map(|(k, rtt)| Some((k.to_hex(), rtt?.as_secs_f64() * 1000.0)))
            .collect(),
        on_demand: c
            .client
            .session_info()
            .iter()
            .filter(|i| i.on_demand)
            .map(|i| i.server.to_hex())
            .collect(),
        session_streams: c
            .client
            .session_info()
            .iter()
            .map(|i| (i.server.to_hex(), i.streams))
            .collect(),
        ports_in_use: c.client.ports_in_use(),
        discovery: "dht".into(),
    });
    Json(api::DmsgStatus {
        role: ctx.role.as_str().into(),
        public_key: ctx.sk.pubkey().to_hex(),
        server,
        client,
        deployment: ctx.deploy.name.clone(),
    })
    .into_response()
}

async fn fetch(State(ctx): State<Arc<NodeCtx>>, Query(q): Query<api::FetchQuery>) -> Response {
    let Some(c) = &ctx.dmsg_client else {
        return error(
            StatusCode::CONFLICT,
            "this node runs no DMSG client (start it with --dmsg)",
        );
    };
    let mut out = Capped::default();
    let fut = dmsg::http::fetch(&c.client, &q.url, &mut out, |_, _| {});
    match tokio::time::timeout(FETCH_TIMEOUT, fut).await {
        Ok(Ok(_)) => (StatusCode::OK, Body::from(out.buf)).into_response(),
        Ok(Err(e)) => error(StatusCode::BAD_GATEWAY, error_chain(&e)),
        Err(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            format!("no answer within {FETCH_TIMEOUT:?}"),
        ),
    }
}

/// A body buffer refusing to grow past [`MAX_FETCH_BODY`].
#[derive(Default)]
struct Capped {
    buf: Vec<u8>,
}

impl tokio::io::AsyncWrite for Capped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.buf.len() + data.len() > MAX_FETCH_BODY {
            return Poll::Ready(Err(std::io::Error::other(format!(
                "body larger than {MAX_FETCH_BODY} bytes"
            ))));
        }
        self.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
