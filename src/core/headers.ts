import { calendarPeriodSeconds, decidedPeriodSeconds, isCalendarPolicy } from "./algorithms/calendar";
import { secondsToFill } from "./policy";
import type { ConcurrencyRule, Rule } from "./rules";
import type { SlotDecision } from "./slots";
import type { RateLimitHeaders, RuleOutcome } from "./verdict";

/** Says that a decision was made on the isolate's local buckets or slots, the store being unreachable. */
export const DEGRADED_HEADER = ["X-Sluice-Degraded", "local"] as const;

/** Which rate-limit headers responses carry: IETF draft -10, legacy `X-RateLimit-*`, both, or none. */
export type HeaderMode = "all" | "ietf" | "legacy" | "none";

/**
 * The rate-limit headers for a request: `RateLimit-Policy` lists every applying `rules`,
 * `RateLimit` and `X-RateLimit-*` describe the most restrictive one. `t` (and
 * `X-RateLimit-Reset`) is the wait until a retry can succeed on a refusal, and the time until
 * the bucket is full otherwise.
 *
 * @example
 * rateLimitHeaders([rule], [{ rule, policy, decision: { outcome: "denied", remaining: 0, resetMs: 60000, retryAfterMs: 1000 } }], "ietf");
 * // [["RateLimit-Policy", '"default";q=60;w=60'], ["RateLimit", '"default";r=0;t=1']]
 */
export function rateLimitHeaders(rules: readonly Rule[], outcomes: readonly RuleOutcome[], mode: HeaderMode): RateLimitHeaders {
  const limiting = mostRestrictive(outcomes);
  if (limiting === undefined || mode === "none") return [];
  const headers: [string, string][] = [];
  const { rule, policy, decision } = limiting;
  const seconds = Math.ceil((decision.outcome === "denied" ? decision.retryAfterMs : decision.resetMs) / 1000);
  if (mode === "all" || mode === "ietf") {
    // Each rule as it applies to this client: an override's limits where one is in force.
    const nowMs = Date.now();
    const policies = rules.map((r) => {
      const outcome = outcomes.find((o) => o.rule === r);
      const p = outcome?.policy ?? r.policy;
      // A calendar quota's w is the length of the period the store decided in (the one its
      // decision's reset points at the end of; the calendar is the rule's, whatever the override).
      const w = !isCalendarPolicy(r.policy) ? secondsToFill(p) : outcome === undefined ? calendarPeriodSeconds(r.policy, nowMs) : decidedPeriodSeconds(r.policy, outcome.decision.resetMs, nowMs);
      return `"${p.name}";q=${p.capacity};w=${w}`;
    });
    headers.push(["RateLimit-Policy", policies.join(", ")], ["RateLimit", `"${rule.name}";r=${decision.remaining};t=${seconds}`]);
  }
  if (mode === "all" || mode === "legacy") {
    headers.push(["X-RateLimit-Limit", String(policy.capacity)], ["X-RateLimit-Remaining", String(decision.remaining)], ["X-RateLimit-Reset", String(seconds)]);
  }
  return headers;
}

/**
 * The outcome a client should heed: among enforced rules (shadow ones only if none is
 * enforced), the refusal with the longest wait, else the fewest tokens left.
 *
 * @example
 * mostRestrictive([global, login])?.rule.name; // "login" when login has fewer tokens left
 */
export function mostRestrictive(outcomes: readonly RuleOutcome[]): RuleOutcome | undefined {
  const enforced = outcomes.filter((o) => o.rule.mode === "enforce");
  const candidates = enforced.length > 0 ? enforced : outcomes;
  const wait = (o: RuleOutcome) => (o.decision.outcome === "denied" ? o.decision.retryAfterMs : -1);
  return candidates.reduce<RuleOutcome | undefined>((worst, o) => {
    if (worst === undefined) return o;
    if (wait(o) !== wait(worst)) return wait(o) > wait(worst) ? o : worst;
    if (o.decision.remaining !== worst.decision.remaining) return o.decision.remaining < worst.decision.remaining ? o : worst;
    return o.decision.resetMs > worst.decision.resetMs ? o : worst;
  }, undefined);
}

/**
 * `Retry-After` for a refusal: whole seconds, rounded up, so never earlier than the bucket allows.
 *
 * @example
 * retryAfterSeconds(1200); // 2
 */
export function retryAfterSeconds(retryAfterMs: number): number {
  return Math.max(1, Math.ceil(retryAfterMs / 1000));
}

/** A concurrency rule's decision as headers show it, with the limit in force (a degraded isolate's share, or the rule's). */
export interface SlotHeader {
  readonly rule: ConcurrencyRule;
  readonly limit: number;
  readonly decision: SlotDecision;
}

/**
 * Adds concurrency rules to a response's rate-limit headers: each joins `RateLimit-Policy` with
 * `qu="concurrent-requests"` (IETF draft); when no bucket rule gave a `RateLimit`, the first one
 * gives it, with the slots left. `extra` headers (the degraded marker) are appended.
 *
 * @example
 * withConcurrencyHeaders([], [{ rule, limit: 2, decision: { granted: false, inFlight: 2 } }], "all", []);
 * // [["RateLimit-Policy", '"inflight";q=2;qu="concurrent-requests"'], ["RateLimit", '"inflight";r=0']]
 */
export function withConcurrencyHeaders(headers: RateLimitHeaders, slots: readonly SlotHeader[], mode: HeaderMode, extra: RateLimitHeaders): RateLimitHeaders {
  if (slots.length === 0 || (mode !== "all" && mode !== "ietf")) return [...headers, ...extra];
  const items = slots.map(({ rule, limit }) => `"${rule.name}";q=${limit};qu="concurrent-requests"`).join(", ");
  const policy = headers.find(([name]) => name === "RateLimit-Policy");
  const merged: [string, string][] = headers.map(([name, value]) => [name, name === "RateLimit-Policy" ? `${value}, ${items}` : value]);
  if (policy === undefined) {
    const [first] = slots;
    merged.unshift(["RateLimit-Policy", items]);
    if (first !== undefined) merged.push(["RateLimit", `"${first.rule.name}";r=${Math.max(0, first.limit - first.decision.inFlight)}`]);
  }
  return [...merged, ...extra];
}
