/**
 * The token bucket as one Redis script: the Lua twin of `src/core/token-bucket.ts`, with
 * the same integer units (one token = `refillPeriodMs` units, `refillTokens` units per ms).
 * A property test runs both on random sequences and requires identical results.
 *
 * KEYS: one per bucket the request is charged to.
 * ARGV[1]: "" in production (the store's clock, `TIME`); tests may pass a time in ms.
 * ARGV[2]: the mode: "1" to charge, "0" to peek (decide, write nothing), "2" to refund (give back
 * what earlier charges still withhold, as `refundTokens` does), "3" to reset (forget the state,
 * keep the override), "4" to set the exact override (ARGV[3..5]: capacity, refillTokens,
 * refillPeriodMs; ARGV[3] "" removes it) and keep the state. Mode 3 runs no `TIME`, mode 4 only
 * to remove an override from a key that holds a state.
 * ARGV[3] (modes 0-2): the generation a bucket this charge starts from full takes (`newGeneration`).
 * ARGV[4 + 11(i-1) …] (modes 0-2): capacity, refillTokens, refillPeriodMs, cost, enforced ("1"/"0"),
 * blockForMs of bucket i, then (refunds only, else 0) the state its charge wrote: level,
 * unitsPerToken, updatedAtMs, generation; then the hint: the value the caller last saw in the key ("" for none).
 *
 * Stored value, one key per bucket: the state "level:unitsPerToken:updatedAtMs:generation:expiresAtMs",
 * plus ":blockedUntilMs" while a block (`blockForMs`) holds ("" when the bucket is full), then, when
 * the bucket has an exact override, "|capacity:refillTokens:refillPeriodMs". The override replaces
 * the policy in ARGV (the cost and the block period stay), so it costs no extra command.
 * `generation` is `BucketState.generation` (a refund gives back only to the generation it
 * charged: not across a reset). `expiresAtMs` is when the state stops mattering under the policy of the
 * charge that wrote it (`stateExpiresInMs`, the override left out): a key without override expires
 * then (the key's TTL); one with an override never expires (the override is configuration), and
 * takes that expiry when the override is removed.
 * An earlier version's state, "level:unitsPerToken:updatedAtMs[:blockedUntilMs]", is still read
 * (no generation: a refund gives it nothing; a take starts one).
 *
 * A charge decides from the hint, writes with `SET … GET` (which returns the old value) or reads
 * the buckets it does not write (`MGET`), and compares: if the hint was the old value, that was the
 * decision; if not, it decides again from the real values and puts every key where that decision
 * leaves it (the script is atomic: nobody sees the value in between). The decision never depends
 * on the hint, only the number of commands does. A value put back that way takes back the expiry
 * it carries (its TTL went with the SET), so it never outlives its state and never ends early.
 * All-or-nothing: if an enforced bucket refuses, no tokens are taken from any bucket (a refusal
 * that starts a block still writes its block).
 * Reply (modes 0, 1): 12 values per bucket: outcome (1 allowed, 0 denied, 2 cost exceeds capacity),
 * remaining, resetMs, retryAfterMs, the policy in force (capacity, refillTokens, refillPeriodMs),
 * the state a charge wrote (level, unitsPerToken, updatedAtMs, generation; -1 when it wrote none), and
 * the value the key holds after the call ("" for none: the caller's next hint).
 * Modes 2-4 reply with the value each key holds after the call.
 *
 * Commands run: TIME, then for a charge one `SET … GET` per bucket the hint says it writes and one
 * `MGET` of the others (none if it writes them all); a wrong hint adds one `SET` or `DEL` per bucket
 * whose write the real values change. A peek: TIME, MGET. A refund: TIME, MGET, one SET per
 * bucket given back. Reset and override: MGET, then one SET or DEL per key (and TIME first to
 * remove an override from a state).
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
-- A stored value: the bucket's state ('' when full), then '|' and the exact override if any.
local function split(value)
  local bar = string.find(value, '|', 1, true)
  if not bar then return value, '' end
  return string.sub(value, 1, bar - 1), string.sub(value, bar + 1)
end
-- A state's numbers: level, unitsPerToken, updatedAtMs, generation, expiresAtMs, blockedUntilMs (0: none);
-- nil when there is none. An earlier version's state has no generation nor expiresAtMs (nil).
local function parse(state)
  local l, u, t, s, e, b = string.match(state, '^(%d+):(%d+):(%d+):(%d+):(%d+):?(%d*)$')
  if not l then
    l, u, t, b = string.match(state, '^(%d+):(%d+):(%d+):?(%d*)$')
    if not l then return nil end
  end
  local blocked_until = 0
  if b ~= '' then blocked_until = tonumber(b) end
  return tonumber(l), tonumber(u), tonumber(t), s and tonumber(s), e and tonumber(e), blocked_until
end
-- How long a state matters under a policy: until the bucket is full (from the state's own
-- stamp) and any block is over; at least 1 ms. The twin of stateExpiresInMs.
local function expires_in(now_ms, l, u, t, blocked_until, capacity, refill_tokens, units_per_token)
  if u ~= units_per_token then l = floor_div(l, u) * units_per_token end
  local full = capacity * units_per_token
  return math.max(1, t - now_ms + ceil_div(full - math.min(l, full), refill_tokens), blocked_until - now_ms)
end
-- Writes the value; a key holding an override never expires (ttl false). With get, returns the old value.
local function store(key, value, ttl, get)
  if ttl and get then return redis.call('SET', key, value, 'PX', ttl, 'GET') end
  if ttl then return redis.call('SET', key, value, 'PX', ttl) end
  if get then return redis.call('SET', key, value, 'GET') end
  return redis.call('SET', key, value)
end
local function clock()
  if ARGV[1] ~= '' then return tonumber(ARGV[1]) end
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
-- Writes a state without override until it stops mattering (its expiresAtMs) as the key's TTL,
-- or deletes the key when that time has come. An earlier version's state carries no expiry: it
-- gets ttl_else (false: none until the next charge writes one). Returns whether the key was kept.
local function store_state(key, state, now_ms, ttl_else)
  local l, _, _, _, expires_at = parse(state)
  local ttl = ttl_else
  if expires_at then ttl = expires_at - now_ms end
  if not l or (ttl and ttl <= 0) then
    redis.call('DEL', key)
    return false
  end
  store(key, state, ttl, false)
  return true
end

local mode = ARGV[2]
local n = #KEYS

if mode == '3' or mode == '4' then
  -- Reset (3): forget the state, keep the override. Override (4): replace the override
  -- (ARGV[3..5]; ARGV[3] '' removes it), keep the state. Replies the value each key holds after.
  local reply = {}
  local stored = redis.call('MGET', unpack(KEYS))
  local now_ms
  for i = 1, n do
    local state, override = split(stored[i] or '')
    if mode == '3' then state = '' elseif ARGV[3] == '' then override = '' else override = string.format('%d:%d:%d', tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])) end
    local value = state
    if override ~= '' then value = state .. '|' .. override end
    if value == '' then
      redis.call('DEL', KEYS[i])
    elseif override == '' then
      -- The override is gone: the state expires when it stops mattering under the rule's policy.
      now_ms = now_ms or clock()
      if not store_state(KEYS[i], state, now_ms, false) then value = '' end
    else
      store(KEYS[i], value, false, false)
    end
    reply[i] = value
  end
  return reply
end

local now_ms = clock()
local charge = mode == '1'
local refund = mode == '2'

-- The value a write stores for a state (bucket i's ARGV at 'at'), and the key's TTL: the state
-- carries when it stops mattering under the charge's own policy (the rule's: what is left when an
-- override goes), which is the TTL of a key without override (false: one with an override has none).
local function written(l, u, t, generation, blocked_until, at, suffix)
  local ttl = expires_in(now_ms, l, u, t, blocked_until, tonumber(ARGV[at]), tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2]))
  local value = string.format('%d:%d:%d:%d:%d', l, u, t, generation, now_ms + ttl)
  if blocked_until > 0 then value = value .. string.format(':%d', blocked_until) end
  if suffix ~= '' then return value .. suffix, false end
  return value, ttl
end

-- Decides every bucket from the given stored values (i → value, '' when absent). Returns the
-- reply, and the writes a charge makes ({ i, value, ttl }).
local function decide(values)
  local reply, writes, charged, refused = {}, {}, {}, false
  for i = 1, n do
    local at = 4 + (i - 1) * 11
    local capacity, refill_tokens = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
    local units_per_token, cost = tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3])
    local enforced = ARGV[at + 4] == '1'
    local block_ms = tonumber(ARGV[at + 5])
    local state, override = split(values[i])
    local suffix = ''
    if override ~= '' then
      local c, r, p = string.match(override, '^(%d+):(%d+):(%d+)$')
      if c then capacity, refill_tokens, units_per_token = tonumber(c), tonumber(r), tonumber(p) end
      suffix = '|' .. override
    end
    local full = capacity * units_per_token
    local level = full
    local sl, su, st, generation, _, block_end = parse(state)
    local blocked_until = 0
    if sl then
      if block_ms > 0 then blocked_until = block_end end
      local l = sl
      if su ~= units_per_token then l = floor_div(sl, su) * units_per_token end
      local missing = full - math.min(l, full)
      local elapsed = math.max(0, now_ms - st)
      if elapsed < ceil_div(missing, refill_tokens) then level = full - missing + elapsed * refill_tokens end
    end
    -- A clock that stepped back must not refill the same stretch of time twice.
    local stamp = math.max(now_ms, st or now_ms)
    local reset_ms = ceil_div(full - level, refill_tokens)

    if refund then
      -- What the charge still withholds fades as refill would have filled the bucket anyway;
      -- only this generation of the bucket (not reset since the charge) gets it back.
      local charged_level, charged_upt, charged_at = tonumber(ARGV[at + 6]), tonumber(ARGV[at + 7]), tonumber(ARGV[at + 8])
      reply[i] = values[i]
      if sl and charged_upt == units_per_token and generation == tonumber(ARGV[at + 9]) then
        local since_charge = math.max(0, now_ms - charged_at)
        local gap = full - charged_level
        local withheld = 0
        if since_charge < ceil_div(gap, refill_tokens) then withheld = math.min(cost * units_per_token, gap - since_charge * refill_tokens) end
        if withheld > 0 then
          local value, ttl = written(math.min(full, level + withheld), units_per_token, stamp, generation, block_end, at, suffix)
          writes[#writes + 1] = { i, value, ttl }
          reply[i] = value
        end
      end
    else
      -- A bucket taken from full (or an earlier version's) starts a generation; takes carry it on.
      generation = generation or tonumber(ARGV[3])
      local cost_units = cost * units_per_token
      local outcome, after, retry_after = 1, level, 0
      local write
      if cost > capacity then
        outcome = 2
      elseif now_ms < blocked_until then
        outcome, retry_after = 0, blocked_until - now_ms
      elseif level < cost_units then
        outcome, retry_after = 0, ceil_div(cost_units - level, refill_tokens)
        if block_ms > 0 and sl then
          -- This refusal starts a block: the tokens stay as stored, the block's end is written beside them.
          retry_after = math.max(retry_after, block_ms)
          local value, ttl = written(sl, su, st, generation, now_ms + block_ms, at, suffix)
          write = { i, value, ttl, true }
        end
      else
        after = level - cost_units
        reset_ms = ceil_div(full - after, refill_tokens)
        local value, ttl = written(after, units_per_token, stamp, generation, 0, at, suffix)
        write = { i, value, ttl, false }
      end
      if outcome ~= 1 and enforced then refused = true end
      local base = #reply
      reply[base + 1] = outcome
      reply[base + 2] = floor_div(after, units_per_token)
      reply[base + 3] = reset_ms
      reply[base + 4] = retry_after
      reply[base + 5] = capacity
      reply[base + 6] = refill_tokens
      reply[base + 7] = units_per_token
      reply[base + 8], reply[base + 9], reply[base + 10], reply[base + 11] = -1, -1, -1, -1
      reply[base + 12] = values[i]
      if outcome == 1 then
        charged[#charged + 1] = { base, after, units_per_token, stamp, generation }
      end
      if charge and write then writes[#writes + 1] = write end
    end
  end
  if refund then return reply, writes end
  -- Tokens were taken only by a charge nobody refused (a refusal that starts a block still writes it).
  local done = {}
  for _, write in ipairs(writes) do
    if write[4] or not refused then
      done[#done + 1] = write
      reply[(write[1] - 1) * 12 + 12] = write[2]
    end
  end
  if charge and not refused then
    for _, c in ipairs(charged) do reply[c[1] + 8], reply[c[1] + 9], reply[c[1] + 10], reply[c[1] + 11] = c[2], c[3], c[4], c[5] end
  end
  return reply, done
end

local hinted = {}
for i = 1, n do hinted[i] = ARGV[14 + (i - 1) * 11] end
if not charge then
  -- A peek or a refund: read, then write what a refund gives back.
  local values = {}
  local stored = redis.call('MGET', unpack(KEYS))
  for i = 1, n do values[i] = stored[i] or '' end
  local reply, writes = decide(values)
  for _, write in ipairs(writes) do store(KEYS[write[1]], write[2], write[3], false) end
  return reply
end

-- A charge decides first from the values the caller last saw (the hint), then writes and reads
-- back the old value in one command (SET … GET). If the hint was right, that was the decision;
-- if not, it decides again from the real values and puts every key where that decision leaves
-- it (nobody sees the value in between: the script is atomic). The reply never depends on the hint.
local reply, writes = decide(hinted)
local old, wrote, unread = {}, {}, {}
for _, write in ipairs(writes) do
  old[write[1]] = store(KEYS[write[1]], write[2], write[3], true) or ''
  wrote[write[1]] = write
end
for i = 1, n do if not wrote[i] then unread[#unread + 1] = i end end
if #unread > 0 then
  local names = {}
  for j, i in ipairs(unread) do names[j] = KEYS[i] end
  local stored = redis.call('MGET', unpack(names))
  for j, i in ipairs(unread) do old[i] = stored[j] or '' end
end
local hit = true
for i = 1, n do if old[i] ~= hinted[i] then hit = false end end
if hit then return reply end

local real_writes
reply, real_writes = decide(old)
local wanted = {}
for _, write in ipairs(real_writes) do wanted[write[1]] = write end
for i = 1, n do
  local want, done = wanted[i], wrote[i]
  if want then
    if not (done and done[2] == want[2] and done[3] == want[3]) then store(KEYS[i], want[2], want[3], false) end
  elseif done then
    -- Put the old value back as it was. Its TTL went with the SET: a key holding an override has
    -- none; a state takes back the expiry it carries (set by its writer's policy, so it never ends
    -- early, whatever this call's policy is). An earlier version's state, which carries none, takes
    -- this call's policy's.
    local state, override = split(old[i])
    if override ~= '' then
      store(KEYS[i], old[i], false, false)
    else
      local at = 4 + (i - 1) * 11
      local l, u, t, _, _, b = parse(state)
      local legacy = l and expires_in(now_ms, l, u, t, b, tonumber(ARGV[at]), tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2]))
      store_state(KEYS[i], state, now_ms, legacy)
    end
  end
end
return reply
`;

/** SHA-1 of {@link TOKEN_BUCKET_LUA}, for EVALSHA; a test pins it to the script text. */
export const TOKEN_BUCKET_SHA1 = "465dbbee65879c7056a2f24b3682a199fede98ea";
