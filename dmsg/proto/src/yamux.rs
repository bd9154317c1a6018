//! hashicorp/yamux v0.1.1 frame codec (protocol version 0), as DMSG runs it in plain text on the
//! session's TCP connection after the XK handshake.
//!
//! # Byte layout
//! ```text
//! header = version:u8 (0) ‖ type:u8 ‖ flags:u16 BE ‖ stream_id:u32 BE ‖ length:u32 BE
//! type 0 Data          length = body bytes that follow
//! type 1 WindowUpdate  length = window delta (SYN with delta 0 opens a stream, ACK accepts)
//! type 2 Ping          stream 0, length = opaque ping id (SYN asks, ACK echoes)
//! type 3 GoAway        stream 0, length = reason (0 normal, 1 protocol error, 2 internal)
//! flags  SYN 1, ACK 2, FIN 4, RST 8
//! ```
//! Stream ids: odd for the yamux client (the DMSG client), even for the server, 0 for the
//! session.
//!
//! What the frames mean (stream states, windows, limits, timers) is decided by the session state
//! machine in [`crate::mux::session`].
//!
//! Based on hashicorp/yamux v0.1.1 const.go and session.go, and yamux.json.

use crate::error::YamuxError;

/// Header length.
pub const HEADER_LEN: usize = 12;
/// The only protocol version.
pub const VERSION: u8 = 0;
/// Initial and maximum stream receive window of `yamux.DefaultConfig()` (256 KiB). A Data frame
/// longer than this can never be legal.
pub const DEFAULT_WINDOW: u32 = 256 * 1024;
/// `AcceptBacklog` default.
pub const DEFAULT_ACCEPT_BACKLOG: usize = 256;
/// Keep-alive interval default, seconds.
pub const DEFAULT_KEEPALIVE_SECS: u64 = 30;
/// Connection write timeout default, seconds.
pub const DEFAULT_WRITE_TIMEOUT_SECS: u64 = 10;
/// Stream open timeout default, seconds (an un-ACKed SYN closes the session in v0.1.1).
pub const DEFAULT_STREAM_OPEN_TIMEOUT_SECS: u64 = 75;
/// Stream close timeout default, seconds.
pub const DEFAULT_STREAM_CLOSE_TIMEOUT_SECS: u64 = 300;

/// Frame type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    /// Stream data.
    Data = 0,
    /// Window update (also stream open/accept/close).
    WindowUpdate = 1,
    /// Ping.
    Ping = 2,
    /// Session shutdown.
    GoAway = 3,
}

impl FrameType {
    /// Parses the type byte.
    pub fn from_u8(b: u8) -> Result<FrameType, YamuxError> {
        Ok(match b {
            0 => FrameType::Data,
            1 => FrameType::WindowUpdate,
            2 => FrameType::Ping,
            3 => FrameType::GoAway,
            _ => return Err(YamuxError::Type(b)),
        })
    }
}

/// Frame flags (a bit set; unknown bits are kept as received, as yamux ignores them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u16);

impl Flags {
    /// Opens a stream / asks for a ping.
    pub const SYN: Flags = Flags(1);
    /// Accepts a stream / answers a ping.
    pub const ACK: Flags = Flags(2);
    /// Half-closes a stream.
    pub const FIN: Flags = Flags(4);
    /// Resets a stream.
    pub const RST: Flags = Flags(8);
    /// No flags.
    pub const NONE: Flags = Flags(0);

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Union.
    pub fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
}

/// Go-away reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum GoAwayCode {
    /// Normal termination.
    Normal = 0,
    /// Protocol error.
    ProtocolError = 1,
    /// Internal error.
    InternalError = 2,
}

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Frame type.
    pub ty: FrameType,
    /// Flags.
    pub flags: Flags,
    /// Stream id (0 = session).
    pub stream_id: u32,
    /// Body length (Data), window delta (WindowUpdate), ping id (Ping) or reason (GoAway).
    pub length: u32,
}

impl Header {
    /// Builds a header.
    pub fn new(ty: FrameType, flags: Flags, stream_id: u32, length: u32) -> Header {
        Header {
            ty,
            flags,
            stream_id,
            length,
        }
    }

    /// Encodes the 12 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = VERSION;
        b[1] = self.ty as u8;
        b[2..4].copy_from_slice(&self.flags.0.to_be_bytes());
        b[4..8].copy_from_slice(&self.stream_id.to_be_bytes());
        b[8..12].copy_from_slice(&self.length.to_be_bytes());
        b
    }

    /// Decodes 12 header bytes (no semantic checks beyond version and type).
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, YamuxError> {
        if b[0] != VERSION {
            return Err(YamuxError::Version(b[0]));
        }
        Ok(Header {
            ty: FrameType::from_u8(b[1])?,
            flags: Flags(u16::from_be_bytes([b[2], b[3]])),
            stream_id: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            length: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        })
    }

    /// Bytes of body that follow this header (only Data frames have one).
    pub fn body_len(&self) -> usize {
        if self.ty == FrameType::Data {
            self.length as usize
        } else {
            0
        }
    }
}

