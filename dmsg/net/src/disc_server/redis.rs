//! The reference's Redis layout for a discovery: key = PK hex → entry JSON (with a TTL for
//! entries that expire), and the key sets `servers` and `clients`. Writes are atomic pipelines.
use std::time::Duration;

use dmsg_proto::disc::Entry;
use keys::PubKey;

use super::{BackendFuture, EntryBackend, StoreUnavailable};
use crate::error::ServeError;

/// The Redis backend.
pub(super) struct RedisBackend {
    con: ::redis::aio::ConnectionManager,
}

impl RedisBackend {
    /// Connects to `url`.
    pub(super) async fn connect(url: &str) -> Result<RedisBackend, ServeError> {
        let err = |source| ServeError::Redis {
            url: url.to_string(),
            source,
        };
        let con = ::redis::Client::open(url)
            .map_err(err)?
            .get_connection_manager()
            .await
            .map_err(err)?;
        Ok(RedisBackend { con })
    }

    async fn get_(&self, pk: &PubKey) -> Result<Option<(Entry, String)>, StoreUnavailable> {
        let v: Option<String> = ::redis::cmd("GET")
            .arg(pk.to_hex())
            .query_async(&mut self.con.clone())
            .await
            .map_err(redis_err)?;
        // A corrupt stored value counts as absent (the reference dereferences nil there).
        Ok(v.and_then(|j| Entry::from_json(j.as_bytes()).ok().map(|e| (e, j))))
    }

    async fn put_(&self, e: Entry, ttl: Option<Duration>) -> Result<(), StoreUnavailable> {
        let key = e.static_pk.to_hex();
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        let set = pipe.cmd("SET").arg(&key).arg(e.canonical_json());
        if let Some(t) = ttl {
            set.arg("PX").arg(t.as_millis() as u64);
        }
        set.ignore();
        if e.server.is_some() {
            pipe.cmd("SADD").arg("servers").arg(&key).ignore();
        }
        if e.client.is_some() {
            pipe.cmd("SADD").arg("clients").arg(&key).ignore();
        }
        pipe.query_async::<()>(&mut self.con.clone())
            .await
            .map_err(redis_err)
    }

    async fn remove_(&self, pks: &[PubKey]) -> Result<(), StoreUnavailable> {
        if pks.is_empty() {
            return Ok(());
        }
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        for pk in pks {
            let key = pk.to_hex();
            pipe.cmd("DEL").arg(&key).ignore();
            pipe.cmd("SREM").arg("servers").arg(&key).ignore();
            pipe.cmd("SREM").arg("clients").arg(&key).ignore();
        }
        pipe.query_async::<()>(&mut self.con.clone())
            .await
            .map_err(redis_err)
    }

    async fn clients_(&self) -> Result<Vec<String>, StoreUnavailable> {
        ::redis::cmd("SMEMBERS")
            .arg("clients")
            .query_async(&mut self.con.clone())
            .await
            .map_err(redis_err)
    }

    /// Existing entries of the server set (stale members are pruned, as the reference's
    /// 10-second cleanup does).
    async fn servers_(&self) -> Result<Vec<(Entry, String)>, StoreUnavailable> {
        let mut con = self.con.clone();
        let keys: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg("servers")
            .query_async(&mut con)
            .await
            .map_err(redis_err)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let vals: Vec<Option<String>> = ::redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut con)
            .await
            .map_err(redis_err)?;
        let mut out = Vec::new();
        let mut stale = Vec::new();
        for (k, v) in keys.iter().zip(vals) {
            match v.and_then(|j| Entry::from_json(j.as_bytes()).ok().map(|e| (e, j))) {
                Some(x) => out.push(x),
                None => stale.push(k.clone()),
            }
        }
        if !stale.is_empty() {
            let _: Result<(), _> = ::redis::cmd("SREM")
                .arg("servers")
                .arg(&stale)
                .query_async(&mut con)
                .await;
        }
        Ok(out)
    }
}

impl EntryBackend for RedisBackend {
    fn get(&self, pk: PubKey) -> BackendFuture<'_, Option<(Entry, String)>> {
        Box::pin(async move { self.get_(&pk).await })
    }
    fn put(&self, e: Entry, _new: bool, ttl: Option<Duration>) -> BackendFuture<'_, ()> {
        Box::pin(self.put_(e, ttl))
    }
    fn remove(&self, pks: Vec<PubKey>) -> BackendFuture<'_, ()> {
        Box::pin(async move { self.remove_(&pks).await })
    }
    fn clients(&self) -> BackendFuture<'_, Vec<String>> {
        Box::pin(self.clients_())
    }
    fn servers(&self) -> BackendFuture<'_, Vec<(Entry, String)>> {
        Box::pin(self.servers_())
    }
}

fn redis_err(e: ::redis::RedisError) -> StoreUnavailable {
    tracing::warn!(error = %e, "discovery redis error");
    StoreUnavailable
}
