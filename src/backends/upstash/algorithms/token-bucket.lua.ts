import type { BucketPolicy, BucketState } from "../../../core/token-bucket";
import { LEASE_SHARE, LEASE_SLACK_MS } from "../../../core/leases";
import type { LuaAlgorithm } from "./lua-algorithm";

/**
 * The token bucket's Lua twin: `src/core/algorithms/token-bucket.ts` step for step, in the same
 * integer units (one token = `refillPeriodMs` units, `refillTokens` units per ms).
 *
 * Policy text: "capacity:refillTokens:refillPeriodMs:blockForMs:queueMs"; an override's and the reply's:
 * "capacity:refillTokens:refillPeriodMs" (the block period and the queue stay the rule's). A
 * queued charge (allowed, with a wait) replies its wait in the retryAfterMs field, and writes a
 * level below zero (the debt the refill pays back), so levels may carry a sign.
 * State text: "level:unitsPerToken:updatedAtMs:generation:expiresAtMs", plus ":blockedUntilMs"
 * while a block holds. `expiresAtMs` is when the state stops mattering under the policy of the
 * charge that wrote it (`stateExpiresInMs`, the override left out), or when the last lease out
 * of it ends if that is later. Leases out follow the state (which may then be empty: a reset
 * bucket is full), one "#id:tokens:untilMs" each (`src/core/leases.ts`: while one is live the
 * bucket holds at most its capacity less the leased tokens).
 * Charged text (reply and refund): "level:unitsPerToken:updatedAtMs:generation".
 * Lease texts: asked "id:want:ttlMs"; given back "id:cost:<charged text>"; granted (reply)
 * "granted:remaining:resetMs:<charged text>".
 * `string.format('%d')` writes integers: Lua's default number format loses digits past 1e14.
 */
