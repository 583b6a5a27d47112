import type { LimiterBackend, Refund } from "./backend";
import { DEFAULTS } from "./defaults";
import type { CheckOptions, DecisionEvent, LimiterOptions } from "./limiter-options";
import { DegradedBuckets } from "./degraded";
import { logLimiterEvent, type LimiterEvent } from "./events";
import { DEGRADED_HEADER, withConcurrencyHeaders, type HeaderMode } from "./headers";
import type { IdentityOptions } from "./identity";
import { PrefixOverrideCache } from "./override-cache";
import { withOverride } from "./policy";
import { RefusalMemory } from "./refusal-memory";
import { compileRules, countsStatus, InvalidRulesError, type ConcurrencyRule, type Rule } from "./rules";
import { SlotKeeper, type RuleClaim } from "./slot-keeper";
import { StoreGuard, type BackendCall, type BackendHealth, type CallTrace } from "./store-guard";
import type { Subject } from "./subject";
import { SubjectResolver, type MissingKeyMode, type NamedBucket, type RuleCharge } from "./subject-resolver";
import { passes, type RuleOutcome, type Verdict } from "./verdict";
import { answeredOutcomes, decisionVerdict, refusalVerdict } from "./verdicts";

export { localPolicy } from "./degraded";
export { OVERRIDES_MAX_AGE_MS } from "./override-cache";
export { BACKGROUND_PROBE_MS } from "./store-guard";
export type { BackendCall, BackendHealth, LimiterEvent, MissingKeyMode, NamedBucket };
export type { CheckOptions, DecisionEvent, LimiterOptions } from "./limiter-options";

/** What a check did besides deciding, filled in as it goes. */
interface Trace extends CallTrace {
  clients: { rule: string; clientKey: string }[];
}

/** A charge a `count` rule (or a queued one, whose client may leave while it waits) may give back. */
interface Receipt {
  readonly rule: Rule;
  readonly refund: Refund;
}

/**
 * The rate limiter, free of any framework. It reads as the request flow: resolve the subject
 * into charges ({@link SubjectResolver}), consult the deny cache ({@link RefusalMemory}), take
 * concurrency slots ({@link SlotKeeper}), charge the buckets through the guarded store
 * ({@link StoreGuard}, with the prefix overrides of {@link PrefixOverrideCache}), or, when the
 * store cannot decide, each rule's fail mode ({@link DegradedBuckets}). Build one per isolate
 * (its caches are per instance); every answer is a typed {@link Verdict}.
 *
 * @example
 * const limiter = new Limiter({
 *   backend: memoryBackend(),
 *   rules: [{ name: "api", key: "header:x-api-key", capacity: 5, rate: "1/1m" }],
 * });
 * const verdict = await limiter.check(requestSubject(request));
 * if (verdict.kind === "refused") return verdictResponse(verdict);
 * const peek = await limiter.check({ kind: "client", rule: "api", client: { "header:x-api-key": "abc" } }, { mode: "peek" });
 */
export class Limiter {
  /** Bucket rules. */
  readonly rules: readonly Rule[];
  /** Concurrency rules. */
  readonly concurrencyRules: readonly ConcurrencyRule[];
  readonly identity: IdentityOptions;
  /** Every call to the store goes through it (deadline, breaker, call count). */
  readonly store: StoreGuard;
  private readonly resolver: SubjectResolver;
  private readonly refusals: RefusalMemory;
  private readonly prefixes: PrefixOverrideCache;
  private readonly degraded: DegradedBuckets;
  private readonly slots: SlotKeeper;
  private readonly headerMode: HeaderMode;
  private readonly clock: () => number;
  private readonly log: (event: LimiterEvent, requestId: string | undefined) => void;
  private readonly onDecision: ((event: DecisionEvent) => void) | undefined;
  /** Charges `count` and `queue` rules may give back, by the verdict that made them (see {@link Limiter.settle}, {@link Limiter.giveBack}). */
  private readonly receipts = new WeakMap<Verdict, Receipt[]>();

