import { calendarBoundaries } from "../../../core/algorithms/calendar-periods";
import type { CalendarPolicy, CalendarState } from "../../../core/algorithms/calendar";
import type { LuaAlgorithm } from "./lua-algorithm";
import { replyNumbers, windowOverrideArg } from "./window-policy.lua";

/**
 * The calendar quota's Lua twin: `src/core/algorithms/calendar.ts` step for step, except where
 * the period comes from. Lua has no time zones: the isolate computes the boundaries around its
 * own now (`calendarBoundaries`: the starts of the previous, current and next period and the
 * next one's end) and sends them in the policy text; the script picks the period that holds the
 * store's now among them. A store's now before them all counts in the first of them; one past
 * them all (the isolate's clock more than a period behind) counts in the last, kept a period's
 * length from now: never a fresh period sooner.
 *
 * Policy text: "capacity:refillTokens:refillPeriodMs:blockForMs:b0:b1:b2:b3:period:weekStart:timeZone";
 * an override's "capacity:refillTokens:refillPeriodMs" (a new limit; the calendar stays the rule's);
 * the reply's "capacity:refillTokens:refillPeriodMs:period:weekStart:timeZone".
 * State text: "cq:periodStartMs:periodEndMs:used:generation:expiresAtMs", plus ":blockedUntilMs"
 * while a block holds. Charged text (reply and refund): "periodStartMs:periodEndMs:used:generation".
 */
const LUA = `
do
  local function calendar_policy(text)
    local c, t, p, b, b0, b1, b2, b3, unit, week, zone = string.match(text, '^(%d+):(%d+):(%d+):(%d+):(%d+):(%d+):(%d+):(%d+):(%a+):(%a+):(.+)$')
    return {
      capacity = tonumber(c), tokens = tonumber(t), refill_ms = tonumber(p), block_ms = tonumber(b),
      bounds = { tonumber(b0), tonumber(b1), tonumber(b2), tonumber(b3) }, unit = unit, week = week, zone = zone,
    }
  end
  -- The limit (and the rate every policy carries) is the override's; the calendar and the block stay the rule's.
  local function calendar_with_override(rule, text)
    local c, t, p = string.match(text, '^(%d+):(%d+):(%d+)$')
    if not c then return rule end
    local policy = {}
    for k, v in pairs(rule) do policy[k] = v end
    policy.capacity, policy.tokens, policy.refill_ms = tonumber(c), tonumber(t), tonumber(p)
    return policy
  end
  local function calendar_policy_reply(p)
    return string.format('%d:%d:%d:%s:%s:%s', p.capacity, p.tokens, p.refill_ms, p.unit, p.week, p.zone)
  end
  -- The period that holds now among the isolate's boundaries (see above for a now outside them).
  local function pick(p, now_ms)
    local b = p.bounds
    if now_ms < b[2] then return b[1], b[2] end
    if now_ms < b[3] then return b[2], b[3] end
    if now_ms < b[4] then return b[3], b[4] end
    return b[3], now_ms + (b[4] - b[3])
  end
  -- A state's numbers: periodStartMs, periodEndMs, used, generation, expiresAtMs, blockedUntilMs (0: none); nil if none.
  local function parse(state)
    local s, e, u, g, x, b = string.match(state, '^cq:(%d+):(%d+):(%d+):(%d+):(%d+):?(%d*)$')
    if not s then return nil end
    local blocked_until = 0
    if b ~= '' then blocked_until = tonumber(b) end
    return tonumber(s), tonumber(e), tonumber(u), tonumber(g), tonumber(x), blocked_until
  end
  -- The state text and how long it matters: until its period ends and any block is over (≥ 1 ms).
  local function written(now_ms, start, finish, used, generation, blocked_until)
    local ttl = math.max(1, finish - now_ms, blocked_until - now_ms)
    local value = string.format('cq:%d:%d:%d:%d:%d', start, finish, used, generation, now_ms + ttl)
    if blocked_until > 0 then value = value .. string.format(':%d', blocked_until) end
    return value, ttl
  end

  define('calendar', {
    policy = calendar_policy,
    with_override = calendar_with_override,
    policy_reply = calendar_policy_reply,
    take = function(state, p, rule, cost, now_ms, new_generation)
      local ps, pe = pick(p, now_ms)
      local ss, se, su, sg, _, sb = parse(state)
      -- The stored period counts if it has not ended and starts no earlier (later: the clock stepped back).
      local start, finish, used = ps, pe, 0
      if ss and ss >= ps and se > now_ms then start, finish, used = ss, se, su end
      local reset = math.max(1, finish - now_ms)
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
          r.write, r.ttl = written(now_ms, start, finish, used, sg, now_ms + p.block_ms)
        end
      else
        local generation = sg or new_generation
        r.remaining = p.capacity - used - cost
        r.write, r.ttl = written(now_ms, start, finish, used + cost, generation, 0)
        r.charged = string.format('%d:%d:%d:%d', start, finish, used + cost, generation)
      end
      return r
    end,
    -- The charge's cost comes back while its period runs, in the same generation.
    refund = function(state, p, rule, cost, charged, now_ms)
      local ss, se, su, sg, _, sb = parse(state)
      local cs, _, _, cg = string.match(charged, '^(%d+):(%d+):(%d+):(%d+)$')
      if not (ss and cs) or sg ~= tonumber(cg) then return nil end
      if ss ~= tonumber(cs) or now_ms >= se then return nil end
      local used = math.max(0, su - cost)
      if used == su then return nil end
      return written(now_ms, ss, se, used, sg, sb)
    end,
    expires_at = function(state, now_ms, rule)
      local s, _, _, _, e = parse(state)
      if not s then return nil end
      return e
    end,
  })
end
`;

