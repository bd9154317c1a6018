//! The mailbox protocol on a DMSG stream to a server's own key, port [`MAILBOX_PORT`]: length-
//! prefixed frames. Pure: encode/decode only.
//!
//! ```text
//! frame   = u32 BE length (1 + body) ‖ u8 type ‖ body
//! 1 Store     client → server   body = envelope
//! 2 Stored    server → client   body = receipt (see below)
//! 3 Refused   server → client   body = message id (16) ‖ u8 reason
//! 4 Subscribe client → server   body = empty (the stream's KK-authenticated key is the recipient)
//! 5 Deliver   server → client   body = envelope
//! 6 Ack       client → server   body = message id (16)
//! receipt = message id (16) ‖ server key (33) ‖ stored at, Unix ms u64 BE (8) ‖
//!           signature (65) by the server over SHA256("skymesh-mailbox-stored" ‖ first 57 bytes)
//! ```
use keys::{PubKey, SecKey, Sig};

use super::envelope::{MAX_LEN, MsgId};

/// The DMSG port of the mailbox service on a server's own key.
pub const MAILBOX_PORT: u16 = 44;
/// Largest frame body (an envelope of the largest size plus the type byte).
pub const MAX_FRAME: usize = MAX_LEN + 1;
const RECEIPT_LABEL: &[u8] = b"skymesh-mailbox-stored";
/// Receipt length.
pub const RECEIPT_LEN: usize = 16 + 33 + 8 + 65;

/// Why a server refused to store (or a client sent something wrong).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum Reason {
    /// The envelope does not decode or its signature is not the sender's.
    Invalid = 1,
    /// Already expired, or created too far in the future.
    Expired = 2,
    /// The recipient's queue is full (messages or bytes).
    RecipientQuota = 3,
    /// The sender sends too fast.
    SenderRate = 4,
    /// The server's mailbox is full.
    ServerFull = 5,
    /// This id was delivered and acknowledged already (a replay).
    Replay = 6,
    /// The server could not write it durably.
    Storage = 7,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 7] = [
        Reason::Invalid,
        Reason::Expired,
        Reason::RecipientQuota,
        Reason::SenderRate,
        Reason::ServerFull,
        Reason::Replay,
        Reason::Storage,
    ];

    /// From the wire byte.
    pub fn from_u8(b: u8) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| *r as u8 == b)
    }

    /// A metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Invalid => "invalid",
            Reason::Expired => "expired",
            Reason::RecipientQuota => "recipient_quota",
            Reason::SenderRate => "sender_rate",
            Reason::ServerFull => "server_full",
            Reason::Replay => "replay",
            Reason::Storage => "storage",
        }
    }
}

/// A server's signed "stored" receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The message.
    pub id: MsgId,
    /// The server that stored it.
    pub server: PubKey,
    /// When, Unix ms (the server's clock).
    pub stored_ms: u64,
    sig: Sig,
}

impl Receipt {
    /// Signs a receipt as `server`.
    pub fn sign(server: &SecKey, id: MsgId, stored_ms: u64) -> Receipt {
        let pk = server.pubkey();
        let sig = server.sign(&receipt_payload(&id, &pk, stored_ms));
        Receipt {
            id,
            server: pk,
            stored_ms,
            sig,
        }
    }

