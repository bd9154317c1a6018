//! The Lua script that makes a mirror write atomic: compare seq, write item, write seq, append
//! the change — all or nothing, so concurrent writers can never regress an item.
//!
//! KEYS: 1 = items HASH, 2 = seqs HASH, 3 = changes STREAM (one shard, one hash tag).
//! ARGV: 1 = target hex, 2 = seq as 16 hex digits, 3 = encoded item, 4 = stream MAXLEN (approx).
//!
//! Returns a two-element array:
//! - `{"ok", <stream id>}`: written (new item or higher seq);
//! - `{"same", ""}`: the identical item is already stored (idempotent retry);
//! - `{"stale", <stored seq hex>}`: a higher seq is stored;
//! - `{"conflict", <stored seq hex>}`: the same seq with different content is stored.
//!
//! Seqs are compared as two 8-hex-digit halves converted with `tonumber` (exact in Lua's
//! doubles), not as strings: Redis sets `LC_COLLATE` from the environment, and string comparison
//! in its Lua follows the locale.

/// Source of the put script.
pub const PUT_SCRIPT: &str = r#"
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if cur then
  local ch = tonumber(string.sub(cur, 1, 8), 16)
  local cl = tonumber(string.sub(cur, 9, 16), 16)
  local nh = tonumber(string.sub(ARGV[2], 1, 8), 16)
  local nl = tonumber(string.sub(ARGV[2], 9, 16), 16)
  if ch > nh or (ch == nh and cl > nl) then
    return {'stale', cur}
  end
  if ch == nh and cl == nl then
    if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[3] then
      return {'same', ''}
    end
    return {'conflict', cur}
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 't', ARGV[1], 's', ARGV[2])
return {'ok', id}
"#;
