//! The Redis key schema, version 1. Pure functions: the only place a Redis key name is built.
//!
//! Items are spread over [`SHARDS`] shards by the first byte of their target. Each shard has
//! two keys that share one hash tag, so a Lua script can update both atomically on a clustered
//! or managed Redis (all keys of one script call must live in one slot):
//!
//! | key | type | content |
//! |---|---|---|
//! | `skymesh:v1:{skymesh-sNN}:items` | HASH | field = target (64 lowercase hex) → seq as 16 lowercase hex digits ‖ the item's binary encoding (`dht::Item::encode`) |
//! | `skymesh:v1:{skymesh-sNN}:changes` | STREAM | one entry per script call that wrote something: one `t` = target field per item written; trimmed to about `stream_maxlen` entries |
//!
//! `NN` is the shard number in two decimal digits (`00`–`15`). Changing the number of shards or
//! any layout above is a new schema version (`skymesh:v2:…`), never an in-place change.
//!
//! Nothing here ever expires or deletes a key: a full node that follows the mirror never removes
//! what it did not write (the Go full node's expiry sweep deleted shared mirror keys).
use dht::Target;

/// Schema version in every key.
pub const SCHEMA: &str = "v1";
/// Number of shards (fixed for schema v1).
pub const SHARDS: u8 = 16;

/// The shard of a target: its first byte modulo [`SHARDS`].
pub fn shard_of(target: &Target) -> u8 {
    target.as_bytes()[0] % SHARDS
}

fn prefix(shard: u8) -> String {
    format!("skymesh:{SCHEMA}:{{skymesh-s{shard:02}}}")
}

/// The HASH of encoded items of `shard`.
pub fn items_key(shard: u8) -> String {
    format!("{}:items", prefix(shard))
}

/// The change STREAM of `shard`.
pub fn changes_key(shard: u8) -> String {
    format!("{}:changes", prefix(shard))
}

/// A seq as 16 lowercase hex digits (fixed width, so equal-width comparison is numeric order).
pub fn seq_hex(seq: u64) -> String {
    format!("{seq:016x}")
}

/// Length of the seq prefix of a stored value.
pub const SEQ_PREFIX_LEN: usize = 16;

/// A stored value: seq hex ‖ encoded item.
pub fn stored_value(seq: u64, encoded_item: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(SEQ_PREFIX_LEN + encoded_item.len());
    v.extend_from_slice(seq_hex(seq).as_bytes());
    v.extend_from_slice(encoded_item);
    v
}

/// Splits a stored value into its seq prefix and the encoded item.
pub fn split_stored(v: &[u8]) -> Option<(u64, &[u8])> {
    if v.len() < SEQ_PREFIX_LEN {
        return None;
    }
    let (s, item) = v.split_at(SEQ_PREFIX_LEN);
    let seq = parse_seq_hex(std::str::from_utf8(s).ok()?)?;
    Some((seq, item))
}

/// Parses [`seq_hex`] output.
pub fn parse_seq_hex(s: &str) -> Option<u64> {
    if s.len() != 16 {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// A Redis stream entry id `ms-seq`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence part.
    pub seq: u64,
}

impl StreamId {
    /// `0-0`: before every entry.
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };

    /// Parses `ms-seq`.
    pub fn parse(s: &str) -> Option<StreamId> {
        let (a, b) = s.split_once('-')?;
        Some(StreamId {
            ms: a.parse().ok()?,
            seq: b.parse().ok()?,
        })
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_a_shard_share_one_hash_tag() {
        for shard in 0..SHARDS {
            let tag = |k: String| {
                let a = k.find('{').unwrap();
                let b = k.find('}').unwrap();
                k[a + 1..b].to_string()
            };
            let t = tag(items_key(shard));
            assert_eq!(t, tag(changes_key(shard)));
        }
        assert_eq!(items_key(3), "skymesh:v1:{skymesh-s03}:items");
        assert_eq!(changes_key(15), "skymesh:v1:{skymesh-s15}:changes");
    }

    #[test]
    fn seq_hex_orders_like_numbers() {
        let xs = [
            0u64,
            1,
            255,
            256,
            1 << 53,
            (1 << 53) + 1,
            u64::MAX - 1,
            u64::MAX,
        ];
        for w in xs.windows(2) {
            assert!(seq_hex(w[0]) < seq_hex(w[1]));
            assert_eq!(parse_seq_hex(&seq_hex(w[1])), Some(w[1]));
        }
        assert_eq!(parse_seq_hex("123"), None);
    }

    #[test]
    fn stored_values_split() {
        let v = stored_value(258, b"item");
        assert_eq!(&v[..16], b"0000000000000102");
        assert_eq!(split_stored(&v), Some((258, &b"item"[..])));
        assert_eq!(split_stored(b"short"), None);
        assert_eq!(split_stored(b"zzzzzzzzzzzzzzzzitem"), None);
    }

    #[test]
    fn stream_ids_parse_and_order() {
        let a = StreamId::parse("1700000000000-0").unwrap();
        let b = StreamId::parse("1700000000000-1").unwrap();
        let c = StreamId::parse("1700000000001-0").unwrap();
        assert!(a < b && b < c);
        assert_eq!(a.to_string(), "1700000000000-0");
        assert_eq!(StreamId::parse("x"), None);
    }
}
