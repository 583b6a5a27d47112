import type { LimiterBackend } from "./backend";
import { BucketCall } from "./bucket-call";
import { ChargeReceipts, queuedAsRefused, queuedPastOtherRules, refundable } from "./charge-receipts";
import { DEFAULTS } from "./defaults";
import type { CheckOptions, DecisionEvent, LimiterOptions } from "./limiter-options";
import { DegradedBuckets } from "./degraded";
import { logLimiterEvent, type LimiterEvent } from "./events";
import { DEGRADED_HEADER, withConcurrencyHeaders, type HeaderMode } from "./headers";
import type { IdentityOptions } from "./identity";
import { PrefixOverrideCache } from "./override-cache";
import { RefusalMemory } from "./refusal-memory";
import { compileRules, InvalidRulesError, type ConcurrencyRule, type Rule } from "./rules";
import { SlotKeeper, type RuleClaim } from "./slot-keeper";
import { StoreGuard, type BackendCall, type BackendHealth, type CallTrace } from "./store-guard";
import type { Subject } from "./subject";
import { SubjectResolver, type MissingKeyMode, type NamedBucket, type RuleCharge } from "./subject-resolver";
import { passes, type Verdict } from "./verdict";
import { decisionVerdict, refusalVerdict } from "./verdicts";

export { localPolicy } from "./degraded";
export { OVERRIDES_MAX_AGE_MS } from "./override-cache";
export { BACKGROUND_PROBE_MS } from "./store-guard";
export type { BackendCall, BackendHealth, LimiterEvent, MissingKeyMode, NamedBucket };
export type { CheckOptions, DecisionEvent, LimiterOptions } from "./limiter-options";

/** What a check did besides deciding, filled in as it goes. */
class Trace implements CallTrace {
  backendCall: BackendCall | undefined = undefined;
  breakerOpened = false;
  clients: readonly { readonly rule: string; readonly clientKey: string }[] = [];
  readonly background: ((task: Promise<unknown>) => void) | undefined;

  constructor(private readonly options: CheckOptions) {
    this.background = options.background;
  }

  /** The check's request id, read only when an event is logged. */
  get requestId(): string | undefined {
    const id = this.options.requestId;
    return typeof id === "function" ? id() : id;
  }
}

/**
 * The rate limiter, free of any framework. It reads as the request flow: resolve the subject
 * into charges ({@link SubjectResolver}), consult the deny cache ({@link RefusalMemory}), take
 * concurrency slots ({@link SlotKeeper}), charge the buckets in one guarded store call
 * ({@link BucketCall}: prefix overrides applied, each rule's fail mode when the store cannot
 * decide), and keep what the verdict may give back ({@link ChargeReceipts}). Build one per
 * isolate (its caches are per instance); every answer is a typed {@link Verdict}.
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
  /** The store call for a check's buckets, or each rule's fail mode when the store cannot decide. */
  private readonly buckets: BucketCall;
  private readonly slots: SlotKeeper;
  private readonly headerMode: HeaderMode;
  private readonly clock: () => number;
  private readonly log: (event: LimiterEvent, requestId: string | undefined) => void;
  private readonly onDecision: ((event: DecisionEvent) => void) | undefined;
  /** Charges `count` and `queue` rules may give back, by the verdict that made them (see {@link Limiter.settle}, {@link Limiter.giveBack}). */
  private readonly receipts: ChargeReceipts;

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
    this.slots = new SlotKeeper({ store: this.store, clock: this.clock, localFraction, headerMode: this.headerMode, log });
    this.receipts = new ChargeReceipts({ store: this.store, log });
    const degraded = new DegradedBuckets(localFraction, this.clock);
    this.buckets = new BucketCall({ store: this.store, prefixes: this.prefixes, degraded, headerMode: this.headerMode, log });
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
    const trace = new Trace(options);
    const verdict = await this.decide(subject, options, trace);
    const { backendCall, breakerOpened, clients } = trace;
    this.onDecision?.({ verdict, mode: options.mode ?? "charge", durationMs: performance.now() - started, backendCall, breakerOpened, clients });
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
    // The claims and charges themselves (each names its rule and client): no copies per request.
    trace.clients = claims.length === 0 ? charges.map(({ charge }) => charge) : [...claims.map(({ claim }) => claim), ...charges.map(({ charge }) => charge)];
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
    this.receipts.carry(verdict, withSlots);
    this.slots.hold(withSlots, slots.held);
    return withSlots;
  }

  private async charge(rules: readonly Rule[], charges: readonly RuleCharge[], trace: Trace): Promise<Verdict> {
    // A client this isolate saw refused is refused again until its retry time, with no backend
    // call: looked up without waiting first (a flood's every request), then as a probe may need.
    const held = this.refusals.refusals(charges);
    if (held.length > 0) return refusalVerdict(rules, held, this.headerMode, true);
    const cached = await this.refusals.consult(charges);
    // Requests of the same client waiting on this one's answer may go on.
    const releaseProbes = () => {
      for (const release of cached.probes.splice(0)) release();
    };
    try {
      if (cached.refusals.length > 0) return refusalVerdict(rules, cached.refusals, this.headerMode, true);
      const answer = await this.buckets.ask(rules, charges, "take", releaseProbes, trace);
      if (answer.kind === "verdict") return answer.verdict;
      for (const { rule, decision } of answer.outcomes) {
        if (rule.mode === "shadow" && decision.outcome !== "allowed") this.log({ event: "limiter.shadow_refusal", rule: rule.name, outcome: decision.outcome }, trace.requestId);
      }
      const verdict = decisionVerdict(rules, answer.outcomes, this.headerMode);
      if (queuedPastOtherRules(verdict, charges)) {
        // Queued behind one rule's refill, it would reach the origin later than the others counted it.
        await this.receipts.refund(answer.charged);
        return refusalVerdict(rules, queuedAsRefused(answer.outcomes), this.headerMode, false);
      }
      if (verdict.kind === "allowed") this.receipts.keep(verdict, refundable(answer.charged));
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
    const answer = await this.buckets.ask(rules, charges, "peek", () => {}, trace);
    return answer.kind === "verdict" ? answer.verdict : decisionVerdict(rules, answer.outcomes, this.headerMode);
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
  settle(verdict: Verdict, status: number): Promise<void> {
    return this.receipts.settle(verdict, status);
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
  giveBack(verdict: Verdict): Promise<void> {
    return this.receipts.giveBack(verdict);
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