  /** @throws InvalidRulesError when a rule does not check, naming every rule and field. */
  constructor(options: LimiterOptions) {
    const compiled = compileRules(options.rules, options.failMode ?? DEFAULTS.failMode);
    if (!compiled.ok) throw new InvalidRulesError(compiled.errors);
    this.rules = compiled.rules;
    this.concurrencyRules = compiled.concurrency;
    this.identity = { ...DEFAULTS.identity, ...options.identity };
    this.headerMode = options.headers ?? DEFAULTS.headers;
    this.clock = options.clock ?? Date.now;
    this.log = options.log ?? logLimiterEvent;
    this.onDecision = options.onDecision;
    const timeoutMs = options.timeoutMs ?? DEFAULTS.timeoutMs;
    const localFraction = options.localFraction ?? DEFAULTS.localFraction;
    const log = (event: LimiterEvent, requestId: string | undefined) => this.log(event, requestId);
    this.store = new StoreGuard({ backend: options.backend, breaker: options.breaker ?? DEFAULTS.breaker, timeoutMs, clock: this.clock, log });
    this.resolver = new SubjectResolver(this.rules, this.concurrencyRules, this.identity, options.missingKey ?? DEFAULTS.missingKey);
    this.refusals = new RefusalMemory(options.denyCacheSize ?? DEFAULTS.denyCacheSize, this.clock, timeoutMs);
    this.prefixes = new PrefixOverrideCache(this.store, this.rules, this.identity, this.clock);
    this.degraded = new DegradedBuckets(localFraction, this.clock);
    this.slots = new SlotKeeper({ store: this.store, clock: this.clock, localFraction, headerMode: this.headerMode, log });
  }

  get backend(): LimiterBackend {
    return this.store.backend;
  }

  /** Budget of one backend call, ms. */
  get timeoutMs(): number {
    return this.store.timeoutMs;
  }

  /** Backend calls this limiter made: decisions, reads of the override registry, resets, releases and refunds. */
  get stats(): { readonly backendCalls: number } {
    return this.store.stats;
  }

  /**
   * Decides about a request (every matching rule) or a named client (one rule), charging the
   * tokens or, with `mode: "peek"`, only looking.
   *
   * @example
   * const verdict = await limiter.check({ kind: "request", method: "POST", path: "/login", headers });
   * if (verdict.kind === "allowed") forward(verdict.headers);
   */
  async check(subject: Subject, options: CheckOptions = {}): Promise<Verdict> {
    const started = performance.now();
    const trace: Trace = { requestId: options.requestId, background: options.background, backendCall: undefined, breakerOpened: false, clients: [] };
    const verdict = await this.decide(subject, options, trace);
    this.onDecision?.({ verdict, mode: options.mode ?? "charge", durationMs: performance.now() - started, ...trace });
    return verdict;
  }

  private async decide(subject: Subject, options: CheckOptions, trace: Trace): Promise<Verdict> {
    // A peek may cost 0: the bucket as it stands, not as one more request would leave it.
    const minCost = options.mode === "peek" ? 0 : 1;
    if (options.cost !== undefined && !(Number.isInteger(options.cost) && options.cost >= minCost && options.cost <= 1_000_000_000)) {
      return { kind: "invalid-subject", field: "cost", message: `must be an integer from ${minCost} to 1000000000` };
    }
    const resolution = subject.kind === "request" ? await this.resolver.request(subject, options.cost) : await this.resolver.client(subject, options.cost);
    if (resolution.kind === "verdict") return resolution.verdict;
    const { rules, charges, claims } = resolution;
    trace.clients = [...claims.map(({ claim }) => claim), ...charges.map(({ charge }) => charge)].map(({ rule: bucket, clientKey }) => ({ rule: bucket, clientKey }));
    // Concurrency slots are not buckets: a peek looks at buckets only.
    if (options.mode === "peek") return charges.length === 0 ? { kind: "unmatched" } : this.peek(rules, charges, trace);
    if (claims.length === 0) return this.charge(rules, charges, trace);
    return this.chargeWithSlots(rules, charges, claims, trace);
  }

