/**
 * What the window algorithms share: a window policy has the token bucket's shape (`BucketPolicy`),
 * its limit L as `capacity` and its rate L/W, so its window W is the time that rate takes to
 * deliver L. A rule `"limit": 100, "window": "1m"` is `capacity` 100 at 100/60000 ms; an override
 * of such a rule (capacity and rate, as for any rule) sets L and W the same way.
 */
import { ceilDiv, type BucketPolicy } from "./token-bucket";

/**
 * A window policy's window W in whole ms (rounded up when an override's rate does not divide
 * evenly: a longer window admits less, never more).
 *
 * @example
 * windowMs({ algorithm: "fixed-window", capacity: 100, refillTokens: 1, refillPeriodMs: 600 }); // 60000
 */
export function windowMs(policy: BucketPolicy): number {
  return Math.max(1, ceilDiv(policy.capacity * policy.refillPeriodMs, policy.refillTokens));
}
