//! The admin API's bearer token: when a node requires one, where it is kept, how requests are
//! checked, and how the CLI clients (`dht`, `tp`, `msg`) find it.
//!
//! - **When**: `--admin-auth auto` (the default) requires a token when `--http` binds a
//!   non-loopback address; `--admin-auth token` always does. A loopback-only listener is reached
//!   by local users only, as before.
//! - **Where**: `DATA/admin.token`, 32 random bytes in hex, created on first start with mode
//!   0600 and reused afterwards; its path is logged (and printed) at start-up, never the token.
//! - **What is open**: `/health`, `/metrics` (scrapers and load balancers carry no token), the
//!   status page's assets (`/`, `/status.js`, `/status.css`: they hold no data; the page asks
//!   for the token when the API answers 401) and `/dmsg-discovery/…` (the reference discovery
//!   API that visors and servers call, public by design). Everything else answers `401` with
//!   `WWW-Authenticate: Bearer` unless `Authorization: Bearer TOKEN` matches.
//! - **Clients** take the token from `--token`, `$SKYMESH_TOKEN`, or `--data DIR` (reading
//!   `DIR/admin.token`), in that order ([`NodeArgs::client`]).
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// File in the data directory holding the token.
pub(crate) const TOKEN_FILE: &str = "admin.token";
/// Environment variable the CLI clients read the token from.
pub(crate) const TOKEN_ENV: &str = "SKYMESH_TOKEN";

/// When the admin API requires the bearer token.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AdminAuth {
    /// Only when the HTTP listener is not on a loopback address.
    #[default]
    Auto,
    /// Always.
    Token,
}

impl AdminAuth {
    /// Whether a listener on `addr` requires the token.
    pub(crate) fn required(self, addr: SocketAddr) -> bool {
        match self {
            AdminAuth::Auto => !addr.ip().is_loopback(),
            AdminAuth::Token => true,
        }
    }
}

/// Reads `DATA/admin.token`, creating it (0600) on first start. Returns the token and its path.
pub(crate) fn load_or_create(data: &Path) -> anyhow::Result<(String, PathBuf)> {
    let path = data.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok((t.trim().to_owned(), path)),
        Ok(_) => anyhow::bail!("{} is empty; delete it to get a new token", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    // A secret key's 32 random bytes, from the same CSPRNG as node keys.
    let token = keys::SecKey::generate().to_hex();
    write_private(&path, &token)?;
    Ok((token, path))
}

/// Creates `path` (which must not exist) readable by its owner only.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// The token a node's admin API requires, if any: with `auth` requiring one for `http`, read
/// or created in `data`; its path is logged and printed (never the token itself).
pub(crate) fn token_for(
    auth: AdminAuth,
    http: SocketAddr,
    data: &Path,
) -> anyhow::Result<Option<String>> {
    if !auth.required(http) {
        return Ok(None);
    }
    let (token, path) = load_or_create(data)?;
    crate::telemetry::notice(format_args!(
        "admin API on {http} requires a bearer token: {} (skymesh … --data {} reads it)",
        path.display(),
        data.display()
    ));
    Ok(Some(token))
}

/// Paths answered without the token (see the module doc).
fn is_open(path: &str) -> bool {
    matches!(
        path,
        crate::api::HEALTH
            | crate::api::METRICS
            | crate::status::PAGE
            | crate::status::SCRIPT
            | crate::status::STYLE
    ) || path.starts_with("/dmsg-discovery/")
}

/// Compares without an early exit, so the time taken does not tell how much of a guess matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `req` may pass: an open path, or the right bearer token.
pub(crate) fn allowed(token: &str, path: &str, authorization: Option<&HeaderValue>) -> bool {
    if is_open(path) {
        return true;
    }
    authorization
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| same(given.trim().as_bytes(), token.as_bytes()))
}