const LUA = `
do
  -- A state's numbers: level, unitsPerToken, updatedAtMs, generation, expiresAtMs, blockedUntilMs (0: none);
  -- nil when there is none.
  local function parse(state)
    local l, u, t, s, e, b = string.match(state, '^(-?%d+):(%d+):(%d+):(%d+):(%d+):?(%d*)$')
    if not l then return nil end
    local blocked_until = 0
    if b ~= '' then blocked_until = tonumber(b) end
    return tonumber(l), tonumber(u), tonumber(t), tonumber(s), tonumber(e), blocked_until
  end
  -- The state text and the leases recorded after it (each { id, tokens, until_ms }).
  local function split_leases(text)
    local hash = string.find(text, '#', 1, true)
    if not hash then return text, {} end
    local leases = {}
    for id, tokens, until_ms in string.gmatch(string.sub(text, hash), '#([%w%.]+):(%d+):(%d+)') do
      leases[#leases + 1] = { id = id, tokens = tonumber(tokens), until_ms = tonumber(until_ms) }
    end
    return string.sub(text, 1, hash - 1), leases
  end
  -- The leases still out at now_ms (all but 'except'), and their whole tokens.
  local function live_leases(leases, now_ms, except)
    local live, out = {}, 0
    for _, lease in ipairs(leases) do
      if lease.until_ms > now_ms and lease.id ~= except then
        live[#live + 1] = lease
        out = out + lease.tokens
      end
    end
    return live, out
  end
  local function leases_text(live)
    local parts = {}
    for i, lease in ipairs(live) do parts[i] = string.format('#%s:%d:%d', lease.id, lease.tokens, lease.until_ms) end
    return table.concat(parts)
  end
  -- How long a state matters under a policy: until the bucket is full (from the state's own
  -- stamp) and any block is over; at least 1 ms. The twin of stateExpiresInMs.
  local function expires_in(now_ms, l, u, t, blocked_until, p)
    if u ~= p.period then l = floor_div(l, u) * p.period end
    local full = p.capacity * p.period
    return math.max(1, t - now_ms + ceil_div(full - math.min(l, full), p.tokens), blocked_until - now_ms)
  end
  -- The text a write stores (the leases out after it), and how long it matters under the rule's
  -- policy or until its last lease ends (what the key's TTL is).
  local function written(now_ms, l, u, t, generation, blocked_until, rule, live)
    local ttl = expires_in(now_ms, l, u, t, blocked_until, rule)
    for _, lease in ipairs(live or {}) do ttl = math.max(ttl, lease.until_ms - now_ms) end
    local value = string.format('%d:%d:%d:%d:%d', l, u, t, generation, now_ms + ttl)
    if blocked_until > 0 then value = value .. string.format(':%d', blocked_until) end
    return value .. leases_text(live or {}), ttl
  end
  -- The bucket's level in the policy's units at now_ms: the stored level plus continuous refill, capped.
  local function level_at(now_ms, sl, su, st, p)
    local full = p.capacity * p.period
    if not sl then return full end
    local l = sl
    if su ~= p.period then l = floor_div(sl, su) * p.period end
    local missing = full - math.min(l, full)
    local elapsed = math.max(0, now_ms - st)
    if elapsed < ceil_div(missing, p.tokens) then return full - missing + elapsed * p.tokens end
    return full
  end
  -- The twin of underLeases: while 'out' tokens are leased, the bucket holds at most the capacity less them.
  local function under_leases(sl, su, st, sg, sb, out, p, now_ms, generation)
    if out == 0 then return sl, su, st, sg, sb end
    local cap = math.max(0, p.capacity - out) * p.period
    if level_at(now_ms, sl, su, st, p) <= cap then return sl, su, st, sg, sb end
    return cap, p.period, math.max(now_ms, st or now_ms), sg or generation, sb or 0
  end
  -- The twin of refundBucket, on parsed numbers: the refunded numbers, or nil when nothing comes back.
  local function refunded(sl, su, st, generation, block_end, p, cost, charged, now_ms)
    local cl, cu, ct, cg = string.match(charged, '^(-?%d+):(%d+):(%d+):(%d+)$')
    if not (sl and cl) or tonumber(cu) ~= p.period or generation ~= tonumber(cg) then return nil end
    local full = p.capacity * p.period
    local since_charge = math.max(0, now_ms - tonumber(ct))
    local gap = full - tonumber(cl)
    local withheld = 0
    if since_charge < ceil_div(gap, p.tokens) then withheld = math.min(cost * p.period, gap - since_charge * p.tokens) end
    if withheld <= 0 then return nil end
    local level = level_at(now_ms, sl, su, st, p)
    return math.min(full, level + withheld), p.period, math.max(now_ms, st), generation, block_end
  end

  define('token-bucket', {
    policy = function(text)
      local c, r, p, b, q = string.match(text, '^(%d+):(%d+):(%d+):(%d+):?(%d*)$')
      return { capacity = tonumber(c), tokens = tonumber(r), period = tonumber(p), block_ms = tonumber(b), queue_ms = tonumber(q) or 0 }
    end,
    -- Capacity and refill are the override's; the block period and the queue stay the rule's.
    with_override = function(rule, text)
      local c, r, p = string.match(text, '^(%d+):(%d+):(%d+)$')
      if not c then return rule end
      return { capacity = tonumber(c), tokens = tonumber(r), period = tonumber(p), block_ms = rule.block_ms, queue_ms = rule.queue_ms }
    end,
    policy_reply = function(p)
      return string.format('%d:%d:%d', p.capacity, p.tokens, p.period)
    end,
    take = function(state, p, rule, cost, now_ms, new_generation)
      local bucket, leases = split_leases(state)
      local live, out = live_leases(leases, now_ms)
      local sl, su, st, generation, _, block_end = parse(bucket)
      sl, su, st, generation, block_end = under_leases(sl, su, st, generation, block_end, out, p, now_ms, new_generation)
      local full = p.capacity * p.period
      local level = level_at(now_ms, sl, su, st, p)
      local blocked_until = 0
      if sl and p.block_ms > 0 then blocked_until = block_end end
      -- A clock that stepped back must not refill the same stretch of time twice.
      local stamp = math.max(now_ms, st or now_ms)
      -- A bucket taken from full starts a generation; takes carry it on.
      generation = generation or new_generation
      local cost_units = cost * p.period
      -- The wait until the cost has refilled; a queue (never with a block) admits it now if that is within queue_ms.
      local wait_ms, queue_ms = 0, 0
      if level < cost_units then wait_ms = ceil_div(cost_units - level, p.tokens) end
      if p.block_ms == 0 then queue_ms = p.queue_ms end
      local r = { outcome = 1, remaining = math.max(0, floor_div(level, p.period)), reset_ms = ceil_div(full - level, p.tokens), retry_after_ms = 0 }
      if cost > p.capacity then
        r.outcome = 2
      elseif now_ms < blocked_until then
        r.outcome, r.retry_after_ms = 0, blocked_until - now_ms
      elseif wait_ms > queue_ms then
        r.outcome, r.retry_after_ms = 0, wait_ms
        if p.block_ms > 0 and sl then
          -- This refusal starts a block: the tokens stay as stored, the block's end is written beside them.
          r.retry_after_ms = math.max(r.retry_after_ms, p.block_ms)
          r.write, r.ttl = written(now_ms, sl, su, st, generation, now_ms + p.block_ms, rule, live)
        end
      else
        -- A queued charge leaves the bucket exactly empty at the whole ms it proceeds (the wait's refill is the debt).
        local after = level - cost_units
        if wait_ms > 0 then after = -wait_ms * p.tokens end
        -- Allowed; a queued charge replies its wait in retry_after_ms.
        r.remaining, r.reset_ms, r.retry_after_ms = math.max(0, floor_div(after, p.period)), ceil_div(full - after, p.tokens), wait_ms
        r.write, r.ttl = written(now_ms, after, p.period, stamp, generation, 0, rule, live)
        r.charged = string.format('%d:%d:%d:%d', after, p.period, stamp, generation)
      end
      return r
    end,
    -- What the charge still withholds fades as refill would have filled the bucket anyway;
    -- only this generation of the bucket (not reset since the charge) gets it back.
    refund = function(state, p, rule, cost, charged, now_ms)
      local bucket, leases = split_leases(state)
      local live, out = live_leases(leases, now_ms)
      local sl, su, st, generation, _, block_end = parse(bucket)
      local l, u, t, g, b = refunded(sl, su, st, generation, block_end, p, cost, charged, now_ms)
      if not l then return nil end
      l, u, t, g, b = under_leases(l, u, t, g, b, out, p, now_ms, g)
      return written(now_ms, l, u, t, g, b, rule, live)
    end,
    -- The twin of grantLease, on the state an allowed charge wrote: the text and TTL to store, and
    -- the reply text; nil when no lease is granted.
    lease = function(state, p, rule, cost, ask, now_ms)
      local id, want, ttl_ms = string.match(ask, '^([%w%.]+):(%d+):(%d+)$')
      if not id or p.block_ms > 0 or p.queue_ms > 0 or cost < 1 or tonumber(want) < 1 then return nil end
      local bucket, leases = split_leases(state)
      local live, out = live_leases(leases, now_ms)
      local sl, su, st, generation, _, block_end = parse(bucket)
      if not sl then return nil end
      sl, su, st, generation, block_end = under_leases(sl, su, st, generation, block_end, out, p, now_ms, generation)
      local level = level_at(now_ms, sl, su, st, p)
      local granted = math.min(tonumber(want), floor_div(math.max(0, floor_div(level, p.period)), ${LEASE_SHARE} * cost))
      if granted < 1 then return nil end
      local after = level - granted * cost * p.period
      local stamp = math.max(now_ms, st)
      live[#live + 1] = { id = id, tokens = granted * cost, until_ms = now_ms + tonumber(ttl_ms) + ${LEASE_SLACK_MS} }
      local value, ttl = written(now_ms, after, p.period, stamp, generation, 0, rule, live)
      local full = p.capacity * p.period
      local reply = string.format('%d:%d:%d:%d:%d:%d:%d', granted, math.max(0, floor_div(after, p.period)), ceil_div(full - after, p.tokens), after, p.period, stamp, generation)
      return value, ttl, reply
    end,
    -- The twin of giveBackLease ('text': "id:cost:<charged text>"): the text and TTL to store, or nil.
    give_back = function(state, p, rule, text, now_ms)
      local id, cost, charged = string.match(text, '^([%w%.]+):(%d+):(.+)$')
      if not id then return nil end
      local bucket, leases = split_leases(state)
      local before = live_leases(leases, now_ms)
      local live, out = live_leases(leases, now_ms, id)
      -- Never more than the lease took, while its record is here.
      cost = tonumber(cost)
      for _, lease in ipairs(before) do if lease.id == id then cost = math.min(cost, lease.tokens) end end
      local sl, su, st, generation, _, block_end = parse(bucket)
      local l, u, t, g, b = sl, su, st, generation, block_end
      local gave = false
      if cost > 0 then
        local rl, ru, rt, rg, rb = refunded(sl, su, st, generation, block_end, p, cost, charged, now_ms)
        if rl then l, u, t, g, b, gave = rl, ru, rt, rg, rb, true end
      end
      -- Nothing changes (no state to give back to, or nothing to give and no lease ended).
      if not l or (not gave and #live == #before) then return nil end
      l, u, t, g, b = under_leases(l, u, t, g, b, out, p, now_ms, g)
      return written(now_ms, l, u, t, g, b, rule, live)
    end,
    -- A reset forgets the state and keeps the leases still out (nil: none).
    reset = function(state, now_ms)
      local _, leases = split_leases(state)
      local live = live_leases(leases, now_ms)
      if #live == 0 then return nil end
      return leases_text(live)
    end,
    expires_at = function(state, now_ms, rule)
      local bucket, leases = split_leases(state)
      if bucket == '' and #leases > 0 then
        local at = 0
        for _, lease in ipairs(leases) do at = math.max(at, lease.until_ms) end
        return at
      end
      local l, _, _, _, expires_at = parse(bucket)
      if not l then return nil end
      return expires_at
    end,
  })
end
`;

