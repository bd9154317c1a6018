//! Errors of the multiplexer session: a peer's frame refused ([`ProtocolError`], which closes
//! the session) and local calls that cannot proceed ([`OpenError`], [`StreamError`],
//! [`PingError`]).

use super::StreamId;
use crate::error::YamuxError;

/// A frame the peer must not send; the session is closed with
/// [`CloseReason::Protocol`](super::CloseReason::Protocol).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The header does not decode (version or type byte).
    #[error("bad frame header: {0}")]
    Header(#[from] YamuxError),
    /// An smux header does not decode (version, command or a fixed length).
    #[error("bad smux frame: {0}")]
    Smux(#[from] SmuxFrameError),
    /// A data frame longer than the whole window we grant can never be legal.
    #[error("data frame of {len} bytes is beyond the {max}-byte window")]
    DataTooLong {
        /// Announced body length.
        len: u32,
        /// The window we grant per stream.
        max: u32,
    },
    /// A stream frame (data or window update) on stream 0.
    #[error("stream frame on stream 0")]
    StreamZero,
    /// The peer opened a stream id of our parity.
    #[error("stream id {id} of the wrong parity")]
    WrongParity {
        /// The stream id.
        id: StreamId,
    },
    /// The peer opened a stream id not above the last one it opened.
    #[error("stream id {id} reused (last opened {last})")]
    IdReused {
        /// The stream id.
        id: StreamId,
        /// The last id the peer opened.
        last: StreamId,
    },
    /// The peer sent more data than the window it was granted.
    #[error("{len} bytes on stream {id} exceed the receive window of {window}")]
    WindowExceeded {
        /// The stream id.
        id: StreamId,
        /// Bytes in the frame.
        len: u32,
        /// Window left.
        window: u32,
    },
    /// A ping on a stream other than 0.
    #[error("ping on stream {0}")]
    PingOnStream(StreamId),
    /// The driver broke the call order (a header while a body was due, or a body of the wrong
    /// length).
    #[error("driver error: expected a body of {expected} bytes, got {got}")]
    Sequence {
        /// Body bytes due.
        expected: usize,
        /// Bytes given (0 for a header).
        got: usize,
    },
}

/// Why an smux frame header (or UPD body) is refused; a Go peer stops reading at each of these
/// (spec `smux.md` §1–2, §8 item 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SmuxFrameError {
    /// The version byte is not 2.
    #[error("smux version {0} (want 2)")]
    Version(u8),
    /// The command byte is above 4 (UPD).
    #[error("unknown smux command {0}")]
    Cmd(u8),
    /// SYN, FIN or NOP with a body, or UPD with a body other than 8 bytes.
    #[error("smux command {cmd} with length {length}")]
    Length {
        /// The command byte.
        cmd: u8,
        /// The announced length.
        length: u16,
    },
}

/// Why [`StreamMux::open`](super::StreamMux::open) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The session is closed (or the peer sent GoAway).
    #[error("session closed")]
    SessionClosed,
    /// Every stream id of our parity has been used.
    #[error("stream ids exhausted")]
    IdsExhausted,
    /// `max_streams` streams are open.
    #[error("too many streams (limit {max})")]
    TooManyStreams {
        /// The limit.
        max: usize,
    },
}

/// Why a stream read or write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// We half-closed the stream (FIN sent): no more writes.
    #[error("stream {0} closed for writing")]
    Finished(StreamId),
    /// The session is closed.
    #[error("session closed")]
    SessionClosed,
    /// The stream was reset (by the peer, or by the session closing).
    #[error("stream {0} reset")]
    Reset(StreamId),
    /// No such stream (never opened, or forgotten).
    #[error("unknown stream {0}")]
    Unknown(StreamId),
}

/// Why [`StreamMux::ping`](super::StreamMux::ping) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PingError {
    /// The protocol has no session ping frame (smux pings over a stream instead).
    #[error("the protocol has no ping frame")]
    Unsupported,
}
