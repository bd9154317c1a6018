//! The transport link protocol on a DMSG stream to port [`crate::defaults::TP_PORT`]. Pure:
//! frames in, frames out; the driver in [`crate::manager`] does the I/O.
//!
//! The DMSG stream is already authenticated end to end (Noise KK with both static keys), so the
//! protocol only binds the stream to one transport and keeps it alive:
//!
//! 1. the dialer sends `Hello { id, kind }`;
//! 2. the acceptor checks `id == TransportId::derive(dialer, acceptor, kind)` and that it has
//!    room, then answers with the same `Hello` (the link is *up* on both sides), or with
//!    `Close { reason }` and closes;
//! 3. both sides send `Keepalive` every keepalive interval; a side that receives nothing for
//!    three intervals declares the link dead;
//! 4. `Close { Removed }` tells the peer the transport was removed (`skymesh tp rm`), so it drops
//!    the transport from its own list too.
//!
//! Frame layout (every integer big-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | type: 1 Hello, 2 Keepalive, 3 Close |
//! | 1 | 1 | payload length L ≤ [`MAX_PAYLOAD`] |
//! | 2 | L | payload |
//!
//! Payloads: Hello = `version (1) ‖ id (16) ‖ kind length K (1) ‖ kind (K ≤ 64)`;
//! Keepalive = empty; Close = `reason (1)`. Anything else (unknown type, wrong length, bad
//! kind, other version) is a [`FrameError`] and the stream is closed.
use crate::id::{TransportId, TransportKind};

/// Version byte in `Hello`.
pub const WIRE_VERSION: u8 = 1;
/// Largest payload: a Hello with a 64-byte kind (1 + 16 + 1 + 64 = 82).
pub const MAX_PAYLOAD: usize = 82;
/// Largest frame.
pub const MAX_FRAME: usize = 2 + MAX_PAYLOAD;

const T_HELLO: u8 = 1;
const T_KEEPALIVE: u8 = 2;
const T_CLOSE: u8 = 3;

/// Why a side closes a link on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The transport was removed by its operator; the peer removes it too.
    Removed,
    /// The acceptor holds its maximum number of transports.
    Full,
    /// The Hello does not match the keys (wrong id) or names an unsupported kind.
    BadHello,
    /// A reason code this version does not know (kept for logs).
    Other(u8),
}

impl CloseReason {
    fn code(self) -> u8 {
        match self {
            CloseReason::Removed => 1,
            CloseReason::Full => 2,
            CloseReason::BadHello => 3,
            CloseReason::Other(c) => c,
        }
    }
    fn from_code(c: u8) -> CloseReason {
        match c {
            1 => CloseReason::Removed,
            2 => CloseReason::Full,
            3 => CloseReason::BadHello,
            c => CloseReason::Other(c),
        }
    }
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Binds the stream to a transport (sent by the dialer, echoed by the acceptor).
    Hello {
        /// The transport id.
        id: TransportId,
        /// The transport kind.
        kind: TransportKind,
    },
    /// Liveness.
    Keepalive,
    /// The sender closes the link.
    Close(CloseReason),
}

/// A frame that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Unknown frame type.
    #[error("unknown frame type {0}")]
    Type(u8),
    /// Payload length above [`MAX_PAYLOAD`] or wrong for the type.
    #[error("frame type {ty}: bad payload length {len}")]
    Length {
        /// Frame type.
        ty: u8,
        /// Declared length.
        len: usize,
    },
    /// Hello with another version.
    #[error("hello version {0} (want {WIRE_VERSION})")]
    Version(u8),
    /// Hello with a kind that is not valid text.
    #[error("hello kind is not a valid transport kind")]
    Kind,
}

