//! The mailbox envelope, version 1: one fixed binary layout, encrypted end to end to the
//! recipient and signed by the sender. Pure: no I/O, no clock reads (times come in).
//!
//! ```text
//! offset  len  field
//!  0       4   magic "SKMB"
//!  4       1   version = 1
//!  5       1   flags (0; receipts use bit 0, see `Envelope::is_receipt`)
//!  6      33   sender public key (compressed secp256k1)
//! 39      33   recipient public key
//! 72      16   message id (random)
//! 88       8   created, Unix milliseconds, big endian
//! 96       4   TTL seconds, big endian (1 ..= 7 days)
//! 100     33   ephemeral public key (encryption)
//! 133      4   ciphertext length N, big endian (16 ..= 64 KiB + 16)
//! 137      N   ChaCha20-Poly1305(key, nonce 0, AD = bytes 0..137, payload) ‖ tag
//! 137+N   65   sender's signature over SHA256(bytes 0 .. 137+N)
//! ```
//!
//! Encryption key: `SHA256("skymesh-mailbox-v1" ‖ ECDH(eph, recipient) ‖ eph_pk ‖ recipient_pk)`
//! where ECDH is skycoin's (SHA256 of the shared point). The ephemeral key is fresh per message,
//! so the key is never reused and nonce 0 is safe; a server that holds the envelope sees the
//! header but cannot read the payload, and cannot alter anything without breaking the
//! signature (checked by servers and by the recipient).
use crate::noise::ChaChaPoly;
use keys::{PubKey, SecKey, Sig};

/// Magic bytes.
pub const MAGIC: [u8; 4] = *b"SKMB";
/// Format version.
pub const VERSION: u8 = 1;
/// Largest payload (plaintext).
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Default time to live.
pub const DEFAULT_TTL_SECS: u32 = 24 * 3600;
/// Longest time to live.
pub const MAX_TTL_SECS: u32 = 7 * 24 * 3600;
/// Flag: this envelope is a *delivered* receipt (payload = the delivered message's id).
pub const FLAG_RECEIPT: u8 = 1;
/// Header length (everything before the ciphertext).
pub const HEADER_LEN: usize = 137;
const TAG: usize = 16;
const SIG: usize = 65;
/// Largest encoded envelope.
pub const MAX_LEN: usize = HEADER_LEN + MAX_PAYLOAD + TAG + SIG;
const KDF_LABEL: &[u8] = b"skymesh-mailbox-v1";

/// A message id (16 random bytes).
pub type MsgId = [u8; 16];

/// Why an envelope is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Shorter than a header plus tag and signature, or longer than [`MAX_LEN`].
    #[error("envelope of {len} bytes (must be {min} ..= {max})")]
    Length {
        /// Its length.
        len: usize,
        /// Smallest valid length.
        min: usize,
        /// Largest valid length.
        max: usize,
    },
    /// Not "SKMB" or not version 1.
    #[error("not a version-1 mailbox envelope")]
    Magic,
    /// Unknown flag bits.
    #[error("unknown envelope flags {0:#04x}")]
    Flags(u8),
    /// A key field is not a valid secp256k1 point.
    #[error("invalid {0} key")]
    Key(&'static str),
    /// The ciphertext length field disagrees with the envelope's length.
    #[error("ciphertext length {declared} does not match the envelope")]
    CiphertextLength {
        /// Declared length.
        declared: usize,
    },
    /// TTL 0 or above [`MAX_TTL_SECS`].
    #[error("ttl {0} s out of range (1 ..= {MAX_TTL_SECS})")]
    Ttl(u32),
    /// Payload above [`MAX_PAYLOAD`].
    #[error("payload of {0} bytes exceeds {MAX_PAYLOAD}")]
    TooLarge(usize),
    /// The signature is not the sender's.
    #[error("signature is not the sender's")]
    Signature,
    /// The payload did not decrypt (not for this key, or altered).
    #[error("payload does not decrypt with the recipient's key")]
    Decrypt,
    /// Addressed to someone else.
    #[error("envelope for {0}, not for this key")]
    WrongRecipient(PubKey),
}

/// A decoded, signature-checked envelope (the payload still encrypted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    raw: Vec<u8>,
    /// Sender.
    pub sender: PubKey,
    /// Recipient.
    pub recipient: PubKey,
    /// Message id.
    pub id: MsgId,
    /// Creation time, Unix ms (the sender's clock).
    pub created_ms: u64,
    /// Time to live in seconds.
    pub ttl_secs: u32,
    /// Flags.
    pub flags: u8,
}

