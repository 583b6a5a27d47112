/**
 * The token bucket as one Redis script: the Lua twin of `src/core/token-bucket.ts`, with
 * the same integer units (one token = `refillPeriodMs` units, `refillTokens` units per ms).
 * A property test runs both on random sequences and requires identical results.
 *
 * KEYS: two per bucket the request is charged to: the bucket, then its exact override.
 * ARGV[1]: "" in production (the store's clock, `TIME`); tests may pass a time in ms.
 * ARGV[2]: "1" to charge, "0" to peek (decide, write nothing), "2" to refund (give back what
 * earlier charges still withhold, as `refundTokens` does).
 * ARGV[3 + 9(i-1) …]: capacity, refillTokens, refillPeriodMs, cost, enforced ("1"/"0"), blockForMs
 * of bucket i, then (refunds only, else 0) the state its charge wrote: level, unitsPerToken, updatedAtMs.
 *
 * Stored bucket: "level:unitsPerToken:updatedAtMs", plus ":blockedUntilMs" while a block
 * (`blockForMs`) holds; the key expires when the bucket is full and any block is over.
 * Stored override: "capacity:refillTokens:refillPeriodMs", no expiry; when present it replaces
 * the policy in ARGV (the cost stays), so an exact override costs no extra command.
 * All-or-nothing: if an enforced bucket refuses, no tokens are taken from any bucket (a refusal
 * that starts a block still writes its block).
 * Reply: 10 integers per bucket: outcome (1 allowed, 0 denied, 2 cost exceeds capacity),
 * remaining, resetMs, retryAfterMs, the policy in force (capacity, refillTokens, refillPeriodMs),
 * and the state a charge wrote (level, unitsPerToken, updatedAtMs; -1 when it wrote none).
 * A refund replies nothing.
 *
 * Commands run: TIME, MGET, and one SET … PX per bucket that spends tokens or starts a block
 * (none for a peek).
 * `string.format('%d')` writes integers: Lua's default number format loses digits past 1e14.
 */
export const TOKEN_BUCKET_LUA = `
local function floor_div(a, b)
  local q = math.floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  return q
end
local function ceil_div(a, b)
  local q = floor_div(a, b)
  if q * b == a then return q end
  return q + 1
end

local now_ms
if ARGV[1] == '' then
  local time = redis.call('TIME')
  now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
else
  now_ms = tonumber(ARGV[1])
end

local charge = ARGV[2] == '1'
local refund = ARGV[2] == '2'
local stored = redis.call('MGET', unpack(KEYS))
local reply, writes, charged, refused = {}, {}, {}, false
for i = 1, #KEYS / 2 do
  local key = KEYS[2 * i - 1]
  local at = 3 + (i - 1) * 9
  local capacity, refill_tokens = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
  local units_per_token, cost = tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3])
  local enforced = ARGV[at + 4] == '1'
  local block_ms = tonumber(ARGV[at + 5])
  if stored[2 * i] then
    local c, r, p = string.match(stored[2 * i], '^(%d+):(%d+):(%d+)$')
    if c then capacity, refill_tokens, units_per_token = tonumber(c), tonumber(r), tonumber(p) end
  end
  local full = capacity * units_per_token
  local level = full
  local l, u, t, b, raw
  if stored[2 * i - 1] then l, u, t, b = string.match(stored[2 * i - 1], '^(%d+):(%d+):(%d+):?(%d*)$') end
  local blocked_until = 0
  if l then
    raw = string.format('%s:%s:%s', l, u, t)
    l, u, t = tonumber(l), tonumber(u), tonumber(t)
    if block_ms > 0 and b ~= '' then blocked_until = tonumber(b) end
    if u ~= units_per_token then l = floor_div(l, u) * units_per_token end
    local missing = full - math.min(l, full)
    local elapsed = math.max(0, now_ms - t)
    if elapsed < ceil_div(missing, refill_tokens) then level = full - missing + elapsed * refill_tokens end
  end

  if refund then
    -- What the charge still withholds fades as refill would have filled the bucket anyway.
    local charged_level, charged_upt, charged_at = tonumber(ARGV[at + 6]), tonumber(ARGV[at + 7]), tonumber(ARGV[at + 8])
    if l and charged_upt == units_per_token then
      local since = math.max(0, now_ms - charged_at)
      local gap = full - charged_level
      local withheld = 0
      if since < ceil_div(gap, refill_tokens) then withheld = math.min(cost * units_per_token, gap - since * refill_tokens) end
      if withheld > 0 then
        local refunded = math.min(full, level + withheld)
        local stamp = math.max(now_ms, t)
        local value = string.format('%d:%d:%d', refunded, units_per_token, stamp)
        local until_ms = 0
        if b ~= '' then
          value = value .. ':' .. b
          until_ms = tonumber(b)
        end
        local ttl = math.max(1, stamp - now_ms + ceil_div(full - refunded, refill_tokens), until_ms - now_ms)
        redis.call('SET', key, value, 'PX', ttl)
      end
    end
  else
    local cost_units = cost * units_per_token
    -- A clock that stepped back must not refill the same stretch of time twice.
    local stamp = math.max(now_ms, t or now_ms)
    local outcome, after, retry_after = 1, level, 0
    local reset_ms = ceil_div(full - level, refill_tokens)
    if cost > capacity then
      outcome = 2
    elseif now_ms < blocked_until then
      outcome, retry_after = 0, blocked_until - now_ms
    elseif level < cost_units then
      outcome, retry_after = 0, ceil_div(cost_units - level, refill_tokens)
      if block_ms > 0 and raw then
        -- This refusal starts a block: the tokens stay as stored, the block's end is written beside them.
        retry_after = math.max(retry_after, block_ms)
        writes[#writes + 1] = { key, string.format('%s:%d', raw, now_ms + block_ms), math.max(reset_ms, block_ms), true }
      end
    else
      after = level - cost_units
      reset_ms = ceil_div(full - after, refill_tokens)
      writes[#writes + 1] = { key, string.format('%d:%d:%d', after, units_per_token, stamp), math.max(1, stamp - now_ms + reset_ms), false }
    end
    if outcome ~= 1 and enforced then refused = true end
    reply[#reply + 1] = outcome
    reply[#reply + 1] = floor_div(after, units_per_token)
    reply[#reply + 1] = reset_ms
    reply[#reply + 1] = retry_after
    reply[#reply + 1] = capacity
    reply[#reply + 1] = refill_tokens
    reply[#reply + 1] = units_per_token
    if outcome == 1 then
      charged[#charged + 1] = #reply + 1
      reply[#reply + 1] = after
      reply[#reply + 1] = units_per_token
      reply[#reply + 1] = stamp
    else
      reply[#reply + 1] = -1
      reply[#reply + 1] = -1
      reply[#reply + 1] = -1
    end
  end
end

-- Tokens were taken only by a charge nobody refused.
if not charge or refused then
  for _, at in ipairs(charged) do reply[at], reply[at + 1], reply[at + 2] = -1, -1, -1 end
end
if charge then
  for _, write in ipairs(writes) do
    if write[4] or not refused then redis.call('SET', write[1], write[2], 'PX', write[3]) end
  end
end
return reply
`;

/** SHA-1 of {@link TOKEN_BUCKET_LUA}, for EVALSHA; a test pins it to the script text. */
export const TOKEN_BUCKET_SHA1 = "4533a96540ce2556c7b9203f2074acbaae4783cb";
