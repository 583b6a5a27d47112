import type { FixedWindowState } from "../../../core/algorithms/fixed-window";
import type { BucketPolicy } from "../../../core/token-bucket";
import type { LuaAlgorithm } from "./lua-algorithm";
import { replyNumbers, WINDOW_POLICY_LUA, windowOverrideArg, windowPolicyArg, windowPolicyOfReply } from "./window-policy.lua";

/**
 * The fixed window's Lua twin: `src/core/algorithms/fixed-window.ts` step for step.
 *
 * Policy texts: the token bucket's (see `./window-policy.lua.ts`).
 * State text: "fw:windowStartMs:used:generation:expiresAtMs", plus ":blockedUntilMs" while a
 * block holds (`expiresAtMs`: when the state stops mattering under the charge's rule).
 * Charged text (reply and refund): "windowStartMs:used:generation".
 */
const LUA = `
do
${WINDOW_POLICY_LUA}
  -- A state's numbers: windowStartMs, used, generation, expiresAtMs, blockedUntilMs (0: none); nil if none.
  local function parse(state)
    local s, u, g, e, b = string.match(state, '^fw:(%d+):(%d+):(%d+):(%d+):?(%d*)$')
    if not s then return nil end
    local blocked_until = 0
    if b ~= '' then blocked_until = tonumber(b) end
    return tonumber(s), tonumber(u), tonumber(g), tonumber(e), blocked_until
  end
  local function aligned(ms, w) return floor_div(math.max(0, ms), w) * w end
  -- How long a state matters under a policy: until its window ends and any block is over (≥ 1 ms).
  local function expires_in(now_ms, start, blocked_until, p)
    return math.max(1, aligned(start, p.window) + p.window - now_ms, blocked_until - now_ms)
  end
  local function written(now_ms, start, used, generation, blocked_until, rule)
    local ttl = expires_in(now_ms, start, blocked_until, rule)
    local value = string.format('fw:%d:%d:%d:%d', start, used, generation, now_ms + ttl)
    if blocked_until > 0 then value = value .. string.format(':%d', blocked_until) end
    return value, ttl
  end

  define('fixed-window', {
    policy = window_policy,
    with_override = window_with_override,
    policy_reply = window_policy_reply,
    take = function(state, p, rule, cost, now_ms, new_generation)
      local w = p.window
      local ss, su, sg, _, sb = parse(state)
      -- The stored window counts if it is the current one (or later: the clock stepped back).
      local start, used = aligned(now_ms, w), 0
      if ss and aligned(ss, w) >= start then start, used = aligned(ss, w), su end
      local reset = start + w - now_ms
      local r = { outcome = 1, remaining = math.max(0, p.capacity - used), reset_ms = reset, retry_after_ms = 0 }
      local blocked_until = 0
      if ss and p.block_ms > 0 then blocked_until = sb end
      if cost > p.capacity then
        r.outcome = 2
      elseif now_ms < blocked_until then
        r.outcome, r.retry_after_ms = 0, blocked_until - now_ms
      elseif used + cost > p.capacity then
        r.outcome, r.retry_after_ms = 0, reset
        if p.block_ms > 0 and ss then
          r.retry_after_ms = math.max(reset, p.block_ms)
          r.write, r.ttl = written(now_ms, start, used, sg, now_ms + p.block_ms, rule)
        end
      else
        local generation = sg or new_generation
        r.remaining = p.capacity - used - cost
        r.write, r.ttl = written(now_ms, start, used + cost, generation, 0, rule)
        r.charged = string.format('%d:%d:%d', start, used + cost, generation)
      end
      return r
    end,
    -- The charge's cost comes back while its window runs, in the same generation.
    refund = function(state, p, rule, cost, charged, now_ms)
      local ss, su, sg, _, sb = parse(state)
      local cs, _, cg = string.match(charged, '^(%d+):(%d+):(%d+)$')
      if not (ss and cs) or sg ~= tonumber(cg) then return nil end
      local w = p.window
      local start = aligned(tonumber(cs), w)
      if aligned(ss, w) ~= start or now_ms >= start + w then return nil end
      local used = math.max(0, su - cost)
      if used == su then return nil end
      return written(now_ms, ss, used, sg, sb, rule)
    end,
    expires_at = function(state, now_ms, rule)
      local s, _, _, e = parse(state)
      if not s then return nil end
      return e
    end,
  })
end
`;

/** The fixed window's Lua twin and its wire texts (see {@link LuaAlgorithm}). */
export const fixedWindowLua: LuaAlgorithm<BucketPolicy, FixedWindowState> = {
  lua: LUA,
  policyArg: windowPolicyArg,
  overrideArg: windowOverrideArg,
  chargedArg: (state) => `${state.windowStartMs}:${state.used}:${state.generation}`,
  policyOfReply: (text) => windowPolicyOfReply("fixed-window", text),
  chargedOfReply(text) {
    const [windowStartMs = 0, used = 0, generation = 0] = replyNumbers("fixed-window", text, 3);
    return { algorithm: "fixed-window", windowStartMs, used, generation };
  },
};
