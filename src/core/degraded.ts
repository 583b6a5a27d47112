import { bucketId, type BucketAnswer, type BucketCharge } from "./backend";
import { ISOLATE_BOUNDS } from "./defaults";
import type { HeaderMode } from "./headers";
import { LocalTable } from "./local-table";
import type { PrefixOverrides } from "./overrides";
import { withOverride } from "./policy";
import type { RuleCharge } from "./subject-resolver";
import { drained, isTokenBucket, type RateState } from "./algorithms/index";
import { windowMs } from "./algorithms/window-policy";
import { MAX_SAFE_UNITS, takeBuckets, type BucketPolicy } from "./token-bucket";
import type { Verdict } from "./verdict";
import { decisionVerdict, effectivePolicy } from "./verdicts";

/**
 * A rule's policy scaled to `fraction` for one isolate's degraded decisions: capacity rounded
 * down (at least one request's `cost`, so a request can still pass), refill slowed by the same
 * fraction (its period rounded up: never faster). A window's limit is scaled the same way and its
 * window kept (the fraction of L per W).
 *
 * @example
 * localPolicy({ capacity: 100, refillTokens: 1, refillPeriodMs: 100 }, 0.1); // { capacity: 10, refillTokens: 1, refillPeriodMs: 1000 }
 * localPolicy({ algorithm: "fixed-window", capacity: 100, refillTokens: 1, refillPeriodMs: 600 }, 0.1); // 10 per the same 60000 ms window
 */
export function localPolicy(policy: BucketPolicy, fraction: number, cost = 1): BucketPolicy {
  const capacity = Math.min(policy.capacity, Math.max(cost, Math.floor(policy.capacity * fraction)));
  // A window of `capacity` per W: the rate capacity/W gives back W (see `windowMs`).
  if (!isTokenBucket(policy)) return { ...policy, capacity, refillTokens: capacity, refillPeriodMs: windowMs(policy) };
  const slowed = Math.ceil(policy.refillPeriodMs / fraction);
  // Keep capacity × period exact for the bucket's integer arithmetic.
  const refillPeriodMs = Math.min(slowed, Math.floor(MAX_SAFE_UNITS / capacity));
  return { ...policy, capacity, refillPeriodMs };
}

/**
 * Degraded mode (`failMode: "local"`) for buckets: while the store is unreachable, the `local`
 * rules are decided on buckets in this isolate's memory, each `fraction` of the policy in force
 * for the client (an exact override the store last answered with, else a cached prefix override,
 * else the rule's). With k isolates serving a client, it gets at most k × the fraction during the
 * outage. Local buckets are kept until they are full again, whatever other clients do; a client
 * the isolate has no room to track (every entry live) is treated as drained.
 *
 * @example
 * const verdict = degraded.decide(localCharges, "take", prefixes, "all");
 */
export class DegradedBuckets {
  private readonly buckets = new LocalTable<RateState>(ISOLATE_BOUNDS.localEntries);
  /**
   * Exact overrides the store answered with, by bucket (`local` rules only): what a degraded
   * decision scales, so an outage does not lift a client's lowered limit. A read makes an entry
   * the newest, so a client in use keeps it.
   */
  private readonly knownOverrides = new Map<string, BucketPolicy>();

  constructor(
    private readonly fraction: number,
    private readonly clock: () => number,
  ) {}

  /** The degraded verdict for these charges (`take` charges the local buckets; `peek` only looks). */
  decide(charges: readonly RuleCharge[], operation: "take" | "peek", prefixes: PrefixOverrides | undefined, headerMode: HeaderMode): Verdict {
    const nowMs = this.clock();
    const keyed = charges.map((entry) => {
      const key = bucketId(entry.charge);
      const prefix = entry.values === undefined ? undefined : prefixes?.policyFor(entry.rule, entry.values);
      const inForce = this.knownOverride(key) ?? (prefix === undefined ? entry.charge.policy : withOverride(entry.charge.policy, prefix));
      // At least one request's cost, as traffic charges it (a peek asks about cost 0).
      const policy = localPolicy(inForce, this.fraction, Math.max(entry.charge.cost, entry.rule.policy.cost));
      const tracked = this.buckets.tracks(key, nowMs);
      return { ...entry, key, policy, tracked, state: tracked ? this.buckets.get(key, nowMs) : drained(policy, nowMs), cost: entry.charge.cost, enforced: entry.charge.enforced };
    });
    const { results } = takeBuckets(keyed, nowMs);
    if (operation === "take") {
      for (const { entry, next, expiresInMs } of results) if (next !== undefined && entry.tracked) this.buckets.set(entry.key, next, nowMs + expiresInMs, nowMs);
    }
    const outcomes = results.map(({ entry, decision }) => ({ rule: entry.rule, policy: effectivePolicy(entry.rule, entry.policy, entry.charge.cost), decision }));
    return decisionVerdict(
      charges.map(({ rule }) => rule),
      outcomes,
      headerMode,
      true,
    );
  }

  /** Notes which `local` rules' buckets the store answered under an exact override. */
  learn(charges: readonly RuleCharge[], asked: readonly BucketCharge[], answers: readonly BucketAnswer[]): void {
    charges.forEach(({ rule }, i) => {
      const [charge, answer] = [asked[i], answers[i]];
      if (rule.failMode !== "local" || charge === undefined || answer === undefined) return;
      const key = bucketId(charge);
      this.knownOverrides.delete(key);
      const { capacity, refillTokens, refillPeriodMs } = answer.policy;
      if (capacity === charge.policy.capacity && refillTokens === charge.policy.refillTokens && refillPeriodMs === charge.policy.refillPeriodMs) return;
      this.knownOverrides.set(key, withOverride(charge.policy, answer.policy));
      for (const oldest of this.knownOverrides.keys()) {
        if (this.knownOverrides.size <= ISOLATE_BOUNDS.localEntries) break;
        this.knownOverrides.delete(oldest);
      }
    });
  }

  private knownOverride(key: string): BucketPolicy | undefined {
    const policy = this.knownOverrides.get(key);
    if (policy === undefined) return undefined;
    this.knownOverrides.delete(key);
    this.knownOverrides.set(key, policy);
    return policy;
  }
}