  /**
   * Takes the request's concurrency slots first, then charges its buckets; a refusal or failure
   * of the buckets gives the slots back at once. An allowed verdict holds them until {@link Limiter.release}.
   * A client the deny cache already refuses is refused before any slot is asked for.
   */
  private async chargeWithSlots(rules: readonly Rule[], charges: readonly RuleCharge[], claims: readonly RuleClaim[], trace: Trace): Promise<Verdict> {
    const cached = this.refusals.refusals(charges);
    if (cached.length > 0) return refusalVerdict(rules, cached, this.headerMode, true);
    const slots = await this.slots.take(claims, trace);
    if (slots.kind === "verdict") return slots.verdict;
    if (charges.length === 0 && slots.failedOpen !== undefined) return { kind: "fail-open", rules: claims.map(({ rule }) => rule), reason: slots.failedOpen };
    const verdict: Verdict = charges.length === 0 ? { kind: "allowed", outcomes: [], headers: [], degraded: slots.held.local } : await this.charge(rules, charges, trace);
    if (!passes(verdict)) {
      const release = this.slots.giveBack(slots.held, trace.requestId);
      if (trace.background !== undefined) trace.background(release);
      else await release;
      return verdict;
    }
    if (verdict.kind !== "allowed") {
      this.slots.hold(verdict, slots.held);
      return verdict;
    }
    const marked = verdict.headers.some(([name]) => name === DEGRADED_HEADER[0]);
    const headers = withConcurrencyHeaders(verdict.headers, slots.decisions, this.headerMode, slots.held.local && !marked ? [DEGRADED_HEADER] : []);
    const withSlots: Verdict = { ...verdict, headers, degraded: verdict.degraded || slots.held.local };
    const receipts = this.receipts.get(verdict);
    if (receipts !== undefined) this.receipts.set(withSlots, receipts);
    this.slots.hold(withSlots, slots.held);
    return withSlots;
  }

  private async charge(rules: readonly Rule[], charges: readonly RuleCharge[], trace: Trace): Promise<Verdict> {
    // A client this isolate saw refused is refused again until its retry time, with no backend call.
    const cached = await this.refusals.consult(charges);
    // Requests of the same client waiting on this one's answer may go on.
    const releaseProbes = () => {
      for (const release of cached.probes.splice(0)) release();
    };
    try {
      if (cached.refusals.length > 0) return refusalVerdict(rules, cached.refusals, this.headerMode, true);
      const answer = await this.ask(rules, charges, "take", releaseProbes, trace);
      if (answer.kind === "verdict") return answer.verdict;
      for (const { rule, decision } of answer.outcomes) {
        if (rule.mode === "shadow" && decision.outcome !== "allowed") this.log({ event: "limiter.shadow_refusal", rule: rule.name, outcome: decision.outcome }, trace.requestId);
      }
      const verdict = decisionVerdict(rules, answer.outcomes, this.headerMode);
      if (verdict.kind === "allowed" && verdict.waitMs !== undefined && charges.filter(({ rule }) => rule.mode === "enforce").length > 1) {
        // Queued behind one rule's refill, the request would reach the origin later than the other
        // rules counted it, which could let more through in a short interval than they allow.
        // Queueing stays exact only for a request one enforced rule covers: refuse, give it all back.
        await this.refund(answer.charged.map(({ refund }) => refund));
        return refusalVerdict(rules, queuedAsRefused(answer.outcomes), this.headerMode, false);
      }
      if (verdict.kind === "allowed" && answer.receipts.length > 0) this.receipts.set(verdict, answer.receipts);
      // Waits count from the answer's arrival: a request queued behind others at the store got
      // its retry time later than it started (this errs by one response's transit, not by a queue).
      this.refusals.learn(charges, answer.outcomes, verdict.kind === "refused", this.clock());
      return verdict;
    } finally {
      releaseProbes();
    }
  }

  private async peek(rules: readonly Rule[], charges: readonly RuleCharge[], trace: Trace): Promise<Verdict> {
    const refusals = this.refusals.refusals(charges);
    if (refusals.length > 0) return refusalVerdict(rules, refusals, this.headerMode, true);
    const answer = await this.ask(rules, charges, "peek", () => {}, trace);
    return answer.kind === "verdict" ? answer.verdict : decisionVerdict(rules, answer.outcomes, this.headerMode);
  }

