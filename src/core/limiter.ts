import { BackendConfigError, type BucketAnswer, type BucketCharge, type BucketRef, type LimiterBackend, type Refund, type SlotClaim } from "./backend";
import { ScopedBreaker, type CircuitBreakerOptions } from "./circuit-breaker";
import { BackendTimeoutError, withDeadline } from "./deadline";
import { DEFAULTS } from "./defaults";
import type { LimiterEvent } from "./events";
import { DenyCache, type CachedRefusal } from "./deny-cache";
import { DEGRADED_HEADER, mostRestrictive, rateLimitHeaders, withConcurrencyHeaders, type HeaderMode } from "./headers";
import { hashedClientKey, requestKeyValue, type IdentityOptions } from "./identity";
import { keySpec } from "./key-parts";
import { findRule, parseClient, PrefixOverrides } from "./overrides";
import { normalizePath } from "./path";
import type { NamedPolicy } from "./policy";
import { compileRules, countsStatus, InvalidRulesError, ruleMatches, type ConcurrencyRule, type FailMode, type Rule, type RuleSpec } from "./rules";
import { LocalTable } from "./local-table";
import { MAX_LOCAL_ENTRIES, SlotKeeper, type ClaimEntry, type SlotAnswer } from "./slot-keeper";
import type { ClientSubject, RequestSubject, Subject } from "./subject";
import { MAX_SAFE_UNITS, takeBuckets, waitForTokensMs, type BucketPolicy, type BucketState } from "./token-bucket";
import { passes, type RuleOutcome, type Verdict } from "./verdict";

/** What a request lacking its rule's key gets: one shared `anonymous` bucket, or refused (401/400). */
export type MissingKeyMode = "anonymous" | "reject";

export type { LimiterEvent };

/** How the store call of one check went (none when the deny cache answered or no rule applied). */
export type BackendCall = { readonly result: "ok" | "error" | "timeout" | "breaker_open" | "misconfigured"; readonly latencyMs: number };

/**
 * One decision as metrics see it: the verdict and what it took. The limiter hands every one to
 * `onDecision`, so counting happens in one place whatever asked (traffic, admin, RPC).
 */
export interface DecisionEvent {
  readonly verdict: Verdict;
  readonly mode: "charge" | "peek";
  /** Wall time of the whole check, ms. */
  readonly durationMs: number;
  readonly backendCall: BackendCall | undefined;
  /** Whether this check's failure opened the circuit breaker. */
  readonly breakerOpened: boolean;
  /** The hashed client of each rule charged (distinct-client estimates, top refused clients). */
  readonly clients: readonly { readonly rule: string; readonly clientKey: string }[];
}

/** What a check did besides deciding, filled in as it goes. */
interface Trace {
  readonly requestId: string | undefined;
  readonly background: ((task: Promise<unknown>) => void) | undefined;
  backendCall: BackendCall | undefined;
  breakerOpened: boolean;
  clients: { rule: string; clientKey: string }[];
}

/** Options of {@link Limiter}; everything but `backend` and `rules` has a default (see `DEFAULTS`). */
export interface LimiterOptions {
  /** Where buckets live: `memoryBackend()`, `durableObjectBackend(…)`, `upstashBackend(…)`. */
  readonly backend: LimiterBackend;
  /** Every rule that matches a request applies; the request passes only if every enforced one allows it. */
  readonly rules: readonly RuleSpec[];
  /** Fail mode of rules that do not set one. Default `open`. */
  readonly failMode?: FailMode;
  /** Budget of one backend call, ms. Default 1000. */
  readonly timeoutMs?: number;
  /** Which rate-limit headers verdicts carry. Default `all`. */
  readonly headers?: HeaderMode;
  /** How client addresses are read. Default: `CF-Connecting-IP`, IPv6 grouped by /64. */
  readonly identity?: Partial<IdentityOptions>;
  /** Default `anonymous`. */
  readonly missingKey?: MissingKeyMode;
  /** Entries of this limiter's deny cache; 0 turns it off. Default 10,000. */
  readonly denyCacheSize?: number;
  /** Default: opens after 5 consecutive failures, for 5 s. */
  readonly breaker?: CircuitBreakerOptions;
  /** Share of each `failMode: "local"` rule an isolate enforces on its own while the store is unreachable, 0.01–1. Default 0.1. */
  readonly localFraction?: number;
  /** Milliseconds since the epoch; tests inject their own. The buckets themselves use the store's clock. */
  readonly clock?: () => number;
  /** Where events go, with the check's request id if it had one. Default: one JSON line on the console. */
  readonly log?: (event: LimiterEvent, requestId: string | undefined) => void;
  /** Called with every decision, after it is made (metrics). Must not throw or block. */
  readonly onDecision?: (event: DecisionEvent) => void;
}

/** Options of one {@link Limiter.check}. */
export interface CheckOptions {
  /** Tokens to charge each applying rule instead of its own `cost` (a peek may ask about 0: the bucket as it stands). */
  readonly cost?: number;
  /** `charge` (default) takes the tokens; `peek` only looks, changing nothing. */
  readonly mode?: "charge" | "peek";
  /** Passed to the log with every event this check causes. */
  readonly requestId?: string;
  /**
   * Runs work after the answer (a Worker's `ctx.waitUntil`). With it, while the circuit breaker
   * is open the limiter probes the store in the background, so decisions come from it again
   * soon after it answers, and no request waits for a probe.
   */
  readonly background?: (task: Promise<unknown>) => void;
}

/** The backend's health as one isolate sees it. */
export type BackendHealth =
  | { readonly ok: true; readonly latencyMs: number }
  | { readonly ok: false; readonly error: string; readonly configError?: { readonly variable: string; readonly message: string } };

