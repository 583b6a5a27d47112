import type { BucketAnswer } from "./backend";
import { DEGRADED_HEADER, mostRestrictive, rateLimitHeaders, type HeaderMode } from "./headers";
import type { NamedPolicy } from "./policy";
import type { Rule } from "./rules";
import type { RuleCharge } from "./subject-resolver";
import type { BucketPolicy } from "./token-bucket";
import type { RuleOutcome, Verdict } from "./verdict";

/**
 * The verdict for every applying rule's outcome: a cost no bucket can hold, a refusal when an
 * enforced rule refused, else allowed, with the rate-limit headers (and, decided locally, the
 * header that says so).
 *
 * @example
 * decisionVerdict(rules, outcomes, "all"); // { kind: "allowed", outcomes, headers, degraded: false }
 */
export function decisionVerdict(rules: readonly Rule[], outcomes: readonly RuleOutcome[], headerMode: HeaderMode, degraded = false): Verdict {
  const impossible = outcomes.find(({ rule, decision }) => rule.mode === "enforce" && decision.outcome === "cost_exceeds_capacity");
  if (impossible !== undefined) return { kind: "cost-exceeds-capacity", rule: impossible.rule };
  const refused = outcomes.some(({ rule, decision }) => rule.mode === "enforce" && decision.outcome === "denied");
  if (refused) return refusalVerdict(rules, outcomes, headerMode, false, degraded);
  // Queued charges: the request waits until every enforced rule's tokens have refilled.
  const waitMs = Math.max(0, ...outcomes.map(({ rule, decision }) => (rule.mode === "enforce" && decision.outcome === "allowed" ? (decision.waitMs ?? 0) : 0)));
  return { kind: "allowed", outcomes, headers: headersFor(rules, outcomes, headerMode, degraded), degraded, ...(waitMs > 0 && { waitMs }) };
}

/**
 * A refusal: the violated rules, the most restrictive first, and `Retry-After` until every one
 * of them would allow. `cached` when the deny cache answered.
 *
 * @example
 * refusalVerdict(rules, cachedOutcomes, "all", true); // { kind: "refused", cached: true, … }
 */
export function refusalVerdict(rules: readonly Rule[], outcomes: readonly RuleOutcome[], headerMode: HeaderMode, cached: boolean, degraded = false): Verdict {
  const violated = outcomes.filter(({ rule, decision }) => rule.mode === "enforce" && decision.outcome === "denied");
  const retryAfterMs = Math.max(0, ...violated.map(({ decision }) => (decision.outcome === "denied" ? decision.retryAfterMs : 0)));
  const first = mostRestrictive(violated);
  const ordered = first === undefined ? violated : [first, ...violated.filter((o) => o !== first)];
  return {
    kind: "refused",
    outcomes,
    violated: ordered.map(({ rule }) => rule),
    retryAfterMs,
    headers: headersFor(rules, outcomes, headerMode, degraded),
    cached,
    degraded,
  };
}

/**
 * The store's answers beside the rules they answer, each with the policy it was made under.
 *
 * @example
 * answeredOutcomes(charges, await backend.take(charges.map((c) => c.charge), signal));
 */
export function answeredOutcomes(charges: readonly RuleCharge[], answers: readonly BucketAnswer[]): RuleOutcome[] {
  return charges.flatMap(({ rule, charge }, i) => {
    const answer = answers[i];
    return answer === undefined ? [] : [{ rule, policy: effectivePolicy(rule, answer.policy, charge.cost), decision: answer.decision }];
  });
}

/**
 * The policy a decision was made under, named for headers: the rule's, or an override's.
 *
 * @example
 * effectivePolicy(rule, { capacity: 10, refillTokens: 1, refillPeriodMs: 1000 }, 1); // { name: rule.name, capacity: 10, …, cost: 1 }
 */
export function effectivePolicy(rule: Rule, policy: BucketPolicy, cost: number): NamedPolicy {
  const { capacity, refillTokens, refillPeriodMs } = policy;
  return { name: rule.name, capacity, refillTokens, refillPeriodMs, cost };
}

function headersFor(rules: readonly Rule[], outcomes: readonly RuleOutcome[], headerMode: HeaderMode, degraded: boolean) {
  const headers = rateLimitHeaders(rules, outcomes, headerMode);
  return degraded ? [...headers, DEGRADED_HEADER] : headers;
}
