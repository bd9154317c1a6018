//! xtaci/smux v1.5.57 frame codec, protocol version 2 (spec `smux.md` §1–2), as skywire 2026
//! DMSG runs it in plain text on the session's TCP connection after the XK handshake.
//!
//! # Byte layout
//! ```text
//! header = ver:u8 (2) ‖ cmd:u8 ‖ length:u16 LE ‖ sid:u32 LE        (8 bytes, then `length` bytes)
//! cmd 0 SYN  length 0   opens stream sid (nothing answers it)
//! cmd 1 FIN  length 0   no more data from the sender on sid
//! cmd 2 PSH  length n   n bytes of data (0..65535)
//! cmd 3 NOP  length 0   keep-alive, sid 0, never answered
//! cmd 4 UPD  length 8   consumed:u32 LE ‖ window:u32 LE (both absolute, v2 flow control)
//! ```
//! Unlike yamux (12 bytes, big-endian, 32-bit length) both fields are **little-endian** and the
//! length is 16 bits. Stream ids: the client opens 3, 5, …, the server 2, 4, … (§3).
//!
//! A header is refused ([`SmuxFrameError`]) for a version other than 2, a command above 4, and
//! a length other than 0 on SYN/FIN/NOP or other than 8 on UPD (v1.5.56 validation; a Go peer
//! stops reading at any of these). What the frames mean is decided by
//! [`SmuxSession`](super::smux::SmuxSession).
//!
//! Based on xtaci/smux v1.5.57 frame.go (`rawHeader`, `updHeader`) and session.go `recvLoop`.

use super::error::SmuxFrameError;

/// Header length.
pub const HEADER_LEN: usize = 8;
/// The protocol version DMSG configures (flow control with UPD).
pub const VERSION: u8 = 2;
/// Body length of an UPD frame.
pub const UPD_LEN: usize = 8;
/// Window a sender may fill before the peer's first UPD (`initialPeerWindow`, 256 KiB; no
/// configuration changes it).
pub const INITIAL_PEER_WINDOW: u32 = 256 * 1024;
/// Largest payload of one frame (the length field is 16 bits).
pub const MAX_PAYLOAD: usize = u16::MAX as usize;

/// Frame command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Cmd {
    /// Opens a stream.
    Syn = 0,
    /// Ends the sender's data on a stream.
    Fin = 1,
    /// Stream data.
    Psh = 2,
    /// Keep-alive.
    Nop = 3,
    /// Window update (version 2).
    Upd = 4,
}

impl Cmd {
    /// Parses the command byte.
    pub fn from_u8(b: u8) -> Result<Cmd, SmuxFrameError> {
        Ok(match b {
            0 => Cmd::Syn,
            1 => Cmd::Fin,
            2 => Cmd::Psh,
            3 => Cmd::Nop,
            4 => Cmd::Upd,
            _ => return Err(SmuxFrameError::Cmd(b)),
        })
    }
}

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Command.
    pub cmd: Cmd,
    /// Body bytes that follow.
    pub length: u16,
    /// Stream id (0 for NOP).
    pub sid: u32,
}

impl Header {
    /// A header.
    pub fn new(cmd: Cmd, length: u16, sid: u32) -> Header {
        Header { cmd, length, sid }
    }

    /// The 8 wire bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = VERSION;
        b[1] = self.cmd as u8;
        b[2..4].copy_from_slice(&self.length.to_le_bytes());
        b[4..8].copy_from_slice(&self.sid.to_le_bytes());
        b
    }

    /// Decodes and validates 8 wire bytes (version, command, and the fixed lengths).
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, SmuxFrameError> {
        if b[0] != VERSION {
            return Err(SmuxFrameError::Version(b[0]));
        }
        let cmd = Cmd::from_u8(b[1])?;
        let length = u16::from_le_bytes([b[2], b[3]]);
        let sid = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let fixed = match cmd {
            Cmd::Syn | Cmd::Fin | Cmd::Nop => Some(0),
            Cmd::Upd => Some(UPD_LEN as u16),
            Cmd::Psh => None,
        };
        if let Some(want) = fixed
            && length != want
        {
            return Err(SmuxFrameError::Length { cmd: b[1], length });
        }
        Ok(Header { cmd, length, sid })
    }
}

/// The body of an UPD frame: the receiver's cumulative bytes read and its window, both absolute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Upd {
    /// Bytes the receiving application has read on the stream (wrapping u32).
    pub consumed: u32,
    /// The receiver's window: the sender may have `window` bytes beyond `consumed` in flight.
    pub window: u32,
}

impl Upd {
    /// The 8 body bytes.
    pub fn encode(&self) -> [u8; UPD_LEN] {
        let mut b = [0u8; UPD_LEN];
        b[..4].copy_from_slice(&self.consumed.to_le_bytes());
        b[4..].copy_from_slice(&self.window.to_le_bytes());
        b
    }

    /// Decodes an UPD body (exactly 8 bytes).
    pub fn decode(b: &[u8]) -> Result<Upd, SmuxFrameError> {
        let b: &[u8; UPD_LEN] = b.try_into().map_err(|_| SmuxFrameError::Length {
            cmd: Cmd::Upd as u8,
            length: u16::try_from(b.len()).unwrap_or(u16::MAX),
        })?;
        Ok(Upd {
            consumed: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            window: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        })
    }
}

/// A decoded frame: its header, its body, and the bytes it took.
pub type Frame<'a> = (Header, &'a [u8], usize);

/// A whole frame decoded from the front of `buf`: the header, its body, and the bytes used;
/// `Ok(None)` when `buf` holds less than a whole frame. (The session reads header and body
/// separately; this is for tests, tools and fuzzing.)
pub fn decode_frame(buf: &[u8]) -> Result<Option<Frame<'_>>, SmuxFrameError> {
    let Some(head) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let h = Header::decode(head)?;
    let end = HEADER_LEN + usize::from(h.length);
    let Some(body) = buf.get(HEADER_LEN..end) else {
        return Ok(None);
    };
    Ok(Some((h, body, end)))
}

/// Encodes a whole frame (header and body) onto `out`. `body` longer than [`MAX_PAYLOAD`] or of
/// the wrong length for `cmd` is refused.
pub fn encode_frame(
    cmd: Cmd,
    sid: u32,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), SmuxFrameError> {
    let length = u16::try_from(body.len()).map_err(|_| SmuxFrameError::Length {
        cmd: cmd as u8,
        length: u16::MAX,
    })?;
    let h = Header::new(cmd, length, sid).encode();
    Header::decode(&h)?;
    out.extend_from_slice(&h);
    out.extend_from_slice(body);
    Ok(())
}
