import { bucketId, type BucketCharge, type BucketRef } from "./backend";
import { DenyCache, type CachedRefusal } from "./deny-cache";
import type { Rule } from "./rules";
import type { RuleCharge } from "./subject-resolver";
import { isTokenBucket } from "./algorithms/index";
import { waitForTokensMs, type BucketPolicy } from "./token-bucket";
import type { RuleOutcome } from "./verdict";
import { effectivePolicy } from "./verdicts";

/**
 * When the deny cache may answer for the store, and what it learns from each answer: refusals
 * until their retry time and, on an allowed request, buckets left too empty for the next request,
 * until they refill. It never admits what the store would refuse. Not used for a check with
 * another cost than the rule's (the waits are for the rule's cost), for `count` rules (refunds
 * refill sooner than any remembered wait), for shadow rules, or for rules with a `queue` (a request
 * may queue well before a refused one's retry time).
 *
 * @example
 * const cached = await memory.consult(charges); // refusals still in force, and probes to release
 * memory.learn(charges, outcomes, verdict.kind === "refused", Date.now());
 */
export class RefusalMemory {
  private readonly cache: DenyCache;

  constructor(
    size: number,
    private readonly clock: () => number,
    private readonly timeoutMs: number,
  ) {
    this.cache = new DenyCache(size);
  }

  get size(): number {
    return this.cache.size;
  }

  /** Forgets what is remembered of this bucket (after a reset or an override). */
  forget(ref: BucketRef): void {
    this.cache.forget(bucketId(ref));
  }

  /** The refusals held for these charges, without waiting on or starting a probe (peeks). */
  refusals(charges: readonly RuleCharge[]): RuleOutcome[] {
    const nowMs = this.clock();
    const refusals: RuleOutcome[] = [];
    for (const { rule, charge } of charges) {
      const refusal = answersFor(rule, charge) ? this.cache.peek(bucketId(charge), nowMs) : undefined;
      if (refusal !== undefined) refusals.push(cachedOutcome(rule, refusal, nowMs));
    }
    return refusals;
  }

  /**
   * Refusals that still hold come back as outcomes. Where one has just expired and another
   * request of the same client is already asking the store, this one waits for that answer (at
   * most the store budget) and looks again; where none is, this request asks, and must call the
   * returned `probes` when done.
   */
  async consult(charges: readonly RuleCharge[]): Promise<{ refusals: RuleOutcome[]; probes: (() => void)[] }> {
    const refusals: RuleOutcome[] = [];
    const probes: (() => void)[] = [];
    for (const { rule, charge } of charges) {
      if (!answersFor(rule, charge)) continue;
      const key = bucketId(charge);
      let answer = this.cache.lookup(key, this.clock());
      // Waiting is real time, whatever clock the cache runs on.
      const waitUntil = answer.kind === "wait" ? Date.now() + this.timeoutMs : 0;
      while (answer.kind === "wait") {
        const left = waitUntil - Date.now();
        // Undecided for a whole backend budget (the asking request was cancelled): ask ourselves.
        if (left <= 0) {
          answer = { kind: "miss" };
          break;
        }
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([answer.probe, new Promise<void>((resolve) => (timer = setTimeout(resolve, left)))]);
        clearTimeout(timer);
        answer = this.cache.lookup(key, this.clock());
      }
      if (answer.kind === "probe") probes.push(answer.release);
      if (answer.kind === "refused") refusals.push(cachedOutcome(rule, answer.refusal, this.clock()));
    }
    return { refusals, probes };
  }

  /**
   * Learns from the store's answer: every refusing bucket until its retry time and, on an allowed
   * request, every bucket it left with fewer than `cost` tokens, until they refill (so a flood
   * after the retry time costs one store call per token, not one per waiting request).
   */
  learn(charges: readonly RuleCharge[], outcomes: readonly RuleOutcome[], refused: boolean, nowMs: number): void {
    outcomes.forEach(({ rule, policy, decision }, i) => {
      const charge = charges[i]?.charge;
      if (charge === undefined || !answersFor(rule, charge)) return;
      const waitMs =
        decision.outcome === "denied"
          ? decision.retryAfterMs
          : decision.outcome === "allowed" && !refused && predictsEmptyBucket(charge.policy)
            ? waitForTokensMs(policy, charge.cost, decision.resetMs)
            : 0;
      if (waitMs > 0) {
        this.cache.remember(bucketId(charge), { retryAtMs: nowMs + waitMs, resetAtMs: nowMs + decision.resetMs, remaining: decision.remaining, policy });
      }
    });
  }
}

/** Whether the cache may answer for this charge (see {@link RefusalMemory}). */
function answersFor(rule: Rule, charge: BucketCharge): boolean {
  // Not for a queued rule: a request refused now may queue a moment later, before the refusal's retry time.
  return rule.mode === "enforce" && charge.cost === rule.policy.cost && rule.count === undefined && (rule.policy.queueMs ?? 0) === 0;
}

/**
 * Whether an allowed decision that left the bucket short may refuse the next request from the
 * cache. Not under `blockFor`: the refusal that starts a block must reach the store, which
 * writes the block (its refusal, with the block's wait, is then cached like any other). Only
 * for token buckets: `waitForTokensMs` is the bucket's refill (a window's refusals, whose waits
 * are exact, are cached like any other).
 */
function predictsEmptyBucket(policy: BucketPolicy): boolean {
  return (policy.blockForMs ?? 0) === 0 && isTokenBucket(policy);
}

function cachedOutcome(rule: Rule, refusal: CachedRefusal, nowMs: number): RuleOutcome {
  return {
    rule,
    policy: effectivePolicy(rule, refusal.policy, rule.policy.cost),
    decision: { outcome: "denied", remaining: refusal.remaining, retryAfterMs: refusal.retryAtMs - nowMs, resetMs: refusal.resetAtMs - nowMs },
  };
}
