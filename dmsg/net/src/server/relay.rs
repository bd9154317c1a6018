//! One stream opened on a server session: read and check the request, deliver it to the
//! destination's session here or forward it to a mesh peer, relay the response, splice.
//!
//! Forwarding (spec §7): a request from a client for a destination not held here is offered to
//! peers in [`super::mesh::Mesh::order`] order, the original signed object byte for byte; the
//! first peer that answers with an accepted response (signed by the destination) wins and the
//! two streams are spliced. A request that came from a peer is delivered locally or refused:
//! one hop at most. Every refusal resets the dialer's stream.
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use dmsg_proto::ErrorCode;
use dmsg_proto::stream::{
    RequestContext, RequestPolicy, SignedObject, StreamRequest, verify_request, verify_response,
};
use prometheus_client::metrics::counter::Counter;

use super::mesh::{LinkRefusal, LinkUse, PeerCounters};
use super::refusal::Refusal;
use super::{Inner, ServerSession};
use crate::defaults::DEFAULT_STREAM_HANDSHAKE_TIMEOUT;
use crate::error::StreamError;
use crate::mux::{MuxStream, RecvHalf, SendHalf};
use crate::stream::{read_object, write_object};

/// Handles one stream opened by a session's remote.
pub(crate) async fn relay(
    inner: &Arc<Inner>,
    src: &Arc<ServerSession>,
    mut a: MuxStream,
) -> Result<(), Refusal> {
    let to = DEFAULT_STREAM_HANDSHAKE_TIMEOUT;
    let remote = src.est.remote;
    // Requests whose source is not the session's key are relayed requests: only peers may send
    // them (checked per stream: a server may become a peer after its session came up).
    let from_peer = src.peer || inner.mesh.is_peer(&remote);
    let (req_obj, _) = match read_object(&mut a, &src.est.crypto, to).await {
        Ok(r) => r,
        Err(StreamError::Ping) => {
            // skywire@2026 ping (spec §3 item 8): echo the marker and close the stream.
            inner.metrics.pings.inc();
            let _ = a.send_chunk(bytes::Bytes::from_static(&[0, 0])).await;
            return Ok(());
        }
        Err(e) => {
            // Only bytes that are not a request are the peer's doing; a stream it closed or
            // that timed out under load is not garbage.
            let garbage = matches!(
                e,
                StreamError::Record(_) | StreamError::FrameTooLong { .. } | StreamError::Object(_)
            );
            if from_peer && garbage {
                inner.mesh.misbehaved(&remote, "garbage", Instant::now());
            }
            let code = e.code().unwrap_or(ErrorCode::ReqInvalidSig);
            return Err(Refusal::from(code, "reading the request", e));
        }
    };
    let ctx = RequestContext {
        session_pk: (!from_peer).then_some(remote),
        local_pk: None,
    };
    let req = match verify_request(&req_obj, &RequestPolicy::at(crate::now_ns()), &ctx) {
        Ok(r) => r,
        Err(e) => {
            let e = StreamError::Object(e);
            let code = e.code().unwrap_or(ErrorCode::ReqInvalidSig);
            a.reset();
            if from_peer
                && matches!(
                    code,
                    ErrorCode::ReqInvalidSig | ErrorCode::SignedObjectInvalid
                )
            {
                // A peer only forwards requests it verified: a bad signature is its doing.
                inner.mesh.misbehaved(&remote, "garbage", Instant::now());
            }
            if code == ErrorCode::ReqInvalidSrcPk && !from_peer {
                inner.mesh.metrics.refused("not_a_peer");
                return Err(Refusal::from(
                    code,
                    "relayed request (source key is not the session's) on a non-peer session",
                    e,
                ));
            }
            return Err(Refusal::from(code, "request refused", e));
        }
    };
    if req.dst.pk == inner.pk {
        return super::own::serve(inner, src, a, &req_obj, &req).await;
    }
    let dst = lock_dst(inner, &req);
    let Some(dst) = dst else {
        if from_peer {
            // One hop: what a peer hands us is delivered here or nowhere.
            a.reset();
            inner.mesh.metrics.refused("one_hop");
            return Err(Refusal::new(
                ErrorCode::ReqNoNextSession,
                "relayed request for a destination not held here (one hop: not forwarded again)",
            ));
        }
        if !inner.mesh.cfg.enabled() {
            a.reset();
            return Err(Refusal::new(
                ErrorCode::ReqNoNextSession,
                "destination holds no session here",
            ));
        }
        return forward(inner, src, a, &req_obj, &req).await;
    };
    // A relayed request takes a slot on the peer link and a server-wide one.
    let mut slots = None;
    if from_peer && req.src.pk != remote {
        let Some(global) = inner.mesh.relay_slot() else {
            a.reset();
            return Err(Refusal::new(
                ErrorCode::ReqNoNextSession,
                "relayed-stream bound reached",
            ));
        };
        let link = match inner.mesh.use_link(&remote, Instant::now(), true) {
            Ok(l) => l,
            Err(_) => {
                a.reset();
                return Err(Refusal::new(
                    ErrorCode::ReqNoNextSession,
                    "peer-link stream bound reached",
                ));
            }
        };
        link.counters.relayed_in.fetch_add(1, Ordering::Relaxed);
        inner.mesh.metrics.relayed_in.inc();
        slots = Some((global, link));
    }
    let mut b = dst
        .est
        .session
        .open()
        .map_err(|e| Refusal::from(ErrorCode::ReqNoNextSession, "opening to destination", e))?;
    write_object(&mut b, &dst.est.crypto, &req_obj)
        .await
        .map_err(|e| Refusal::from(ErrorCode::ReqNoNextSession, "writing to destination", e))?;
    let (resp_obj, extra) = match read_object(&mut b, &dst.est.crypto, to).await {
        Ok(r) => r,
        Err(e) => {
            a.reset();
            b.reset();
            let code = e.code().unwrap_or(ErrorCode::ReqNoListener);
            return Err(Refusal::from(code, "destination response", e));
        }
    };
    answer(inner, a, b, src, &req_obj, &req, resp_obj, extra, None).await?;
    drop(slots);
    Ok(())
}

