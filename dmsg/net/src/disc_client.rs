//! HTTP client for the reference discovery API (spec §6.4).
use dmsg_proto::disc::Entry;
use keys::{PubKey, SecKey};

use crate::defaults::DEFAULT_DISC_TIMEOUT;
use crate::error::DiscError;

/// A discovery API client (cheap to clone).
#[derive(Debug, Clone)]
pub struct DiscClient {
    base: String,
    http: reqwest::Client,
}

fn now_ns() -> i64 {
    crate::now_ns()
}

impl DiscClient {
    /// A client for the discovery at `base` (e.g. `http://127.0.0.1:9090`).
    pub fn new(base: &str) -> DiscClient {
        let http = reqwest::Client::builder()
            .timeout(DEFAULT_DISC_TIMEOUT)
            .build()
            .unwrap_or_default();
        DiscClient {
            base: base.trim_end_matches('/').to_string(),
            http,
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<(u16, Vec<u8>), DiscError> {
        let resp = req.send().await.map_err(|source| DiscError::Http {
            url: url.to_string(),
            source,
        })?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|source| DiscError::Http {
            url: url.to_string(),
            source,
        })?;
        Ok((status, body.to_vec()))
    }

    fn status_err(url: &str, status: u16, body: &[u8]) -> DiscError {
        #[derive(serde::Deserialize)]
        struct Msg {
            message: String,
        }
        let message = serde_json::from_slice::<Msg>(body)
            .map(|m| m.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned());
        DiscError::Status {
            url: url.to_string(),
            status,
            message,
        }
    }

    /// `GET /dmsg-discovery/entry/{pk}`.
    pub async fn entry(&self, pk: &PubKey) -> Result<Entry, DiscError> {
        let url = format!("{}/dmsg-discovery/entry/{}", self.base, pk.to_hex());
        let (status, body) = self.send(self.http.get(&url), &url).await?;
        match status {
            200 => Entry::from_json(&body).map_err(|source| DiscError::Decode { url, source }),
            404 => Err(DiscError::NotFound { pk: *pk }),
            s => Err(Self::status_err(&url, s, &body)),
        }
    }

    /// `POST /dmsg-discovery/entry/` of a signed entry.
    pub async fn post_entry(&self, e: &Entry) -> Result<(), DiscError> {
        let url = format!("{}/dmsg-discovery/entry/", self.base);
        let (status, body) = self
            .send(self.http.post(&url).body(e.canonical_json()), &url)
            .await?;
        if status == 200 {
            Ok(())
        } else {
            Err(Self::status_err(&url, status, &body))
        }
    }

    /// `DELETE /dmsg-discovery/entry` of a signed entry.
    pub async fn delete_entry(&self, e: &Entry) -> Result<(), DiscError> {
        let url = format!("{}/dmsg-discovery/entry", self.base);
        let (status, body) = self
            .send(self.http.delete(&url).body(e.canonical_json()), &url)
            .await?;
        if status == 200 {
            Ok(())
        } else {
            Err(Self::status_err(&url, status, &body))
        }
    }

    /// `GET /dmsg-discovery/available_servers` (empty on 404).
    pub async fn available_servers(&self) -> Result<Vec<Entry>, DiscError> {
        self.server_list("available_servers").await
    }

    /// `GET /dmsg-discovery/all_servers` (empty on 404).
    pub async fn all_servers(&self) -> Result<Vec<Entry>, DiscError> {
        self.server_list("all_servers").await
    }

    async fn server_list(&self, what: &str) -> Result<Vec<Entry>, DiscError> {
        let url = format!("{}/dmsg-discovery/{what}", self.base);
        let (status, body) = self.send(self.http.get(&url), &url).await?;
        match status {
            200 => {
                let raw: Vec<Box<serde_json::value::RawValue>> = serde_json::from_slice(&body)
                    .map_err(|source| DiscError::Json {
                        url: url.clone(),
                        source,
                    })?;
                raw.iter()
                    .map(|r| {
                        Entry::from_json(r.get().as_bytes()).map_err(|source| DiscError::Decode {
                            url: url.clone(),
                            source,
                        })
                    })
                    .collect()
            }
            404 => Ok(Vec::new()),
            s => Err(Self::status_err(&url, s, &body)),
        }
    }

    /// Signs and posts `e` with the next sequence after what is stored (the reference client's
    /// PutEntry with its retry on "wrong sequence").
    pub async fn put_entry(&self, sk: &SecKey, mut e: Entry) -> Result<Entry, DiscError> {
        match self.entry(&e.static_pk).await {
            Ok(old) => e.sequence = old.sequence.saturating_add(1).max(e.sequence),
            Err(DiscError::NotFound { .. }) => {}
            Err(err) => return Err(err),
        }
        e.timestamp = now_ns();
        e.signature.clear();
        e.sign(sk);
        self.post_entry(&e).await?;
        Ok(e)
    }
}
