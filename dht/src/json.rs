//! The JSON form of an item, for the command line and for humans (never for storage or the wire;
//! those use the binary encoding in [`crate::item`]).
//!
//! ```json
//! {"pk":"02…","salt":"dmsg","seq":1790000000000,"value":"{\"v\":1,…}","sig":"…","target":"…"}
//! ```
//!
//! - `pk`, `writer`, `sig`, `target`: lowercase hex (66, 66, 130, 64 chars).
//! - `salt` / `salt_hex` and `value` / `value_hex`: exactly one of each pair. The writer uses the
//!   text field when the bytes are valid UTF-8, else the `_hex` field; a reader accepts either,
//!   so the mapping bytes → JSON is a function and JSON → bytes is unambiguous.
//! - `seq`: a JSON integer (u64; values above 2^53 are fine for serde_json, not for JavaScript).
//! - `writer`: present only for delegated items.
//! - `target`: written for convenience; when present on input it must equal the derived target.
//!
//! Unknown fields are refused.

use keys::{PubKey, Sig};
use serde::{Deserialize, Serialize};

use crate::item::{Item, Target};
use crate::salt::{Salt, SaltTooLong};

/// Why JSON does not describe an item.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// Not JSON of the item shape.
    #[error("not an item")]
    Json {
        /// Parser error.
        #[source]
        source: serde_json::Error,
    },
    /// Neither or both of a text/hex field pair are present.
    #[error("exactly one of `{text}` and `{text}_hex` is required")]
    OneOf {
        /// The text field's name.
        text: &'static str,
    },
    /// A `_hex` field is not hex.
    #[error("`{field}` is not hex")]
    Hex {
        /// Field name.
        field: &'static str,
    },
    /// The salt is too long.
    #[error(transparent)]
    Salt(#[from] SaltTooLong),
    /// `target` does not match `SHA256(pk ‖ salt)`.
    #[error("target {given} does not match the derived {derived}")]
    Target {
        /// Given target.
        given: Target,
        /// Derived target.
        derived: Target,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    pk: PubKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    salt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    salt_hex: Option<String>,
    seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value_hex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    writer: Option<PubKey>,
    sig: Sig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<String>,
}

fn split(bytes: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (Some(s.to_owned()), None),
        Err(_) => (None, Some(hex::encode(bytes))),
    }
}

fn join(
    text: Option<String>,
    hex_: Option<String>,
    name: &'static str,
    hex_name: &'static str,
) -> Result<Vec<u8>, JsonError> {
    match (text, hex_) {
        (Some(t), None) => Ok(t.into_bytes()),
        (None, Some(h)) => hex::decode(h).map_err(|_| JsonError::Hex { field: hex_name }),
        _ => Err(JsonError::OneOf { text: name }),
    }
}

/// The JSON value of `item` (see the module doc).
pub fn to_json(item: &Item) -> serde_json::Value {
    let (salt, salt_hex) = split(item.salt.as_bytes());
    let (value, value_hex) = split(&item.value);
    let wire = Wire {
        pk: item.pk,
        salt,
        salt_hex,
        seq: item.seq,
        value,
        value_hex,
        writer: item.writer,
        sig: item.sig,
        target: Some(item.target().to_hex()),
    };
    // A struct of strings and integers always serialises.
    serde_json::to_value(wire).unwrap_or(serde_json::Value::Null)
}

/// Parses the JSON form (see the module doc). Structural only; the rules still apply.
pub fn from_json(text: &str) -> Result<Item, JsonError> {
    let w: Wire = serde_json::from_str(text).map_err(|source| JsonError::Json { source })?;
    let salt = Salt::new(join(w.salt, w.salt_hex, "salt", "salt_hex")?)?;
    let value = join(w.value, w.value_hex, "value", "value_hex")?;
    let item = Item {
        pk: w.pk,
        salt,
        seq: w.seq,
        value,
        writer: w.writer,
        sig: w.sig,
    };
    if let Some(t) = w.target {
        let derived = item.target();
        let given = Target::from_hex(&t).map_err(|_| JsonError::Hex { field: "target" })?;
        if given != derived {
            return Err(JsonError::Target { given, derived });
        }
    }
    Ok(item)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use keys::SecKey;

    #[test]
    fn round_trip_text_and_hex() {
        let sk = SecKey::from_seed(b"a");
        for (salt, value) in [
            (&b"dmsg"[..], &b"hello"[..]),
            (&[0xff, 0][..], &[0xfe, 1][..]),
        ] {
            let it = Item::sign(&sk, Salt::new(salt).unwrap(), 3, value.to_vec()).unwrap();
            let j = to_json(&it);
            assert_eq!(from_json(&j.to_string()).unwrap(), it);
        }
        let it = Item::sign(&sk, Salt::new(b"x".to_vec()).unwrap(), 3, vec![0xff]).unwrap();
        let j = to_json(&it);
        assert!(j.get("value").is_none() && j["value_hex"] == "ff" && j["salt"] == "x");
        let mut both = j.clone();
        both["value"] = "a".into();
        assert!(matches!(
            from_json(&both.to_string()),
            Err(JsonError::OneOf { .. })
        ));
        let mut wrong = j.clone();
        wrong["target"] = hex::encode([0u8; 32]).into();
        assert!(matches!(
            from_json(&wrong.to_string()),
            Err(JsonError::Target { .. })
        ));
        let mut extra = j;
        extra["x"] = 1.into();
        assert!(from_json(&extra.to_string()).is_err());
    }
}