fn lock_dst(inner: &Inner, req: &StreamRequest) -> Option<Arc<ServerSession>> {
    crate::lock(&inner.sessions).get(&req.dst.pk).cloned()
}

/// Checks the destination's response; passes it (and a refusal signed by the destination) back
/// to the dialer; on acceptance splices the streams.
#[allow(clippy::too_many_arguments)]
async fn answer(
    inner: &Arc<Inner>,
    mut a: MuxStream,
    b: MuxStream,
    src: &Arc<ServerSession>,
    req_obj: &SignedObject,
    req: &StreamRequest,
    resp_obj: SignedObject,
    extra: bytes::Bytes,
    via: Option<&Arc<PeerCounters>>,
) -> Result<(), Refusal> {
    if let Err(e) = verify_response(&resp_obj, req_obj, req) {
        // Forward refusals signed by the destination so the dialer learns the reason.
        let e = StreamError::Object(e);
        let code = e.code().unwrap_or(ErrorCode::RespNotAccepted);
        if matches!(code, ErrorCode::RespInvalidHash | ErrorCode::RespInvalidSig) {
            a.reset();
        } else {
            let _ = write_object(&mut a, &src.est.crypto, &resp_obj).await;
        }
        b.reset();
        return Err(Refusal::from(code, "destination refused", e));
    }
    write_object(&mut a, &src.est.crypto, &resp_obj)
        .await
        .map_err(|e| Refusal::from(ErrorCode::ReqNoNextSession, "answering the dialer", e))?;
    let m = &inner.metrics;
    m.streams.inc();
    m.streams_active.inc();
    let forwarded = via.map(|c| (c, &m.mesh.forwarded_bytes));
    if !extra.is_empty() {
        let n = extra.len() as u64;
        if a.send_chunk(extra).await.is_ok() {
            count(&m.bytes_relayed, forwarded, n);
        }
    }
    splice(a, b, &m.bytes_relayed, forwarded).await;
    m.streams_active.dec();
    Ok(())
}

