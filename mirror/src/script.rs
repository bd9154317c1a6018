//! The Lua script that makes mirror writes atomic: for every item, compare seqs and write the
//! item; then append one change entry for all items written — all in one step, so concurrent
//! writers can never regress an item.
//!
//! One call handles several items of the same shard (the writer groups a pipeline batch by
//! shard), which amortises the script-call overhead: per item Redis runs one `HGET` and at
//! most one `HSET`; per call one `XADD`.
//!
//! KEYS: 1 = items HASH, 2 = changes STREAM (one shard, one hash tag).
//! ARGV: 1 = stream MAXLEN (approximate), then per item three values: target hex, seq as 16 hex
//! digits, encoded item.
//!
//! A stored value is `seq hex (16 bytes) ‖ encoded item`, so the seq is compared without
//! decoding the item. Returns an array: first the change entry id (`""` if nothing was written),
//! then per item, in order, two values:
//! - `"ok", ""`: written (new item or higher seq);
//! - `"same", ""`: the identical item is already stored (idempotent retry);
//! - `"stale", <stored seq hex>`: a higher seq is stored;
//! - `"conflict", <stored seq hex>`: the same seq with different content is stored.
//!
//! Seqs are compared as two 8-hex-digit halves converted with `tonumber` (exact in Lua's
//! doubles), not as strings: Redis sets `LC_COLLATE` from the environment, and string comparison
//! in its Lua follows the locale. Within one call, a later item for the same target sees the
//! earlier one's write.

/// Source of the put script.
pub const PUT_SCRIPT: &str = r#"
local out = {''}
local changes = {}
local n = (#ARGV - 1) / 3
for i = 0, n - 1 do
  local t = ARGV[2 + 3 * i]
  local s = ARGV[3 + 3 * i]
  local v = ARGV[4 + 3 * i]
  local cur = redis.call('HGET', KEYS[1], t)
  local status = 'ok'
  local info = ''
  if cur then
    local ch = tonumber(string.sub(cur, 1, 8), 16)
    local cl = tonumber(string.sub(cur, 9, 16), 16)
    local nh = tonumber(string.sub(s, 1, 8), 16)
    local nl = tonumber(string.sub(s, 9, 16), 16)
    if ch > nh or (ch == nh and cl > nl) then
      status = 'stale'
      info = string.sub(cur, 1, 16)
    elseif ch == nh and cl == nl then
      if string.sub(cur, 17) == v then
        status = 'same'
      else
        status = 'conflict'
        info = string.sub(cur, 1, 16)
      end
    end
  end
  if status == 'ok' then
    redis.call('HSET', KEYS[1], t, s .. v)
    changes[#changes + 1] = 't'
    changes[#changes + 1] = t
  end
  out[#out + 1] = status
  out[#out + 1] = info
end
if #changes > 0 then
  out[1] = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', unpack(changes))
end
return out
"#;
