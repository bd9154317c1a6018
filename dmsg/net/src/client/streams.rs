//! Streams of the client: the request/response and Noise KK exchange of a dial, the accept side
//! of a stream a server opens to us, and the target lookups they need.
use std::sync::Arc;
use std::time::Instant;

use dmsg_proto::ErrorCode;
use dmsg_proto::noise::{DH_LEN, HandshakeState, Pattern, Role};
use dmsg_proto::stream::{
    Addr, RequestContext, RequestPolicy, StreamRequest, StreamResponse, TypeIds, verify_request,
    verify_response,
};
use keys::PubKey;

use crate::defaults::*;
use crate::error::{DialError, StreamError};
use crate::lock;
use crate::mux::MuxStream;
use crate::stream::{DmsgStream, PortGuard, read_object, write_object};

use super::{ClientSession, ENTRY_CACHE_MAX, ENTRY_CACHE_TTL, Inner, STATIC_DH_CACHE_MAX};

/// Whether a dial failed because the server reset the request (the destination is not on it
/// nor reachable through its mesh), rather than being refused by the destination. smux has no
/// RST: a server resets an smux stream by closing it, so a stream that ends before any
/// response counts as reset too (a destination that refuses answers with a signed error).
pub(super) fn reset_by_server(e: &DialError) -> bool {
    matches!(
        e,
        DialError::Stream {
            source: StreamError::Reset | StreamError::SessionClosed | StreamError::Eof,
            ..
        }
    )
}

pub(super) async fn delegated_servers(
    inner: &Arc<Inner>,
    pk: &PubKey,
) -> Result<Vec<PubKey>, DialError> {
    if let Some((t, v)) = lock(&inner.entry_cache).get(pk)
        && t.elapsed() < ENTRY_CACHE_TTL
    {
        return Ok(v.clone());
    }
    let e = inner.disc.entry(*pk).await.map_err(DialError::Disc)?;
    let servers = e
        .client
        .and_then(|c| c.delegated_servers)
        .unwrap_or_default();
    if servers.is_empty() {
        return Err(DialError::NoDelegated { pk: *pk });
    }
    let mut cache = lock(&inner.entry_cache);
    if cache.len() >= ENTRY_CACHE_MAX {
        cache.clear();
    }
    cache.insert(*pk, (Instant::now(), servers.clone()));
    Ok(servers)
}

/// The KK `ss` term with `pk`: it depends only on our key and the peer's, so it is computed
/// once per peer instead of once per stream (one ECDH less on each side of every dial after
/// the first). `None` if the key is unusable (the handshake then reports it).
pub(super) fn static_dh(inner: &Inner, pk: &PubKey) -> Option<[u8; DH_LEN]> {
    if let Some(ss) = lock(&inner.static_dh).get(pk) {
        return Some(*ss);
    }
    let ss = dmsg_proto::noise::dh(&inner.cfg.sk, pk).ok()?;
    let mut cache = lock(&inner.static_dh);
    if cache.len() >= STATIC_DH_CACHE_MAX {
        cache.clear();
    }
    cache.insert(*pk, ss);
    Some(ss)
}

