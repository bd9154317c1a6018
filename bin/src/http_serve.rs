//! Serving the binary's HTTP listeners (the node's admin API, the health/metrics listeners):
//! axum routers on hyper's HTTP/1 connection driver with a header read timeout, which
//! `axum::serve` does not set (it installs no timer, so a client that sends its request headers
//! one byte at a time held its connection forever: tests/tests/chaos/slowloris.rs).
//!
//! Shutdown is graceful like `axum::serve(…).with_graceful_shutdown`: once `shutdown` resolves
//! the listener is closed, every connection finishes the request it is serving and closes, and
//! the call returns when all are gone.
use std::future::Future;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;

/// A client must send its complete request headers within this time (each request of a
/// keep-alive connection included); then the connection is closed. Same bound as the DMSG
/// server's own HTTP and DMSG-HTTP.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` resolves, then drains the connections.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl Future + Send + 'static,
) -> std::io::Result<()> {
    let (closing, closed) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of fds and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let svc = TowerToHyperService::new(app.clone());
        let mut closed = closed.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), svc)
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                // (The guard wait_for returns is not Send: drop it inside.)
                () = async { drop(closed.wait_for(|c| *c).await) } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    let _ = closing.send(true);
    // Every connection task holds a receiver: this resolves when the last one ended.
    drop(closed);
    closing.closed().await;
    Ok(())
}
