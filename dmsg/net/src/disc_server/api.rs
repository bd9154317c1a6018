//! The reference discovery API over any [`EntryBackend`]: routes, the order of the checks,
//! status codes, content types and exact error bodies.
//!
//! The checks themselves are the pure [`dmsg_proto::disc::decode_body`],
//! [`dmsg_proto::disc::check_post_entry`] and [`dmsg_proto::disc::check_delete_entry`]. Where the
//! reference panics (`dmsg/vectors/discovery_http.json` cases flagged `bug`), we answer what the
//! note recommends: a key with x ≥ p in a GET path is 400 `error bad input`, and
//! `available_servers` skips server-set keys whose entry has no server member.
use std::sync::Arc;

use bytes::Bytes;
use dmsg_proto::disc::{self, DiscPolicy, MAX_ENTRY_BODY, status_body};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Response, StatusCode};
use keys::{PubKey, Sig};

use super::{DiscServerConfig, EntryBackend, StoreUnavailable, rfc3339_now};
use crate::defaults::*;

/// The reference discovery API (routes, checks, status codes, bodies) over any
/// [`EntryBackend`]. [`DiscServer`](super::DiscServer) serves it on its own listener; a full
/// node mounts it on its HTTP listener with [`DiscApi::respond`].
pub struct DiscApi {
    cfg: DiscServerConfig,
    backend: Arc<dyn EntryBackend>,
    started: String,
}

impl DiscApi {
    /// The API over `backend` (`cfg`: test mode, deregister whitelist, TTLs; its address and
    /// storage fields are not used here).
    pub fn new(cfg: DiscServerConfig, backend: Arc<dyn EntryBackend>) -> DiscApi {
        DiscApi {
            cfg,
            backend,
            started: rfc3339_now(),
        }
    }

    /// Answers one request. `req`'s body is the request body read up to
    /// [`MAX_ENTRY_BODY`] + 1 bytes, or `None` when reading it failed.
    pub async fn respond(&self, req: Request<Option<Bytes>>) -> Response<Full<Bytes>> {
        handle(self, req).await
    }
}

/// Reads a request body for [`DiscApi::respond`] (at most [`MAX_ENTRY_BODY`] + 1 bytes, so an
/// oversized body is seen as oversized).
pub async fn read_body<B>(body: B) -> Option<Bytes>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Limited::new(body, MAX_ENTRY_BODY + 1)
        .collect()
        .await
        .ok()
        .map(|c| c.to_bytes())
}

fn json(status: u16, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn msg(status: u16, message: &str) -> Response<Full<Bytes>> {
    json(status, status_body(message, status))
}

fn empty(status: u16) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r
}

fn not_found_page() -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(b"404 page not found\n")));
    *r.status_mut() = StatusCode::NOT_FOUND;
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        "x-content-type-options",
        hyper::header::HeaderValue::from_static("nosniff"),
    );
    r
}

const BAD_INPUT: &str = "error bad input";
const NOT_FOUND: &str = "entry of public key is not found";
const NO_SERVERS: &str = "no delegated dmsg servers available for remote";

fn body_bytes(req: Request<Option<Bytes>>) -> Option<Bytes> {
    req.into_body()
}

pub(super) async fn handle(inner: &DiscApi, req: Request<Option<Bytes>>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let is = |m: &Method| method == *m;
    match path.as_str() {
        "/health" => {
            if !is(&Method::GET) {
                return empty(405);
            }
            let mut s = String::from(
                "{\"build_info\":{\"version\":\"unknown\",\"commit\":\"unknown\",\"date\":\"unknown\"},\"started_at\":",
            );
            disc::write_json_str(&mut s, &inner.started);
            s.push('}');
            json(200, s)
        }
        "/dmsg-discovery/entry" => {
            if !is(&Method::DELETE) {
                return empty(405);
            }
            let Some(body) = body_bytes(req) else {
                return msg(500, "something unexpected happened");
            };
            delete_entry(inner, &body).await
        }
        "/dmsg-discovery/entries" => {
            if !is(&Method::GET) {
                return empty(405);
            }
            match inner.backend.clients().await {
                Ok(keys) => json(
                    200,
                    serde_json::to_string(&keys).unwrap_or_else(|_| "[]".into()),
                ),
                Err(StoreUnavailable) => msg(500, "something unexpected happened"),
            }
        }
        "/dmsg-discovery/available_servers" | "/dmsg-discovery/all_servers" => {
            if !is(&Method::GET) {
                return empty(405);
            }
            server_list(inner, path.ends_with("available_servers")).await
        }
        "/dmsg-discovery/deregister" => {
            if !is(&Method::DELETE) {
                return empty(405);
            }
            deregister(inner, req).await
        }
        p if p.starts_with("/dmsg-discovery/entry/") => {
            let key = &p["/dmsg-discovery/entry/".len()..];
            if key.contains('/') {
                return not_found_page();
            }
            if is(&Method::POST) {
                let timeout = req
                    .uri()
                    .query()
                    .is_some_and(|q| q.split('&').any(|kv| kv == "timeout=true"));
                let Some(body) = body_bytes(req) else {
                    return msg(500, "something unexpected happened");
                };
                post_entry(inner, &body, timeout).await
            } else if is(&Method::GET) && !key.is_empty() {
                get_entry(inner, key).await
            } else {
                empty(405)
            }
        }
        _ => not_found_page(),
    }
}

