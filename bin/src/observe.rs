//! `/health` and `/metrics` for the long-running commands that have no admin API of their own:
//! `skymesh dmsg discovery --http ADDR` and `skymesh dmsg http --http ADDR` (`skymesh node` and
//! `skymesh dmsg server` serve theirs on their own listeners).
//!
//! `/health` answers the reference shape (`build_info`, `started_at`); `/metrics` the
//! Prometheus text of the command's registry, which always holds `skymesh_build_info` and
//! `skymesh_uptime_seconds`. Gauges that mirror state the libraries do not count themselves are
//! set by a `refresh` hook run before each scrape (at most one scrape at a time refreshes, so a
//! scraper hammering the endpoint cannot pile up refreshes).
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::daemon::TaskGroup;
use overlay::metrics::ServerLabel;

/// Runs before each scrape to update gauges.
pub(crate) type Refresh =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync + 'static>;

/// Labels of `skymesh_build_info`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    command: String,
}

/// A registry with the metrics every command exports; register the command's own next to them.
pub(crate) fn registry(command: &str) -> Registry {
    let mut r = Registry::default();
    let info = Family::<BuildLabels, Gauge>::default();
    r.register(
        "skymesh_build_info",
        "Build of the running skymesh (always 1)",
        info.clone(),
    );
    info.get_or_create(&BuildLabels {
        version: env!("CARGO_PKG_VERSION").into(),
        command: command.into(),
    })
    .set(1);
    r
}

struct ObsState {
    registry: Registry,
    uptime: Gauge<f64, AtomicU64>,
    started: Instant,
    started_at: String,
    refresh: Option<Refresh>,
    refreshing: tokio::sync::Mutex<()>,
}

/// Binds `addr` and serves `/health` and `/metrics` from `registry` in `group` (stopped when
/// the group drains). Returns the bound address.
pub(crate) async fn serve(
    addr: &str,
    mut registry: Registry,
    refresh: Option<Refresh>,
    group: &mut TaskGroup,
) -> anyhow::Result<std::net::SocketAddr> {
    let uptime = Gauge::<f64, AtomicU64>::default();
    registry.register(
        "skymesh_uptime_seconds",
        "Seconds since this process started serving",
        uptime.clone(),
    );
    let st = Arc::new(ObsState {
        registry,
        uptime,
        started: Instant::now(),
        started_at: ::dmsg::disc_server::rfc3339_now(),
        refresh,
        refreshing: tokio::sync::Mutex::new(()),
    });
    let app = Router::new()
        .route(crate::api::HEALTH, get(health))
        .route(crate::api::METRICS, get(metrics))
        .with_state(st);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the health/metrics listener {addr}"))?;
    let bound = listener.local_addr().context("listener address")?;
    group.spawn(|mut shutdown| async move {
        let stop = async move { shutdown.recv().await };
        if let Err(e) = crate::http_serve::serve(listener, app, stop).await {
            tracing::error!(error = %e, "health/metrics listener failed");
        }
    });
    tracing::info!(addr = %bound, "health and metrics listening");
    Ok(bound)
}

async fn health(State(st): State<Arc<ObsState>>) -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "build_info": {"version": env!("CARGO_PKG_VERSION"), "commit": "unknown", "date": "unknown"},
        "started_at": st.started_at,
        "status": "ok",
    }))
}

async fn metrics(State(st): State<Arc<ObsState>>) -> impl IntoResponse {
    if let Some(refresh) = &st.refresh {
        let _one = st.refreshing.lock().await;
        refresh().await;
    }
    st.uptime.set(st.started.elapsed().as_secs_f64());
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, &st.registry);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
}

/// Metrics of `skymesh dmsg http`: the DMSG client's sessions and ports, read at each scrape.
pub(crate) fn client_gauges(client: Arc<::dmsg::Client>) -> (Registry, Refresh) {
    let mut r = registry("dmsg-http");
    let sessions = Gauge::<i64>::default();
    let ports = Gauge::<i64>::default();
    r.register(
        "skymesh_dmsg_client_sessions",
        "DMSG servers the client holds a session with",
        sessions.clone(),
    );
    r.register(
        "skymesh_dmsg_client_ports",
        "DMSG ports the client listens on",
        ports.clone(),
    );
    let rtt = Family::<ServerLabel, Gauge<f64, AtomicU64>>::default();
    r.register(
        "skymesh_dmsg_client_server_rtt_seconds",
        "Last ping RTT of each DMSG server the client holds a session with",
        rtt.clone(),
    );
    let refresh: Refresh = Arc::new(move || {
        sessions.set(i64::try_from(client.servers().len()).unwrap_or(i64::MAX));
        ports.set(i64::try_from(client.ports_in_use()).unwrap_or(i64::MAX));
        rtt.clear();
        for (pk, d) in client.server_rtts() {
            if let Some(d) = d {
                let label = ServerLabel {
                    server: pk.to_hex(),
                };
                rtt.get_or_create(&label).set(d.as_secs_f64());
            }
        }
        Box::pin(async {})
    });
    (r, refresh)
}

/// How long a scrape of `skymesh dmsg discovery` waits for the discovery's own answer.
const DISC_SCRAPE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Metrics of `skymesh dmsg discovery`: the entries it holds, counted through its own API on
/// `disc` (the backends, embedded or Redis, count nothing themselves).
pub(crate) fn discovery_gauges(disc: std::net::SocketAddr) -> (Registry, Refresh) {
    let mut r = registry("dmsg-discovery");
    let servers = Gauge::<i64>::default();
    let clients = Gauge::<i64>::default();
    let up = Gauge::<i64>::default();
    r.register(
        "skymesh_disc_servers",
        "Live DMSG server entries (all_servers)",
        servers.clone(),
    );
    r.register(
        "skymesh_disc_clients",
        "Client entries (entries)",
        clients.clone(),
    );
    r.register(
        "skymesh_disc_store_up",
        "1 when the last scrape could list the entries, else 0 (e.g. Redis down)",
        up.clone(),
    );
    let ip = if disc.ip().is_unspecified() {
        match disc {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        }
    } else {
        disc.ip()
    };
    let base = format!("http://{}", std::net::SocketAddr::new(ip, disc.port()));
    let http = reqwest::Client::builder()
        .timeout(DISC_SCRAPE_TIMEOUT)
        .build()
        .ok();
    let refresh: Refresh = Arc::new(move || {
        let (servers, clients, up, base, http) = (
            servers.clone(),
            clients.clone(),
            up.clone(),
            base.clone(),
            http.clone(),
        );
        Box::pin(async move {
            let Some(http) = http else { return };
            let count = |path: &'static str| {
                let req = http.get(format!("{base}/dmsg-discovery/{path}"));
                async move {
                    let res = req.send().await.ok()?;
                    if !res.status().is_success() {
                        return None;
                    }
                    let list: Vec<serde_json::Value> = res.json().await.ok()?;
                    i64::try_from(list.len()).ok()
                }
            };
            match (count("all_servers").await, count("entries").await) {
                (Some(s), Some(c)) => {
                    servers.set(s);
                    clients.set(c);
                    up.set(1);
                }
                _ => {
                    up.set(0);
                }
            }
        })
    });
    (r, refresh)
}