    /// Encodes it.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = receipt_body(&self.id, &self.server, self.stored_ms);
        v.extend_from_slice(self.sig.as_bytes());
        v
    }

    /// Decodes it without checking the signature: the sender reads it on a stream that Noise
    /// KK already authenticated as the server's, so only a third party needs [`Receipt::verify`].
    pub fn decode(b: &[u8]) -> Result<Receipt, WireError> {
        if b.len() != RECEIPT_LEN {
            return Err(WireError::Malformed("receipt length"));
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&b[..16]);
        let server =
            PubKey::from_bytes(&b[16..49]).map_err(|_| WireError::Malformed("receipt key"))?;
        let mut t = [0u8; 8];
        t.copy_from_slice(&b[49..57]);
        let stored_ms = u64::from_be_bytes(t);
        let sig =
            Sig::from_bytes(&b[57..]).map_err(|_| WireError::Malformed("receipt signature"))?;
        Ok(Receipt {
            id,
            server,
            stored_ms,
            sig,
        })
    }

    /// Checks the signature against the server key the receipt names: proof, for anyone, that
    /// this server took the message.
    pub fn verify(&self) -> Result<(), WireError> {
        self.server
            .verify(
                &receipt_payload(&self.id, &self.server, self.stored_ms),
                &self.sig,
            )
            .map_err(|_| WireError::Malformed("receipt signature"))
    }
}

fn receipt_body(id: &MsgId, server: &PubKey, stored_ms: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(RECEIPT_LEN);
    v.extend_from_slice(id);
    v.extend_from_slice(server.as_bytes());
    v.extend_from_slice(&stored_ms.to_be_bytes());
    v
}

fn receipt_payload(id: &MsgId, server: &PubKey, stored_ms: u64) -> Vec<u8> {
    let mut v = RECEIPT_LABEL.to_vec();
    v.extend_from_slice(&receipt_body(id, server, stored_ms));
    v
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Store this envelope.
    Store(Vec<u8>),
    /// Stored, with the receipt.
    Stored(Receipt),
    /// Refused.
    Refused(MsgId, Reason),
    /// Send me what is queued for me, then new messages as they arrive.
    Subscribe,
    /// A queued message.
    Deliver(Vec<u8>),
    /// Written to my inbox: delete it.
    Ack(MsgId),
}

/// A frame that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Longer than [`MAX_FRAME`].
    #[error("mailbox frame of {0} bytes is too long")]
    TooLong(usize),
    /// Malformed body or unknown type.
    #[error("malformed mailbox frame: {0}")]
    Malformed(&'static str),
}

impl Frame {
    /// Appends the encoded frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (ty, body): (u8, std::borrow::Cow<'_, [u8]>) = match self {
            Frame::Store(e) => (1, e.as_slice().into()),
            Frame::Stored(r) => (2, r.encode().into()),
            Frame::Refused(id, why) => {
                let mut b = id.to_vec();
                b.push(*why as u8);
                (3, b.into())
            }
            Frame::Subscribe => (4, (&[][..]).into()),
            Frame::Deliver(e) => (5, e.as_slice().into()),
            Frame::Ack(id) => (6, id.as_slice().into()),
        };
        out.extend_from_slice(&(body.len() as u32 + 1).to_be_bytes());
        out.push(ty);
        out.extend_from_slice(&body);
    }

    /// Decodes one frame from the front of `buf`: `Ok(None)` when more bytes are needed,
    /// otherwise the frame and the bytes it used.
    pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, WireError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len > MAX_FRAME {
            return Err(WireError::TooLong(len));
        }
        if len == 0 {
            return Err(WireError::Malformed("empty frame"));
        }
        if buf.len() < 4 + len {
            return Ok(None);
        }
        let (ty, body) = (buf[4], &buf[5..4 + len]);
        let id = |b: &[u8]| -> Result<MsgId, WireError> {
            b.try_into().map_err(|_| WireError::Malformed("message id"))
        };
        let f = match ty {
            1 => Frame::Store(body.to_vec()),
            2 => Frame::Stored(Receipt::decode(body)?),
            3 if body.len() == 17 => Frame::Refused(
                id(&body[..16])?,
                Reason::from_u8(body[16]).ok_or(WireError::Malformed("reason"))?,
            ),
            4 if body.is_empty() => Frame::Subscribe,
            5 => Frame::Deliver(body.to_vec()),
            6 => Frame::Ack(id(body)?),
            _ => return Err(WireError::Malformed("type")),
        };
        Ok(Some((f, 4 + len)))
    }
}