/// A whole frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Stream data.
    Data {
        /// Stream id.
        stream_id: u32,
        /// Flags (SYN/ACK/FIN/RST may ride on data).
        flags: Flags,
        /// Body.
        body: &'a [u8],
    },
    /// Window update; with SYN/ACK/FIN/RST also stream control.
    WindowUpdate {
        /// Stream id.
        stream_id: u32,
        /// Flags.
        flags: Flags,
        /// Window delta.
        delta: u32,
    },
    /// Ping (SYN = request, ACK = answer).
    Ping {
        /// Flags.
        flags: Flags,
        /// Opaque id echoed by the answer.
        opaque: u32,
    },
    /// Session shutdown.
    GoAway {
        /// Flags (yamux sends none; kept so decoding is lossless).
        flags: Flags,
        /// Reason.
        code: GoAwayCode,
    },
}

impl Frame<'_> {
    /// The frame's header.
    pub fn header(&self) -> Header {
        match *self {
            Frame::Data {
                stream_id,
                flags,
                body,
            } => Header::new(FrameType::Data, flags, stream_id, body.len() as u32),
            Frame::WindowUpdate {
                stream_id,
                flags,
                delta,
            } => Header::new(FrameType::WindowUpdate, flags, stream_id, delta),
            Frame::Ping { flags, opaque } => Header::new(FrameType::Ping, flags, 0, opaque),
            Frame::GoAway { flags, code } => Header::new(FrameType::GoAway, flags, 0, code as u32),
        }
    }

    /// Appends the frame's bytes to `out`. Data bodies longer than `u32::MAX` cannot be framed:
    /// callers split at the peer's window, which is far smaller.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.header().encode());
        if let Frame::Data { body, .. } = self {
            out.extend_from_slice(body);
        }
    }
}

/// Decodes one frame from the front of `buf`: `Ok(None)` if incomplete, else the frame and the
/// bytes consumed. `max_data` bounds Data bodies (use [`DEFAULT_WINDOW`]: a peer may not send
/// more than the window it was granted).
pub fn decode_frame(buf: &[u8], max_data: u32) -> Result<Option<(Frame<'_>, usize)>, YamuxError> {
    let Some(hb) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let h = Header::decode(hb)?;
    let frame = match h.ty {
        FrameType::Data => {
            if h.length > max_data {
                return Err(YamuxError::TooLong {
                    len: h.length,
                    max: max_data,
                });
            }
            let Some(body) = buf.get(HEADER_LEN..HEADER_LEN + h.length as usize) else {
                return Ok(None);
            };
            Frame::Data {
                stream_id: h.stream_id,
                flags: h.flags,
                body,
            }
        }
        FrameType::WindowUpdate => Frame::WindowUpdate {
            stream_id: h.stream_id,
            flags: h.flags,
            delta: h.length,
        },
        FrameType::Ping => {
            if h.stream_id != 0 {
                return Err(YamuxError::SessionFrameStream(h.stream_id));
            }
            Frame::Ping {
                flags: h.flags,
                opaque: h.length,
            }
        }
        FrameType::GoAway => {
            if h.stream_id != 0 {
                return Err(YamuxError::SessionFrameStream(h.stream_id));
            }
            let code = match h.length {
                0 => GoAwayCode::Normal,
                1 => GoAwayCode::ProtocolError,
                2 => GoAwayCode::InternalError,
                c => return Err(YamuxError::GoAwayReason(c)),
            };
            Frame::GoAway {
                flags: h.flags,
                code,
            }
        }
    };
    Ok(Some((frame, HEADER_LEN + h.body_len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = Header::new(FrameType::WindowUpdate, Flags::SYN, 1, 0);
        assert_eq!(hex::encode(h.encode()), "000100010000000100000000");
        assert_eq!(Header::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn refusals() {
        assert_eq!(
            decode_frame(&[1u8; 12], DEFAULT_WINDOW),
            Err(YamuxError::Version(1))
        );
        let mut b = [0u8; 12];
        b[1] = 4;
        assert_eq!(decode_frame(&b, DEFAULT_WINDOW), Err(YamuxError::Type(4)));
        let h = Header::new(FrameType::Data, Flags::NONE, 1, DEFAULT_WINDOW + 1).encode();
        assert!(decode_frame(&h, DEFAULT_WINDOW).is_err());
        let h = Header::new(FrameType::Ping, Flags::SYN, 3, 0).encode();
        assert!(decode_frame(&h, DEFAULT_WINDOW).is_err());
        let h = Header::new(FrameType::GoAway, Flags::NONE, 0, 3).encode();
        assert!(decode_frame(&h, DEFAULT_WINDOW).is_err());
        let h = Header::new(FrameType::Data, Flags::NONE, 1, 5).encode();
        assert_eq!(decode_frame(&h, DEFAULT_WINDOW), Ok(None));
        assert_eq!(decode_frame(&h[..5], DEFAULT_WINDOW), Ok(None));
    }
}
