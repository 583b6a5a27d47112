import { LUA_ALGORITHMS } from "./algorithms/index";

/**
 * The rate-limit script: one Redis script for every algorithm, assembled from the algorithms' Lua
 * twins (`./algorithms/`, registered in `./algorithms/index.ts`; what a twin provides is in
 * `./algorithms/lua-algorithm.ts`). This part is the algorithm-agnostic rest. A property test runs
 * the TypeScript algorithms and this script on random sequences and requires identical results.
 *
 * KEYS: one per bucket the request is charged to.
 * ARGV[1]: "" in production (the store's clock, `TIME`); tests may pass a time in ms.
 * ARGV[2]: the mode: "1" to charge, "0" to peek (decide, write nothing), "2" to refund (give back
 * what earlier charges still withhold, as `refundTokens` does), "3" to reset (forget the state,
 * keep the override), "4" to set the exact override (ARGV[3]: its text, as the algorithm's
 * `overrideArg` writes it; "" removes it) and keep the state. Mode 3 runs no `TIME`, mode 4 only
 * to remove an override from a key that holds a state.
 * ARGV[3] (modes 0-2): the generation a bucket this charge starts from none takes (`newGeneration`).
 * ARGV[4 + 8(i-1) …] (modes 0-2), bucket i: the algorithm's id, its policy text (`policyArg`),
 * cost, enforced ("1"/"0"), (refunds only, else "") the text of the state its charge wrote
 * (`chargedArg`), the hint: the value the caller last saw in the key ("" for none), then (a
 * charge of one bucket only, else "") a lease asked for and a lease's rest given back (texts of
 * the algorithm's `lease` and `give_back`: token bucket only, `src/core/leases.ts`). A give-back
 * comes first (written even when the charge is refused), the lease after an allowed charge.
 *
 * Stored value, one key per bucket: the algorithm's state text ("" when it has none), then, when
 * the bucket has an exact override, "|" and the override's text. The override replaces the policy
 * in ARGV (as the algorithm's `with_override` says), so it costs no extra command. A state carries
 * when it stops mattering under the policy of the charge that wrote it (the override left out):
 * a key without override expires then (the key's TTL); one with an override never expires (the
 * override is configuration), and takes that expiry when the override is removed.
 *
 * A charge decides from the hint, writes with `SET … GET` (which returns the old value) or reads
 * the buckets it does not write (`MGET`), and compares: if the hint was the old value, that was the
 * decision; if not, it decides again from the real values and puts every key where that decision
 * leaves it (the script is atomic: nobody sees the value in between). The decision never depends
 * on the hint, only the number of commands does. A value put back that way takes back the expiry
 * it carries (its TTL went with the SET), so it never outlives its state and never ends early.
 * All-or-nothing: if an enforced bucket refuses, no bucket keeps a charge (a refusal's own write,
 * such as a block, is still written).
 * Reply (modes 0, 1): 9 values per bucket: the algorithm's id, outcome (1 allowed, 0 denied, 2 cost
 * exceeds capacity), remaining, resetMs, retryAfterMs, the policy in force (`policy_reply`'s text),
 * the state a charge wrote (`charged`'s text; "" when it wrote none, or the request was refused),
 * the lease granted ("" for none), and the value the key holds after the call ("" for none: the
 * caller's next hint).
 * Modes 2-4 reply with the value each key holds after the call.
 *
 * Commands run: TIME, then for a charge one `SET … GET` per bucket the hint says it writes and one
 * `MGET` of the others (none if it writes them all); a wrong hint adds one `SET` or `DEL` per bucket
 * whose write the real values change. A peek: TIME, MGET. A refund: TIME, MGET, one SET per
 * bucket given back. Reset and override: MGET, then one SET or DEL per key (and TIME first to
 * remove an override from a state).
 */
/** Shared integer helpers and `define`, which each algorithm's Lua twin calls. */
const PRELUDE = `
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
-- The algorithms, by id, and their ids in the order they were defined.
local ALGORITHMS, ALGORITHM_IDS = {}, {}
local function define(id, algorithm)
  ALGORITHMS[id] = algorithm
  ALGORITHM_IDS[#ALGORITHM_IDS + 1] = id
end
`;

