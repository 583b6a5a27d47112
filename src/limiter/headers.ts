import type { NamedPolicy } from "./policy";
import { secondsToFill } from "./policy";
import type { BucketDecision } from "./token-bucket";

/** Which rate-limit headers responses carry: IETF draft -10, legacy `X-RateLimit-*`, both, or none. */
export type HeaderMode = "all" | "ietf" | "legacy" | "none";

/**
 * The rate-limit headers for one decision. `t` (and `X-RateLimit-Reset`) is the wait until a
 * retry can succeed on a refusal, and the time until the bucket is full otherwise.
 *
 * @example
 * rateLimitHeaders(policy, { outcome: "denied", remaining: 0, resetMs: 60000, retryAfterMs: 1000 }, "ietf");
 * // [["RateLimit-Policy", '"default";q=60;w=60'], ["RateLimit", '"default";r=0;t=1']]
 */
export function rateLimitHeaders(policy: NamedPolicy, decision: BucketDecision, mode: HeaderMode): [string, string][] {
  const headers: [string, string][] = [];
  const seconds = Math.ceil((decision.outcome === "denied" ? decision.retryAfterMs : decision.resetMs) / 1000);
  if (mode === "all" || mode === "ietf") {
    headers.push(
      ["RateLimit-Policy", `"${policy.name}";q=${policy.capacity};w=${secondsToFill(policy)}`],
      ["RateLimit", `"${policy.name}";r=${decision.remaining};t=${seconds}`],
    );
  }
  if (mode === "all" || mode === "legacy") {
    headers.push(
      ["X-RateLimit-Limit", String(policy.capacity)],
      ["X-RateLimit-Remaining", String(decision.remaining)],
      ["X-RateLimit-Reset", String(seconds)],
    );
  }
  return headers;
}

/** `Retry-After` for a refusal: whole seconds, rounded up, so never earlier than the bucket allows. */
export function retryAfterSeconds(retryAfterMs: number): number {
  return Math.max(1, Math.ceil(retryAfterMs / 1000));
}