  /** One store call for the buckets, prefix overrides applied; a failure becomes the fail mode's verdict. */
  private async ask(rules: readonly Rule[], charges: readonly RuleCharge[], operation: "take" | "peek", releaseProbes: () => void, trace: Trace) {
    const result = await this.store.decide(
      async (reached) => {
        const prefixes = await this.prefixes.current(trace);
        const asked = charges.map(({ rule, charge, values }) => {
          const override = values === undefined ? undefined : prefixes.policyFor(rule, values);
          return override === undefined ? charge : { ...charge, policy: withOverride(charge.policy, override) };
        });
        reached();
        const answers = await this.store.send((signal) => this.store.backend[operation](asked, signal));
        if (answers.length !== charges.length) throw new Error(`backend answered ${answers.length} decisions for ${charges.length} charges`);
        return { asked, answers };
      },
      trace,
      this.store.scope(charges.map(({ charge }) => charge)),
      releaseProbes,
    ); // waiting requests go on before a fail-open one does
    if (result.kind === "misconfigured") return { kind: "verdict", verdict: { kind: "backend-misconfigured", variable: result.variable, message: result.message } } as const;
    if (result.kind === "unreachable") return { kind: "verdict", verdict: this.failModeVerdict(rules, charges, operation, result.reason, trace) } as const;
    const { asked, answers } = result.value;
    // What a `count` rule may give back once the response is known, or a `queue` rule if the client
    // leaves while it waits: the charge as made and the state it wrote.
    const charged = charges.flatMap(({ rule }, i) => {
      const [charge, answer] = [asked[i], answers[i]];
      return charge !== undefined && answer?.charged ? [{ rule, refund: { charge, charged: answer.charged } }] : [];
    });
    const receipts = charged.filter(({ rule }) => rule.count !== undefined || (rule.policy.queueMs ?? 0) > 0);
    this.degraded.learn(charges, asked, answers);
    return { kind: "outcomes", outcomes: answeredOutcomes(charges, answers), receipts, charged } as const;
  }

  /**
   * The store could not decide: each rule's fail mode does. One closed enforced rule refuses the
   * request; else rules that fail `local` decide on this isolate's own buckets; else it goes on.
   */
  private failModeVerdict(rules: readonly Rule[], charges: readonly RuleCharge[], operation: "take" | "peek", reason: string, trace: Trace): Verdict {
    const closed = rules.find((rule) => rule.mode === "enforce" && rule.failMode === "closed");
    const local = charges.filter(({ rule }) => rule.failMode === "local");
    const failMode = closed ? "closed" : local.length > 0 ? "local" : "open";
    this.log({ event: "limiter.backend_failure", backend: this.backend.name, failMode, reason }, trace.requestId);
    if (closed !== undefined) return { kind: "fail-closed", rule: closed, backend: this.backend.name, reason };
    if (local.length === 0) return { kind: "fail-open", rules, reason };
    return this.degraded.decide(local, operation, this.prefixes.lastKnown, this.headerMode);
  }

  /**
   * Whether an allowed verdict holds concurrency slots (then the response must {@link Limiter.release}
   * them once sent), and how often a long response must {@link Limiter.renew} them, ms: a third
   * of the shortest lease.
   *
   * @example
   * const holding = limiter.holding(verdict); // { renewEveryMs: 10000 } for a 30 s lease, undefined when none
   */
  holding(verdict: Verdict): { readonly renewEveryMs: number } | undefined {
    return this.slots.holding(verdict);
  }

  /**
   * Extends the leases of the slots an allowed verdict still holds (a long response keeps its
   * slots). A renewal never takes a slot, so one that arrives after the release changes nothing.
   * Never throws.
   *
   * @example
   * const timer = setInterval(() => void limiter.renew(verdict), limiter.holding(verdict)?.renewEveryMs);
   */
  renew(verdict: Verdict): Promise<void> {
    return this.slots.renew(verdict);
  }

  /**
   * Gives back the concurrency slots an allowed verdict holds: call it once the origin's answer
   * has settled (its body sent or cancelled). Idempotent; never throws.
   *
   * @example
   * const verdict = await limiter.check(requestSubject(request));
   * try { return await fetch(request); } finally { ctx.waitUntil(limiter.release(verdict)); }
   */
  release(verdict: Verdict): Promise<void> {
    return this.slots.release(verdict);
  }

