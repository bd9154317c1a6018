//! Store and acceptance configuration, with every default named and explained.

use std::collections::BTreeSet;
use std::time::Duration;

use keys::PubKey;

/// Largest value accepted by default: 64 KiB, the Go node's current `MaxValueSize`. The largest
/// real values (`tp` lists of busy visors) are a few KiB.
pub const DEFAULT_MAX_VALUE_LEN: usize = 64 * 1024;

/// How long an item lives without being refreshed: 2 h, as in the Go node. Publishers refresh
/// every 60 s (`dmsg`) to 5 min (`fullnode`), so only dead publishers' items expire.
pub const DEFAULT_TTL: Duration = Duration::from_secs(2 * 60 * 60);

/// Most targets (distinct salts) one subject key may occupy: 64. Five salts are in use; the Go
/// node allowed 50 per public key. Bounds what one key pair can make a store hold.
pub const DEFAULT_MAX_ITEMS_PER_KEY: u32 = 64;

/// Most items a store holds: 1,000,000. The network has ~10k visors × 5 salts today, so this is
/// 20× headroom; at the 64 KiB value cap the byte limit binds long before.
pub const DEFAULT_MAX_ITEMS: u64 = 1_000_000;

/// Most encoded bytes a store holds: 1 GiB (≈ 2 KiB average per item at the item cap).
pub const DEFAULT_MAX_BYTES: u64 = 1024 * 1024 * 1024;

/// Acceptance rules and store limits. Build with [`Config::default`] and adjust fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Largest value in bytes. Default [`DEFAULT_MAX_VALUE_LEN`]; values above
    /// [`crate::item::MAX_VALUE_LEN_LIMIT`] are refused whatever this says.
    pub max_value_len: usize,
    /// Keys allowed to write items *for other keys* (delegated items). Default: empty (nobody).
    /// Configured by the operator, never from remote input, so its size is the operator's.
    pub trusted_writers: BTreeSet<PubKey>,
    /// Items not put or refreshed for this long are removed by `expire`. Default [`DEFAULT_TTL`].
    pub ttl: Duration,
    /// Most targets per subject key. Default [`DEFAULT_MAX_ITEMS_PER_KEY`].
    pub max_items_per_key: u32,
    /// Most items in the store. Default [`DEFAULT_MAX_ITEMS`].
    pub max_items: u64,
    /// Most encoded item bytes in the store. Default [`DEFAULT_MAX_BYTES`].
    pub max_bytes: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_value_len: DEFAULT_MAX_VALUE_LEN,
            trusted_writers: BTreeSet::new(),
            ttl: DEFAULT_TTL,
            max_items_per_key: DEFAULT_MAX_ITEMS_PER_KEY,
            max_items: DEFAULT_MAX_ITEMS,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

impl Config {
    /// The value limit actually applied: `max_value_len` capped at the hard limit.
    pub fn effective_max_value_len(&self) -> usize {
        self.max_value_len.min(crate::item::MAX_VALUE_LEN_LIMIT)
    }
}
