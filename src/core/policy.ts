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
 * secondsToFill({ capacity: 60, refillTokens: 1, refillPeriodMs: 1000 }); // 60
 */
export function secondsToFill(policy: BucketPolicy): number {
  return Math.ceil((policy.capacity * policy.refillPeriodMs) / policy.refillTokens / 1000);
}

/**
 * A policy under an override: capacity and refill are the override's; everything else (the block
 * after a refusal, `blockForMs`, the cost) stays the rule's, as an override never lifts a block.
 *
 * @example
 * withOverride({ capacity: 5, refillTokens: 1, refillPeriodMs: 1000, blockForMs: 60000 }, { capacity: 50, refillTokens: 10, refillPeriodMs: 1000 });
 * // { capacity: 50, refillTokens: 10, refillPeriodMs: 1000, blockForMs: 60000 }
 */
export function withOverride<P extends BucketPolicy>(policy: P, override: BucketPolicy): P {
  const { capacity, refillTokens, refillPeriodMs } = override;
  return { ...policy, capacity, refillTokens, refillPeriodMs };
}