/** One rule's charge in a check: the rule beside what the backend is asked. */
interface Entry {
  readonly rule: Rule;
  readonly charge: BucketCharge;
  /** The client's key-part values (canonical), for prefix overrides; none for a caller's client id. */
  readonly values: readonly string[] | undefined;
}

/** A charge a `count` rule may give back. */
interface Receipt {
  readonly rule: Rule;
  readonly refund: Refund;
}

/** A named client's bucket under one rule: what reset, peek and overrides address. */
export interface NamedBucket {
  readonly rule: Rule;
  readonly ref: BucketRef;
  /** The key-part values, canonical, by key part as rules spell them. */
  readonly client: Readonly<Record<string, string>>;
  /** The same values in the rule's key order (what prefix overrides match). */
  readonly values: readonly string[];
}


/**
 * A rule's policy scaled to `fraction` for one isolate's degraded decisions: capacity rounded
 * down (at least one request's `cost`, so a request can still pass), refill slowed by the same
 * fraction (its period rounded up: never faster).
 *
 * @example
 * localPolicy({ capacity: 100, refillTokens: 1, refillPeriodMs: 100 }, 0.1); // { capacity: 10, refillTokens: 1, refillPeriodMs: 1000 }
 */
export function localPolicy(policy: BucketPolicy, fraction: number, cost = 1): BucketPolicy {
  const capacity = Math.min(policy.capacity, Math.max(cost, Math.floor(policy.capacity * fraction)));
  const slowed = Math.ceil(policy.refillPeriodMs / fraction);
  // Keep capacity × period exact for the bucket's integer arithmetic.
  const refillPeriodMs = Math.min(slowed, Math.floor(MAX_SAFE_UNITS / capacity));
  return { ...policy, capacity, refillPeriodMs };
}

/** While the breaker is open, the store is probed in the background at most this often. */
export const BACKGROUND_PROBE_MS = 250;

/** Prefix overrides are refreshed in the background once this old, and never used older than the maximum. */
const OVERRIDES_REFRESH_AFTER_MS = 5_000;
/** The bound the README promises: a prefix override reaches every isolate within 10 s. */
export const OVERRIDES_MAX_AGE_MS = 10_000;

/** How one guarded store call ended (see `Limiter.storeCall`). */
type StoreResult<T> =
  | { readonly kind: "answered"; readonly value: T }
  | { readonly kind: "misconfigured"; readonly verdict: Verdict }
  | { readonly kind: "unreachable"; readonly reason: string };

type Resolution =
  | { readonly kind: "entries"; readonly rules: readonly Rule[]; readonly entries: readonly Entry[]; readonly claims: readonly ClaimEntry[] }
  | { readonly kind: "verdict"; readonly verdict: Verdict };