/** Everything but the algorithms: modes, hints, writes and put-backs, all-or-nothing, the reply. */
const BODY = `
-- A stored value: the bucket's state ('' when none), then '|' and the exact override if any.
local function split(value)
  local bar = string.find(value, '|', 1, true)
  if not bar then return value, '' end
  return string.sub(value, 1, bar - 1), string.sub(value, bar + 1)
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
-- Writes a state without override until it stops mattering (the expiry it carries) as the key's
-- TTL, or deletes the key when that time has come or no algorithm reads it. The state is read by
-- 'first' (under its 'rule', which gives a state that carries no expiry one) if it can, else by
-- any algorithm (then such a state keeps none until the next charge writes one).
-- Returns whether the key was kept.
local function store_state(key, state, now_ms, first, rule)
  local expires_at
  if first then expires_at = first.expires_at(state, now_ms, rule) end
  for _, id in ipairs(ALGORITHM_IDS) do
    if expires_at ~= nil then break end
    expires_at = ALGORITHMS[id].expires_at(state, now_ms, nil)
  end
  if expires_at == nil or (expires_at and expires_at <= now_ms) then
    redis.call('DEL', key)
    return false
  end
  store(key, state, expires_at and expires_at - now_ms, false)
  return true
end

local mode = ARGV[2]
local n = #KEYS

-- A reset keeps what the algorithm says outlives it (a token bucket's leases still out), else nothing.
local function reset_state(state, now_ms)
  for _, id in ipairs(ALGORITHM_IDS) do
    local reset = ALGORITHMS[id].reset
    if reset then
      local kept = reset(state, now_ms)
      if kept then return kept end
    end
  end
  return ''
end

if mode == '3' or mode == '4' then
  -- Reset (3): forget the state, keep the override. Override (4): replace the override
  -- (ARGV[3]; '' removes it), keep the state. Replies the value each key holds after.
  local reply = {}
  local stored = redis.call('MGET', unpack(KEYS))
  local now_ms
  for i = 1, n do
    local state, override = split(stored[i] or '')
    if mode == '3' then
      -- Only a state with leases out (a '#') needs the clock.
      if string.find(state, '#', 1, true) then
        now_ms = now_ms or clock()
        state = reset_state(state, now_ms)
      else
        state = ''
      end
    else
      override = ARGV[3]
    end
    local value = state
    if override ~= '' then value = state .. '|' .. override end
    if value == '' then
      redis.call('DEL', KEYS[i])
    elseif override == '' then
      -- The override is gone: the state expires when it stops mattering under the rule's policy.
      now_ms = now_ms or clock()
      if not store_state(KEYS[i], state, now_ms, nil, nil) then value = '' end
    else
      store(KEYS[i], value, false, false)
    end
    reply[i] = value
  end
  return reply
end

-- Bucket i's ARGV: its algorithm (checked once, before anything is written), its rule's policy.
local WIDTH, REPLY_WIDTH = 8, 9
local function arg(i, field) return ARGV[4 + (i - 1) * WIDTH + field] end
local algorithms, rules = {}, {}
for i = 1, n do
  algorithms[i] = ALGORITHMS[arg(i, 0)]
  if not algorithms[i] then return redis.error_reply('unknown rate-limit algorithm: ' .. tostring(arg(i, 0))) end
  rules[i] = algorithms[i].policy(arg(i, 1))
end

local now_ms = clock()
local charge = mode == '1'
local refund = mode == '2'

-- The value a write stores (the state, then the key's override if any) and the key's TTL: the
-- state's (false: a key with an override has none).
local function written(state, ttl, suffix)
  if suffix ~= '' then return state .. suffix, false end
  return state, ttl
end

-- Decides every bucket from the given stored values (i → value, '' when absent). Returns the
-- reply, and the writes a charge makes ({ i, value, ttl, kept even when the request is refused }).
local function decide(values)
  local reply, writes, charged, refused = {}, {}, {}, false
  for i = 1, n do
    local algorithm, rule = algorithms[i], rules[i]
    local cost, enforced = tonumber(arg(i, 2)), arg(i, 3) == '1'
    local state, override = split(values[i])
    local policy, suffix = rule, ''
    if override ~= '' then policy, suffix = algorithm.with_override(rule, override), '|' .. override end
    if refund then
      reply[i] = values[i]
      local given, ttl = algorithm.refund(state, policy, rule, cost, arg(i, 4), now_ms)
      if given then
        local value, key_ttl = written(given, ttl, suffix)
        writes[#writes + 1] = { i, value, key_ttl }
        reply[i] = value
      end
    else
      -- A lease's rest given back first (one bucket only); kept even if this charge is refused.
      local given, given_ttl
      if charge and n == 1 and arg(i, 7) ~= '' and algorithm.give_back then
        given, given_ttl = algorithm.give_back(state, policy, rule, arg(i, 7), now_ms)
        if given then state = given end
      end
      local r = algorithm.take(state, policy, rule, cost, now_ms, tonumber(ARGV[3]))
      if r.outcome ~= 1 and enforced then refused = true end
      local lease = ''
      if charge and n == 1 and r.outcome == 1 and r.write and arg(i, 6) ~= '' and algorithm.lease then
        local value, ttl, granted = algorithm.lease(r.write, policy, rule, cost, arg(i, 6), now_ms)
        if value then r.write, r.ttl, lease = value, ttl, granted end
      end
      if given and not r.write then r.write, r.ttl, r.keep = given, given_ttl, true end
      local base = #reply
      reply[base + 1] = arg(i, 0)
      reply[base + 2] = r.outcome
      reply[base + 3] = r.remaining
      reply[base + 4] = r.reset_ms
      reply[base + 5] = r.retry_after_ms
      reply[base + 6] = algorithm.policy_reply(policy)
      reply[base + 7] = ''
      reply[base + 8] = lease
      reply[base + 9] = values[i]
      if r.outcome == 1 and r.charged then charged[#charged + 1] = { base + 7, r.charged } end
      if charge and r.write then
        local value, key_ttl = written(r.write, r.ttl, suffix)
        writes[#writes + 1] = { i, value, key_ttl, r.outcome ~= 1 or r.keep }
      end
    end
  end
  if refund then return reply, writes end
  -- A charge is kept only if nobody refused (a refusal's own write, such as a block, still is).
  local done = {}
  for _, write in ipairs(writes) do
    if write[4] or not refused then
      done[#done + 1] = write
      reply[(write[1] - 1) * REPLY_WIDTH + REPLY_WIDTH] = write[2]
    end
  end
  if charge and not refused then
    for _, c in ipairs(charged) do reply[c[1]] = c[2] end
  end
  return reply, done
end

local hinted = {}
for i = 1, n do
  hinted[i] = arg(i, 5)
  -- A hinted state past the expiry it carries is gone from Redis (its TTL ended): read it as
  -- absent, as Redis will answer, so a bucket that refilled to full is still a hint hit.
  local state, override = split(hinted[i])
  if override == '' and state ~= '' then
    local expires_at = algorithms[i].expires_at(state, now_ms, rules[i])
    if expires_at and expires_at <= now_ms then hinted[i] = '' end
  end
end
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
    -- early, whatever this call's policy is). A state that carries none takes this call's policy's.
    local state, override = split(old[i])
    if override ~= '' then
      store(KEYS[i], old[i], false, false)
    else
      store_state(KEYS[i], state, now_ms, algorithms[i], rules[i])
    end
  end
end
return reply
`;