async fn get_entry(inner: &DiscApi, key: &str) -> Response<Full<Bytes>> {
    if key.bytes().all(|b| b == b'0') {
        return msg(404, NOT_FOUND);
    }
    let Ok(pk) = PubKey::from_hex(&key.to_ascii_lowercase()) else {
        return msg(400, BAD_INPUT);
    };
    match inner.backend.get(pk).await {
        Ok(Some((_, j))) => json(200, j),
        Ok(None) => msg(404, NOT_FOUND),
        Err(StoreUnavailable) => msg(500, "something unexpected happened"),
    }
}

fn policy(inner: &DiscApi) -> DiscPolicy {
    DiscPolicy {
        now_ns: crate::now_ns(),
        production: !inner.cfg.test_mode,
        entry_protocol: inner.cfg.entry_protocol,
    }
}

fn refusal(r: &dmsg_proto::error::DiscRefusal) -> Response<Full<Bytes>> {
    msg(r.status(), &r.message())
}

async fn post_entry(inner: &DiscApi, body: &[u8], timeout: bool) -> Response<Full<Bytes>> {
    let e = match disc::decode_body(body, &policy(inner)) {
        Ok(e) => e,
        Err(r) => return refusal(&r),
    };
    let stored = match inner.backend.get(e.static_pk).await {
        Ok(s) => s.map(|(e, _)| e),
        Err(StoreUnavailable) => return msg(500, "something unexpected happened"),
    };
    let outcome = match disc::check_post_entry(&e, stored.as_ref(), &policy(inner)) {
        Ok(o) => o,
        Err(r) => return refusal(&r),
    };
    let ttl = if e.server.is_some() && e.client.is_none() {
        Some(inner.cfg.server_ttl)
    } else if e.client.is_some() && timeout {
        Some(inner.cfg.client_ttl)
    } else if e.server.is_some() {
        // Both members: the reference stores it as a server (2 min TTL).
        Some(inner.cfg.server_ttl)
    } else {
        None
    };
    match inner.backend.put(e, stored.is_none(), ttl).await {
        Ok(()) => msg(200, outcome.message()),
        Err(StoreUnavailable) => msg(500, "something unexpected happened"),
    }
}

async fn delete_entry(inner: &DiscApi, body: &[u8]) -> Response<Full<Bytes>> {
    let e = match disc::decode_body(body, &policy(inner)) {
        Ok(e) => e,
        Err(r) => return refusal(&r),
    };
    if let Err(r) = disc::check_delete_entry(&e, &policy(inner)) {
        return refusal(&r);
    }
    match inner.backend.remove(vec![e.static_pk]).await {
        Ok(()) => msg(200, "deleted entry"),
        Err(StoreUnavailable) => msg(500, "something unexpected happened"),
    }
}

async fn server_list(inner: &DiscApi, available: bool) -> Response<Full<Bytes>> {
    let Ok(entries) = inner.backend.servers().await else {
        return msg(500, "something unexpected happened");
    };
    let mut list: Vec<(i64, String)> = Vec::new();
    for (entry, j) in entries {
        if available {
            match &entry.server {
                Some(srv) if srv.available_sessions > 0 => list.push((srv.available_sessions, j)),
                _ => {}
            }
        } else {
            list.push((0, j));
        }
    }
    if list.is_empty() {
        return msg(404, NO_SERVERS);
    }
    if available {
        list.sort_by_key(|e| std::cmp::Reverse(e.0));
        list.truncate(DEFAULT_MAX_SERVERS_LISTED);
    }
    let mut out = String::from("[");
    for (i, (_, j)) in list.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(j);
    }
    out.push(']');
    json(200, out)
}

async fn deregister(inner: &DiscApi, req: Request<Option<Bytes>>) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let nm_pk = header("NM-PK");
    let nm_sign = header("NM-Sign");
    if !inner.cfg.whitelist.contains(&nm_pk) {
        return empty(403);
    }
    let Ok(pk) = PubKey::from_hex(&nm_pk) else {
        return empty(400);
    };
    let Ok(sig) = Sig::from_hex(&nm_sign) else {
        return empty(400);
    };
    if pk.verify(pk.to_hex().as_bytes(), &sig).is_err() {
        return empty(403);
    }
    let Some(body) = body_bytes(req) else {
        return empty(400);
    };
    let Ok(list) = serde_json::from_slice::<Vec<String>>(&body) else {
        return empty(400);
    };
    let mut keys = Vec::with_capacity(list.len());
    for k in &list {
        match PubKey::from_hex(&k.to_ascii_lowercase()) {
            Ok(pk) => keys.push(pk),
            Err(_) => return msg(400, BAD_INPUT),
        }
    }
    match inner.backend.remove(keys).await {
        Ok(()) => json(200, "null".into()),
        Err(StoreUnavailable) => msg(500, "something unexpected happened"),
    }
}