/**
 * The rate limiter, free of any framework: rule matching, client identity, the deny cache and
 * its herd control, the circuit breaker, the deadline and the call count, around a backend.
 * Build one per isolate (its caches are per instance) and ask it about requests or named
 * clients; every answer is a typed {@link Verdict}.
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
  readonly backend: LimiterBackend;
  /** Backend calls this limiter made: decisions, and reads of the override registry (health reports it; the benchmark divides it by requests). */
  readonly stats = { backendCalls: 0 };
  private readonly denyCache: DenyCache;
  private readonly breaker: ScopedBreaker;
  readonly identity: IdentityOptions;
  /** Budget of one backend call, ms. */
  readonly timeoutMs: number;
  private readonly headerMode: HeaderMode;
  private readonly missingKey: MissingKeyMode;
  private readonly clock: () => number;
  private readonly log: (event: LimiterEvent, requestId: string | undefined) => void;
  private readonly onDecision: ((event: DecisionEvent) => void) | undefined;
  private prefixes: { readonly loadedAtMs: number; readonly overrides: PrefixOverrides } | undefined;
  /** When the last background probe started; one at a time. */
  private lastProbeMs = 0;
  private probing = false;
  private readonly localFraction: number;
  /** Charges `count` rules may give back, by the verdict that made them (see {@link Limiter.settle}). */
  private readonly receipts = new WeakMap<Verdict, Receipt[]>();
  /** Concurrency slots: what each allowed verdict holds, and the isolate's own in degraded mode. */
  private readonly slots: SlotKeeper;
  /**
   * Exact overrides the store answered with, by bucket (`failMode: "local"` rules only): what a
   * degraded decision scales, so an outage does not lift a client's lowered limit. Bounded like the local buckets.
   */
  private readonly knownOverrides = new Map<string, BucketPolicy>();
  /** Degraded-mode buckets (`failMode: "local"`), this isolate's only. */
  private readonly localBuckets = new LocalTable<BucketState>(MAX_LOCAL_ENTRIES);
  private loadingPrefixes: { readonly startedMs: number; readonly load: Promise<PrefixOverrides> } | undefined;

  /** @throws InvalidRulesError when a rule does not check, naming every rule and field. */
  constructor(options: LimiterOptions) {
    const compiled = compileRules(options.rules, options.failMode ?? DEFAULTS.failMode);
    if (!compiled.ok) throw new InvalidRulesError(compiled.errors);
    this.rules = compiled.rules;
    this.concurrencyRules = compiled.concurrency;
    this.backend = options.backend;
    this.denyCache = new DenyCache(options.denyCacheSize ?? DEFAULTS.denyCacheSize);
    this.breaker = new ScopedBreaker(options.breaker ?? DEFAULTS.breaker);
    this.identity = { ...DEFAULTS.identity, ...options.identity };
    this.timeoutMs = options.timeoutMs ?? DEFAULTS.timeoutMs;
    this.headerMode = options.headers ?? DEFAULTS.headers;
    this.missingKey = options.missingKey ?? DEFAULTS.missingKey;
    this.clock = options.clock ?? Date.now;
    this.localFraction = options.localFraction ?? DEFAULTS.localFraction;
    this.slots = new SlotKeeper({
      backend: this.backend,
      clock: this.clock,
      timeoutMs: this.timeoutMs,
      localFraction: this.localFraction,
      headerMode: this.headerMode,
      log: (event, requestId) => this.log(event, requestId),
      countCall: () => (this.stats.backendCalls += 1),
    });
    this.log = options.log ?? logToConsole;
    this.onDecision = options.onDecision;
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
    const resolution = subject.kind === "request" ? await this.resolveRequest(subject, options.cost) : await this.resolveClient(subject, options.cost);
    if (resolution.kind === "verdict") return resolution.verdict;
    const { rules, entries, claims } = resolution;
    trace.clients = [...claims.map(({ claim }) => claim), ...entries.map(({ charge }) => charge)].map(({ bucket, clientKey }) => ({ rule: bucket, clientKey }));
    // Concurrency slots are not buckets: a peek looks at buckets only.
    if (options.mode === "peek") return entries.length === 0 ? { kind: "unmatched" } : this.peek(rules, entries, trace);
    if (claims.length === 0) return this.charge(rules, entries, trace);
    return this.chargeWithSlots(rules, entries, claims, trace);
  }

  /**
   * Takes the request's concurrency slots first, then charges its buckets; a refusal or failure
   * of the buckets gives the slots back at once. An allowed verdict holds them until {@link Limiter.release}.
   * A client the deny cache already refuses is refused before any slot is asked for.
   */
  private async chargeWithSlots(rules: readonly Rule[], entries: readonly Entry[], claims: readonly ClaimEntry[], trace: Trace): Promise<Verdict> {
    const cached = this.cachedRefusals(entries);
    if (cached.length > 0) return this.refusal(rules, cached, true);
    const slots = await this.acquire(claims, trace);
    if (slots.kind === "verdict") return slots.verdict;
    if (entries.length === 0 && slots.failedOpen !== undefined) return { kind: "fail-open", rules: claims.map(({ rule }) => rule), reason: slots.failedOpen };
    const verdict: Verdict = entries.length === 0 ? { kind: "allowed", outcomes: [], headers: [], degraded: slots.held.local } : await this.charge(rules, entries, trace);
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

  /**
   * Takes one slot per claim, under the breaker and the deadline. A refusal of an enforced rule
   * becomes `concurrency-refused`; an unreachable store, each rule's fail mode (`local`: slots in
   * this isolate's memory, `localFraction` of the limit, at least one).
   */
  private async acquire(claims: readonly ClaimEntry[], trace: Trace): Promise<SlotAnswer | { kind: "verdict"; verdict: Verdict }> {
    const asked = claims.map(({ claim }) => claim);
    const result = await this.storeCall((reached) => {
      this.stats.backendCalls += 1;
      reached();
      return withDeadline((signal) => this.backend.acquire(asked, signal), this.timeoutMs);
    }, trace, this.failureScope(asked));
    if (result.kind === "misconfigured") return { kind: "verdict", verdict: result.verdict };
    if (result.kind === "answered") return this.slots.answer(claims, result.value, false, trace.requestId);
    if (trace.backendCall?.result !== "breaker_open") {
      // The store may have taken the slots after all (an RPC cannot be recalled): give them back.
      const giveBack = this.slots.giveBack({ claims: asked, local: false }, trace.requestId);
      if (trace.background !== undefined) trace.background(giveBack);
      else void giveBack;
    }
    const reason = result.reason;
    const closed = claims.find(({ rule }) => rule.mode === "enforce" && rule.failMode === "closed");
    const local = claims.some(({ rule }) => rule.failMode === "local");
    this.log({ event: "limiter.backend_failure", backend: this.backend.name, failMode: closed ? "closed" : local ? "local" : "open", reason }, trace.requestId);
    if (closed !== undefined) return { kind: "verdict", verdict: { kind: "fail-closed", rule: closed.rule, backend: this.backend.name, reason } };
    if (!local) return { kind: "held", held: { claims: [], local: false }, decisions: [], failedOpen: reason };
    return this.slots.answer(claims, this.slots.acquireLocally(claims), true, trace.requestId);
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
   * Gives back the concurrency slots an allowed verdict holds: call it once the response has
   * been sent (its body fully read) or the client went away. Idempotent; never throws.
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
    const refunds = receipts.filter(({ rule }) => !countsStatus(rule, status)).map((receipt) => receipt.refund);
    if (refunds.length === 0) return;
    try {
      this.stats.backendCalls += 1;
      await withDeadline((signal) => this.backend.refund(refunds, signal), this.timeoutMs);
    } catch (error) {
      this.log({ event: "limiter.refund_failure", backend: this.backend.name, reason: error instanceof Error ? error.message : String(error) }, undefined);
    }
  }

  /** This isolate's view: breaker state (the store's, and how many clients' own circuits are open), deny-cache size, backend calls made, rule names. */
  isolateState(): { breaker: ReturnType<ScopedBreaker["state"]>; clientCircuitsOpen: number; denyCacheEntries: number; backendCalls: number; rules: string[] } {
    return {
      breaker: this.breaker.state(this.clock()),
      clientCircuitsOpen: this.breaker.openClients(this.clock()),
      denyCacheEntries: this.denyCache.size,
      backendCalls: this.backend.stats?.calls ?? this.stats.backendCalls,
      rules: this.rules.map((rule) => rule.name),
    };
  }

  /** One round trip to the store under the limiter's deadline. */
  async ping(): Promise<BackendHealth> {
    const started = performance.now();
    try {
      await withDeadline((signal) => this.backend.ping(signal), this.timeoutMs);
      return { ok: true, latencyMs: Math.round((performance.now() - started) * 100) / 100 };
    } catch (error) {
      if (error instanceof BackendConfigError) {
        return { ok: false, error: error.message, configError: { variable: error.variable, message: error.message } };
      }
      return { ok: false, error: error instanceof Error ? error.message : String(error) };
    }
  }

  private async resolveRequest(subject: RequestSubject, cost: number | undefined): Promise<Resolution> {
    const pathname = normalizePath(subject.path);
    const host = (subject.host ?? subject.headers.get("host") ?? "").replace(/:\d+$/, "");
    const request = { method: subject.method, pathname, headers: subject.headers, host };
    const rules = this.rules.filter((rule) => ruleMatches(rule, request));
    const concurrent = this.concurrencyRules.filter((rule) => ruleMatches(rule, request));
    if (rules.length === 0 && concurrent.length === 0) return { kind: "verdict", verdict: { kind: "unmatched" } };
    // Rules with the same key parts share one hash computation.
    const keys = new Map<string, Promise<{ clientKey: string; values: readonly string[] | undefined } | undefined>>();
    const entries: Entry[] = [];
    for (const rule of rules) {
      const keyName = subject.clientId === undefined ? rule.keyName : "client";
      let key = keys.get(keyName);
      if (key === undefined) keys.set(keyName, (key = this.requestKey(subject, rule)));
      const client = await key;
      if (client === undefined && this.missingKey === "reject") return { kind: "verdict", verdict: { kind: "missing-key", rule } };
      entries.push({ rule, charge: chargeFor(rule, client?.clientKey ?? `${keyName}:anonymous`, cost), values: client?.values });
    }
    const claims: ClaimEntry[] = [];
    for (const rule of concurrent) {
      const keyName = subject.clientId === undefined ? rule.keyName : "client";
      let key = keys.get(keyName);
      if (key === undefined) keys.set(keyName, (key = this.requestKey(subject, rule)));
      const client = await key;
      if (client === undefined && this.missingKey === "reject") return { kind: "verdict", verdict: { kind: "missing-key", rule } };
      claims.push({ rule, claim: claimFor(rule, client?.clientKey ?? `${keyName}:anonymous`) });
    }
    return { kind: "entries", rules, entries, claims };
  }

  private async requestKey(subject: RequestSubject, rule: Pick<Rule, "key" | "keyName">): Promise<{ clientKey: string; values: readonly string[] | undefined } | undefined> {
    if (subject.clientId !== undefined) {
      return subject.clientId === "" ? undefined : { clientKey: await hashedClientKey("client", [subject.clientId], this.identity.hashKey), values: undefined };
    }
    const values: string[] = [];
    for (const part of rule.key) {
      const value = requestKeyValue(subject, part, this.identity);
      if (value === undefined) return undefined;
      values.push(value);
    }
    return { clientKey: await hashedClientKey(rule.keyName, values, this.identity.hashKey), values };
  }

  private async resolveClient(subject: ClientSubject, cost: number | undefined): Promise<Resolution> {
    const named = await this.named(subject.rule, subject.client);
    if (!named.ok) return { kind: "verdict", verdict: { kind: "invalid-subject", field: named.field, message: named.message } };
    const entries = named.buckets.map(({ rule, ref, values }) => ({ rule, charge: chargeFor(rule, ref.clientKey, cost), values }));
    return { kind: "entries", rules: entries.map((entry) => entry.rule), entries, claims: [] };
  }

  /**
   * The buckets of a client named by key-part values, under `rule` or, when it is left out,
   * under every rule keyed on exactly those parts; canonical and hashed as traffic is.
   *
   * @example
   * await limiter.named("api", { "header:x-api-key": "abc" }); // { ok: true, buckets: [{ rule, ref, client }] }
   */
  async named(
    ruleName: unknown,
    client: unknown,
  ): Promise<{ ok: true; buckets: NamedBucket[] } | { ok: false; field: string; message: string }> {
    let rules: readonly Rule[];
    if (ruleName === undefined) {
      const given = typeof client === "object" && client !== null ? Object.keys(client).sort().join(",") : "";
      rules = this.rules.filter((rule) => rule.key.map(keySpec).sort().join(",") === given);
      if (rules.length === 0) return { ok: false, field: "client", message: `matches no rule's key parts (rules key on: ${[...new Set(this.rules.map((r) => r.key.map(keySpec).join("+")))].join("; ")})` };
    } else if (this.concurrencyRules.some((rule) => rule.name === ruleName)) {
      return { ok: false, field: "rule", message: `"${String(ruleName)}" is a concurrency rule: peek, reset, check and overrides address bucket rules` };
    } else {
      const found = findRule(this.rules, ruleName);
      if (!found.ok) return found;
      rules = [found.rule];
    }
    const buckets: NamedBucket[] = [];
    for (const rule of rules) {
      const parsed = parseClient(rule, client, this.identity, { prefixes: false });
      if (!parsed.ok) return parsed;
      const values = rule.key.map((part) => parsed.canonical[keySpec(part)] ?? "");
      buckets.push({ rule, ref: { clientKey: await hashedClientKey(rule.keyName, values, this.identity.hashKey), bucket: rule.name }, client: parsed.canonical, values });
    }
    return { ok: true, buckets };
  }

  /**
   * Makes a named client's buckets full again, in the store and in this isolate's deny cache.
   *
   * @example
   * await limiter.reset((await limiter.named("api", { "header:x-api-key": "abc" })).buckets);
   */
  async reset(buckets: readonly NamedBucket[]): Promise<void> {
    await withDeadline((signal) => this.backend.reset(buckets.map((b) => b.ref), signal), this.timeoutMs);
    this.forget(buckets);
  }

  /** Drops what this isolate remembers of these buckets (refusals, prefix overrides), so the next request asks the store. */
  forget(buckets: readonly NamedBucket[] = []): void {
    for (const { ref } of buckets) this.denyCache.forget(denyCacheKey(ref));
    this.prefixes = undefined;
  }

  /**
   * Prefix overrides as this isolate knows them: at most {@link OVERRIDES_MAX_AGE_MS} old,
   * refreshed in the background after half that, so traffic waits for the registry only when an
   * isolate starts or has been idle. Throws when the registry cannot be read and nothing fresh
   * enough is cached (the caller's fail mode applies).
   */
  private async prefixOverrides(trace: Trace): Promise<PrefixOverrides> {
    const cached = this.prefixes;
    const nowMs = this.clock();
    const age = cached === undefined ? Infinity : nowMs - cached.loadedAtMs;
    if (cached !== undefined && age < OVERRIDES_REFRESH_AFTER_MS) return cached.overrides;
    // One read at a time; one older than the budget was lost with the request that started it
    // (a cancelled request's I/O never settles), so start another.
    let loading = this.loadingPrefixes;
    let own = false;
    if (loading === undefined || nowMs - loading.startedMs > this.timeoutMs) {
      own = true;
      const started = { startedMs: nowMs, load: this.loadPrefixOverrides() };
      // Kept alive past its starter's response, so a cancelled request does not strand the waiters.
      trace.background?.(started.load.catch(() => {}));
      this.loadingPrefixes = loading = started;
      void started.load.catch(() => {}).finally(() => {
        if (this.loadingPrefixes === started) this.loadingPrefixes = undefined;
      });
    }
    if (cached !== undefined && age < OVERRIDES_MAX_AGE_MS) return cached.overrides; // refreshing in the background
    // Waited for under this request's own deadline, whoever started the read.
    const { load } = loading;
    try {
      return await withDeadline(() => load, this.timeoutMs);
    } catch (error) {
      // Another request's read that did not answer in time may have been lost with that request:
      // this request gets its fail mode, but the breaker only counts reads a request made itself.
      if (!own && error instanceof BackendTimeoutError) throw new OverridesWaitError(error.message);
      throw error;
    }
  }


  private async loadPrefixOverrides(): Promise<PrefixOverrides> {
    // Stamped before the read: the list is at least this fresh.
    const loadedAtMs = this.clock();
    this.stats.backendCalls += 1;
    const records = await withDeadline((signal) => this.backend.overrides.list(signal), this.timeoutMs);
    const overrides = records.length === 0 ? PrefixOverrides.none : PrefixOverrides.from(records, this.rules, this.identity);
    this.prefixes = { loadedAtMs, overrides };
    return overrides;
  }

  private async charge(rules: readonly Rule[], entries: readonly Entry[], trace: Trace): Promise<Verdict> {
    // A client this isolate saw refused is refused again until its retry time, with no backend call.
    const cached = await this.consultDenyCache(entries);
    // Requests of the same client waiting on this one's answer may go on.
    const releaseProbes = () => cached.probes.splice(0).forEach((release) => release());
    try {
      if (cached.refusals.length > 0) return this.refusal(rules, cached.refusals, true);
      const answer = await this.ask(rules, entries, "take", releaseProbes, trace);
      if (answer.kind === "verdict") return answer.verdict;
      const outcomes = answer.outcomes;
      for (const { rule, decision } of outcomes) {
        if (rule.mode === "shadow" && decision.outcome !== "allowed") this.log({ event: "limiter.shadow_refusal", rule: rule.name, outcome: decision.outcome }, trace.requestId);
      }
      const verdict = this.verdictFor(rules, outcomes);
      if (verdict.kind === "allowed" && answer.receipts.length > 0) this.receipts.set(verdict, answer.receipts);
      // Waits count from the answer's arrival: a request queued behind others at the store got
      // its retry time later than it started (this errs by one response's transit, not by a queue).
      this.rememberEmptyBuckets(entries, outcomes, verdict.kind === "refused", this.clock());
      return verdict;
    } finally {
      releaseProbes();
    }
  }

  private async peek(rules: readonly Rule[], entries: readonly Entry[], trace: Trace): Promise<Verdict> {
    const refusals = this.cachedRefusals(entries);
    if (refusals.length > 0) return this.refusal(rules, refusals, true);
    const answer = await this.ask(rules, entries, "peek", () => {}, trace);
    return answer.kind === "verdict" ? answer.verdict : this.verdictFor(rules, answer.outcomes);
  }

  /** The refusals the deny cache holds for these charges, without waiting on or starting a probe. */
  private cachedRefusals(entries: readonly Entry[]): RuleOutcome[] {
    const nowMs = this.clock();
    return entries.flatMap(({ rule, charge }) => {
      const refusal = this.usesDenyCache(rule, charge) ? this.denyCache.peek(denyCacheKey(charge), nowMs) : undefined;
      return refusal === undefined ? [] : [cachedOutcome(rule, refusal, nowMs)];
    });
  }

  /** One backend call under the breaker and the deadline; a failure becomes the fail mode's verdict. */
  private async ask(
    rules: readonly Rule[],
    entries: readonly Entry[],
    operation: "take" | "peek",
    releaseProbes: () => void,
    trace: Trace,
  ): Promise<{ kind: "outcomes"; outcomes: RuleOutcome[]; receipts: Receipt[] } | { kind: "verdict"; verdict: Verdict }> {
    const result = await this.storeCall(async (reached) => {
      const prefixes = await this.prefixOverrides(trace);
      const charges = entries.map(({ rule, charge, values }) => {
        const override = values === undefined ? undefined : prefixes.policyFor(rule, values);
        return override === undefined ? charge : { ...charge, policy: overridden(charge.policy, override) };
      });
      this.stats.backendCalls += 1;
      reached();
      const answers = await withDeadline((signal) => this.backend[operation](charges, signal), this.timeoutMs);
      if (answers.length !== entries.length) throw new Error(`backend answered ${answers.length} decisions for ${entries.length} charges`);
      return { charges, answers };
    }, trace, this.failureScope(entries.map(({ charge }) => charge)), releaseProbes); // waiting requests go on before a fail-open one does
    if (result.kind === "misconfigured") return { kind: "verdict", verdict: result.verdict };
    if (result.kind === "unreachable") return { kind: "verdict", verdict: this.failMode(rules, entries, operation, result.reason, trace) };
    const { charges, answers } = result.value;
    // What a `count` rule may give back once the response is known: the charge as made and the state it wrote.
    const receipts = entries.flatMap(({ rule }, i) => {
      const [charge, answer] = [charges[i], answers[i]];
      return rule.count !== undefined && charge !== undefined && answer?.charged ? [{ rule, refund: { charge, charged: answer.charged } }] : [];
    });
    this.rememberOverrides(entries, charges, answers);
    return { kind: "outcomes", outcomes: zipOutcomes(entries, answers), receipts };
  }

  /**
   * One call to the store under the circuit breaker, recorded in the trace: skipped while the
   * breaker is open (the store is probed in the background), a misconfigured store answered with
   * its verdict, any other failure counted against the breaker (except a wait on another
   * request's read) and reported `unreachable` with its reason, for the caller's fail mode.
   * `onFailure` runs first whenever the call does not answer. `client` scopes the breaker (see
   * {@link Limiter.failureScope}): a failure after `run` called `reached` (the call went to the
   * client's own object) counts against that client's circuit, one before it against the store's.
   */
  private async storeCall<T>(
    run: (reached: () => void) => Promise<T>,
    trace: Trace,
    client: string | undefined,
    onFailure: () => void = () => {},
  ): Promise<StoreResult<T>> {
    if (!this.breaker.allowCall(this.clock(), client)) {
      onFailure();
      this.probeInBackground(trace);
      trace.backendCall = { result: "breaker_open", latencyMs: 0 };
      return { kind: "unreachable", reason: "circuit open: backend skipped during cool-down" };
    }
    const started = performance.now();
    const call = (result: BackendCall["result"]) => (trace.backendCall = { result, latencyMs: performance.now() - started });
    let reachedClient = false;
    try {
      const value = await run(() => (reachedClient = true));
      this.breaker.recordSuccess(client);
      call("ok");
      return { kind: "answered", value };
    } catch (error) {
      onFailure();
      if (error instanceof BackendConfigError) {
        call("misconfigured");
        this.breaker.recordSuccess(client); // the backend answered: it is misconfigured, not down
        this.log({ event: "limiter.backend_config_error", variable: error.variable, reason: error.message }, trace.requestId);
        return { kind: "misconfigured", verdict: { kind: "backend-misconfigured", variable: error.variable, message: error.message } };
      }
      call(error instanceof BackendTimeoutError ? "timeout" : "error");
      if (!(error instanceof OverridesWaitError)) trace.breakerOpened = this.breaker.recordFailure(this.clock(), reachedClient ? client : undefined);
      if (trace.breakerOpened) this.log({ event: "limiter.breaker_opened", backend: this.backend.name }, trace.requestId);
      return { kind: "unreachable", reason: error instanceof Error ? `${error.name}: ${error.message}` : String(error) };
    }
  }

  /**
   * The circuit a call for these buckets or slots counts against: where each client is an object
   * of its own (`failureScope: "client"`), the clients it addresses; else the store's.
   */
  private failureScope(refs: readonly BucketRef[]): string | undefined {
    return this.backend.failureScope === "client" ? refs.map(({ clientKey }) => clientKey).join("|") : undefined;
  }

  /**
   * While the breaker is open: a ping of the store, off the request path, at most every
   * {@link BACKGROUND_PROBE_MS}; its success closes the breaker, so the next request asks the
   * store again (rather than after the whole cool-down).
   */
  private probeInBackground(trace: Trace): void {
    const nowMs = this.clock();
    if (trace.background === undefined || this.probing || nowMs - this.lastProbeMs < BACKGROUND_PROBE_MS) return;
    this.probing = true;
    this.lastProbeMs = nowMs;
    const probe = withDeadline((signal) => this.backend.ping(signal), this.timeoutMs)
      .then(() => {
        if (this.breaker.state(this.clock()) !== "closed") this.log({ event: "limiter.breaker_closed", backend: this.backend.name }, trace.requestId);
        this.breaker.recordSuccess();
      })
      .catch(() => {
        // Still down: the breaker stays open; the next request after the interval probes again.
      })
      .finally(() => (this.probing = false));
    trace.background(probe);
  }

  private verdictFor(rules: readonly Rule[], outcomes: readonly RuleOutcome[], degraded = false): Verdict {
    const impossible = outcomes.find(({ rule, decision }) => rule.mode === "enforce" && decision.outcome === "cost_exceeds_capacity");
    if (impossible !== undefined) return { kind: "cost-exceeds-capacity", rule: impossible.rule };
    const refused = outcomes.some(({ rule, decision }) => rule.mode === "enforce" && decision.outcome === "denied");
    if (refused) return this.refusal(rules, outcomes, false, degraded);
    return { kind: "allowed", outcomes, headers: this.headersFor(rules, outcomes, degraded), degraded };
  }

  /** The rate-limit headers, and on a local decision the header that says so. */
  private headersFor(rules: readonly Rule[], outcomes: readonly RuleOutcome[], degraded: boolean) {
    const headers = rateLimitHeaders(rules, outcomes, this.headerMode);
    return degraded ? [...headers, DEGRADED_HEADER] : headers;
  }

  private refusal(rules: readonly Rule[], outcomes: readonly RuleOutcome[], cached: boolean, degraded = false): Verdict {
    const violated = outcomes.filter(({ rule, decision }) => rule.mode === "enforce" && decision.outcome === "denied");
    // Retry-After: until every refusing rule would allow.
    const retryAfterMs = Math.max(0, ...violated.map(({ decision }) => (decision.outcome === "denied" ? decision.retryAfterMs : 0)));
    // The most restrictive refusal leads the list the 429 names.
    const first = mostRestrictive(violated);
    const ordered = first === undefined ? violated : [first, ...violated.filter((o) => o !== first)];
    return {
      kind: "refused",
      outcomes,
      violated: ordered.map(({ rule }) => rule),
      retryAfterMs,
      headers: this.headersFor(rules, outcomes, degraded),
      cached,
      degraded,
    };
  }

  /**
   * Backend unreachable: each rule's fail mode decides. One closed enforced rule refuses the
   * request; else rules that fail `local` decide on this isolate's own buckets holding
   * `localFraction` of their limits; else the request goes on.
   */
  private failMode(rules: readonly Rule[], entries: readonly Entry[], operation: "take" | "peek", reason: string, trace: Trace): Verdict {
    const closed = rules.find((rule) => rule.mode === "enforce" && rule.failMode === "closed");
    const local = entries.filter(({ rule }) => rule.failMode === "local");
    const failMode = closed ? "closed" : local.length > 0 ? "local" : "open";
    this.log({ event: "limiter.backend_failure", backend: this.backend.name, failMode, reason }, trace.requestId);
    if (closed !== undefined) return { kind: "fail-closed", rule: closed, backend: this.backend.name, reason };
    if (local.length === 0) return { kind: "fail-open", rules, reason };
    return this.decideLocally(local, operation);
  }

  /**
   * The degraded decision: the `local` rules on buckets in this isolate's memory, each a
   * `localFraction` of the rule (capacity rounded down, at least 1; refill slowed to match). With
   * k isolates serving a client, the client gets at most k × the fraction during the outage.
   * Local buckets are kept until they are full again, whatever other clients do; a client the
   * isolate has no room to track (every one of its entries is live) is treated as drained.
   */
  private decideLocally(entries: readonly Entry[], operation: "take" | "peek"): Verdict {
    const nowMs = this.clock();
    const keyed = entries.map((entry) => {
      const key = `${entry.charge.bucket}|${entry.charge.clientKey}`;
      // The policy in force for this client as last known: an exact override the store answered
      // with, else a cached prefix override, else the rule's.
      const prefix = entry.values === undefined ? undefined : this.prefixes?.overrides.policyFor(entry.rule, entry.values);
      const inForce = this.knownOverride(key) ?? (prefix === undefined ? entry.charge.policy : overridden(entry.charge.policy, prefix));
      const policy = localPolicy(inForce, this.localFraction, entry.charge.cost);
      const tracked = this.localBuckets.tracks(key, nowMs);
      const drained: BucketState = { level: 0, unitsPerToken: policy.refillPeriodMs, updatedAtMs: nowMs };
      return { ...entry, key, policy, tracked, state: tracked ? this.localBuckets.get(key, nowMs) : drained };
    });
    const { results } = takeBuckets(
      keyed.map((e) => ({ ...e, cost: e.charge.cost, enforced: e.charge.enforced })),
      nowMs,
    );
    if (operation === "take") {
      for (const { entry, next, expiresInMs } of results) if (next !== undefined && entry.tracked) this.localBuckets.set(entry.key, next, nowMs + expiresInMs, nowMs);
    }
    const outcomes = results.map(({ entry, decision }) => ({ rule: entry.rule, policy: effectivePolicy(entry.rule, entry.policy, entry.charge.cost), decision }));
    return this.verdictFor(entries.map((e) => e.rule), outcomes, true);
  }

  /** Notes which `local` rules' buckets the store answered under an exact override (see `knownOverrides`). */
  private rememberOverrides(entries: readonly Entry[], charges: readonly BucketCharge[], answers: readonly BucketAnswer[]): void {
    entries.forEach(({ rule }, i) => {
      const [charge, answer] = [charges[i], answers[i]];
      if (rule.failMode !== "local" || charge === undefined || answer === undefined) return;
      const key = `${charge.bucket}|${charge.clientKey}`;
      const { capacity, refillTokens, refillPeriodMs } = answer.policy;
      const overridden = capacity !== charge.policy.capacity || refillTokens !== charge.policy.refillTokens || refillPeriodMs !== charge.policy.refillPeriodMs;
      if (!overridden) {
        this.knownOverrides.delete(key);
        return;
      }
      this.knownOverrides.delete(key);
      this.knownOverrides.set(key, { ...charge.policy, capacity, refillTokens, refillPeriodMs });
      for (const oldest of this.knownOverrides.keys()) {
        if (this.knownOverrides.size <= MAX_LOCAL_ENTRIES) break;
        this.knownOverrides.delete(oldest);
      }
    });
  }

  /** The exact override last seen for a bucket; a read makes it the newest, so a client in use keeps its entry. */
  private knownOverride(key: string): BucketPolicy | undefined {
    const policy = this.knownOverrides.get(key);
    if (policy === undefined) return undefined;
    this.knownOverrides.delete(key);
    this.knownOverrides.set(key, policy);
    return policy;
  }

  /**
   * The deny cache knows waits for a rule's own cost; a check with another cost asks the store,
   * and so does a `count` rule (refunds refill its bucket sooner than any remembered wait).
   */
  private usesDenyCache(rule: Rule, charge: BucketCharge): boolean {
    return rule.mode === "enforce" && charge.cost === rule.policy.cost && rule.count === undefined;
  }

  /**
   * Whether an allowed decision that left the bucket short may refuse the next request from the
   * cache. Not under `blockFor`: the refusal that starts a block must reach the store, which
   * writes the block (its refusal, with the block's wait, is then cached like any other).
   */
  private predictsEmptyBucket(policy: BucketPolicy): boolean {
    return (policy.blockForMs ?? 0) === 0;
  }

  /**
   * Tells the deny cache which of this client's buckets cannot serve another request yet: every
   * refusing one until its retry time and, on an allowed request, every bucket it left with
   * fewer than `cost` tokens, until they refill (so a flood after the retry time costs one
   * backend call per token, not one per waiting request).
   */
  private rememberEmptyBuckets(entries: readonly Entry[], outcomes: readonly RuleOutcome[], refused: boolean, nowMs: number): void {
    outcomes.forEach(({ rule, policy, decision }, i) => {
      const charge = entries[i]?.charge;
      if (charge === undefined || !this.usesDenyCache(rule, charge)) return;
      const waitMs =
        decision.outcome === "denied"
          ? decision.retryAfterMs
          : decision.outcome === "allowed" && !refused && this.predictsEmptyBucket(charge.policy)
            ? waitForTokensMs(policy, charge.cost, decision.resetMs)
            : 0;
      if (waitMs > 0) {
        this.denyCache.remember(denyCacheKey(charge), { retryAtMs: nowMs + waitMs, resetAtMs: nowMs + decision.resetMs, remaining: decision.remaining, policy });
      }
    });
  }

  /**
   * Checks a request's enforced charges against the deny cache. Refusals that still hold come
   * back as outcomes. Where a refusal has just expired and another request of the same client is
   * already asking the backend, this one waits for that answer (at most the backend budget) and
   * looks again; where none is, this request asks, and must call the returned `probes` when done.
   */
  private async consultDenyCache(entries: readonly Entry[]): Promise<{ refusals: RuleOutcome[]; probes: (() => void)[] }> {
    const refusals: RuleOutcome[] = [];
    const probes: (() => void)[] = [];
    for (const { rule, charge } of entries) {
      if (!this.usesDenyCache(rule, charge)) continue;
      const key = denyCacheKey(charge);
      let answer = this.denyCache.lookup(key, this.clock());
      // Waiting is real time, whatever clock the cache runs on.
      const waitUntil = Date.now() + this.timeoutMs;
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
        answer = this.denyCache.lookup(key, this.clock());
      }
      if (answer.kind === "probe") probes.push(answer.release);
      if (answer.kind === "refused") refusals.push(cachedOutcome(rule, answer.refusal, this.clock()));
    }
    return { refusals, probes };
  }
}

