import type { BucketAnswer, BucketCharge, Refund } from "./backend";
import type { LimiterEvent } from "./events";
import { countsStatus, type Rule } from "./rules";
import type { StoreGuard } from "./store-guard";
import type { RuleCharge } from "./subject-resolver";
import type { RuleOutcome, Verdict } from "./verdict";

/** A charge as made, with the rule that made it: what giving it back needs. */
export interface Receipt {
  readonly rule: Rule;
  readonly refund: Refund;
}

/** What {@link ChargeReceipts} needs: the guarded store its refunds go through, and the log a failed one goes to. */
export interface ChargeReceiptsOptions {
  readonly store: StoreGuard;
  readonly log: (event: LimiterEvent, requestId: string | undefined) => void;
}

/**
 * The charges an allowed verdict may still give back, by the verdict that made them: a `count`
 * rule's once the response's status is known ({@link ChargeReceipts.settle}), a `queue` rule's
 * when the client leaves while its request waits ({@link ChargeReceipts.giveBack}). A refund
 * returns only what each charge still withholds, so nothing is ever over-admitted; a failed one
 * is logged, never thrown.
 *
 * @example
 * const receipts = new ChargeReceipts({ store, log });
 * receipts.keep(verdict, refundable(charged));
 * await receipts.settle(verdict, 500); // gives back the charges of count rules that do not count a 500
 */
export class ChargeReceipts {
  private readonly byVerdict = new WeakMap<Verdict, readonly Receipt[]>();

  constructor(private readonly options: ChargeReceiptsOptions) {}

  /** Remembers what `verdict` may give back (nothing to remember when `receipts` is empty). */
  keep(verdict: Verdict, receipts: readonly Receipt[]): void {
    if (receipts.length > 0) this.byVerdict.set(verdict, receipts);
  }

  /** `to` (a copy of `from` with more headers) gives back what `from` would have. */
  carry(from: Verdict, to: Verdict): void {
    const receipts = this.byVerdict.get(from);
    if (receipts !== undefined) this.byVerdict.set(to, receipts);
  }

  /** Gives back the charges of `count` rules that do not count `status`; at most once per verdict. */
  settle(verdict: Verdict, status: number): Promise<void> {
    return this.refund(this.spend(verdict).filter(({ rule }) => !countsStatus(rule, status)));
  }

  /** Gives back every charge `verdict` may give back; at most once per verdict. */
  giveBack(verdict: Verdict): Promise<void> {
    return this.refund(this.spend(verdict));
  }

  /** Gives these charges back through the store; a failure is logged, never thrown. */
  async refund(receipts: readonly Receipt[]): Promise<void> {
    if (receipts.length === 0) return;
    const { store, log } = this.options;
    try {
      await store.send((signal) =>
        store.backend.refund(
          receipts.map(({ refund }) => refund),
          signal,
        ),
      );
    } catch (error) {
      log({ event: "limiter.refund_failure", backend: store.backend.name, reason: error instanceof Error ? error.message : String(error) }, undefined);
    }
  }

  private spend(verdict: Verdict): readonly Receipt[] {
    const receipts = this.byVerdict.get(verdict) ?? [];
    this.byVerdict.delete(verdict);
    return receipts;
  }
}

/**
 * The charges a store call made: each rule's charge as asked (prefix overrides applied) and the
 * state its take wrote; a charge that took nothing is left out.
 *
 * @example
 * chargesMade(charges, asked, answers); // [{ rule, refund: { charge: asked[0], charged: answers[0].charged } }]
 */
export function chargesMade(charges: readonly RuleCharge[], asked: readonly BucketCharge[], answers: readonly BucketAnswer[]): Receipt[] {
  return charges.flatMap(({ rule }, i) => {
    const [charge, answer] = [asked[i], answers[i]];
    return charge !== undefined && answer?.charged ? [{ rule, refund: { charge, charged: answer.charged } }] : [];
  });
}

/**
 * The charges a verdict may give back later: a `count` rule's (once the response is known) and a
 * `queue` rule's (if the client leaves while it waits).
 *
 * @example
 * refundable(chargesMade(charges, asked, answers)); // only the receipts of count or queue rules
 */
export function refundable(receipts: readonly Receipt[]): Receipt[] {
  return receipts.filter(({ rule }) => rule.count !== undefined || (rule.policy.queueMs ?? 0) > 0);
}

/**
 * Whether an allowed verdict queued a request that more than one enforced rule covers. Queued
 * behind one rule's refill, it would reach the origin later than the other rules counted it,
 * which could let more through in a short interval than they allow: queueing stays exact only
 * for a request one enforced rule covers, so such a request is refused and given everything back.
 *
 * @example
 * if (queuedPastOtherRules(verdict, charges)) return refusalVerdict(rules, queuedAsRefused(outcomes), mode, false);
 */
export function queuedPastOtherRules(verdict: Verdict, charges: readonly RuleCharge[]): boolean {
  return verdict.kind === "allowed" && verdict.waitMs !== undefined && charges.filter(({ rule }) => rule.mode === "enforce").length > 1;
}

/**
 * The outcomes of a queued request refused after all: each rule that queued it refuses with its wait.
 *
 * @example
 * queuedAsRefused([{ rule, policy, decision: { outcome: "allowed", remaining: 0, resetMs: 900, waitMs: 400 } }]);
 * // [{ rule, policy, decision: { outcome: "denied", remaining: 0, resetMs: 900, retryAfterMs: 400 } }]
 */
export function queuedAsRefused(outcomes: readonly RuleOutcome[]): RuleOutcome[] {
  return outcomes.map((outcome) => {
    const { decision } = outcome;
    if (decision.outcome !== "allowed" || decision.waitMs === undefined) return outcome;
    return { ...outcome, decision: { outcome: "denied", remaining: 0, resetMs: decision.resetMs, retryAfterMs: decision.waitMs } };
  });
}