/** The token bucket's Lua twin and its wire texts (see {@link LuaAlgorithm}). */
export const tokenBucketLua: LuaAlgorithm<BucketPolicy, BucketState> = {
  lua: LUA,
  policyArg: (policy) => `${policy.capacity}:${policy.refillTokens}:${policy.refillPeriodMs}:${policy.blockForMs ?? 0}:${policy.queueMs ?? 0}`,
  overrideArg: (policy) => `${policy.capacity}:${policy.refillTokens}:${policy.refillPeriodMs}`,
  chargedArg: (state) => `${state.level}:${state.unitsPerToken}:${state.updatedAtMs}:${state.generation}`,
  policyOfReply(text) {
    const [capacity = 0, refillTokens = 0, refillPeriodMs = 0] = numbers(text, 3);
    return { capacity, refillTokens, refillPeriodMs };
  },
  chargedOfReply(text) {
    const [level = 0, unitsPerToken = 0, updatedAtMs = 0, generation = 0] = numbers(text, 4);
    return { level, unitsPerToken, updatedAtMs, generation };
  },
};

/** `count` colon-separated integers, or an error naming the text. */
function numbers(text: string, count: number): number[] {
  const parts = text.split(":").map(Number);
  if (parts.length !== count || !parts.every(Number.isSafeInteger)) throw new Error(`unexpected token-bucket reply text: ${JSON.stringify(text)}`);
  return parts;
}