/// Offers the request to peers, one by one, until one's destination accepts.
async fn forward(
    inner: &Arc<Inner>,
    src: &Arc<ServerSession>,
    a: MuxStream,
    req_obj: &SignedObject,
    req: &StreamRequest,
) -> Result<(), Refusal> {
    let Some(_global) = inner.mesh.relay_slot() else {
        a.reset();
        return Err(Refusal::new(
            ErrorCode::ReqNoNextSession,
            "relayed-stream bound reached",
        ));
    };
    let dst = req.dst.pk;
    let delegated = inner.mesh.delegated(inner, dst).await;
    let order = inner.mesh.order(&dst, &delegated, Instant::now());
    let to = DEFAULT_STREAM_HANDSHAKE_TIMEOUT;
    let mut full = false;
    for peer in order {
        let link: LinkUse = match inner.mesh.use_link(&peer, Instant::now(), false) {
            Ok(l) => l,
            Err(LinkRefusal::Full) => {
                full = true;
                continue;
            }
            Err(LinkRefusal::Down) => continue,
        };
        let Ok(mut b) = link.sess.est.session.open() else {
            continue;
        };
        if write_object(&mut b, &link.sess.est.crypto, req_obj)
            .await
            .is_err()
        {
            b.reset();
            continue;
        }
        match read_object(&mut b, &link.sess.est.crypto, to).await {
            Ok((resp_obj, extra)) => {
                inner.mesh.reached(&dst);
                link.counters
                    .forwarded_streams
                    .fetch_add(1, Ordering::Relaxed);
                inner.mesh.metrics.forwarded_streams.inc();
                return answer(
                    inner,
                    a,
                    b,
                    src,
                    req_obj,
                    req,
                    resp_obj,
                    extra,
                    Some(&link.counters),
                )
                .await;
            }
            Err(_) => {
                // The peer does not hold the destination (it resets), or it timed out.
                b.reset();
                inner.mesh.record_miss(dst, peer, Instant::now());
            }
        }
    }
    a.reset();
    inner
        .mesh
        .metrics
        .refused(if full { "link_capacity" } else { "no_peer" });
    Err(Refusal::new(
        ErrorCode::ReqNoNextSession,
        "destination not held here nor by any mesh peer (one hop)",
    ))
}

fn count(total: &Counter, forwarded: Option<(&Arc<PeerCounters>, &Counter)>, n: u64) {
    total.inc_by(n);
    if let Some((peer, fwd)) = forwarded {
        fwd.inc_by(n);
        peer.forwarded_bytes.fetch_add(n, Ordering::Relaxed);
    }
}

/// Copies chunks both ways until either side ends; then closes both (DMSG streams have no
/// half-close, spec §4.6).
async fn splice(
    mut a: MuxStream,
    mut b: MuxStream,
    total: &Counter,
    forwarded: Option<(&Arc<PeerCounters>, &Counter)>,
) {
    let (a_r, a_w) = a.halves();
    let (b_r, b_w) = b.halves();
    tokio::select! {
        _ = pump(a_r, b_w, total, forwarded) => {}
        _ = pump(b_r, a_w, total, forwarded) => {}
    }
}

async fn pump(
    mut from: RecvHalf<'_>,
    mut to: SendHalf<'_>,
    total: &Counter,
    forwarded: Option<(&Arc<PeerCounters>, &Counter)>,
) {
    while let Ok(Some(chunk)) = from.recv_chunk().await {
        let n = chunk.len() as u64;
        if to.send_chunk(chunk).await.is_err() {
            return;
        }
        count(total, forwarded, n);
    }
}
