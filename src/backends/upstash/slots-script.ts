import { UPSTASH_FLAGS_LINE } from "./token-bucket-script";

/**
 * Concurrency slots as one Redis script: the Lua twin of `src/core/slots.ts`. A property test
 * runs both on random sequences and requires identical decisions.
 *
 * KEYS: one sorted set per claim (the concurrency rule's key for the client): members are lease
 * ids, scores the store-clock ms each lease expires at.
 * ARGV[1]: "" in production (the store's clock, `TIME`); tests may pass a time in ms.
 * ARGV[2]: "1" to acquire, "2" to renew (extend a lease the id still holds; never take a slot),
 * "0" to release.
 * ARGV[3 + 4(i-1) …]: lease id, limit, leaseMs, enforced ("1"/"0") of claim i.
 * An acquisition first drops expired leases (score ≤ now). It is all or nothing: when an
 * enforced claim is refused, no lease is added or renewed. Every call that changes a set gives it
 * the expiry of its last lease (never later: a released or stranger's lease does not keep it).
 * Reply: 2 integers per claim (acquire): granted (1/0), requests in flight after it.
 */
export const SLOTS_LUA = `
local now_ms
if ARGV[1] == '' then
  local time = redis.call('TIME')
  now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
else
  now_ms = tonumber(ARGV[1])
end
local now = string.format('%d', now_ms)
-- The set expires with its last lease (a set left empty is already gone).
local function expire_with_last(key)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if last[2] then redis.call('PEXPIRE', key, math.max(1, tonumber(last[2]) - now_ms)) end
end

if ARGV[2] == '0' then
  for i = 1, #KEYS do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    if redis.call('ZREM', KEYS[i], ARGV[3 + (i - 1) * 4]) == 1 then expire_with_last(KEYS[i]) end
  end
  return {}
end
if ARGV[2] == '2' then
  for i = 1, #KEYS do
    local at = 3 + (i - 1) * 4
    local lease_ms = tonumber(ARGV[at + 2])
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    -- GT: never shortens a lease; XX: never adds one.
    if redis.call('ZADD', KEYS[i], 'XX', 'GT', 'CH', string.format('%d', now_ms + lease_ms), ARGV[at]) == 1 then expire_with_last(KEYS[i]) end
  end
  return {}
end

local reply, granted, refused = {}, {}, false
for i = 1, #KEYS do
  local at = 3 + (i - 1) * 4
  local id, limit, enforced = ARGV[at], tonumber(ARGV[at + 1]), ARGV[at + 3] == '1'
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  local held = redis.call('ZCARD', KEYS[i])
  local mine = redis.call('ZSCORE', KEYS[i], id)
  if mine then
    granted[i] = true
  elseif held < limit then
    granted[i] = true
    held = held + 1
  else
    granted[i] = false
    if enforced then refused = true end
  end
  reply[2 * i - 1] = granted[i] and 1 or 0
  reply[2 * i] = held
end
if not refused then
  for i = 1, #KEYS do
    if granted[i] then
      local at = 3 + (i - 1) * 4
      local lease_ms = tonumber(ARGV[at + 2])
      redis.call('ZADD', KEYS[i], string.format('%d', now_ms + lease_ms), ARGV[at])
      expire_with_last(KEYS[i])
    end
  end
end
return reply
`;

/** SHA-1 of {@link SLOTS_LUA}; a test pins it. */
export const SLOTS_SHA1 = "d352b2069efdff8a351c726adfd930fba25ec2a2";

/** The slots script as the backend sends it to Upstash: Upstash's flags line (see `UPSTASH_FLAGS_LINE`), then {@link SLOTS_LUA}. */
export const SLOTS_UPSTASH_LUA = UPSTASH_FLAGS_LINE + SLOTS_LUA;

/** SHA-1 of {@link SLOTS_UPSTASH_LUA}, for EVALSHA; a test pins it. */
export const SLOTS_UPSTASH_SHA1 = "5db41bdb1ba59f912166cb6682830259235c3438";