impl Frame {
    /// Appends the encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Frame::Hello { id, kind } => {
                let k = kind.as_str().as_bytes();
                out.push(T_HELLO);
                // kind ≤ 64 bytes by construction: the payload fits one length byte.
                out.push(u8::try_from(18 + k.len()).unwrap_or(u8::MAX));
                out.push(WIRE_VERSION);
                out.extend_from_slice(id.as_bytes());
                out.push(u8::try_from(k.len()).unwrap_or(u8::MAX));
                out.extend_from_slice(k);
            }
            Frame::Keepalive => out.extend_from_slice(&[T_KEEPALIVE, 0]),
            Frame::Close(r) => out.extend_from_slice(&[T_CLOSE, 1, r.code()]),
        }
    }

    /// The encoding as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(MAX_FRAME);
        self.encode(&mut v);
        v
    }

    /// Decodes one frame from the front of `buf`: `Ok(None)` when more bytes are needed,
    /// `Ok(Some((frame, used)))` otherwise. Never reads past `buf`, never allocates more than
    /// a kind string.
    pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
        let [ty, len, ..] = *buf else {
            return Ok(None);
        };
        let len = usize::from(len);
        let bad_len = FrameError::Length { ty, len };
        match ty {
            T_HELLO | T_KEEPALIVE | T_CLOSE => {}
            t => return Err(FrameError::Type(t)),
        }
        if len > MAX_PAYLOAD {
            return Err(bad_len);
        }
        let Some(p) = buf.get(2..2 + len) else {
            return Ok(None);
        };
        let frame = match ty {
            T_HELLO => {
                if len < 18 {
                    return Err(bad_len);
                }
                if p[0] != WIRE_VERSION {
                    return Err(FrameError::Version(p[0]));
                }
                let mut id = [0u8; 16];
                id.copy_from_slice(&p[1..17]);
                if usize::from(p[17]) != len - 18 {
                    return Err(bad_len);
                }
                let kind = std::str::from_utf8(&p[18..])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or(FrameError::Kind)?;
                Frame::Hello {
                    id: TransportId::from_bytes(id),
                    kind,
                }
            }
            T_KEEPALIVE if len == 0 => Frame::Keepalive,
            T_CLOSE if len == 1 => Frame::Close(CloseReason::from_code(p[0])),
            _ => return Err(bad_len),
        };
        Ok(Some((frame, 2 + len)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn hello() -> Frame {
        Frame::Hello {
            id: TransportId::from_bytes([7; 16]),
            kind: TransportKind::dmsg(),
        }
    }

    #[test]
    fn fixed_bytes() {
        let mut want = vec![1, 22, 1];
        want.extend_from_slice(&[7; 16]);
        want.push(4);
        want.extend_from_slice(b"dmsg");
        assert_eq!(hello().to_bytes(), want);
        assert_eq!(Frame::Keepalive.to_bytes(), [2, 0]);
        assert_eq!(Frame::Close(CloseReason::Removed).to_bytes(), [3, 1, 1]);
    }

    #[test]
    fn partial_and_bad_frames() {
        let b = hello().to_bytes();
        for cut in 0..b.len() {
            assert_eq!(Frame::decode(&b[..cut]).unwrap(), None, "cut {cut}");
        }
        assert_eq!(Frame::decode(&[9, 0]), Err(FrameError::Type(9)));
        assert!(matches!(
            Frame::decode(&[2, 1, 0]),
            Err(FrameError::Length { .. })
        ));
        assert!(matches!(
            Frame::decode(&[1, 200]),
            Err(FrameError::Length { .. })
        ));
        let mut v = b.clone();
        v[2] = 9;
        assert_eq!(Frame::decode(&v), Err(FrameError::Version(9)));
        let mut v = b.clone();
        v[b.len() - 1] = b'G';
        assert_eq!(Frame::decode(&v), Err(FrameError::Kind));
        let mut v = b;
        v[19] = 5;
        assert!(matches!(Frame::decode(&v), Err(FrameError::Length { .. })));
    }

    fn frame() -> impl Strategy<Value = Frame> {
        prop_oneof![
            (any::<[u8; 16]>(), "[a-z0-9_-]{1,64}").prop_map(|(id, k)| Frame::Hello {
                id: TransportId::from_bytes(id),
                kind: k.parse().unwrap()
            }),
            Just(Frame::Keepalive),
            any::<u8>().prop_map(|c| Frame::Close(CloseReason::from_code(c))),
        ]
    }

    proptest! {
        #[test]
        fn round_trip_concatenated(frames in proptest::collection::vec(frame(), 0..8)) {
            let mut buf = Vec::new();
            for f in &frames {
                f.encode(&mut buf);
            }
            let mut got = Vec::new();
            let mut pos = 0;
            while let Some((f, used)) = Frame::decode(&buf[pos..]).unwrap() {
                got.push(f);
                pos += used;
            }
            prop_assert_eq!(pos, buf.len());
            prop_assert_eq!(got, frames);
        }

        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..120)) {
            if let Ok(Some((f, used))) = Frame::decode(&b) {
                prop_assert!(used <= b.len() && used <= MAX_FRAME);
                prop_assert_eq!(f.to_bytes(), b[..used].to_vec());
            }
        }
    }
}