/// What to seal.
#[derive(Debug, Clone)]
pub struct Draft<'a> {
    /// Recipient.
    pub to: PubKey,
    /// Plaintext (≤ [`MAX_PAYLOAD`]).
    pub payload: &'a [u8],
    /// Time to live.
    pub ttl_secs: u32,
    /// Flags ([`FLAG_RECEIPT`] or 0).
    pub flags: u8,
}

impl Envelope {
    /// Encrypts `d.payload` to `d.to` with a fresh ephemeral key `eph` and signs as `sender`.
    /// `id` is random in production; `now_ms` is the creation time.
    pub fn seal(
        sender: &SecKey,
        d: &Draft<'_>,
        id: MsgId,
        now_ms: u64,
        eph: &SecKey,
    ) -> Result<Envelope, EnvelopeError> {
        if d.payload.len() > MAX_PAYLOAD {
            return Err(EnvelopeError::TooLarge(d.payload.len()));
        }
        if d.ttl_secs == 0 || d.ttl_secs > MAX_TTL_SECS {
            return Err(EnvelopeError::Ttl(d.ttl_secs));
        }
        if d.flags & !FLAG_RECEIPT != 0 {
            return Err(EnvelopeError::Flags(d.flags));
        }
        let eph_pk = eph.pubkey();
        let key = derive_key(eph, &eph_pk, &d.to)?;
        let mut out = Vec::with_capacity(HEADER_LEN + d.payload.len() + TAG + SIG);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(d.flags);
        out.extend_from_slice(sender.pubkey().as_bytes());
        out.extend_from_slice(d.to.as_bytes());
        out.extend_from_slice(&id);
        out.extend_from_slice(&now_ms.to_be_bytes());
        out.extend_from_slice(&d.ttl_secs.to_be_bytes());
        out.extend_from_slice(eph_pk.as_bytes());
        let ct_len = u32::try_from(d.payload.len() + TAG)
            .map_err(|_| EnvelopeError::TooLarge(d.payload.len()))?;
        out.extend_from_slice(&ct_len.to_be_bytes());
        let mut ct = d.payload.to_vec();
        let tag = ChaChaPoly::new(&key)
            .seal_in_place(0, &out[..HEADER_LEN], &mut ct)
            .map_err(|_| EnvelopeError::TooLarge(d.payload.len()))?;
        out.extend_from_slice(&ct);
        out.extend_from_slice(&tag);
        let sig = sender.sign(&out);
        out.extend_from_slice(sig.as_bytes());
        Envelope::decode(&out)
    }

    /// Decodes `raw` and checks its structure and the sender's signature (what a server checks
    /// before storing). The payload stays encrypted.
    pub fn decode(raw: &[u8]) -> Result<Envelope, EnvelopeError> {
        let min = HEADER_LEN + TAG + SIG;
        if raw.len() < min || raw.len() > MAX_LEN {
            return Err(EnvelopeError::Length {
                len: raw.len(),
                min,
                max: MAX_LEN,
            });
        }
        if raw[..4] != MAGIC || raw[4] != VERSION {
            return Err(EnvelopeError::Magic);
        }
        let flags = raw[5];
        if flags & !FLAG_RECEIPT != 0 {
            return Err(EnvelopeError::Flags(flags));
        }
        let sender = PubKey::from_bytes(&raw[6..39]).map_err(|_| EnvelopeError::Key("sender"))?;
        let recipient =
            PubKey::from_bytes(&raw[39..72]).map_err(|_| EnvelopeError::Key("recipient"))?;
        let mut id = [0u8; 16];
        id.copy_from_slice(&raw[72..88]);
        let created_ms = u64::from_be_bytes(arr(&raw[88..96]));
        let ttl_secs = u32::from_be_bytes(arr(&raw[96..100]));
        PubKey::from_bytes(&raw[100..133]).map_err(|_| EnvelopeError::Key("ephemeral"))?;
        let declared = u32::from_be_bytes(arr(&raw[133..137])) as usize;
        if declared < TAG || HEADER_LEN + declared + SIG != raw.len() {
            return Err(EnvelopeError::CiphertextLength { declared });
        }
        if ttl_secs == 0 || ttl_secs > MAX_TTL_SECS {
            return Err(EnvelopeError::Ttl(ttl_secs));
        }
        let body = raw.len() - SIG;
        let sig = Sig::from_bytes(&raw[body..]).map_err(|_| EnvelopeError::Signature)?;
        sender
            .verify(&raw[..body], &sig)
            .map_err(|_| EnvelopeError::Signature)?;
        Ok(Envelope {
            raw: raw.to_vec(),
            sender,
            recipient,
            id,
            created_ms,
            ttl_secs,
            flags,
        })
    }

