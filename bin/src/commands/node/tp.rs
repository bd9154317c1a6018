//! Transport admin routes (`skymesh tp …` calls them) and the transport manager of a visor.
//!
//! | route | answer |
//! |---|---|
//! | `POST /api/v1/tp` | body `{"pk": PK}`: configures a DMSG transport to PK (idempotent); the transport as JSON. `400` bad key or own key, `409` at the transport limit, `503` not a visor with `--dmsg` |
//! | `GET /api/v1/tp` | `{"public_key": PK, "transports": [...]}`: this visor's transports with state, uptime, bytes, reconnects, last error |
//! | `DELETE /api/v1/tp/{id}` | removes the transport here and (over the link) at the peer; `{"removed": ID}`; `404` unknown |
//! | `GET /api/v1/tp/all` | every transport known, merged from `tp` items: local store on full nodes, else DHT lookups from this visor's key and peers, else the deployment's transport discovery (`GET /all-transports`) as fallback; `source` says which |
//!
//! The manager runs on visors (`--role regular --dmsg`): it listens on DMSG port
//! [`tp::defaults::TP_PORT`] and publishes the visor's `tp` item through the DHT node when the
//! list changes and before it expires (see `docs/transports.md`). The transports this visor
//! configured (`tp add`) are kept in `DATA/transports.json` and re-added at start.
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use dht::{Salt, SaltKind};
use dhtnode::Node;
use keys::PubKey;
use prometheus_client::registry::Registry;

use super::{NodeCtx, error};
use crate::api;

/// File (in the data directory) listing the peers of the transports this visor configured.
const SAVED: &str = "transports.json";

/// The peers of the transports this visor configured, saved in `DATA/transports.json`.
fn save(ctx: &NodeCtx, mgr: &::tp::Manager) {
    let peers: Vec<String> = mgr
        .list()
        .into_iter()
        .filter(|t| t.initiator)
        .map(|t| t.remote.to_hex())
        .collect();
    let path = ctx.data.join(SAVED);
    let tmp = path.with_extension("json.tmp");
    let r = serde_json::to_vec_pretty(&peers)
        .map_err(std::io::Error::other)
        .and_then(|b| std::fs::write(&tmp, b))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = r {
        tracing::warn!(path = %path.display(), error = %e, "saving transports failed");
    }
}

/// Re-adds the transports saved by [`save`] (a missing file means none).
fn restore(ctx: &NodeCtx, mgr: &::tp::Manager) -> anyhow::Result<()> {
    let path = ctx.data.join(SAVED);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    };
    let peers: Vec<String> = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a list of keys: {e}", path.display()))?;
    for p in peers {
        match PubKey::from_hex(&p)
            .map_err(|e| e.to_string())
            .and_then(|pk| mgr.add(pk).map_err(|e| e.to_string()))
        {
            Ok(_) => {}
            Err(e) => tracing::warn!(peer = %p, error = %e, "saved transport not restored"),
        }
    }
    Ok(())
}

/// Deployment service name of the transport discovery (HTTP fallback of `tp all`).
const TPD_SERVICE: &str = "transport_discovery";

/// Puts the visor's `tp` value through the DHT node (signed with the node key).
struct NodePublisher(Node);

impl ::tp::Publish for NodePublisher {
    async fn publish(&self, value: Vec<u8>) -> Result<(), ::tp::PublishFailed> {
        match self.0.put(Salt::of_kind(SaltKind::Tp), value).await {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "tp put failed");
                Err(::tp::PublishFailed)
            }
        }
    }
}

/// Reads `tp` items for `tp all` from the DHT node.
struct NodeItems {
    node: Node,
}

impl ::tp::ItemSource for NodeItems {
    async fn holds_dataset(&self) -> bool {
        // Full nodes; a regular node after a `dht sync` (of everything or of `tp`).
        self.node.holds_dataset(&Salt::of_kind(SaltKind::Tp)).await
    }

