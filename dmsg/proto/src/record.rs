//! Framing and transport records: the bytes that follow the Noise handshake.
//!
//! # Byte layout
//! ```text
//! frame  = len:u16 BE ‖ body[len]                 len ≤ 4094 (frame ≤ 4096 incl. prefix)
//! record = len:u16 BE ‖ nonce:u64 BE ‖ ct ‖ tag[16]
//!          ct = ChaCha20-Poly1305(key, 0⁴ ‖ nonce LE, AD = ∅, plaintext)
//! ```
//! Handshake messages travel as plain frames. The sender increments its counter *before* use, so
//! the first record carries nonce 1. A write longer than [`MAX_PLAINTEXT`] (4070) bytes is split
//! into several records; an empty write sends nothing.
//!
//! # Replay protection
//! Every [`Opener`] applies one [`ReplayPolicy`], and only **after** the AEAD tag verified, so a
//! forged record can neither advance nor poison the state (the 2026 reference records before
//! checking, spec §10.3). The window costs 136 bytes per direction, whatever the traffic.
//!
//! Based on skycoin/dmsg pkg/noise/noise.go and read_writer.go (commit 9c8b80bd); the window
//! follows skywire@2026 pkg/dmsg/noise/nonce_window.go.

use bytes::BufMut;

use crate::error::{FrameError, RecordError, ReplayError};
use crate::noise::{ChaChaPoly, TAG_LEN};

/// Length prefix size.
pub const LEN_PREFIX: usize = 2;
/// Explicit nonce size.
pub const NONCE_LEN: usize = 8;
/// Largest frame on the wire, prefix included (the reference's `maxFrameSize`).
pub const MAX_FRAME: usize = 4096;
/// Largest frame body (the reader refuses a longer length prefix).
pub const MAX_FRAME_BODY: usize = MAX_FRAME - LEN_PREFIX;
/// Largest plaintext per record: 4096 − 2 − 8 − 16.
pub const MAX_PLAINTEXT: usize = MAX_FRAME - LEN_PREFIX - NONCE_LEN - TAG_LEN;
/// Smallest record body: nonce and tag around an empty plaintext.
pub const MIN_RECORD_BODY: usize = NONCE_LEN + TAG_LEN;
/// Replay window width in nonces.
pub const WINDOW_SIZE: u64 = 1024;

/// Appends `len:u16 BE ‖ body` to `out`.
pub fn write_frame(body: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    if body.len() > MAX_FRAME_BODY {
        return Err(FrameError::TooLong {
            len: body.len(),
            max: MAX_FRAME_BODY,
        });
    }
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    Ok(())
}

/// Reads one frame from the front of `buf`. Returns the body and the bytes consumed, `None` if
/// `buf` does not yet hold a whole frame, or an error if the prefix exceeds the limit (the
/// connection must then be dropped).
pub fn read_frame(buf: &[u8]) -> Result<Option<(&[u8], usize)>, FrameError> {
    let Some(prefix) = buf.get(..LEN_PREFIX) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
    if len > MAX_FRAME_BODY {
        return Err(FrameError::TooLong {
            len,
            max: MAX_FRAME_BODY,
        });
    }
    Ok(buf
        .get(LEN_PREFIX..LEN_PREFIX + len)
        .map(|body| (body, LEN_PREFIX + len)))
}

/// Encrypts records with one direction's key.
pub struct Sealer {
    cipher: ChaChaPoly,
    counter: u64,
}

impl Sealer {
    /// A sealer whose first record carries nonce 1.
    pub fn new(key: &[u8; 32]) -> Sealer {
        Sealer {
            cipher: ChaChaPoly::new(key),
            counter: 0,
        }
    }

    /// The nonce the next record will carry.
    pub fn next_nonce(&self) -> u64 {
        self.counter.wrapping_add(1)
    }