pub(super) async fn dial_on(
    inner: &Arc<Inner>,
    sess: &Arc<ClientSession>,
    pk: PubKey,
    port: u16,
) -> Result<DmsgStream, DialError> {
    let serr = |source| DialError::Stream { pk, port, source };
    let eph = lock(&inner.ports)
        .reserve_ephemeral()
        .ok_or(DialError::NoEphemeralPort)?;
    let guard = PortGuard {
        ports: Arc::downgrade(&inner.ports),
        port: eph,
    };
    let mut ms = sess.est.session.open().map_err(serr)?;
    let mut hs = HandshakeState::new(Pattern::KK, Role::Initiator, inner.cfg.sk.clone(), Some(pk))
        .map_err(|e| serr(StreamError::Handshake(e)))?;
    if let Some(ss) = static_dh(inner, &pk) {
        hs = hs.with_static_dh(ss);
    }
    let msg1 = hs
        .write_message()
        .map_err(|e| serr(StreamError::Handshake(e)))?;
    let local = Addr {
        pk: inner.pk,
        port: eph,
    };
    let remote = Addr { pk, port };
    let req = StreamRequest {
        timestamp: crate::now_ns(),
        src: local,
        dst: remote,
        noise_msg: msg1,
    };
    let req_obj = req.sign(&inner.cfg.sk, TypeIds::default());
    write_object(&mut ms, &sess.est.crypto, &req_obj)
        .await
        .map_err(serr)?;
    let (resp_obj, extra) =
        read_object(&mut ms, &sess.est.crypto, DEFAULT_STREAM_HANDSHAKE_TIMEOUT)
            .await
            .map_err(serr)?;
    let resp =
        verify_response(&resp_obj, &req_obj, &req).map_err(|e| serr(StreamError::Object(e)))?;
    hs.read_message(&resp.noise_msg)
        .map_err(|e| serr(StreamError::Handshake(e)))?;
    let keys = hs
        .into_transport()
        .map_err(|e| serr(StreamError::Handshake(e)))?;
    Ok(DmsgStream::new(
        ms,
        &keys,
        extra,
        local,
        remote,
        Some(guard),
    ))
}

/// Handles a stream the server opened to us: request → listener → response.
pub(super) async fn accept_stream(inner: Arc<Inner>, sess: Arc<ClientSession>, mut ms: MuxStream) {
    let (req_obj, _) =
        match read_object(&mut ms, &sess.est.crypto, DEFAULT_STREAM_HANDSHAKE_TIMEOUT).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "bad incoming stream object");
                ms.reset();
                return;
            }
        };
    let ctx = RequestContext {
        session_pk: None,
        local_pk: Some(inner.pk),
    };
    let req = match verify_request(&req_obj, &RequestPolicy::at(crate::now_ns()), &ctx) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "incoming stream request refused");
            ms.reset();
            return;
        }
    };
    let refuse = |code: ErrorCode| StreamResponse {
        req_hash: req_obj.hash(),
        accepted: false,
        err_code: code.as_u16(),
        noise_msg: Vec::new(),
    };
    let tx = lock(&inner.listeners).get(&req.dst.port).cloned();
    let Some(tx) = tx else {
        let obj = refuse(ErrorCode::ReqNoListener).sign(&inner.cfg.sk, TypeIds::default());
        let _ = write_object(&mut ms, &sess.est.crypto, &obj).await;
        return;
    };
    let mut hs = match HandshakeState::new(
        Pattern::KK,
        Role::Responder,
        inner.cfg.sk.clone(),
        Some(req.src.pk),
    ) {
        Ok(h) => match static_dh(&inner, &req.src.pk) {
            Some(ss) => h.with_static_dh(ss),
            None => h,
        },
        Err(_) => return,
    };
    let step = hs
        .read_message(&req.noise_msg)
        .and_then(|()| hs.write_message());
    let msg2 = match step {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!(error = %e, "incoming KK message refused");
            ms.reset();
            return;
        }
    };
    let Ok(keys) = hs.into_transport() else {
        return;
    };
    let resp = StreamResponse {
        req_hash: req_obj.hash(),
        accepted: true,
        err_code: 0,
        noise_msg: msg2,
    };
    let obj = resp.sign(&inner.cfg.sk, TypeIds::default());
    if write_object(&mut ms, &sess.est.crypto, &obj).await.is_err() {
        return;
    }
    let local = req.dst;
    let stream = DmsgStream::new(ms, &keys, bytes::Bytes::new(), local, req.src, None);
    if tx.try_send(stream).is_err() {
        tracing::debug!(
            port = local.port,
            "listener backlog full (401); stream dropped"
        );
    }
}
