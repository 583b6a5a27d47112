import type { BucketPolicy } from "./token-bucket";

/**
 * A named bucket policy and what one request costs against it. The name appears in the
 * `RateLimit-Policy` header and in storage keys, so it is a short token (letters, digits, `-_.`).
 */
export interface NamedPolicy extends BucketPolicy {
  readonly name: string;
  /** Tokens one request costs, integer ≥ 1. */
  readonly cost: number;
}

/**
 * Seconds for an empty bucket to refill completely (the `w` of `RateLimit-Policy`).
 *
 * @example
 * secondsToFill({ name: "default", capacity: 60, refillTokens: 1, refillPeriodMs: 1000, cost: 1 }); // 60
 */
export function secondsToFill(policy: BucketPolicy): number {
  return Math.ceil((policy.capacity * policy.refillPeriodMs) / policy.refillTokens / 1000);
}