    /// Decrypts the payload with the recipient's key.
    pub fn open(&self, recipient: &SecKey) -> Result<Vec<u8>, EnvelopeError> {
        if recipient.pubkey() != self.recipient {
            return Err(EnvelopeError::WrongRecipient(self.recipient));
        }
        let eph_pk =
            PubKey::from_bytes(&self.raw[100..133]).map_err(|_| EnvelopeError::Key("ephemeral"))?;
        let shared = recipient
            .ecdh(&eph_pk)
            .map_err(|_| EnvelopeError::Key("ephemeral"))?;
        let key = kdf(&shared, &eph_pk, &self.recipient);
        let ct_end = self.raw.len() - SIG;
        let mut buf = self.raw[HEADER_LEN..ct_end - TAG].to_vec();
        let tag: [u8; TAG] = arr(&self.raw[ct_end - TAG..ct_end]);
        ChaChaPoly::new(&key)
            .open_in_place(0, &self.raw[..HEADER_LEN], &mut buf, &tag)
            .map_err(|_| EnvelopeError::Decrypt)?;
        Ok(buf)
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// Whether this is a *delivered* receipt.
    pub fn is_receipt(&self) -> bool {
        self.flags & FLAG_RECEIPT != 0
    }

    /// When it expires, Unix ms.
    pub fn expires_ms(&self) -> u64 {
        self.created_ms
            .saturating_add(u64::from(self.ttl_secs) * 1000)
    }

    /// Whether it has expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_ms()
    }
}

fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

fn derive_key(eph: &SecKey, eph_pk: &PubKey, to: &PubKey) -> Result<[u8; 32], EnvelopeError> {
    let shared = eph.ecdh(to).map_err(|_| EnvelopeError::Key("recipient"))?;
    Ok(kdf(&shared, eph_pk, to))
}