    async fn local_tp_items(&self) -> Vec<(PubKey, Vec<u8>)> {
        self.node
            .local_items(Salt::of_kind(SaltKind::Tp), dhtnode::MAX_LOCAL_LIST)
            .await
            .into_iter()
            .map(|i| (i.pk, i.value))
            .collect()
    }

    async fn lookup_tp(&self, pk: PubKey) -> Result<Option<Vec<u8>>, ::tp::LookupFailed> {
        match self.node.get(&pk, &Salt::of_kind(SaltKind::Tp)).await {
            Ok(item) => Ok(item.map(|i| i.value)),
            Err(_) => Err(::tp::LookupFailed),
        }
    }
}

/// Starts the transport manager on a visor running a DMSG client (`None` otherwise).
pub(super) fn start(
    ctx: &NodeCtx,
    registry: &mut Registry,
) -> anyhow::Result<Option<Arc<::tp::Manager>>> {
    let Some(c) = &ctx.dmsg_client else {
        return Ok(None);
    };
    let metrics = ::tp::Metrics::register(registry);
    let mgr = ::tp::Manager::spawn(
        ::tp::ManagerConfig::default(),
        c.client.clone(),
        NodePublisher(ctx.node.clone()),
        metrics,
    )
    .map_err(|e| anyhow::anyhow!("transports on DMSG port {}: {e}", ::tp::defaults::TP_PORT))?;
    tracing::info!(
        port = ::tp::defaults::TP_PORT,
        "transport manager listening"
    );
    restore(ctx, &mgr)?;
    Ok(Some(Arc::new(mgr)))
}

#[derive(Clone)]
struct TpState {
    ctx: Arc<NodeCtx>,
    mgr: Option<Arc<::tp::Manager>>,
}

/// The transport routes, state applied.
pub(super) fn router(ctx: Arc<NodeCtx>, mgr: Option<Arc<::tp::Manager>>) -> Router {
    Router::new()
        .route(api::TP, get(list).post(add))
        .route(api::TP_ALL, get(all))
        .route(api::TP_ONE, delete(remove))
        .with_state(TpState { ctx, mgr })
}

fn no_manager() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "transports run on visors: start the node with --role regular --dmsg",
    )
}

async fn add(State(st): State<TpState>, Json(body): Json<api::TpAddRequest>) -> Response {
    let Some(mgr) = &st.mgr else {
        return no_manager();
    };
    let pk = match PubKey::from_hex(body.pk.trim()) {
        Ok(pk) => pk,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("pk: {e}")),
    };
    match mgr.add(pk) {
        Ok(info) => {
            save(&st.ctx, mgr);
            Json(info).into_response()
        }
        Err(e @ ::tp::AddError::Full { .. }) => error(StatusCode::CONFLICT, e),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn list(State(st): State<TpState>) -> Response {
    let Some(mgr) = &st.mgr else {
        return no_manager();
    };
    Json(api::TpList {
        public_key: mgr.local_pk(),
        transports: mgr.list(),
    })
    .into_response()
}

async fn remove(State(st): State<TpState>, Path(id): Path<String>) -> Response {
    let Some(mgr) = &st.mgr else {
        return no_manager();
    };
    let id: ::tp::TransportId = match id.parse() {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match mgr.remove(&id) {
        Ok(()) => {
            save(&st.ctx, mgr);
            Json(api::TpRemoved {
                removed: id.to_string(),
            })
            .into_response()
        }
        Err(e) => error(StatusCode::NOT_FOUND, e),
    }
}

async fn all(State(st): State<TpState>) -> Response {
    let items = NodeItems {
        node: st.ctx.node.clone(),
    };
    let mut seeds = vec![st.ctx.sk.pubkey()];
    if let Some(mgr) = &st.mgr {
        seeds.extend(mgr.list().into_iter().map(|t| t.remote));
    }
    let tpd = st
        .ctx
        .deploy
        .services
        .get(TPD_SERVICE)
        .and_then(|s| s.http.clone());
    match ::tp::catalog::collect(&items, &seeds, tpd.as_deref()).await {
        Ok(c) => Json(c).into_response(),
        Err(e) => error(StatusCode::BAD_GATEWAY, e),
    }
}