    /// Appends one framed record for `plaintext` (≤ [`MAX_PLAINTEXT`] bytes) to `out` (a
    /// `Vec<u8>` or a `BytesMut`; the plaintext is copied once and encrypted where it lands).
    pub fn seal_record<B>(&mut self, plaintext: &[u8], out: &mut B) -> Result<(), RecordError>
    where
        B: BufMut + AsMut<[u8]>,
    {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(RecordError::PlaintextTooLong {
                len: plaintext.len(),
            });
        }
        let nonce = self
            .counter
            .checked_add(1)
            .filter(|n| *n != u64::MAX)
            .ok_or(RecordError::NonceExhausted)?;
        self.counter = nonce;
        let body_len = NONCE_LEN + plaintext.len() + TAG_LEN;
        out.put_slice(&(body_len as u16).to_be_bytes());
        out.put_slice(&nonce.to_be_bytes());
        let start = out.as_mut().len();
        out.put_slice(plaintext);
        let tag = self
            .cipher
            .seal_in_place(nonce, &[], &mut out.as_mut()[start..])
            .map_err(|_| RecordError::Decrypt)?;
        out.put_slice(&tag);
        Ok(())
    }

    /// Appends records for a write of any length, split at [`MAX_PLAINTEXT`] bytes as the
    /// reference's writer does. An empty write appends nothing.
    pub fn seal_write<B>(&mut self, data: &[u8], out: &mut B) -> Result<(), RecordError>
    where
        B: BufMut + AsMut<[u8]>,
    {
        for chunk in data.chunks(MAX_PLAINTEXT) {
            self.seal_record(chunk, out)?;
        }
        Ok(())
    }
}

/// Which nonces an [`Opener`] accepts (checked after the tag verifies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplayPolicy {
    /// 1024-entry sliding window: any unseen nonce within 1024 of the highest accepted one.
    /// Needed for session objects, whose counter is shared by all streams of a session, so a
    /// stream sees gaps and yamux may reorder streams.
    #[default]
    Window,
    /// Strictly increasing, gaps allowed (the reference's `DecryptUnsafe`, used for stream
    /// data).
    Increasing,
    /// Exactly `last + 1` (spec §10.4: detects records dropped by a relay). Go writers always
    /// send consecutive nonces on a stream, so this stays compatible for stream data.
    Strict,
}

/// Sliding-window replay state: highest accepted nonce and a 1024-bit bitmap.
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    max: u64,
    bits: [u64; (WINDOW_SIZE / 64) as usize],
}

impl ReplayWindow {
    fn bit(n: u64) -> (usize, u64) {
        let i = n % WINDOW_SIZE;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    fn is_set(&self, n: u64) -> bool {
        let (w, m) = Self::bit(n);
        self.bits[w] & m != 0
    }

    fn set(&mut self, n: u64) {
        let (w, m) = Self::bit(n);
        self.bits[w] |= m;
    }

    fn clear(&mut self, n: u64) {
        let (w, m) = Self::bit(n);
        self.bits[w] &= !m;
    }

    /// Whether `n` would be accepted (no state change).
    pub fn check(&self, n: u64) -> Result<(), ReplayError> {
        if n == 0 {
            return Err(ReplayError::Zero);
        }
        if n > self.max {
            return Ok(());
        }
        if self.max - n >= WINDOW_SIZE {
            return Err(ReplayError::TooOld);
        }
        if self.is_set(n) {
            return Err(ReplayError::Repeated);
        }
        Ok(())
    }

    /// Checks and records `n`.
    pub fn accept(&mut self, n: u64) -> Result<(), ReplayError> {
        self.check(n)?;
        if n > self.max {
            if n - self.max >= WINDOW_SIZE {
                self.bits = [0; (WINDOW_SIZE / 64) as usize];
            } else {
                for k in self.max + 1..n {
                    self.clear(k);
                }
            }
            self.max = n;
        }
        self.set(n);
        Ok(())
    }

    /// The highest accepted nonce (0 before the first).
    pub fn max(&self) -> u64 {
        self.max
    }
}

/// Bytes a [`Sealer::seal_write`] of `len` plaintext bytes produces (records of
/// [`MAX_PLAINTEXT`] and their 26 bytes of overhead each).
pub fn sealed_len(len: usize) -> usize {
    len + len.div_ceil(MAX_PLAINTEXT) * (LEN_PREFIX + NONCE_LEN + TAG_LEN)
}

/// Splits a record body (`nonce ‖ ct ‖ tag`, a frame body) into its nonce, ciphertext and tag,
/// checking only the lengths. Nothing is authenticated yet: see [`Opener::open_in_place`].
pub fn parse_record(body: &[u8]) -> Result<(u64, &[u8], [u8; TAG_LEN]), RecordError> {
    if body.len() < MIN_RECORD_BODY {
        return Err(RecordError::TooShort { len: body.len() });
    }
    if body.len() > MAX_FRAME_BODY {
        return Err(FrameError::TooLong {
            len: body.len(),
            max: MAX_FRAME_BODY,
        }
        .into());
    }
    let (nonce_bytes, rest) = body.split_at(NONCE_LEN);
    let mut nb = [0u8; NONCE_LEN];
    nb.copy_from_slice(nonce_bytes);
    let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut t = [0u8; TAG_LEN];
    t.copy_from_slice(tag);
    Ok((u64::from_be_bytes(nb), ct, t))
}

/// Decrypts records with one direction's key and applies a [`ReplayPolicy`].
pub struct Opener {
    cipher: ChaChaPoly,
    policy: ReplayPolicy,
    window: ReplayWindow,
}

impl Opener {
    /// An opener for `key` with `policy`.
    pub fn new(key: &[u8; 32], policy: ReplayPolicy) -> Opener {
        Opener {
            cipher: ChaChaPoly::new(key),
            policy,
            window: ReplayWindow::default(),
        }
    }

