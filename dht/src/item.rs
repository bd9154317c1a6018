//! The signed item: fields, signed bytes, target, and the binary encoding used for storage and
//! the wire. Pure code; nothing here decides whether an item is *accepted* (see [`crate::rules`]).
//!
//! Based on skywire `pkg/dht/item.go` (`MutableItem`), with the bugs of the Go version fixed:
//! salts are ≤ 64 bytes, and an item written *for* another key carries that key and a signature
//! that binds it (the Go `PutMirror` accepted any signer for any slot).
//!
//! # Signed bytes
//!
//! Owner-signed item (`writer` absent), identical to the Go node:
//!
//! ```text
//! seq (u64 BE, 8) ‖ len(value) (u32 BE, 4) ‖ value ‖ len(salt) (u32 BE, 4) ‖ salt
//! ```
//!
//! Delegated item (`writer` present, signed by the writer on behalf of `pk`):
//!
//! ```text
//! <owner signed bytes> ‖ DELEGATION_TAG ("skymesh/for/v1", 14 bytes) ‖ pk (33)
//! ```
//!
//! The owner form is self-delimiting (its length is `16 + len(value) + len(salt)`), so a delegated
//! payload can never be read as an owner payload or the other way round, and the subject key is
//! inside what the writer signed: the signature cannot be moved to another subject.
//!
//! The signature is the DMSG one ([`keys::SecKey::sign`]): 65-byte recoverable secp256k1 over
//! SHA-256 of the signed bytes, verified recover-then-compare.
//!
//! # Binary encoding (version 1)
//!
//! ```text
//! off  size  field
//! 0    1     version = 0x01
//! 1    1     flags: bit 0 = writer present; bits 1..7 must be 0
//! 2    33    pk (subject key, compressed secp256k1)
//! 35   8     seq (u64 BE)
//! 43   1     len(salt) (0..=64)
//! 44   s     salt
//! 44+s 4     len(value) (u32 BE, ≤ MAX_VALUE_LEN_LIMIT)
//! 48+s v     value
//! …    33    writer key (only when flag bit 0 is set)
//! …    65    sig (r ‖ s ‖ recid)
//! ```
//!
//! No trailing bytes are allowed, so every item has exactly one encoding. [`Item::decode`] never
//! panics and never allocates more than the input length.

use std::fmt;

use keys::{KeyError, PUBKEY_LEN, PubKey, SIG_LEN, SecKey, Sig, SigError};

use crate::salt::{MAX_SALT_LEN, Salt};

/// Binary encoding version written by [`Item::encode`].
pub const ENCODING_VERSION: u8 = 1;

/// Domain tag between the owner signed bytes and the subject key in a delegated signature.
pub const DELEGATION_TAG: &[u8; 14] = b"skymesh/for/v1";

/// Hard ceiling for any configured value size: 4 MiB, the Go node's frame cap. No item with a
/// larger value can be signed, decoded or stored; [`crate::Config::max_value_len`] (default
/// 64 KiB) is the operative limit below it.
pub const MAX_VALUE_LEN_LIMIT: usize = 4 * 1024 * 1024;

const FLAG_WRITER: u8 = 0x01;
const FIXED_LEN: usize = 1 + 1 + PUBKEY_LEN + 8 + 1 + 4 + SIG_LEN;

/// Where an item lives in the keyspace: `SHA256(pk ‖ salt)` of the *subject* key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target([u8; 32]);

impl Target {
    /// The target of `salt` under `pk`.
    pub fn of(pk: &PubKey, salt: &Salt) -> Target {
        let mut buf = Vec::with_capacity(PUBKEY_LEN + salt.len());
        buf.extend_from_slice(pk.as_bytes());
        buf.extend_from_slice(salt.as_bytes());
        Target(keys::sha256(&buf))
    }

    /// A target from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Target {
        Target(bytes)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Target, KeyError> {
        let mut out = [0u8; 32];
        if s.len() != 64 {
            return Err(KeyError::Length {
                expected: 32,
                got: s.len() / 2,
            });
        }
        hex::decode_to_slice(s, &mut out).map_err(|_| KeyError::Hex)?;
        Ok(Target(out))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({})", &self.to_hex()[..16])
    }
}