/**
 * The policy's ARGV text, with the boundaries around `nowMs` (the isolate's clock).
 *
 * @example
 * calendarPolicyArg({ algorithm: "calendar", capacity: 5, refillTokens: 1, refillPeriodMs: 17_280_000, period: "day", timeZone: "UTC" }, Date.parse("2026-03-08T12:00:00Z"));
 * // "5:1:17280000:0:1772841600000:1772928000000:1773014400000:1773100800000:day:monday:UTC"
 */
export function calendarPolicyArg(policy: CalendarPolicy, nowMs: number): string {
  const bounds = calendarBoundaries(policy, nowMs);
  return `${policy.capacity}:${policy.refillTokens}:${policy.refillPeriodMs}:${policy.blockForMs ?? 0}:${bounds.join(":")}:${policy.period}:${policy.weekStart ?? "monday"}:${policy.timeZone}`;
}

const REPLY = /^(\d+):(\d+):(\d+):(day|week|month):(monday|sunday):(.+)$/;

/** The calendar quota's Lua twin and its wire texts (see {@link LuaAlgorithm}); its policy text carries boundaries around the isolate's now. */
export const calendarLua: LuaAlgorithm<CalendarPolicy, CalendarState> = {
  lua: LUA,
  policyArg: (policy) => calendarPolicyArg(policy, Date.now()),
  overrideArg: windowOverrideArg,
  chargedArg: (state) => `${state.periodStartMs}:${state.periodEndMs}:${state.used}:${state.generation}`,
  policyOfReply(text) {
    const match = REPLY.exec(text);
    if (match === null) throw new Error(`unexpected calendar reply text: ${JSON.stringify(text)}`);
    const [, capacity, refillTokens, refillPeriodMs, period, weekStart, timeZone] = match as unknown as [string, string, string, string, "day" | "week" | "month", "monday" | "sunday", string];
    return { algorithm: "calendar", capacity: Number(capacity), refillTokens: Number(refillTokens), refillPeriodMs: Number(refillPeriodMs), period, timeZone, ...(period === "week" && { weekStart }) };
  },
  chargedOfReply(text) {
    const [periodStartMs = 0, periodEndMs = 0, used = 0, generation = 0] = replyNumbers("calendar", text, 4);
    return { algorithm: "calendar", periodStartMs, periodEndMs, used, generation };
  },
};
