//! Error enums of the network layer.
use std::io;

use dmsg_proto::ErrorCode;
use dmsg_proto::error::{HandshakeError, ObjectError, RecordError};
use keys::PubKey;

/// Why a session could not be set up or ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// Socket error.
    #[error("session i/o with {addr}")]
    Io {
        /// Remote socket address (or server address text).
        addr: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The XK handshake failed (bad message, invalid point, wrong key).
    #[error("noise handshake with {addr}")]
    Handshake {
        /// Remote socket address.
        addr: String,
        /// The cause.
        #[source]
        source: HandshakeError,
    },
    /// A handshake message frame was malformed (length prefix out of range).
    #[error("bad handshake frame from {addr}: length {len}")]
    BadFrame {
        /// Remote socket address.
        addr: String,
        /// Announced length.
        len: usize,
    },
    /// The handshake did not finish within the deadline.
    #[error("handshake with {addr} timed out")]
    HandshakeTimeout {
        /// Remote socket address.
        addr: String,
    },
    /// Bytes arrived behind the final handshake message in the same read (203).
    #[error("extra bytes after the session handshake from {addr}")]
    ExtraBytes {
        /// Remote socket address.
        addr: String,
    },
    /// The session is closed.
    #[error("session closed")]
    Closed,
}

/// Why a stream could not be opened or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The session carrying the stream is gone.
    #[error("session closed")]
    SessionClosed,
    /// The peer refused or reset the stream.
    #[error("stream reset by peer")]
    Reset,
    /// The stream began with the 2026 ping marker `00 00` instead of an object (spec §3 item
    /// 8): a zero-length record.
    #[error("ping marker instead of an object")]
    Ping,
    /// The session has too many streams.
    #[error("too many streams on the session")]
    TooManyStreams,
    /// A record could not be sealed/opened.
    #[error("stream record")]
    Record(#[source] RecordError),
    /// A record frame was longer than the maximum.
    #[error("record frame of {len} bytes is too long")]
    FrameTooLong {
        /// Announced length.
        len: usize,
    },
    /// The request or response object was refused (carries the DMSG code).
    #[error("stream object refused")]
    Object(#[source] ObjectError),
    /// The KK handshake failed.
    #[error("stream noise handshake")]
    Handshake(#[source] HandshakeError),
    /// The peer (or the relay) refused with a DMSG error code.
    #[error("refused: {code}")]
    Refused {
        /// The code.
        code: ErrorCode,
    },
    /// The request/response exchange timed out.
    #[error("stream handshake timed out")]
    Timeout,
    /// The stream ended before the response.
    #[error("stream closed before the response")]
    Eof,
}

impl StreamError {
    /// The DMSG error code that best describes this error, when there is one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            StreamError::Refused { code } => Some(*code),
            StreamError::Object(ObjectError::Refused { code, .. }) => Some(*code),
            _ => None,
        }
    }
}

/// Discovery client errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscError {
    /// HTTP transport error.
    #[error("discovery request to {url}")]
    Http {
        /// Request URL.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The discovery answered with an error status.
    #[error("discovery answered {status} for {url}: {message}")]
    Status {
        /// Request URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The `message` member (or the raw body).
        message: String,
    },
    /// The reply did not decode.
    #[error("bad discovery reply from {url}")]
    Decode {
        /// Request URL.
        url: String,
        /// The cause.
        #[source]
        source: dmsg_proto::error::EntryDecodeError,
    },
    /// The reply was not the JSON expected.
    #[error("bad discovery reply from {url}")]
    Json {
        /// Request URL.
        url: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// No entry for the key (404).
    #[error("no discovery entry for {pk}")]
    NotFound {
        /// The key.
        pk: PubKey,
    },
    /// A non-HTTP discovery (the DHT) could not answer or refused an entry.
    #[error("{source_name}: {reason}")]
    Unavailable {
        /// Which discovery (e.g. `dht`).
        source_name: &'static str,
        /// What went wrong.
        reason: String,
    },
}

/// Errors of [`crate::Client::dial`] and [`crate::Client::listen`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// Discovery lookup failed.
    #[error("discovery lookup")]
    Disc(#[source] DiscError),
    /// The target's entry has no delegated servers (103).
    #[error("{pk} has no delegated servers")]
    NoDelegated {
        /// The target.
        pk: PubKey,
    },
    /// No session to any of the target's servers could be opened (202).
    #[error("cannot connect to any delegated server of {pk}")]
    NoSession {
        /// The target.
        pk: PubKey,
    },
    /// The stream failed.
    #[error("stream to {pk}:{port}")]
    Stream {
        /// Target key.
        pk: PubKey,
        /// Target port.
        port: u16,
        /// The cause.
        #[source]
        source: StreamError,
    },
    /// Every server tried reset the request: neither they nor their mesh peers hold a session
    /// with the target (307; refusals close the stream without a reason on the wire).
    #[error(
        "{pk} is not reachable through {}: none of these servers nor their mesh peers holds a session with it (the mesh forwards one hop only){}",
        key_list(.via),
        if *.pinned { "; --server forbids sessions with other servers" } else { "" }
    )]
    Unreachable {
        /// The target.
        pk: PubKey,
        /// The servers the request went through.
        via: Vec<PubKey>,
        /// Whether the client may only use configured servers.
        pinned: bool,
    },
    /// The port is already listened on (400).
    #[error("port {port} already in use")]
    PortInUse {
        /// The port.
        port: u16,
    },
    /// No ephemeral port is free.
    #[error("no free ephemeral port")]
    NoEphemeralPort,
    /// The client was closed.
    #[error("client closed")]
    Closed,
}

/// Errors starting a server or discovery.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Could not bind.
    #[error("bind {addr}")]
    Bind {
        /// Address.
        addr: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Could not connect to Redis.
    #[error("redis at {url}")]
    Redis {
        /// The URL.
        url: String,
        /// The cause.
        #[source]
        source: redis::RedisError,
    },
    /// Persistence failed.
    #[error("discovery store at {path}")]
    Store {
        /// Path.
        path: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// `server 02ab…` / `servers 02ab…, 03cd…` (short keys), for error messages.
fn key_list(v: &[PubKey]) -> String {
    let short: Vec<String> = v
        .iter()
        .map(|k| {
            let h = k.to_hex();
            format!("{}…", &h[..h.len().min(12)])
        })
        .collect();
    match short.len() {
        0 => "no server".to_string(),
        1 => format!("server {}", short[0]),
        _ => format!("servers {}", short.join(", ")),
    }
}