/// A signed mutable item.
///
/// Fields are public so callers can build and inspect items freely; nothing is trusted until
/// [`crate::rules`] has checked it. Build signed items with [`Item::sign`] / [`Item::sign_for`].
#[derive(Clone, PartialEq, Eq)]
pub struct Item {
    /// Subject key: whose slot this is. The target is `SHA256(pk ‖ salt)`.
    pub pk: PubKey,
    /// Slot name under `pk` (≤ 64 bytes).
    pub salt: Salt,
    /// Version; a stored item is replaced only by a strictly higher seq.
    pub seq: u64,
    /// Payload; for known salts, the canonical encoding of the salt's value format.
    pub value: Vec<u8>,
    /// `None`: signed by `pk` itself. `Some(w)`: signed by trusted writer `w` for `pk`.
    pub writer: Option<PubKey>,
    /// Signature by the signer ([`Item::signer`]) over [`Item::signed_bytes`].
    pub sig: Sig,
}

/// Why an item could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The value exceeds [`MAX_VALUE_LEN_LIMIT`].
    #[error("value is {len} bytes, the hard limit is {max}")]
    ValueTooLarge {
        /// Value length.
        len: usize,
        /// [`MAX_VALUE_LEN_LIMIT`].
        max: usize,
    },
    /// `sign_for` was asked to sign for the writer's own key; use [`Item::sign`].
    #[error("writer {writer} signing for itself; owner items carry no writer")]
    SelfDelegation {
        /// The writer (and subject) key.
        writer: PubKey,
    },
    /// The signing primitive refused (only for an all-zero digest, which SHA-256 never yields
    /// in practice).
    #[error("signing failed")]
    Sign {
        /// Underlying error.
        #[source]
        source: SigError,
    },
}

/// Why bytes are not a well-formed encoded item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Input ended before the field was complete.
    #[error("truncated at byte {offset} reading {field}")]
    Truncated {
        /// Field being read.
        field: &'static str,
        /// Offset where it started.
        offset: usize,
    },
    /// The version byte is not [`ENCODING_VERSION`].
    #[error("unsupported item encoding version {version}")]
    Version {
        /// Version found.
        version: u8,
    },
    /// Reserved flag bits are set.
    #[error("unknown flag bits {flags:#04x}")]
    Flags {
        /// The flags byte.
        flags: u8,
    },
    /// Salt length above [`MAX_SALT_LEN`].
    #[error("salt length {len} above {max}", max = MAX_SALT_LEN)]
    SaltTooLong {
        /// Declared length.
        len: usize,
    },
    /// Value length above [`MAX_VALUE_LEN_LIMIT`].
    #[error("value length {len} above the hard limit {max}", max = MAX_VALUE_LEN_LIMIT)]
    ValueTooLong {
        /// Declared length.
        len: usize,
    },
    /// A key field is not a valid compressed point.
    #[error("invalid {field} key")]
    Key {
        /// `pk` or `writer`.
        field: &'static str,
        /// Underlying error.
        #[source]
        source: KeyError,
    },
    /// Bytes remain after the signature.
    #[error("{extra} trailing bytes after the item")]
    Trailing {
        /// Number of extra bytes.
        extra: usize,
    },
}

impl Item {
    /// Signs an owner item: `sk` signs its own slot `(sk.pubkey(), salt)`.
    pub fn sign(sk: &SecKey, salt: Salt, seq: u64, value: Vec<u8>) -> Result<Item, SignError> {
        Item::sign_inner(sk, sk.pubkey(), None, salt, seq, value)
    }

    /// Signs a delegated item: writer `sk` writes slot `(subject, salt)`. Stores accept it only
    /// when the writer is on their trusted-writer allowlist.
    pub fn sign_for(
        sk: &SecKey,
        subject: PubKey,
        salt: Salt,
        seq: u64,
        value: Vec<u8>,
    ) -> Result<Item, SignError> {
        let writer = sk.pubkey();
        if writer == subject {
            return Err(SignError::SelfDelegation { writer });
        }
        Item::sign_inner(sk, subject, Some(writer), salt, seq, value)
    }