/** The script: the prelude, every registered algorithm's Lua twin, the algorithm-agnostic body. */
export const TOKEN_BUCKET_LUA = [PRELUDE, ...Object.values(LUA_ALGORITHMS).map((twin) => twin.lua), BODY].join("");

/** SHA-1 of {@link TOKEN_BUCKET_LUA}; a test pins it to the script text. */
export const TOKEN_BUCKET_SHA1 = "a1c7c4a5dbb63d7983bd4095f0ce274fbe80a0f3";

/**
 * Upstash's script flags line: `allow-key-locking` makes Upstash lock only the keys a script is
 * passed in `KEYS` (every key sluice's scripts touch is), not the whole database. Redis itself
 * refuses the flag; the local bridge (`dev/upstash-bridge.mjs`) strips it as Upstash accepts it.
 */
export const UPSTASH_FLAGS_LINE = "#!lua flags=allow-key-locking\n";

/** The script as the backend sends it to Upstash: the flags line, then {@link TOKEN_BUCKET_LUA}. */
export const TOKEN_BUCKET_UPSTASH_LUA = UPSTASH_FLAGS_LINE + TOKEN_BUCKET_LUA;

/** SHA-1 of {@link TOKEN_BUCKET_UPSTASH_LUA}, for EVALSHA; a test pins it to the script text. */
export const TOKEN_BUCKET_UPSTASH_SHA1 = "5a8924ac7216a4700e4d64468f41f8c89899af8c";
