import { MAX_SLIDING_LIMIT, type SlidingWindowState } from "../../../core/algorithms/sliding-window";
import type { BucketPolicy } from "../../../core/token-bucket";
import type { LuaAlgorithm } from "./lua-algorithm";
import { replyNumbers, WINDOW_POLICY_LUA, windowOverrideArg, windowPolicyArg, windowPolicyOfReply } from "./window-policy.lua";

/**
 * The exact sliding window's Lua twin: `src/core/algorithms/sliding-window.ts` step for step.
 *
 * Policy texts: the token bucket's (see `./window-policy.lua.ts`).
 * State text: "sw:generation:expiresAtMs:blockedUntilMs:baseMs:" then the log, oldest first,
 * "offsetMs/units" joined by ",", each admission's time less `baseMs` (the oldest's time; 0 when
 * the log is empty). `blockedUntilMs` 0: no block. About 6–12 bytes per admission, at most
 * {@link MAX_SLIDING_LIMIT} admissions.
 * Charged text: reply "atMs:units:generation" (the admission the charge logged); refund "atMs:generation".
 */
const LUA = `
do
${WINDOW_POLICY_LUA}
  local MAX_LIMIT = ${MAX_SLIDING_LIMIT}
  -- A state's log ({ atMs, units } oldest first), generation, expiresAtMs, blockedUntilMs; nil if none.
  local function parse(state)
    local g, e, b, base, rest = string.match(state, '^sw:(%d+):(%d+):(%d+):(%d+):(.*)$')
    if not g then return nil end
    local log = {}
    base = tonumber(base)
    for d, u in string.gmatch(rest, '(%d+)/(%d+)') do log[#log + 1] = { base + tonumber(d), tonumber(u) } end
    return log, tonumber(g), tonumber(e), tonumber(b)
  end
  -- The admissions that still count at now_ms: those after now_ms - W.
  local function live(log, w, now_ms)
    local kept = {}
    for _, entry in ipairs(log or {}) do
      if entry[1] + w > now_ms then kept[#kept + 1] = { entry[1], entry[2] } end
    end
    return kept
  end
  -- The first time from from_ms on at which cost more units fit in the trailing window ending there.
  local function earliest_fit(log, w, limit, cost, from_ms)
    local in_window = 0
    for _, entry in ipairs(log) do
      if entry[1] > from_ms - w then in_window = in_window + entry[2] end
    end
    if in_window + cost <= limit then return from_ms end
    for _, entry in ipairs(log) do
      if entry[1] > from_ms - w then
        in_window = in_window - entry[2]
        if in_window + cost <= limit then return entry[1] + w end
      end
    end
    return from_ms
  end
  -- How long a state matters under a policy: until its latest admission frees and any block is over (≥ 1 ms).
  local function expires_in(now_ms, log, blocked_until, p)
    local last = 0
    if #log > 0 then last = log[#log][1] + p.window - now_ms end
    return math.max(1, last, blocked_until - now_ms)
  end
  local function written(now_ms, log, generation, blocked_until, rule)
    local ttl = expires_in(now_ms, log, blocked_until, rule)
    local base = 0
    if #log > 0 then base = log[1][1] end
    local parts = {}
    for i, entry in ipairs(log) do parts[i] = string.format('%d/%d', entry[1] - base, entry[2]) end
    return string.format('sw:%d:%d:%d:%d:', generation, now_ms + ttl, blocked_until, base) .. table.concat(parts, ','), ttl
  end

  define('sliding-window', {
    policy = window_policy,
    with_override = window_with_override,
    policy_reply = window_policy_reply,
    take = function(state, p, rule, cost, now_ms, new_generation)
      local w, limit = p.window, math.min(p.capacity, MAX_LIMIT)
      local slog, sg, _, sb = parse(state)
      local log = live(slog, w, now_ms)
      local used = 0
      for _, entry in ipairs(log) do used = used + entry[2] end
      local function frees(l)
        if #l == 0 then return 0 end
        return l[1][1] + w - now_ms
      end
      local r = { outcome = 1, remaining = math.max(0, limit - used), reset_ms = frees(log), retry_after_ms = 0 }
      local blocked_until = 0
      if slog and p.block_ms > 0 then blocked_until = sb end
      if cost > limit then
        r.outcome = 2
      elseif now_ms < blocked_until then
        r.outcome, r.retry_after_ms = 0, blocked_until - now_ms
      else
        -- A clock that stepped back (or requests queued ahead) stamps at the latest admission.
        local last = log[#log]
        local base = now_ms
        if last and last[1] > base then base = last[1] end
        local queue_ms = 0
        if p.block_ms == 0 then queue_ms = p.queue_ms end
        local fits
        if queue_ms > 0 then
          fits = earliest_fit(log, w, limit, cost, base)
        elseif used + cost <= limit then
          fits = base
        end
        local wait = 0
        if fits and queue_ms > 0 then wait = fits - now_ms end
        if not fits or wait > queue_ms then
          local retry = wait
          if not fits then retry = earliest_fit(log, w, limit, cost, now_ms) - now_ms end
          r.outcome, r.retry_after_ms = 0, retry
          if p.block_ms > 0 and slog then
            r.retry_after_ms = math.max(retry, p.block_ms)
            r.write, r.ttl = written(now_ms, log, sg, now_ms + p.block_ms, rule)
          end
        else
          local generation = sg or new_generation
          if cost > 0 then
            if last and last[1] == fits then last[2] = last[2] + cost else log[#log + 1] = { fits, cost } end
          end
          -- An allowed reply's retry_after_ms is a queued charge's wait (0: go now).
          r.remaining, r.reset_ms, r.retry_after_ms = math.max(0, limit - used - cost), frees(log), wait
          r.write, r.ttl = written(now_ms, log, generation, 0, rule)
          r.charged = string.format('%d:%d:%d', fits, cost, generation)
        end
      end
      return r
    end,
    -- The units the charge logged come off while still in the window, in the same generation.
    refund = function(state, p, rule, cost, charged, now_ms)
      local slog, sg, _, sb = parse(state)
      local cs, cg = string.match(charged, '^(%d+):(%d+)$')
      if not (slog and cs) or sg ~= tonumber(cg) then return nil end
      local stamp = tonumber(cs)
      local log = live(slog, p.window, now_ms)
      for i, entry in ipairs(log) do
        if entry[1] == stamp then
          local given = math.min(cost, entry[2])
          if given == 0 then return nil end
          if given == entry[2] then table.remove(log, i) else entry[2] = entry[2] - given end
          return written(now_ms, log, sg, sb, rule)
        end
      end
      return nil
    end,
    expires_at = function(state, now_ms, rule)
      local log, _, e = parse(state)
      if not log then return nil end
      return e
    end,
  })
end
`;

/** The exact sliding window's Lua twin and its wire texts (see {@link LuaAlgorithm}). */
export const slidingWindowLua: LuaAlgorithm<BucketPolicy, SlidingWindowState> = {
  lua: LUA,
  policyArg: windowPolicyArg,
  overrideArg: windowOverrideArg,
  // A refund needs the charge's admission time and generation only.
  chargedArg: (state) => `${state.log.at(-1)?.atMs ?? 0}:${state.generation}`,
  policyOfReply: (text) => windowPolicyOfReply("sliding-window", text),
  chargedOfReply(text) {
    const [atMs = 0, units = 0, generation = 0] = replyNumbers("sliding-window", text, 3);
    return { algorithm: "sliding-window", log: [{ atMs, units }], generation };
  },
};