    fn sign_inner(
        sk: &SecKey,
        pk: PubKey,
        writer: Option<PubKey>,
        salt: Salt,
        seq: u64,
        value: Vec<u8>,
    ) -> Result<Item, SignError> {
        if value.len() > MAX_VALUE_LEN_LIMIT {
            return Err(SignError::ValueTooLarge {
                len: value.len(),
                max: MAX_VALUE_LEN_LIMIT,
            });
        }
        let digest = keys::sha256(&signed_bytes(&pk, writer.is_some(), &salt, seq, &value));
        let sig = sk
            .sign_hash(&digest)
            .map_err(|source| SignError::Sign { source })?;
        Ok(Item {
            pk,
            salt,
            seq,
            value,
            writer,
            sig,
        })
    }

    /// The key whose signature the item carries: the writer if present, else the subject.
    pub fn signer(&self) -> PubKey {
        self.writer.unwrap_or(self.pk)
    }

    /// The target of this item: `SHA256(pk ‖ salt)` of the subject key.
    pub fn target(&self) -> Target {
        Target::of(&self.pk, &self.salt)
    }

    /// The bytes the signature covers (see the module doc).
    pub fn signed_bytes(&self) -> Vec<u8> {
        signed_bytes(
            &self.pk,
            self.writer.is_some(),
            &self.salt,
            self.seq,
            &self.value,
        )
    }

    /// Checks the signature only (recover-then-compare against [`Item::signer`]). Acceptance needs
    /// more than this; see [`crate::rules::validate`].
    pub fn verify_signature(&self) -> Result<(), SigError> {
        self.signer().verify(&self.signed_bytes(), &self.sig)
    }

    /// Length of [`Item::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        FIXED_LEN
            + self.salt.len()
            + self.value.len()
            + if self.writer.is_some() { PUBKEY_LEN } else { 0 }
    }

    /// The binary encoding (see the module doc).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Appends the binary encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(ENCODING_VERSION);
        out.push(if self.writer.is_some() {
            FLAG_WRITER
        } else {
            0
        });
        out.extend_from_slice(self.pk.as_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        // Salt ≤ 64 by construction of `Salt`.
        out.push(self.salt.len() as u8);
        out.extend_from_slice(self.salt.as_bytes());
        out.extend_from_slice(&len_u32(self.value.len()).to_be_bytes());
        out.extend_from_slice(&self.value);
        if let Some(w) = &self.writer {
            out.extend_from_slice(w.as_bytes());
        }
        out.extend_from_slice(self.sig.as_bytes());
    }

    /// Parses the binary encoding. Structural checks only (lengths, version, key points);
    /// signature and policy are [`crate::rules`]' job.
    pub fn decode(bytes: &[u8]) -> Result<Item, DecodeError> {
        Item::decode_with(bytes, true)
    }

    /// Like [`Item::decode`], but an item signed by its own key (no writer) gets that key's
    /// curve-point check from its signature check instead of here: for bulk transfers whose
    /// every item is verified next (sync pages and pushes), where the check would otherwise be
    /// done twice (it is ~10 % of a verified item's cost). [`Item::verify_signature`] recovers
    /// the signer's key and compares bytes, so an item whose key is not a valid point never
    /// verifies and is refused by the acceptance rules like any forgery. Writer items (whose
    /// subject key no signature check covers) are checked in full, as by [`Item::decode`].
    pub fn decode_for_verification(bytes: &[u8]) -> Result<Item, DecodeError> {
        Item::decode_with(bytes, false)
    }

    fn decode_with(bytes: &[u8], check_signer_point: bool) -> Result<Item, DecodeError> {
        let mut r = Reader { buf: bytes, pos: 0 };
        let version = r.take(1, "version")?[0];
        if version != ENCODING_VERSION {
            return Err(DecodeError::Version { version });
        }
        let flags = r.take(1, "flags")?[0];
        if flags & !FLAG_WRITER != 0 {
            return Err(DecodeError::Flags { flags });
        }
        let pk_bytes = r.array::<PUBKEY_LEN>("pk")?;
        // A writer item's subject key is not the signer: always checked.
        let pk = if check_signer_point || flags & FLAG_WRITER != 0 {
            PubKey::from_bytes(&pk_bytes).map_err(|source| DecodeError::Key {
                field: "pk",
                source,
            })?
        } else {
            PubKey::from_array_unvalidated(pk_bytes)
        };
        let seq = u64::from_be_bytes(r.array::<8>("seq")?);
        let salt_len = usize::from(r.take(1, "salt length")?[0]);
        if salt_len > MAX_SALT_LEN {
            return Err(DecodeError::SaltTooLong { len: salt_len });
        }
        let salt = Salt::new(r.take(salt_len, "salt")?)
            .map_err(|e| DecodeError::SaltTooLong { len: e.len })?;
        let value_len = u32::from_be_bytes(r.array::<4>("value length")?) as usize;
        if value_len > MAX_VALUE_LEN_LIMIT {
            return Err(DecodeError::ValueTooLong { len: value_len });
        }
        let value = r.take(value_len, "value")?.to_vec();
        let writer = if flags & FLAG_WRITER != 0 {
            Some(
                PubKey::from_bytes(r.take(PUBKEY_LEN, "writer")?).map_err(|source| {
                    DecodeError::Key {
                        field: "writer",
                        source,
                    }
                })?,
            )
        } else {
            None
        };
        let sig = Sig::from_bytes(r.take(SIG_LEN, "sig")?).map_err(|_| DecodeError::Truncated {
            field: "sig",
            offset: r.pos,
        })?;
        let extra = bytes.len().saturating_sub(r.pos);
        if extra != 0 {
            return Err(DecodeError::Trailing { extra });
        }
        Ok(Item {
            pk,
            salt,
            seq,
            value,
            writer,
            sig,
        })
    }
}

