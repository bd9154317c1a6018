//! Errors of the transport manager and the catalog.
use keys::PubKey;

/// Why `add` was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AddError {
    /// A transport to ourselves.
    #[error("a transport needs another visor's key")]
    SelfTransport,
    /// The manager holds its maximum.
    #[error("already {max} transports")]
    Full {
        /// The bound.
        max: usize,
    },
    /// The manager has stopped.
    #[error("the transport manager has stopped")]
    Stopped,
}

/// Why `remove` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoveError {
    /// No such transport.
    #[error("no transport {id}")]
    NotFound {
        /// The id asked for.
        id: String,
    },
}

/// Why a link ended (kept as the transport's last error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The DMSG dial failed.
    #[error("dial {pk}: {source}")]
    Dial {
        /// The peer.
        pk: PubKey,
        /// The cause.
        #[source]
        source: dmsg::error::DialError,
    },
    /// The stream failed.
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent a frame that does not parse.
    #[error("bad frame: {0}")]
    Frame(#[from] crate::wire::FrameError),
    /// The peer broke the protocol (e.g. a Hello for another transport).
    #[error("protocol: {0}")]
    Protocol(&'static str),
    /// The peer closed the link.
    #[error("closed by peer ({0:?})")]
    Closed(crate::wire::CloseReason),
    /// Nothing arrived in time.
    #[error("timed out ({0})")]
    Timeout(&'static str),
}

/// Why `tp all` could not be answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The HTTP fallback request failed.
    #[error("GET {url}: {source}")]
    Http {
        /// The URL.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The HTTP fallback answer is not the expected JSON.
    #[error("GET {url}: {source}")]
    Json {
        /// The URL.
        url: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The HTTP fallback answer is over a bound.
    #[error("GET {url}: answer over the limit {max}")]
    TooLarge {
        /// The URL.
        url: String,
        /// The bound (bytes or entries).
        max: usize,
    },
}