    /// The highest accepted nonce (0 before the first).
    pub fn last_nonce(&self) -> u64 {
        self.window.max()
    }

    /// Opens one record body (`nonce ‖ ct ‖ tag`, i.e. a frame body as returned by
    /// [`read_frame`]) and returns the plaintext.
    pub fn open(&mut self, body: &[u8]) -> Result<Vec<u8>, RecordError> {
        let mut out = Vec::with_capacity(body.len().saturating_sub(MIN_RECORD_BODY));
        self.open_into(body, &mut out)?;
        Ok(out)
    }

    /// Like [`open`](Self::open) but appends the plaintext to `out` (on error `out` is left as
    /// it was).
    pub fn open_into(&mut self, body: &[u8], out: &mut Vec<u8>) -> Result<(), RecordError> {
        let (nonce, ct, tag) = parse_record(body)?;
        let start = out.len();
        out.extend_from_slice(ct);
        let r = self.open_in_place(nonce, &mut out[start..], &tag);
        if r.is_err() {
            out.truncate(start);
        }
        r
    }

    /// Opens a record whose ciphertext the caller has already copied into `buf` (for instance
    /// straight into a reader's buffer: one copy per byte), with `nonce` and `tag` from
    /// [`parse_record`]. On success `buf` holds the plaintext. On error the caller must discard
    /// `buf` (garbage, or a refused replay); the replay state changes only when a record is
    /// accepted.
    pub fn open_in_place(
        &mut self,
        nonce: u64,
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), RecordError> {
        if self.cipher.open_in_place(nonce, &[], buf, tag).is_err() {
            return Err(RecordError::Decrypt);
        }
        let accepted = match self.policy {
            ReplayPolicy::Window => self.window.accept(nonce),
            ReplayPolicy::Increasing => {
                if nonce > self.window.max {
                    self.window.max = nonce;
                    Ok(())
                } else {
                    Err(ReplayError::NotIncreasing)
                }
            }
            ReplayPolicy::Strict => {
                let expected = self.window.max.wrapping_add(1);
                if nonce == expected {
                    self.window.max = nonce;
                    Ok(())
                } else if nonce <= self.window.max {
                    Err(ReplayError::NotIncreasing)
                } else {
                    Err(ReplayError::Gap { expected })
                }
            }
        };
        accepted.map_err(|reason| RecordError::Replay { nonce, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_rules() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.accept(0), Err(ReplayError::Zero));
        w.accept(5).unwrap();
        assert_eq!(w.accept(5), Err(ReplayError::Repeated));
        w.accept(3).unwrap();
        w.accept(4).unwrap();
        assert_eq!(w.accept(3), Err(ReplayError::Repeated));
        w.accept(5 + 1023).unwrap();
        // 5 is still inside the window and was seen
        assert_eq!(w.accept(5), Err(ReplayError::Repeated));
        w.accept(6).unwrap();
        // the bit of 1028 was set; 4 shares it modulo 1024 but is too old
        assert_eq!(w.accept(4), Err(ReplayError::TooOld));
        w.accept(10_000).unwrap();
        assert_eq!(w.accept(10_000 - 1024), Err(ReplayError::TooOld));
        w.accept(10_000 - 1023).unwrap();
        assert_eq!(w.accept(10_000 - 1023), Err(ReplayError::Repeated));
    }

    #[test]
    fn window_clears_skipped_bits() {
        let mut w = ReplayWindow::default();
        w.accept(1).unwrap();
        w.accept(2).unwrap();
        // jump by 1024+1: 1025 and 1026 map to bits 1 and 2, which must not read as seen
        w.accept(1026 + 1024).unwrap();
        w.accept(1026 + 1024 - 1).unwrap();
        w.accept(1026 + 1024 - 1023).unwrap();
    }

    fn seal(key: &[u8; 32], n: usize) -> Vec<Vec<u8>> {
        let mut s = Sealer::new(key);
        (0..n)
            .map(|i| {
                let mut out = Vec::new();
                s.seal_record(format!("msg {i}").as_bytes(), &mut out)
                    .unwrap();
                out[LEN_PREFIX..].to_vec()
            })
            .collect()
    }

    #[test]
    fn policies() {
        let key = [7u8; 32];
        let recs = seal(&key, 4);
        let mut strict = Opener::new(&key, ReplayPolicy::Strict);
        assert_eq!(strict.open(&recs[0]).unwrap(), b"msg 0");
        assert!(matches!(
            strict.open(&recs[2]),
            Err(RecordError::Replay {
                reason: ReplayError::Gap { expected: 2 },
                ..
            })
        ));
        let mut inc = Opener::new(&key, ReplayPolicy::Increasing);
        inc.open(&recs[2]).unwrap();
        assert!(matches!(
            inc.open(&recs[1]),
            Err(RecordError::Replay { .. })
        ));
        let mut win = Opener::new(&key, ReplayPolicy::Window);
        win.open(&recs[2]).unwrap();
        win.open(&recs[1]).unwrap();
        assert!(matches!(
            win.open(&recs[1]),
            Err(RecordError::Replay { .. })
        ));
    }

    #[test]
    fn forged_record_does_not_move_window() {
        let key = [9u8; 32];
        let recs = seal(&key, 2);
        let mut o = Opener::new(&key, ReplayPolicy::Window);
        let mut forged = recs[0].clone();
        forged[..8].copy_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(o.open(&forged), Err(RecordError::Decrypt));
        assert_eq!(o.last_nonce(), 0);
        o.open(&recs[0]).unwrap();
        o.open(&recs[1]).unwrap();
    }

    #[test]
    fn frame_limits() {
        let mut out = Vec::new();
        assert!(write_frame(&[0u8; MAX_FRAME_BODY + 1], &mut out).is_err());
        write_frame(&[1u8; MAX_FRAME_BODY], &mut out).unwrap();
        assert_eq!(out.len(), MAX_FRAME);
        let (b, n) = read_frame(&out).unwrap().unwrap();
        assert_eq!((b.len(), n), (MAX_FRAME_BODY, MAX_FRAME));
        assert_eq!(read_frame(&out[..100]).unwrap(), None);
        assert!(read_frame(&[0x0f, 0xff]).is_err());
        assert_eq!(read_frame(&[0x0f]).unwrap(), None);
    }

    #[test]
    fn split_writes() {
        let mut s = Sealer::new(&[1u8; 32]);
        let mut out = Vec::new();
        s.seal_write(&[], &mut out).unwrap();
        assert!(out.is_empty());
        s.seal_write(&[0u8; 4100], &mut out).unwrap();
        assert_eq!(out.len(), MAX_FRAME + LEN_PREFIX + NONCE_LEN + 30 + TAG_LEN);
        let mut big = Vec::new();
        assert!(s.seal_record(&[0u8; MAX_PLAINTEXT + 1], &mut big).is_err());
        for n in [0, 1, MAX_PLAINTEXT, MAX_PLAINTEXT + 1, 65536] {
            let mut o = bytes::BytesMut::new();
            s.seal_write(&vec![0u8; n], &mut o).unwrap();
            assert_eq!(o.len(), sealed_len(n));
        }
    }
}