/// The middleware: wrap a router with
/// `axum::middleware::from_fn(move |req, next| admin::check(token.clone(), req, next))`.
pub(crate) async fn check(token: std::sync::Arc<str>, req: Request, next: Next) -> Response {
    if allowed(
        &token,
        req.uri().path(),
        req.headers().get(header::AUTHORIZATION),
    ) {
        return next.run(req).await;
    }
    let body = crate::api::ErrorBody {
        error: Some(format!(
            "this admin API needs a bearer token: --token, ${TOKEN_ENV} or --data DIR (DIR/{TOKEN_FILE})"
        )),
    };
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(body),
    )
        .into_response()
}

/// Protects `app` when `token` is set.
pub(crate) fn protect(app: axum::Router, token: Option<String>) -> axum::Router {
    match token {
        Some(t) => {
            let t: std::sync::Arc<str> = t.into();
            app.layer(axum::middleware::from_fn(move |req, next| {
                check(t.clone(), req, next)
            }))
        }
        None => app,
    }
}

/// How a CLI client reaches a node's admin API: `--node URL` and the token, if any.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct NodeArgs {
    /// Admin API base URL of the node, e.g. http://127.0.0.1:7801.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        default_value = "http://127.0.0.1:7801"
    )]
    pub(crate) node: String,
    /// Bearer token of the admin API (needed when the node's --http is not on loopback).
    #[arg(long, global = true, env = TOKEN_ENV, hide_env_values = true, value_name = "TOKEN")]
    pub(crate) token: Option<String>,
    /// The node's data directory: read the token from DIR/admin.token.
    #[arg(long = "data", global = true, value_name = "DIR")]
    pub(crate) data: Option<PathBuf>,
}

impl NodeArgs {
    /// The token to send: `--token`/`$SKYMESH_TOKEN`, else `--data DIR`'s token file.
    pub(crate) fn token(&self) -> anyhow::Result<Option<String>> {
        if let Some(t) = &self.token {
            return Ok(Some(t.trim().to_owned()));
        }
        match &self.data {
            Some(dir) => {
                let path = dir.join(TOKEN_FILE);
                let t = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading the token {}", path.display()))?;
                Ok(Some(t.trim().to_owned()))
            }
            None => Ok(None),
        }
    }

    /// An HTTP client sending the token (if any) with every request.
    pub(crate) fn client(&self, timeout: Option<Duration>) -> anyhow::Result<reqwest::Client> {
        let mut b = reqwest::Client::builder();
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        if let Some(token) = self.token()? {
            let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
                .context("the token is not valid header text")?;
            v.set_sensitive(true);
            let mut h = reqwest::header::HeaderMap::new();
            h.insert(reqwest::header::AUTHORIZATION, v);
            b = b.default_headers(h);
        }
        b.build().context("HTTP client")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_requires_a_token_off_loopback_only() {
        let at = |s: &str| s.parse::<SocketAddr>().expect("addr");
        assert!(!AdminAuth::Auto.required(at("127.0.0.1:7801")));
        assert!(!AdminAuth::Auto.required(at("[::1]:7801")));
        assert!(AdminAuth::Auto.required(at("0.0.0.0:7801")));
        assert!(AdminAuth::Auto.required(at("192.168.1.5:7801")));
        assert!(AdminAuth::Token.required(at("127.0.0.1:7801")));
    }

    #[test]
    fn only_health_metrics_page_and_discovery_are_open() {
        let ok = HeaderValue::from_static("Bearer abc");
        let bad = HeaderValue::from_static("Bearer abd");
        for p in [
            "/health",
            "/metrics",
            "/",
            "/status.js",
            "/dmsg-discovery/x",
        ] {
            assert!(allowed("abc", p, None), "{p}");
        }
        assert!(!allowed("abc", "/api/v1/info", None));
        assert!(!allowed("abc", "/api/v1/info", Some(&bad)));
        assert!(!allowed(
            "abc",
            "/api/v1/info",
            Some(&HeaderValue::from_static("abc"))
        ));
        assert!(allowed("abc", "/api/v1/info", Some(&ok)));
    }

    #[test]
    fn token_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (t1, path) = load_or_create(dir.path()).expect("create");
        assert_eq!(t1.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (t2, _) = load_or_create(dir.path()).expect("reuse");
        assert_eq!(t1, t2);
    }
}