/// The `n` servers of `servers` whose keys are closest (XOR of SHA256 of the key) to
/// SHA256(`recipient`): the recipient's mailbox servers, computable by anyone who knows the
/// published servers.
pub fn mailbox_servers(recipient: &PubKey, servers: &[PubKey], n: usize) -> Vec<PubKey> {
    let target = keys::sha256(recipient.as_bytes());
    let mut v: Vec<([u8; 32], PubKey)> = servers
        .iter()
        .map(|s| {
            let h = keys::sha256(s.as_bytes());
            let mut d = [0u8; 32];
            for i in 0..32 {
                d[i] = h[i] ^ target[i];
            }
            (d, *s)
        })
        .collect();
    v.sort();
    v.dedup_by_key(|(_, s)| *s);
    v.into_iter().take(n).map(|(_, s)| s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_hex_snapshot_and_round_trip() {
        let mut out = Vec::new();
        Frame::Ack([0xab; 16]).encode(&mut out);
        // 00000011 length 17 | 06 Ack | 16 bytes of id
        assert_eq!(hex::encode(&out), format!("0000001106{}", "ab".repeat(16)));
        let mut out = Vec::new();
        Frame::Refused([1; 16], Reason::Replay).encode(&mut out);
        assert_eq!(
            hex::encode(&out),
            format!("0000001203{}06", "01".repeat(16))
        );
        let mut out = Vec::new();
        Frame::Subscribe.encode(&mut out);
        assert_eq!(hex::encode(&out), "0000000104");
        let r = Receipt::sign(&SecKey::from_seed(b"server"), [9; 16], 1_800_000_000_000);
        for f in [
            Frame::Store(vec![1, 2, 3]),
            Frame::Stored(r.clone()),
            Frame::Refused([2; 16], Reason::RecipientQuota),
            Frame::Subscribe,
            Frame::Deliver(vec![4; 100]),
            Frame::Ack([3; 16]),
        ] {
            let mut b = Vec::new();
            f.encode(&mut b);
            b.extend_from_slice(b"tail");
            let (g, used) = Frame::decode(&b).unwrap().unwrap();
            assert_eq!(g, f);
            assert_eq!(&b[used..], b"tail");
            assert_eq!(Frame::decode(&b[..used - 1]).unwrap(), None);
        }
        // A receipt whose fields were changed after signing does not verify.
        assert!(r.verify().is_ok());
        let mut enc = r.encode();
        enc[60] ^= 1;
        let tampered = Receipt::decode(&enc).unwrap();
        assert!(tampered.verify().is_err());
    }

    #[test]
    fn bad_frames_are_refused() {
        assert_eq!(
            Frame::decode(&[0, 0, 0, 0]),
            Err(WireError::Malformed("empty frame"))
        );
        assert_eq!(
            Frame::decode(&[0xff, 0, 0, 0, 1]),
            Err(WireError::TooLong(0xff00_0000))
        );
        assert!(Frame::decode(&[0, 0, 0, 1, 9]).is_err());
        assert!(Frame::decode(&[0, 0, 0, 2, 4, 0]).is_err());
        assert!(Frame::decode(&[0, 0, 0, 2, 6, 0]).is_err());
    }

    #[test]
    fn mailbox_servers_are_stable_and_agree() {
        let servers: Vec<PubKey> = (0..10u8)
            .map(|i| SecKey::from_seed(&[i]).pubkey())
            .collect();
        let r = SecKey::from_seed(b"visor").pubkey();
        let a = mailbox_servers(&r, &servers, 2);
        let mut shuffled = servers.clone();
        shuffled.reverse();
        assert_eq!(a, mailbox_servers(&r, &shuffled, 2));
        assert_eq!(a.len(), 2);
        assert_ne!(a[0], a[1]);
        assert_eq!(mailbox_servers(&r, &servers[..1], 2), servers[..1].to_vec());
    }

    proptest! {
        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(Some((_, used))) = Frame::decode(&b) {
                prop_assert!(used <= b.len());
            }
        }
    }
}
