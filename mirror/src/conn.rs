//! One Redis endpoint type for the writer and the feed: a single server (standalone, or a
//! managed Redis behind one address) or a Redis Cluster.
//!
//! URL forms accepted by [`Endpoint::parse`]:
//! - `redis://[:password@]host:port[/db]` (or `rediss://`): one server;
//! - `redis+cluster://host:port,host:port,…` (optionally `:password@` before the first host):
//!   a cluster, discovered from any of the seed nodes.
//!
//! Both connections multiplex many requests over one socket per node, so the writer and the feed
//! issue one command per shard *concurrently* instead of one multi-key pipeline: every command
//! touches the keys of a single shard (one hash slot), which is what a cluster requires.
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::error::MirrorError;

/// URL scheme of a cluster endpoint.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";

/// Where the mirror lives.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// One server.
    Single(Box<redis::Client>),
    /// A Redis Cluster.
    Cluster(Box<ClusterClient>),
}

impl Endpoint {
    /// Parses a URL (see the module doc). Does not connect.
    pub fn parse(url: &str) -> Result<Endpoint, MirrorError> {
        let err = |source| MirrorError::Url {
            url: url.to_string(),
            source,
        };
        match url.strip_prefix(CLUSTER_SCHEME) {
            Some(rest) => {
                let (auth, hosts) = match rest.rsplit_once('@') {
                    Some((a, h)) => (format!("{a}@"), h),
                    None => (String::new(), rest),
                };
                let nodes: Vec<String> = hosts
                    .trim_end_matches('/')
                    .split(',')
                    .filter(|h| !h.is_empty())
                    .map(|h| format!("redis://{auth}{h}"))
                    .collect();
                ClusterClient::builder(nodes)
                    .connection_timeout(crate::writer::REDIS_IO_TIMEOUT)
                    .build()
                    .map(|c| Endpoint::Cluster(Box::new(c)))
                    .map_err(err)
            }
            None => redis::Client::open(url)
                .map(|c| Endpoint::Single(Box::new(c)))
                .map_err(err),
        }
    }

    /// Connects, with `response_timeout` on every request.
    pub async fn connect(&self, response_timeout: Duration) -> redis::RedisResult<Conn> {
        match self {
            Endpoint::Single(c) => {
                let cfg = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(crate::writer::REDIS_IO_TIMEOUT))
                    .set_response_timeout(Some(response_timeout));
                c.get_multiplexed_async_connection_with_config(&cfg)
                    .await
                    .map(Conn::Single)
            }
            Endpoint::Cluster(c) => {
                let cfg = redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(crate::writer::REDIS_IO_TIMEOUT)
                    .set_response_timeout(response_timeout);
                c.get_async_connection_with_config(cfg)
                    .await
                    .map(|c| Conn::Cluster(Box::new(c)))
            }
        }
    }
}

/// A connection to an [`Endpoint`]. Cheap to clone (a handle to a multiplexed connection).
#[derive(Clone)]
pub enum Conn {
    /// One server.
    Single(MultiplexedConnection),
    /// A cluster (requests are routed by key slot).
    Cluster(Box<ClusterConnection>),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_select_single_or_cluster() {
        assert!(matches!(
            Endpoint::parse("redis://127.0.0.1:6379/").unwrap(),
            Endpoint::Single(_)
        ));
        assert!(matches!(
            Endpoint::parse("redis+cluster://127.0.0.1:7000,127.0.0.1:7001").unwrap(),
            Endpoint::Cluster(_)
        ));
        assert!(Endpoint::parse("nonsense").is_err());
    }
}