function claimFor(rule: ConcurrencyRule, clientKey: string): SlotClaim {
  return { clientKey, bucket: rule.name, id: crypto.randomUUID(), limit: rule.limit, leaseMs: rule.leaseMs, enforced: rule.mode === "enforce" };
}

function chargeFor(rule: Rule, clientKey: string, cost: number | undefined): BucketCharge {
  return { clientKey, bucket: rule.name, policy: rule.policy, cost: cost ?? rule.policy.cost, enforced: rule.mode === "enforce" };
}

/**
 * The rule's policy under an override: capacity and refill are the override's; the block after a
 * refusal (`blockForMs`) stays the rule's, as an override never lifts it.
 */
function overridden(policy: BucketPolicy, override: BucketPolicy): BucketPolicy {
  const { capacity, refillTokens, refillPeriodMs } = override;
  return { ...policy, capacity, refillTokens, refillPeriodMs };
}

/** The policy a decision was made under, named for headers: the rule's, or an override's. */
function effectivePolicy(rule: Rule, policy: BucketPolicy, cost: number): NamedPolicy {
  const { capacity, refillTokens, refillPeriodMs } = policy;
  return { name: rule.name, capacity, refillTokens, refillPeriodMs, cost };
}

function zipOutcomes(entries: readonly Entry[], answers: readonly BucketAnswer[]): RuleOutcome[] {
  return entries.flatMap(({ rule, charge }, i) => {
    const answer = answers[i];
    return answer === undefined ? [] : [{ rule, policy: effectivePolicy(rule, answer.policy, charge.cost), decision: answer.decision }];
  });
}

function cachedOutcome(rule: Rule, refusal: CachedRefusal, nowMs: number): RuleOutcome {
  return {
    rule,
    policy: effectivePolicy(rule, refusal.policy, rule.policy.cost),
    decision: { outcome: "denied", remaining: refusal.remaining, retryAfterMs: refusal.retryAtMs - nowMs, resetMs: refusal.resetAtMs - nowMs },
  };
}

function denyCacheKey(ref: BucketRef): string {
  return `${ref.bucket}|${ref.clientKey}`;
}

/** Waiting for another request's read of the override registry took the whole budget. */
class OverridesWaitError extends BackendTimeoutError {}

function logToConsole(event: LimiterEvent, requestId: string | undefined): void {
  const line = JSON.stringify({ ...event, ...(requestId !== undefined && { requestId }) });
  if (event.event === "limiter.shadow_refusal") console.log(line);
  else console.error(line);
}
