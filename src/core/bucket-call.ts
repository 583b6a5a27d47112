import type { BucketCharge } from "./backend";
import { chargesMade, type Receipt } from "./charge-receipts";
import type { DegradedBuckets } from "./degraded";
import type { LimiterEvent } from "./events";
import type { HeaderMode } from "./headers";
import type { PrefixOverrideCache } from "./override-cache";
import type { PrefixOverrides } from "./overrides";
import { withOverride } from "./policy";
import type { Rule } from "./rules";
import type { CallTrace, StoreGuard } from "./store-guard";
import type { RuleCharge } from "./subject-resolver";
import type { RuleOutcome, Verdict } from "./verdict";
import { answeredOutcomes } from "./verdicts";

/** What {@link BucketCall} needs: the guarded store, the prefix overrides, degraded mode's buckets. */
export interface BucketCallOptions {
  readonly store: StoreGuard;
  readonly prefixes: PrefixOverrideCache;
  readonly degraded: DegradedBuckets;
  readonly headerMode: HeaderMode;
  readonly log: (event: LimiterEvent, requestId: string | undefined) => void;
}

/** What the store answered for a check's buckets (each rule's outcome and the charges it made), or a verdict already. */
export type BucketAnswers = { readonly kind: "outcomes"; readonly outcomes: RuleOutcome[]; readonly charged: Receipt[] } | { readonly kind: "verdict"; readonly verdict: Verdict };

/**
 * A check's one store call for its buckets: prefix overrides applied to the charges, the call
 * guarded ({@link StoreGuard}: deadline, breaker), and, when the store cannot decide, each rule's
 * fail mode. One closed enforced rule refuses the request; else rules that fail `local` decide
 * on this isolate's own buckets ({@link DegradedBuckets}); else it goes on.
 *
 * @example
 * const call = new BucketCall({ store, prefixes, degraded, headerMode: "all", log });
 * const answer = await call.ask(rules, charges, "take", () => {}, trace);
 * if (answer.kind === "outcomes") decisionVerdict(rules, answer.outcomes, "all");
 */
export class BucketCall {
  constructor(private readonly options: BucketCallOptions) {}

  /** Asks the store to take (or peek at) the charges; `releaseProbes` lets waiting requests go on before a fail-open one does. */
  async ask(rules: readonly Rule[], charges: readonly RuleCharge[], operation: "take" | "peek", releaseProbes: () => void, trace: CallTrace): Promise<BucketAnswers> {
    const { store, prefixes } = this.options;
    const held = operation === "take" ? this.answerHeld(charges) : undefined;
    if (held !== undefined) return held;
    const result = await store.decide(
      async (reached) => {
        const asked = withPrefixOverrides(charges, await prefixes.current(trace));
        reached();
        const answers = await store.send((signal) => store.backend[operation](asked, signal));
        if (answers.length !== charges.length) throw new Error(`backend answered ${answers.length} decisions for ${charges.length} charges`);
        return { asked, answers };
      },
      trace,
      store.scope(charges.map(({ charge }) => charge)),
      releaseProbes,
    );
    if (result.kind === "misconfigured") return { kind: "verdict", verdict: { kind: "backend-misconfigured", variable: result.variable, message: result.message } };
    if (result.kind === "unreachable") return { kind: "verdict", verdict: this.failModeVerdict(rules, charges, operation, result.reason, trace) };
    const { asked, answers } = result.value;
    this.options.degraded.learn(charges, asked, answers);
    return { kind: "outcomes", outcomes: answeredOutcomes(charges, answers), charged: chargesMade(charges, asked, answers) };
  }

  /**
   * The answer from what the isolate holds (a lease), when the backend has one and the prefix
   * overrides need no read: no store call, so no deadline timer or breaker on the way.
   */
  private answerHeld(charges: readonly RuleCharge[]): BucketAnswers | undefined {
    const takeHeld = this.options.store.backend.takeHeld;
    const overrides = this.options.prefixes.fresh;
    if (takeHeld === undefined || overrides === undefined) return undefined;
    const asked = withPrefixOverrides(charges, overrides);
    const answers = takeHeld(asked);
    if (answers === undefined || answers.length !== charges.length) return undefined;
    this.options.degraded.learn(charges, asked, answers);
    return { kind: "outcomes", outcomes: answeredOutcomes(charges, answers), charged: chargesMade(charges, asked, answers) };
  }

  /** The store could not decide: each rule's fail mode does. */
  private failModeVerdict(rules: readonly Rule[], charges: readonly RuleCharge[], operation: "take" | "peek", reason: string, trace: CallTrace): Verdict {
    const { store, prefixes, degraded, headerMode, log } = this.options;
    const closed = rules.find((rule) => rule.mode === "enforce" && rule.failMode === "closed");
    const local = charges.filter(({ rule }) => rule.failMode === "local");
    const failMode = closed ? "closed" : local.length > 0 ? "local" : "open";
    log({ event: "limiter.backend_failure", backend: store.backend.name, failMode, reason }, trace.requestId);
    if (closed !== undefined) return { kind: "fail-closed", rule: closed, backend: store.backend.name, reason };
    if (local.length === 0) return { kind: "fail-open", rules, reason };
    return degraded.decide(local, operation, prefixes.lastKnown, headerMode);
  }
}

/** Each charge under the prefix override that matches its client, if any. */
function withPrefixOverrides(charges: readonly RuleCharge[], overrides: PrefixOverrides): BucketCharge[] {
  return charges.map(({ rule, charge, values }) => {
    const override = values === undefined ? undefined : overrides.policyFor(rule, values);
    return override === undefined ? charge : { ...charge, policy: withOverride(charge.policy, override) };
  });
}
