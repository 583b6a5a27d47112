import type { BucketPolicy } from "../../../core/token-bucket";

/**
 * What the window twins share with each other: their policy texts are the token bucket's
 * ("capacity:refillTokens:refillPeriodMs:blockForMs"; an override's and the reply's
 * "capacity:refillTokens:refillPeriodMs"), and the window W is read from them as `windowMs` does.
 * A queue's wait (`queueMs`, sliding windows only) follows as a fifth field when there is one.
 * `make_window_policy` is defined once per twin, inside its `do … end`.
 */
export const WINDOW_POLICY_LUA = `
  local function make_window_policy(c, t, p, b, q)
    return { capacity = c, tokens = t, period = p, block_ms = b, queue_ms = q, window = math.max(1, ceil_div(c * p, t)) }
  end
  local function window_policy(text)
    local c, t, p, b, q = string.match(text, '^(%d+):(%d+):(%d+):(%d+):?(%d*)$')
    return make_window_policy(tonumber(c), tonumber(t), tonumber(p), tonumber(b), tonumber(q) or 0)
  end
  -- Limit and window are the override's; the block period and the queue stay the rule's.
  local function window_with_override(rule, text)
    local c, t, p = string.match(text, '^(%d+):(%d+):(%d+)$')
    if not c then return rule end
    return make_window_policy(tonumber(c), tonumber(t), tonumber(p), rule.block_ms, rule.queue_ms)
  end
  local function window_policy_reply(p)
    return string.format('%d:%d:%d', p.capacity, p.tokens, p.period)
  end
`;

/** The policy's ARGV text (the token bucket's; the queue's wait only when there is one). */
export const windowPolicyArg = (policy: BucketPolicy) =>
  `${policy.capacity}:${policy.refillTokens}:${policy.refillPeriodMs}:${policy.blockForMs ?? 0}${(policy.queueMs ?? 0) > 0 ? `:${policy.queueMs}` : ""}`;
/** An exact override's text (the token bucket's). */
export const windowOverrideArg = (policy: BucketPolicy) => `${policy.capacity}:${policy.refillTokens}:${policy.refillPeriodMs}`;

/** `count` colon-separated integers, or an error naming the algorithm and the text. */
export function replyNumbers(algorithm: string, text: string, count: number): number[] {
  const parts = text.split(":").map(Number);
  if (parts.length !== count || !parts.every(Number.isSafeInteger)) throw new Error(`unexpected ${algorithm} reply text: ${JSON.stringify(text)}`);
  return parts;
}

/** A window policy of `algorithm` from a reply's "capacity:refillTokens:refillPeriodMs". */
export function windowPolicyOfReply<A extends "fixed-window" | "sliding-window">(algorithm: A, text: string): BucketPolicy & { algorithm: A } {
  const [capacity = 0, refillTokens = 0, refillPeriodMs = 0] = replyNumbers(algorithm, text, 3);
  return { algorithm, capacity, refillTokens, refillPeriodMs };
}
