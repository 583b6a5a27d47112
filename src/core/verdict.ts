import type { NamedPolicy } from "./policy";
import type { ConcurrencyRule, Rule } from "./rules";
import type { BucketDecision } from "./token-bucket";

/** One applying rule and its bucket's decision, with the policy it was made under (the rule's, or an override's). */
export interface RuleOutcome {
  readonly rule: Rule;
  readonly policy: NamedPolicy;
  readonly decision: BucketDecision;
}

/** Rate-limit response headers, as name/value pairs. */
export type RateLimitHeaders = readonly (readonly [string, string])[];

/**
 * What the limiter decided about one request or named client. Adapters map each kind to an
 * answer (the core's `verdictResponse` does it for HTTP); only `allowed`, `fail-open` and
 * `unmatched` let a request through.
 */
export type Verdict =
  /** No rule covers the request. */
  | { readonly kind: "unmatched" }
  /**
   * Every enforced rule allowed (or, for a peek, would allow); `headers` describe the buckets.
   * `degraded`: decided on the isolate's local buckets (`failMode: "local"`), the store being unreachable.
   * `waitMs`: a rule with a `queue` charged the request ahead of its refill: it must wait this long
   * (the longest any enforced rule asks) before it proceeds; absent: go now.
   */
  | {
      readonly kind: "allowed";
      readonly outcomes: readonly RuleOutcome[];
      readonly headers: RateLimitHeaders;
      readonly degraded: boolean;
      readonly waitMs?: number;
    }
  /**
   * An enforced rule refused: nothing was charged. `violated` lists the refusing rules;
   * `retryAfterMs` is the wait until every one of them would allow; `cached` when the isolate's
   * deny cache answered without asking the store.
   */
  | {
      readonly kind: "refused";
      readonly outcomes: readonly RuleOutcome[];
      readonly violated: readonly Rule[];
      readonly retryAfterMs: number;
      readonly headers: RateLimitHeaders;
      readonly cached: boolean;
      readonly degraded: boolean;
    }
  /**
   * A concurrency rule refused: the client already has `limit` requests in flight (`inFlight`
   * as the store counted them). Nothing was charged and no slot is held.
   */
  | {
      readonly kind: "concurrency-refused";
      readonly rule: ConcurrencyRule;
      readonly inFlight: number;
      readonly headers: RateLimitHeaders;
      readonly degraded: boolean;
    }
  /** The store could not decide and every applying rule fails open: let the request through. */
  | { readonly kind: "fail-open"; readonly rules: readonly (Rule | ConcurrencyRule)[]; readonly reason: string }
  /** The store (`backend`) could not decide and `rule` (enforced) fails closed. */
  | { readonly kind: "fail-closed"; readonly rule: Rule | ConcurrencyRule; readonly backend: string; readonly reason: string }
  /** The request lacks `rule`'s key (no API-key header, no bearer token) and missing keys are rejected. */
  | { readonly kind: "missing-key"; readonly rule: Rule | ConcurrencyRule }
  /** A subject that does not fit: an unknown rule, a missing or extra key part, a bad value or cost. */
  | { readonly kind: "invalid-subject"; readonly field: string; readonly message: string }
  /** An enforced rule charges more than its bucket holds: no wait cures it. */
  | { readonly kind: "cost-exceeds-capacity"; readonly rule: Rule }
  /** The store refused the limiter's credentials or settings (`variable` names the setting). */
  | { readonly kind: "backend-misconfigured"; readonly variable: string; readonly message: string };

/** Whether a verdict lets the request go on (to the origin, or the next handler). */
export function passes(verdict: Verdict): verdict is Extract<Verdict, { kind: "allowed" | "fail-open" | "unmatched" }> {
  return verdict.kind === "allowed" || verdict.kind === "fail-open" || verdict.kind === "unmatched";
}