fn kdf(shared: &[u8; 32], eph_pk: &PubKey, to: &PubKey) -> [u8; 32] {
    let mut m = Vec::with_capacity(KDF_LABEL.len() + 32 + 66);
    m.extend_from_slice(KDF_LABEL);
    m.extend_from_slice(shared);
    m.extend_from_slice(eph_pk.as_bytes());
    m.extend_from_slice(to.as_bytes());
    keys::sha256(&m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(n: &str) -> SecKey {
        SecKey::from_seed(n.as_bytes())
    }

    fn sample() -> Envelope {
        let d = Draft {
            to: key("bob").pubkey(),
            payload: b"hi",
            ttl_secs: 3600,
            flags: 0,
        };
        Envelope::seal(&key("alice"), &d, [7; 16], 1_800_000_000_000, &key("eph")).unwrap()
    }

    #[test]
    fn seal_open_and_the_annotated_layout() {
        let e = sample();
        assert_eq!(e.open(&key("bob")).unwrap(), b"hi");
        assert_eq!(e.sender, key("alice").pubkey());
        let b = e.as_bytes();
        assert_eq!(b.len(), HEADER_LEN + 2 + TAG + SIG);
        assert_eq!(hex::encode(&b[..6]), "534b4d420100"); // "SKMB", v1, flags 0
        assert_eq!(&b[6..39], key("alice").pubkey().as_bytes()); // sender
        assert_eq!(&b[39..72], key("bob").pubkey().as_bytes()); // recipient
        assert_eq!(hex::encode(&b[72..88]), "07".repeat(16)); // id
        assert_eq!(hex::encode(&b[88..96]), "000001a3185c5000"); // created ms
        assert_eq!(hex::encode(&b[96..100]), "00000e10"); // ttl 3600 s
        assert_eq!(&b[100..133], key("eph").pubkey().as_bytes()); // ephemeral key
        assert_eq!(hex::encode(&b[133..137]), "00000012"); // 2 + 16 bytes of ciphertext
        // Deterministic inputs give deterministic ciphertext (the signature too: RFC 6979):
        // the whole envelope is pinned (docs/protocols/mailbox.md shows it).
        assert_eq!(sample().as_bytes(), b);
        assert_eq!(
            hex::encode(b),
            concat!(
                "534b4d42010003423b3a4e823ff981b6855640b4f78846d819880fd9ee1ab829bc069ea46f67f502",
                "dc7806760f94f273229dc0565769f7faff39b8e22e7cd44cf05a6ebcfce454be0707070707070707",
                "0707070707070707000001a3185c500000000e10035daa4fba3b223fc781b2dee764dec28b6929ee",
                "c7fb2a7905a64fd52dfc32a4780000001254847f0b5299ef022f715dc4a31e1ebc83947d5d4487ad",
                "37d8310551e7bb4d5c177cd1b3e71f28549b2591c7fc6ebdcde39c761a00cc63d4d18aba6a6f97eb",
                "1d4a2d49cc14152b1e192d2f3f196f941ccdbb00",
            )
        );
    }

    #[test]
    fn others_cannot_read_and_nobody_can_alter() {
        let e = sample();
        assert_eq!(
            e.open(&key("mallory")),
            Err(EnvelopeError::WrongRecipient(key("bob").pubkey()))
        );
        // Every single-byte change is refused by the signature check (or earlier).
        for i in 0..e.as_bytes().len() {
            let mut b = e.as_bytes().to_vec();
            b[i] ^= 0x01;
            assert!(
                Envelope::decode(&b).is_err(),
                "byte {i} altered and accepted"
            );
        }
        // A re-signed forgery (the server re-signs with its own key as "sender") fails
        // decryption only if the payload was touched; the recipient still sees who signed.
        let mut b = e.as_bytes().to_vec();
        let n = b.len();
        b[HEADER_LEN] ^= 1;
        let sig = key("alice").sign(&b[..n - SIG]);
        b[n - SIG..].copy_from_slice(sig.as_bytes());
        let forged = Envelope::decode(&b).unwrap();
        assert_eq!(forged.open(&key("bob")), Err(EnvelopeError::Decrypt));
    }

    #[test]
    fn bounds_are_refused_with_reasons() {
        let to = key("bob").pubkey();
        let big = vec![0u8; MAX_PAYLOAD + 1];
        let d = |payload: &'static [u8], ttl_secs, flags| Draft {
            to,
            payload,
            ttl_secs,
            flags,
        };
        let s = key("a");
        let e = key("e");
        assert!(matches!(
            Envelope::seal(
                &s,
                &Draft {
                    to,
                    payload: &big,
                    ttl_secs: 1,
                    flags: 0
                },
                [0; 16],
                0,
                &e
            ),
            Err(EnvelopeError::TooLarge(_))
        ));
        assert_eq!(
            Envelope::seal(&s, &d(b"x", 0, 0), [0; 16], 0, &e),
            Err(EnvelopeError::Ttl(0))
        );
        assert_eq!(
            Envelope::seal(&s, &d(b"x", MAX_TTL_SECS + 1, 0), [0; 16], 0, &e),
            Err(EnvelopeError::Ttl(MAX_TTL_SECS + 1))
        );
        assert_eq!(
            Envelope::seal(&s, &d(b"x", 1, 4), [0; 16], 0, &e),
            Err(EnvelopeError::Flags(4))
        );
        let max = Envelope::seal(
            &s,
            &Draft {
                to,
                payload: &big[1..],
                ttl_secs: MAX_TTL_SECS,
                flags: FLAG_RECEIPT,
            },
            [0; 16],
            0,
            &e,
        )
        .unwrap();
        assert_eq!(max.as_bytes().len(), MAX_LEN);
        assert!(max.is_receipt());
        assert!(matches!(
            Envelope::decode(&[0; 10]),
            Err(EnvelopeError::Length { .. })
        ));
        assert!(max.expired(u64::from(MAX_TTL_SECS) * 1000));
        assert!(!max.expired(u64::from(MAX_TTL_SECS) * 1000 - 1));
    }

    proptest! {
        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Envelope::decode(&b);
        }

        #[test]
        fn round_trip(payload in proptest::collection::vec(any::<u8>(), 0..2000), id in any::<[u8; 16]>(), ttl in 1u32..=MAX_TTL_SECS, now in any::<u32>()) {
            let d = Draft { to: key("bob").pubkey(), payload: &payload, ttl_secs: ttl, flags: 0 };
            let e = Envelope::seal(&key("alice"), &d, id, u64::from(now), &key("eph")).unwrap();
            let back = Envelope::decode(e.as_bytes()).unwrap();
            prop_assert_eq!(&back, &e);
            prop_assert_eq!(back.open(&key("bob")).unwrap(), payload);
        }
    }
}
