//! DMSG-HTTP: plain HTTP/1.1 over DMSG streams (spec §8), with hyper 1.
//!
//! * Client: [`fetch`] dials a new stream per request (as the reference transport does), sends
//!   `GET` with `Host: <pk>:<port>` and streams the body into a writer.
//! * Server: [`serve_dir`] serves the files of a directory on a [`Listener`]; paths are resolved
//!   component by component, so `..` and absolute paths cannot leave the directory.
use std::convert::Infallible;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use keys::PubKey;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::client::{Client, Listener};
use crate::defaults::DEFAULT_HTTP_PORT;
use crate::error::DialError;

/// DMSG-HTTP errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The URL is not `dmsg://PK[:PORT]/PATH`.
    #[error("bad dmsg url {url:?}")]
    BadUrl {
        /// The URL.
        url: String,
    },
    /// Dialing failed.
    #[error("dial")]
    Dial(#[source] DialError),
    /// HTTP protocol error.
    #[error("http")]
    Http(#[source] hyper::Error),
    /// Building the request failed.
    #[error("http request")]
    Request(#[source] hyper::http::Error),
    /// Writing the body failed.
    #[error("writing the body")]
    Write(#[source] std::io::Error),
    /// The server answered with a non-success status.
    #[error("server answered {status}")]
    Status {
        /// The status.
        status: u16,
    },
}

/// A parsed `dmsg://PK:PORT/PATH` URL (scheme `http://` accepted too, as in the reference).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmsgUrl {
    /// Target key.
    pub pk: PubKey,
    /// Target port (80 when absent).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl DmsgUrl {
    /// Parses a URL.
    pub fn parse(url: &str) -> Result<DmsgUrl, HttpError> {
        let bad = || HttpError::BadUrl {
            url: url.to_string(),
        };
        let rest = url
            .strip_prefix("dmsg://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(bad)?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (pk, port) = match host.split_once(':') {
            Some((pk, port)) => (pk, port.parse::<u16>().map_err(|_| bad())?),
            None => (host, DEFAULT_HTTP_PORT),
        };
        let pk = PubKey::from_hex(pk).map_err(|_| bad())?;
        if port == 0 {
            return Err(bad());
        }
        Ok(DmsgUrl {
            pk,
            port,
            path: path.to_string(),
        })
    }
}

/// Fetches `url` through `client` and writes the body to `out`; returns the body length.
/// `progress` is called with (bytes so far, content length if known).
pub async fn fetch<W: AsyncWrite + Unpin>(
    client: &Client,
    url: &str,
    out: &mut W,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<u64, HttpError> {
    let u = DmsgUrl::parse(url)?;
    let stream = client.dial(u.pk, u.port).await.map_err(HttpError::Dial)?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(HttpError::Http)?;
    let conn_task = crate::AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let req = Request::get(&u.path)
        .header(hyper::header::HOST, format!("{}:{}", u.pk.to_hex(), u.port))
        .header(hyper::header::USER_AGENT, "skymesh-dmsg-get")
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(HttpError::Request)?;
    let resp = sender.send_request(req).await.map_err(HttpError::Http)?;
    let status = resp.status();
    if !status.is_success() {
        return Err(HttpError::Status {
            status: status.as_u16(),
        });
    }
    let total = resp
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = resp.into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(HttpError::Http)?;
        if let Ok(data) = frame.into_data() {
            out.write_all(&data).await.map_err(HttpError::Write)?;
            n += data.len() as u64;
            progress(n, total);
        }
    }
    out.flush().await.map_err(HttpError::Write)?;
    drop(conn_task);
    Ok(n)
}

/// Serves the files under `dir` on `listener` until the listener ends.
pub async fn serve_dir(mut listener: Listener, dir: PathBuf) {
    while let Some(stream) = listener.accept().await {
        let dir = dir.clone();
        tokio::spawn(async move {
            let remote = stream.remote_addr();
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let dir = dir.clone();
                async move { Ok::<_, Infallible>(serve_file(&dir, req.uri().path()).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            if let Err(e) = tokio::time::timeout(Duration::from_secs(3600), conn).await {
                tracing::debug!(%remote, error = %e, "dmsg http connection timed out");
            }
        });
    }
}

fn resolve(dir: &Path, url_path: &str) -> Option<PathBuf> {
    let mut p = dir.to_path_buf();
    for c in Path::new(url_path.trim_start_matches('/')).components() {
        match c {
            Component::Normal(s) => p.push(s),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(p)
}

async fn serve_file(dir: &Path, url_path: &str) -> Response<Full<Bytes>> {
    let status = |s: StatusCode| {
        let mut r = Response::new(Full::new(Bytes::from(format!("{s}\n"))));
        *r.status_mut() = s;
        r
    };
    let Some(mut p) = resolve(dir, url_path) else {
        return status(StatusCode::BAD_REQUEST);
    };
    if tokio::fs::metadata(&p).await.is_ok_and(|m| m.is_dir()) {
        p.push("index.html");
    }
    match tokio::fs::read(&p).await {
        Ok(data) => {
            let mut r = Response::new(Full::new(Bytes::from(data)));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/octet-stream"),
            );
            r
        }
        Err(_) => status(StatusCode::NOT_FOUND),
    }
}
