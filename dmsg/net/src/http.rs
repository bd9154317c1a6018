//! DMSG-HTTP: plain HTTP/1.1 over DMSG streams (spec §8), with hyper 1.
//!
//! * Client: [`fetch`] dials a new stream per request (as the reference transport does), sends
//!   `GET` with `Host: <pk>:<port>` and streams the body into a writer; [`fetch_to_file`]
//!   writes the body's chunks to a file from the task itself (no copy into a write buffer, no
//!   hop to another thread per chunk).
//! * Server: [`serve_dir`] serves the files of a directory on a [`Listener`]; paths are resolved
//!   component by component, so `..` and absolute paths cannot leave the directory. A file is
//!   read by a blocking task in [`FILE_CHUNK`] pieces, at most [`FILE_CHUNKS_AHEAD`] ahead of
//!   the stream, so a response holds at most ~1 MiB of the file whatever its size.
use std::convert::Infallible;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
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

/// Bytes of a file read per chunk when serving it.
pub const FILE_CHUNK: usize = 256 * 1024;
/// Chunks a response reads ahead of what the stream has taken.
pub const FILE_CHUNKS_AHEAD: usize = 4;
/// Sends `GET url` and returns the successful response, its content length when known, and the
/// task driving the connection (stopped when dropped).
async fn request(
    client: &Client,
    url: &str,
) -> Result<(hyper::body::Incoming, Option<u64>, crate::AbortOnDrop), HttpError> {
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
    Ok((resp.into_body(), total, conn_task))
}

/// Fetches `url` through `client` and writes the body to `out`; returns the body length.
/// `progress` is called with (bytes so far, content length if known).
pub async fn fetch<W: AsyncWrite + Unpin>(
    client: &Client,
    url: &str,
    out: &mut W,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<u64, HttpError> {
    let (mut body, total, conn_task) = request(client, url).await?;
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

/// Fetches `url` into the file `path` (created or truncated): each body chunk is written, as
/// it is, by the task itself (a page-cache write of one chunk takes microseconds; handing
/// chunks to a writer thread cost a cross-thread wake-up each, a third of `dmsg get`'s CPU).
/// On a multi-thread runtime the write runs in `block_in_place`, so other tasks move to another
/// worker meanwhile. Returns the body length.
pub async fn fetch_to_file(
    client: &Client,
    url: &str,
    path: &Path,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<u64, HttpError> {
    use std::io::Write;
    let (mut body, total, conn_task) = request(client, url).await?;
    let mut file = std::fs::File::create(path).map_err(HttpError::Write)?;
    let multi = tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread;
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(HttpError::Http)?;
        if let Ok(data) = frame.into_data() {
            n += data.len() as u64;
            if multi {
                tokio::task::block_in_place(|| file.write_all(&data))
            } else {
                file.write_all(&data)
            }
            .map_err(HttpError::Write)?;
            progress(n, total);
        }
    }
    file.flush().map_err(HttpError::Write)?;
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

/// A response body: a short message, or a file read in chunks by a blocking task.
pub struct FileBody {
    inner: BodyInner,
}

enum BodyInner {
    Once(Option<Bytes>),
    File {
        rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
        left: u64,
    },
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        use std::task::Poll;
        match &mut self.get_mut().inner {
            BodyInner::Once(b) => Poll::Ready(b.take().map(|b| Ok(hyper::body::Frame::data(b)))),
            BodyInner::File { rx, left } => match rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    *left = left.saturating_sub(chunk.len() as u64);
                    Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk))))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) if *left > 0 => Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file shrank while being served",
                )))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            BodyInner::Once(b) => b.is_none(),
            BodyInner::File { left, .. } => *left == 0,
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match &self.inner {
            BodyInner::Once(b) => {
                hyper::body::SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
            }
            BodyInner::File { left, .. } => hyper::body::SizeHint::with_exact(*left),
        }
    }
}

/// Streams the first `len` bytes of `file`: a blocking task reads [`FILE_CHUNK`]s, at most
/// [`FILE_CHUNKS_AHEAD`] ahead, and stops when the body is dropped.
fn file_body(mut file: std::fs::File, len: u64) -> FileBody {
    use std::io::Read;
    let (tx, rx) = tokio::sync::mpsc::channel(FILE_CHUNKS_AHEAD);
    tokio::task::spawn_blocking(move || {
        let mut left = len;
        while left > 0 {
            let want = usize::try_from(left).map_or(FILE_CHUNK, |l| l.min(FILE_CHUNK));
            let mut buf = vec![0u8; want];
            let got = match file.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            buf.truncate(got);
            left -= got as u64;
            if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                return;
            }
        }
    });
    FileBody {
        inner: BodyInner::File { rx, left: len },
    }
}

async fn serve_file(dir: &Path, url_path: &str) -> Response<FileBody> {
    let status = |s: StatusCode| {
        let body = FileBody {
            inner: BodyInner::Once(Some(Bytes::from(format!("{s}\n")))),
        };
        let mut r = Response::new(body);
        *r.status_mut() = s;
        r
    };
    let Some(mut p) = resolve(dir, url_path) else {
        return status(StatusCode::BAD_REQUEST);
    };
    if tokio::fs::metadata(&p).await.is_ok_and(|m| m.is_dir()) {
        p.push("index.html");
    }
    let opened = tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&p)?;
        let m = f.metadata()?;
        if m.is_file() {
            Ok((f, m.len()))
        } else {
            Err(std::io::Error::from(std::io::ErrorKind::NotFound))
        }
    })
    .await;
    match opened {
        Ok(Ok((file, len))) => {
            let mut r = Response::new(file_body(file, len));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/octet-stream"),
            );
            r
        }
        _ => status(StatusCode::NOT_FOUND),
    }
}
