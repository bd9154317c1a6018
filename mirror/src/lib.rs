//! skymesh Redis mirror: backend services write signed items straight into Redis, with no DHT
//! node of their own, and the full nodes that share that Redis serve them live.
//!
//! # Components
//!
//! - [`RedisMirror`] (writer): signs items with the service key — for its own key, or for
//!   subjects when the service is a trusted writer — checks them against the same acceptance
//!   rules the nodes apply, and writes them in pipelined batches through one Lua script that
//!   compares seqs atomically ([`script`]), so concurrent writers can never regress an item.
//! - [`MirrorFeed`] (reader, used by full nodes): catches up with a full scan, then follows the
//!   per-shard change streams live and hands every *verified* item to the node.
//! - [`keys`]: the versioned key schema (hash-tagged per shard for Redis Cluster).
//! - [`metrics`]: the feed's `skymesh_mirror_*` gauges ([`FeedMetrics`]), for a node's registry.
//!
//! # Delivery semantics
//!
//! - A write that returned `Ok` was acknowledged by Redis (durable as far as Redis's own
//!   persistence settings make it: run Redis with AOF `appendfsync always` or `everysec`).
//! - The writer buffers at most [`MirrorConfig::queue`] writes while Redis is unreachable; past
//!   that, writes fail at once with [`MirrorError::BufferFull`]. Nothing is dropped silently.
//! - The feed delivers each change at least once; stores make repeats no-ops (same seq, same
//!   item). Items that fail verification are never delivered.
//! - Nothing here ever deletes or expires a Redis key it did not write.
//!
//! Based on skywire `pkg/dht/mirror_redis.go` and `backend_redis.go`, with their flaws fixed:
//! the Go full node loaded Redis once at start (later writes were invisible until a restart),
//! did not verify what it loaded, and its expiry sweep deleted shared mirror keys.
#![deny(missing_docs)]

pub mod conn;
pub mod error;
pub mod feed;
pub mod keys;
pub mod metrics;
pub mod reconnect;
pub mod script;
pub mod writer;

pub use error::MirrorError;
pub use feed::{FeedConfig, FeedStats, MirrorFeed};
pub use metrics::FeedMetrics;
pub use writer::{MirrorConfig, RedisMirror, WriteOutcome};
