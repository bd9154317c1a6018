//! Transport kinds and deterministic transport ids.
//!
//! A transport id is derived, not chosen: both ends compute the same id from the two keys and
//! the kind, so each end's `tp` item lists the same id without any exchange, a reader matches
//! the two ends' claims by id, and a re-added transport keeps its id.
//!
//! `id = UUID(SHA256("skymesh/tp/id/v1" ‖ lo ‖ hi ‖ len(kind) u8 ‖ kind)[..16])`, where `lo`,
//! `hi` are the two 33-byte keys sorted ascending, rendered as an RFC 9562 version-8 (custom)
//! UUID: the version nibble set to 8 and the variant bits to `10`, lowercase
//! `8-4-4-4-12` hex.
use std::fmt;
use std::str::FromStr;

use keys::PubKey;
use sha2::{Digest, Sha256};

/// Domain separator of the id hash.
const ID_DOMAIN: &[u8] = b"skymesh/tp/id/v1";

/// A transport kind as published in `tp` items. Free text in the format (1..=64 bytes), so
/// kinds added later (TCP, hole-punched UDP) need no format change; the manager in this crate
/// establishes [`TransportKind::DMSG`] links.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransportKind(String);

/// Why a kind or id text is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// A kind must be 1..=64 bytes of `[a-z0-9_-]`.
    #[error("transport kind must be 1..=64 bytes of [a-z0-9_-]")]
    Kind,
    /// An id must be a lowercase 8-4-4-4-12 hex UUID.
    #[error("transport id must be a lowercase 8-4-4-4-12 hex UUID")]
    Id,
}

impl TransportKind {
    /// A DMSG stream between the two visors (this crate's manager).
    pub const DMSG: &'static str = "dmsg";
    /// Skywire's TCP transport with address resolving (not implemented here).
    pub const STCPR: &'static str = "stcpr";
    /// Skywire's hole-punched UDP transport (not implemented here).
    pub const SUDPH: &'static str = "sudph";

    /// The DMSG kind.
    pub fn dmsg() -> TransportKind {
        TransportKind(Self::DMSG.to_owned())
    }

    /// The kind as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TransportKind {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<TransportKind, ParseError> {
        let ok = !s.is_empty()
            && s.len() <= dht::value::MAX_NAME_LEN
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(TransportKind(s.to_owned()))
        } else {
            Err(ParseError::Kind)
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A transport id: 16 bytes shown as a UUID.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransportId([u8; 16]);

impl TransportId {
    /// The id of the transport of `kind` between `a` and `b` (order does not matter).
    pub fn derive(a: &PubKey, b: &PubKey, kind: &TransportKind) -> TransportId {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let mut h = Sha256::new();
        h.update(ID_DOMAIN);
        h.update(lo.as_bytes());
        h.update(hi.as_bytes());
        // Kinds are ≤ 64 bytes (FromStr), so the length fits a byte and the encoding is
        // unambiguous.
        h.update([u8::try_from(kind.0.len()).unwrap_or(u8::MAX)]);
        h.update(kind.0.as_bytes());
        let d = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&d[..16]);
        id[6] = (id[6] & 0x0f) | 0x80; // version 8
        id[8] = (id[8] & 0x3f) | 0x80; // variant 10
        TransportId(id)
    }

    /// The raw 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// From raw bytes.
    pub fn from_bytes(b: [u8; 16]) -> TransportId {
        TransportId(b)
    }
}

impl fmt::Display for TransportId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = |r: std::ops::Range<usize>| {
            self.0[r]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        write!(
            f,
            "{}-{}-{}-{}-{}",
            h(0..4),
            h(4..6),
            h(6..8),
            h(8..10),
            h(10..16)
        )
    }
}

impl fmt::Debug for TransportId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TransportId({self})")
    }
}

impl FromStr for TransportId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<TransportId, ParseError> {
        let b = s.as_bytes();
        if b.len() != 36 {
            return Err(ParseError::Id);
        }
        let mut out = [0u8; 16];
        let mut n = 0;
        let mut i = 0;
        while i < 36 {
            if matches!(i, 8 | 13 | 18 | 23) {
                if b[i] != b'-' {
                    return Err(ParseError::Id);
                }
                i += 1;
                continue;
            }
            let nib = |c: u8| match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            };
            let (Some(hi), Some(lo)) = (nib(b[i]), b.get(i + 1).copied().and_then(nib)) else {
                return Err(ParseError::Id);
            };
            if n >= 16 {
                return Err(ParseError::Id);
            }
            out[n] = hi << 4 | lo;
            n += 1;
            i += 2;
        }
        if n != 16 {
            return Err(ParseError::Id);
        }
        Ok(TransportId(out))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use keys::SecKey;
    use proptest::prelude::*;

    fn pk(s: &str) -> PubKey {
        SecKey::from_seed(s.as_bytes()).pubkey()
    }

    #[test]
    fn id_is_symmetric_kind_bound_and_a_v8_uuid() {
        let (a, b) = (pk("a"), pk("b"));
        let d = TransportKind::dmsg();
        let id = TransportId::derive(&a, &b, &d);
        assert_eq!(id, TransportId::derive(&b, &a, &d));
        assert_ne!(id, TransportId::derive(&a, &b, &"stcpr".parse().unwrap()));
        assert_ne!(id, TransportId::derive(&a, &pk("c"), &d));
        let text = id.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "8");
        assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"));
        assert_eq!(text.parse::<TransportId>().unwrap(), id);
    }

    #[test]
    fn kinds_and_ids_refuse_bad_text() {
        for bad in ["", "DMSG", "a b", &"x".repeat(65)] {
            assert!(bad.parse::<TransportKind>().is_err(), "{bad}");
        }
        for bad in [
            "",
            "00000000-0000-0000-0000-00000000000",
            "00000000-0000-0000-0000-0000000000000",
            "00000000+0000-0000-0000-000000000000",
            "0000000g-0000-0000-0000-000000000000",
            "00000000-0000-0000-0000-00000000000A",
            "é0000000-0000-0000-0000-00000000000",
        ] {
            assert!(bad.parse::<TransportId>().is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn id_text_round_trips(b in any::<[u8; 16]>()) {
            let id = TransportId::from_bytes(b);
            prop_assert_eq!(id.to_string().parse::<TransportId>().unwrap(), id);
        }

        #[test]
        fn id_parse_never_panics(s in "\\PC{0,40}") {
            if let Ok(id) = s.parse::<TransportId>() {
                prop_assert_eq!(id.to_string(), s);
            }
        }
    }
}