impl fmt::Debug for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Item")
            .field("pk", &self.pk)
            .field("salt", &self.salt)
            .field("seq", &self.seq)
            .field("value_len", &self.value.len())
            .field("writer", &self.writer)
            .finish_non_exhaustive()
    }
}

/// The signed bytes for the given fields (see the module doc). `delegated` appends the
/// delegation tag and the subject key.
pub fn signed_bytes(pk: &PubKey, delegated: bool, salt: &Salt, seq: u64, value: &[u8]) -> Vec<u8> {
    let extra = if delegated {
        DELEGATION_TAG.len() + PUBKEY_LEN
    } else {
        0
    };
    let mut out = Vec::with_capacity(16 + value.len() + salt.len() + extra);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&len_u32(value.len()).to_be_bytes());
    out.extend_from_slice(value);
    out.extend_from_slice(&len_u32(salt.len()).to_be_bytes());
    out.extend_from_slice(salt.as_bytes());
    if delegated {
        out.extend_from_slice(DELEGATION_TAG);
        out.extend_from_slice(pk.as_bytes());
    }
    out
}

/// Lengths here are bounded by `MAX_VALUE_LEN_LIMIT` (sign/decode refuse more); saturate rather
/// than wrap for hand-built items, whose signatures then simply fail.
fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(DecodeError::Truncated {
                field,
                offset: self.pos,
            }),
        }
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let s = self.take(N, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sk(seed: &str) -> SecKey {
        SecKey::from_seed(seed.as_bytes())
    }

    #[test]
    fn sign_verify_encode_decode() {
        let a = sk("alice");
        let item = Item::sign(&a, Salt::new(b"x".to_vec()).unwrap(), 7, b"hello".to_vec()).unwrap();
        item.verify_signature().unwrap();
        let bytes = item.encode();
        assert_eq!(bytes.len(), item.encoded_len());
        assert_eq!(Item::decode(&bytes).unwrap(), item);
        // Signed bytes are exactly the Go layout.
        let mut expect = 7u64.to_be_bytes().to_vec();
        expect.extend_from_slice(&5u32.to_be_bytes());
        expect.extend_from_slice(b"hello");
        expect.extend_from_slice(&1u32.to_be_bytes());
        expect.extend_from_slice(b"x");
        assert_eq!(item.signed_bytes(), expect);
    }

    #[test]
    fn delegated_signature_binds_subject() {
        let w = sk("writer");
        let subject = sk("subject").pubkey();
        let other = sk("other").pubkey();
        let mut item = Item::sign_for(&w, subject, Salt::default(), 1, vec![]).unwrap();
        item.verify_signature().unwrap();
        assert_eq!(item.signer(), w.pubkey());
        assert_eq!(Item::decode(&item.encode()).unwrap(), item);
        item.pk = other;
        assert!(item.verify_signature().is_err());
    }
}
