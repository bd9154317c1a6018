//! Services on the server's own DMSG key (issue #16 §3): a request whose destination is the
//! server itself is answered by the server, which then acts as the Noise KK responder — like the
//! reference server does for its IP lookup and its `:80/health`.
//!
//! * Port 80 ([`HEALTH_PORT`]): HTTP/1.1 over the stream; `GET /health` answers JSON with build
//!   info, uptime, sessions, relayed streams and bytes, and the mesh peers.
//! * Port 44 ([`crate::mailbox::MAILBOX_PORT`]), when the server runs a mailbox: the
//!   store-and-forward protocol ([`crate::mailbox::service`]).
//! * Any other port: a refusal signed by the server with code 306 (no listener).
//! * At most [`MAX_OWN_STREAMS`] such streams at once (a semaphore); beyond it the stream is
//!   reset. Each connection is limited to [`OWN_STREAM_TIMEOUT`].
//!
//! Route setup on DMSG port 36 is out of scope until skymesh has a Skywire router.
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dmsg_proto::ErrorCode;
use dmsg_proto::noise::{HandshakeState, Pattern, Role};
use dmsg_proto::stream::{SignedObject, StreamRequest, StreamResponse, TypeIds};
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};

use super::refusal::Refusal;
use super::{Inner, ServerSession};
use crate::mux::MuxStream;
use crate::stream::{DmsgStream, write_object};

/// The DMSG port of the server's own HTTP service.
pub const HEALTH_PORT: u16 = 80;
/// Streams to the server's own services at once (each holds a small HTTP connection).
pub const MAX_OWN_STREAMS: usize = 64;
/// Longest life of one connection to the server's own services.
pub const OWN_STREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// Answers a request addressed to the server's own key.
pub(crate) async fn serve(
    inner: &Arc<Inner>,
    src: &Arc<ServerSession>,
    mut a: MuxStream,
    req_obj: &SignedObject,
    req: &StreamRequest,
) -> Result<(), Refusal> {
    let respond = |accepted: bool, code: u16, noise_msg: Vec<u8>| {
        StreamResponse {
            req_hash: req_obj.hash(),
            accepted,
            err_code: code,
            noise_msg,
        }
        .sign(&inner.cfg.sk, TypeIds::default())
    };
    let mailbox = (req.dst.port == crate::mailbox::MAILBOX_PORT)
        .then(|| inner.cfg.mailbox.clone())
        .flatten();
    if req.dst.port != HEALTH_PORT && mailbox.is_none() {
        let obj = respond(false, ErrorCode::ReqNoListener.as_u16(), Vec::new());
        let _ = write_object(&mut a, &src.est.crypto, &obj).await;
        return Err(Refusal::new(
            ErrorCode::ReqNoListener,
            "no service on this port of the server's own key",
        ));
    }
    let Ok(_slot) = inner.own_slots.clone().try_acquire_owned() else {
        a.reset();
        return Err(Refusal::new(
            ErrorCode::ReqNoListener,
            "too many streams to the server's own services",
        ));
    };
    let hs = HandshakeState::new(
        Pattern::KK,
        Role::Responder,
        inner.cfg.sk.clone(),
        Some(req.src.pk),
    );
    let step = hs.and_then(|mut hs| {
        hs.read_message(&req.noise_msg)?;
        let msg2 = hs.write_message()?;
        Ok((msg2, hs.into_transport()?))
    });
    let (msg2, keys) = match step {
        Ok(x) => x,
        Err(e) => {
            a.reset();
            return Err(Refusal::from(
                ErrorCode::ReqInvalidSig,
                "KK handshake with the server",
                crate::error::StreamError::Handshake(e),
            ));
        }
    };
    let obj = respond(true, 0, msg2);
    write_object(&mut a, &src.est.crypto, &obj)
        .await
        .map_err(|e| Refusal::from(ErrorCode::ReqNoNextSession, "answering the dialer", e))?;
    let stream = DmsgStream::new(a, &keys, Bytes::new(), req.dst, req.src, None);
    if let Some(mb) = mailbox {
        drop(_slot);
        mb.serve(stream).await;
        return Ok(());
    }
    let inner = inner.clone();
    let svc = hyper::service::service_fn(move |r: Request<hyper::body::Incoming>| {
        let inner = inner.clone();
        async move { Ok::<_, Infallible>(answer(&inner, r.uri().path())) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
    let _ = tokio::time::timeout(OWN_STREAM_TIMEOUT, conn).await;
    Ok(())
}

fn answer(inner: &Inner, path: &str) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/health" | "/health/" => (StatusCode::OK, health(inner)),
        _ => (
            StatusCode::NOT_FOUND,
            serde_json::json!({"message": "not found", "code": 404}),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// The `/health` document.
fn health(inner: &Inner) -> serde_json::Value {
    let m = &inner.metrics;
    let peers: Vec<serde_json::Value> = inner
        .mesh
        .status()
        .into_iter()
        .map(|p| serde_json::json!({"pk": p.pk, "up": p.up, "rtt_ms": p.rtt_ms}))
        .collect();
    serde_json::json!({
        "build_info": {
            "version": env!("CARGO_PKG_VERSION"),
            "commit": "unknown",
            "date": "unknown",
        },
        "dmsg_address": format!("{}:{HEALTH_PORT}", inner.pk),
        "public_address": inner.public_addr,
        "uptime_secs": inner.started.elapsed().as_secs(),
        "sessions": crate::lock(&inner.sessions).len(),
        "max_sessions": inner.cfg.max_sessions,
        "streams_active": m.streams_active.get(),
        "streams_total": m.streams.get(),
        "relayed_bytes": m.bytes_relayed.get(),
        "mesh_peers": peers,
    })
}