  /**
   * Once the response to an allowed request is known: gives back the charges of `count` rules
   * whose statuses it does not match (only what each charge still withholds, so nothing is ever
   * over-admitted). Run it off the request path (`ctx.waitUntil`); it never throws.
   *
   * @example
   * const verdict = await limiter.check(requestSubject(request));
   * const response = await fetch(request);
   * ctx.waitUntil(limiter.settle(verdict, response.status));
   */
  async settle(verdict: Verdict, status: number): Promise<void> {
    const receipts = this.receipts.get(verdict);
    if (receipts === undefined) return;
    this.receipts.delete(verdict);
    await this.refund(receipts.filter(({ rule }) => !countsStatus(rule, status)).map((receipt) => receipt.refund));
  }

  /**
   * Gives back every charge of an allowed verdict that may be given back (`count` and `queue`
   * rules; only what each still withholds): the client left while its queued request waited
   * (`verdict.waitMs`), so the request never proceeds. Call it instead of {@link Limiter.settle};
   * run it off the request path; it never throws.
   *
   * @example
   * const verdict = await limiter.check(requestSubject(request));
   * if (verdict.kind === "allowed" && verdict.waitMs !== undefined && !(await waited(verdict.waitMs, request.signal))) {
   *   ctx.waitUntil(limiter.giveBack(verdict));
   * }
   */
  async giveBack(verdict: Verdict): Promise<void> {
    const receipts = this.receipts.get(verdict);
    if (receipts === undefined) return;
    this.receipts.delete(verdict);
    await this.refund(receipts.map((receipt) => receipt.refund));
  }

  private async refund(refunds: readonly Refund[]): Promise<void> {
    if (refunds.length === 0) return;
    try {
      await this.store.send((signal) => this.backend.refund(refunds, signal));
    } catch (error) {
      this.log({ event: "limiter.refund_failure", backend: this.backend.name, reason: error instanceof Error ? error.message : String(error) }, undefined);
    }
  }

  /**
   * The buckets of a client named by key-part values, under `rule` or, when it is left out,
   * under every rule keyed on exactly those parts; canonical and hashed as traffic is.
   *
   * @example
   * await limiter.findBuckets("api", { "header:x-api-key": "abc" }); // { ok: true, buckets: [{ rule, ref, client }] }
   */
  findBuckets(ruleName: unknown, client: unknown): ReturnType<SubjectResolver["findBuckets"]> {
    return this.resolver.findBuckets(ruleName, client);
  }

  /**
   * Makes a named client's buckets full again, in the store and in this isolate's deny cache.
   *
   * @example
   * await limiter.reset((await limiter.findBuckets("api", { "header:x-api-key": "abc" })).buckets);
   */
  async reset(buckets: readonly NamedBucket[]): Promise<void> {
    await this.store.send((signal) =>
      this.backend.reset(
        buckets.map((b) => b.ref),
        signal,
      ),
    );
    this.forget(buckets);
  }

  /** Drops what this isolate remembers of these buckets (refusals) and its copy of the prefix overrides, so the next request asks the store. */
  forget(buckets: readonly NamedBucket[]): void {
    for (const { ref } of buckets) this.refusals.forget(ref);
    this.prefixes.forget();
  }

  /** Drops this isolate's copy of the prefix overrides (after an operator changed them): the next request reads the registry. */
  forgetPrefixOverrides(): void {
    this.prefixes.forget();
  }

  /** This isolate's view: the store's circuit (and how many clients' own circuits are open), deny-cache size, backend calls made, rule names. */
  isolateState(): { breaker: "closed" | "open" | "half-open"; clientCircuitsOpen: number; denyCacheEntries: number; backendCalls: number; rules: string[] } {
    return {
      ...this.store.state(),
      denyCacheEntries: this.refusals.size,
      backendCalls: this.backend.stats?.calls ?? this.stats.backendCalls,
      rules: this.rules.map((rule) => rule.name),
    };
  }

  /** One round trip to the store under the limiter's deadline. */
  ping(): Promise<BackendHealth> {
    return this.store.ping();
  }
}

/** The outcomes of a queued request refused after all: each rule that queued it refuses with its wait. */
function queuedAsRefused(outcomes: readonly RuleOutcome[]): RuleOutcome[] {
  return outcomes.map((outcome) => {
    const { decision } = outcome;
    if (decision.outcome !== "allowed" || decision.waitMs === undefined) return outcome;
    return { ...outcome, decision: { outcome: "denied", remaining: 0, resetMs: decision.resetMs, retryAfterMs: decision.waitMs } };
  });
}
