//! Errors of the mirror writer and feed.
use dht::{PutError, Target};

/// Why a mirror write did not happen. A write that returns `Ok` was acknowledged by Redis; any
/// error means the caller must not assume it was stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MirrorError {
    /// The Redis URL does not parse.
    #[error("invalid redis url {url:?}: {source}")]
    Url {
        /// The URL given.
        url: String,
        /// Why.
        #[source]
        source: redis::RedisError,
    },
    /// The item breaks the acceptance rules (signature, size, value format, trusted writer); it
    /// was never sent.
    #[error("item refused before writing: {source}")]
    Invalid {
        /// The rule that refused it.
        #[source]
        source: Box<PutError>,
    },
    /// The item could not be signed.
    #[error("signing failed: {source}")]
    Sign {
        /// Why.
        #[source]
        source: dht::SignError,
    },
    /// Redis holds a higher seq for this target (another writer was faster).
    #[error("stale: target {target} holds seq {stored_seq}, offered {offered_seq}")]
    Stale {
        /// The target.
        target: Target,
        /// Seq in Redis.
        stored_seq: u64,
        /// Seq offered.
        offered_seq: u64,
    },
    /// Redis holds different content under the same seq.
    #[error("seq conflict at target {target}: seq {seq} holds different content")]
    SeqConflict {
        /// The target.
        target: Target,
        /// The seq.
        seq: u64,
    },
    /// The write buffer is full (Redis slow or unreachable): nothing was queued.
    #[error("mirror write buffer full ({bound} writes pending); Redis is slow or unreachable")]
    BufferFull {
        /// The configured bound.
        bound: usize,
    },
    /// Redis did not acknowledge the write within the put timeout. The write may still land
    /// later (it stays idempotent), but it was not confirmed.
    #[error("redis did not acknowledge the write within {secs} s")]
    Timeout {
        /// The timeout in seconds.
        secs: u64,
    },
    /// The writer task has stopped.
    #[error("mirror writer stopped")]
    Closed,
    /// Redis answered something the script never returns (a different program wrote our keys).
    #[error("unexpected reply from redis: {what}")]
    Protocol {
        /// Description.
        what: &'static str,
    },
}
