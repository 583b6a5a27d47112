import type { DecisionEvent } from "../core/limiter";

/**
 * Metrics as one isolate counts them: every decision (handed over by the limiter's
 * `onDecision`) and every origin response, as deltas since the last flush. The gateway flushes
 * the deltas to one aggregating object, so totals are exact across isolates. Counter keys are
 * Prometheus series as they will be written (`name{label="value"}`), so adding deltas is adding
 * numbers.
 */

/** Upper bounds (seconds) of the latency histograms' buckets; the last bucket is +Inf. */
export const LATENCY_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

/** A latency histogram: counts per bucket (cumulative only when written out), sum and count. */
export interface Histogram {
  /** One count per bucket of {@link LATENCY_BUCKETS_S}, plus one for +Inf; not cumulative. */
  readonly buckets: number[];
  sum: number;
  count: number;
}

/** What one flush carries: counts since the previous one. JSON-safe. */
export interface MetricsDelta {
  readonly counters: Record<string, number>;
  readonly histograms: Record<string, Histogram>;
  /** HyperLogLog registers of the hashed clients seen (distinct-client estimate). */
  readonly clients: number[];
  /** Refusals per (rule, hashed client) in this delta; only the most frequent are kept. */
  readonly refusedClients: Record<string, number>;
}

/** The outcome a decision counts as, for the whole request and per rule. */
export type RequestOutcome = "allowed" | "refused" | "fail_open" | "fail_closed" | "missing_key" | "invalid" | "misconfigured" | "unmatched";

const HLL_BITS = 10;
const HLL_REGISTERS = 1 << HLL_BITS;
/** Refused clients kept per delta: enough for a top-10 list, bounded memory under a botnet. */
const MAX_REFUSED_CLIENTS = 200;

/**
 * Counts decisions and origin responses in memory until {@link MetricsRecorder.take} hands the
 * deltas over. Recording is a few map updates: it never waits and never throws.
 *
 * @example
 * const recorder = new MetricsRecorder();
 * const limiter = new Limiter({ backend, rules, onDecision: (event) => recorder.recordDecision(event) });
 * // later, off the request path:
 * const delta = recorder.take(); if (delta) await sink.add(delta);
 */
export class MetricsRecorder {
  private delta = emptyDelta();
  private pending = false;
  /** The client last added to this delta's sketch. */
  private lastSketched: string | undefined;
  /** The last refused (rule, client) and its key in `refusedClients` (one string, its hash computed once). */
  private lastRefused: { readonly rule: string; readonly clientKey: string; readonly key: string } | undefined;

  /** Counts one decision of the limiter. */
  recordDecision(event: DecisionEvent): void {
    const { verdict, mode } = event;
    if (mode === "peek") {
      this.count(`sluice_peeks_total`);
      return;
    }
    this.count(SERIES.requests(requestOutcome(event)));
    this.observe("sluice_decision_duration_seconds", event.durationMs / 1000);
    for (const [rule, outcome] of ruleOutcomes(event)) this.count(SERIES.ruleDecisions(rule, outcome));
    if (verdict.kind === "allowed" || verdict.kind === "refused") {
      const source = verdict.kind === "refused" && verdict.cached ? "deny_cache" : "backend";
      for (const { rule } of verdict.outcomes) this.count(SERIES.ruleSources(rule.name, source));
    }
    if (verdict.kind === "allowed") {
      for (const { rule, policy, decision } of verdict.outcomes) {
        if (decision.outcome === "allowed") this.count(SERIES.tokensCharged(rule.name), policy.cost);
      }
      // A rule's `queue` charged the request ahead of its refill: it waits this long before it goes on.
      if (verdict.waitMs !== undefined) {
        this.count("sluice_queued_requests_total");
        this.observe("sluice_queue_wait_seconds", verdict.waitMs / 1000);
      }
    }
    if (verdict.kind === "concurrency-refused") {
      for (const { rule, clientKey } of event.clients) if (rule === verdict.rule.name) this.refused(rule, clientKey);
    }
    if (verdict.kind === "refused") {
      for (const { rule, clientKey } of event.clients) if (verdict.violated.some((violated) => violated.name === rule)) this.refused(rule, clientKey);
    }
    if (event.backendCall !== undefined) {
      this.count(SERIES.backendCalls(event.backendCall.result));
      if (event.backendCall.result !== "breaker_open") this.observe("sluice_backend_call_duration_seconds", event.backendCall.latencyMs / 1000);
    }
    if (event.breakerOpened) this.count("sluice_breaker_openings_total");
    for (const { clientKey } of event.clients) {
      // A flood repeats one client: its registers are set already (until the delta is taken).
      if (clientKey === this.lastSketched) continue;
      addToSketch(this.delta.clients, clientKey);
      this.lastSketched = clientKey;
    }
  }

  /** Counts one response from the origin (status, and the time until its headers). */
  recordOrigin(status: number, durationMs: number): void {
    this.count(`sluice_origin_responses_total{class="${Math.floor(status / 100)}xx"}`);
    this.observe("sluice_origin_duration_seconds", durationMs / 1000);
  }

  /** Whether anything was counted since the last {@link take}. */
  get hasPending(): boolean {
    return this.pending;
  }

  /** The deltas since the last call, and a fresh start; undefined when nothing was counted. */
  take(): MetricsDelta | undefined {
    if (!this.pending) return undefined;
    const delta = this.delta;
    this.delta = emptyDelta();
    this.pending = false;
    this.lastSketched = undefined;
    return delta;
  }

  /** Puts back deltas whose flush failed, so they go with the next one. */
  restore(delta: MetricsDelta): void {
    mergeDelta(this.delta, delta);
    this.pending = true;
  }

  private count(series: string, by = 1): void {
    this.delta.counters[series] = (this.delta.counters[series] ?? 0) + by;
    this.pending = true;
  }

  private observe(name: string, seconds: number): void {
    const histogram = (this.delta.histograms[name] ??= emptyHistogram());
    observe(histogram, seconds);
    this.pending = true;
  }

  private refused(rule: string, clientKey: string): void {
    let last = this.lastRefused;
    if (last === undefined || last.rule !== rule || last.clientKey !== clientKey) this.lastRefused = last = { rule, clientKey, key: `${rule} ${clientKey}` };
    const { key } = last;
    const counts = this.delta.refusedClients;
    if (counts[key] === undefined && Object.keys(counts).length >= MAX_REFUSED_CLIENTS) return;
    counts[key] = (counts[key] ?? 0) + 1;
  }
}

/**
 * Series names, each built once per label values and then reused: a flood counts the same few
 * series on every request, and a reused string keeps its hash (no name built and hashed per request).
 * Label values are bounded: rule names, outcomes, sources, call results.
 */
const SERIES = {
  requests: once((outcome) => `sluice_requests_total{outcome="${outcome}"}`),
  ruleDecisions: twice((rule, outcome) => `sluice_rule_decisions_total{rule="${rule}",outcome="${outcome}"}`),
  ruleSources: twice((rule, source) => `sluice_rule_decision_sources_total{rule="${rule}",source="${source}"}`),
  tokensCharged: once((rule) => `sluice_tokens_charged_total{rule="${rule}"}`),
  backendCalls: once((result) => `sluice_backend_calls_total{result="${result}"}`),
};

function once(build: (value: string) => string): (value: string) => string {
  const names = new Map<string, string>();
  return (value) => {
    let name = names.get(value);
    if (name === undefined) names.set(value, (name = build(value)));
    return name;
  };
}

function twice(build: (first: string, second: string) => string): (first: string, second: string) => string {
  const byFirst = new Map<string, (second: string) => string>();
  return (first, second) => {
    let names = byFirst.get(first);
    if (names === undefined) byFirst.set(first, (names = once((value) => build(first, value))));
    return names(second);
  };
}

/** A delta with nothing in it. */
export function emptyDelta(): MetricsDelta {
  return { counters: {}, histograms: {}, clients: new Array<number>(HLL_REGISTERS).fill(0), refusedClients: {} };
}

export function emptyHistogram(): Histogram {
  return { buckets: new Array<number>(LATENCY_BUCKETS_S.length + 1).fill(0), sum: 0, count: 0 };
}

/**
 * Keeps the `MAX_REFUSED_CLIENTS` most refused clients of a delta (a store keeps deltas: they must
 * not grow with every client ever refused).
 *
 * @example
 * trimRefusedClients(slot.delta);
 */
export function trimRefusedClients(delta: MetricsDelta): void {
  const entries = Object.entries(delta.refusedClients);
  if (entries.length <= MAX_REFUSED_CLIENTS) return;
  const kept = entries.sort(([, a], [, b]) => b - a).slice(0, MAX_REFUSED_CLIENTS);
  for (const key of Object.keys(delta.refusedClients)) delete delta.refusedClients[key];
  for (const [key, count] of kept) delta.refusedClients[key] = count;
}

/**
 * Adds `delta` into `into`: counters and histograms summed, client sketches merged (max per
 * register), refused clients summed.
 *
 * @example
 * const total = emptyDelta(); mergeDelta(total, fromIsolateA); mergeDelta(total, fromIsolateB);
 */
export function mergeDelta(into: MetricsDelta, delta: MetricsDelta): void {
  for (const [series, value] of Object.entries(delta.counters)) into.counters[series] = (into.counters[series] ?? 0) + value;
  for (const [name, histogram] of Object.entries(delta.histograms)) {
    const target = (into.histograms[name] ??= emptyHistogram());
    for (const [i, count] of histogram.buckets.entries()) target.buckets[i] = (target.buckets[i] ?? 0) + count;
    target.sum += histogram.sum;
    target.count += histogram.count;
  }
  for (const [i, rank] of delta.clients.entries()) into.clients[i] = Math.max(into.clients[i] ?? 0, rank);
  for (const [key, count] of Object.entries(delta.refusedClients)) into.refusedClients[key] = (into.refusedClients[key] ?? 0) + count;
}

/**
 * The q-quantile (0–1) of a histogram in seconds, interpolated within its bucket as Prometheus's
 * `histogram_quantile` does; undefined when empty.
 *
 * @example
 * quantile(histogram, 0.99); // 0.0123
 */
export function quantile(histogram: Histogram, q: number): number | undefined {
  if (histogram.count === 0) return undefined;
  const rank = q * histogram.count;
  let seen = 0;
  for (let i = 0; i < histogram.buckets.length; i++) {
    const inBucket = histogram.buckets[i] ?? 0;
    if (seen + inBucket >= rank && inBucket > 0) {
      const lower = i === 0 ? 0 : (LATENCY_BUCKETS_S[i - 1] ?? 0);
      const upper = LATENCY_BUCKETS_S[i] ?? lower; // +Inf: the last finite bound
      return lower + (upper - lower) * ((rank - seen) / inBucket);
    }
    seen += inBucket;
  }
  return LATENCY_BUCKETS_S[LATENCY_BUCKETS_S.length - 1];
}

/**
 * Distinct clients in a HyperLogLog sketch (1,024 registers: about 3 % standard error).
 *
 * @example
 * estimateClients(delta.clients); // 1187
 */
export function estimateClients(registers: readonly number[]): number {
  const m = registers.length;
  let sum = 0;
  let zeros = 0;
  for (const rank of registers) {
    sum += 2 ** -rank;
    if (rank === 0) zeros += 1;
  }
  const raw = ((0.7213 / (1 + 1.079 / m)) * m * m) / sum;
  // Small ranges: linear counting is the better estimate.
  return Math.round(raw <= 2.5 * m && zeros > 0 ? m * Math.log(m / zeros) : raw);
}

function observe(histogram: Histogram, seconds: number): void {
  let slot = 0;
  while (slot < LATENCY_BUCKETS_S.length && seconds > (LATENCY_BUCKETS_S[slot] ?? Number.POSITIVE_INFINITY)) slot += 1;
  histogram.buckets[slot] = (histogram.buckets[slot] ?? 0) + 1;
  histogram.sum += seconds;
  histogram.count += 1;
}

function addToSketch(registers: number[], key: string): void {
  const [high, low] = [fnv1a(key, 0x811c9dc5), fnv1a(key, 0x9e3779b9)];
  const index = high >>> (32 - HLL_BITS);
  const rank = Math.clz32(low) + 1;
  if (rank > (registers[index] ?? 0)) registers[index] = rank;
}

/** FNV-1a, then murmur3's finaliser so that every output bit depends on every input bit. */
function fnv1a(text: string, seed: number): number {
  let hash = seed >>> 0;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193) >>> 0;
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  return (hash ^ (hash >>> 16)) >>> 0;
}

/** The whole request's outcome. */
function requestOutcome({ verdict }: DecisionEvent): RequestOutcome {
  switch (verdict.kind) {
    case "allowed":
    case "refused":
    case "unmatched":
      return verdict.kind;
    case "concurrency-refused":
      return "refused";
    case "fail-open":
      return "fail_open";
    case "fail-closed":
      return "fail_closed";
    case "missing-key":
      return "missing_key";
    case "invalid-subject":
      return "invalid";
    case "cost-exceeds-capacity":
    case "backend-misconfigured":
      return "misconfigured";
  }
}

/**
 * Each applying rule's outcome: `allowed` (charged), `refused` (it refused), `shadow_refused`
 * (a shadow rule that would have), `not_charged` (it allowed, another rule refused), or the
 * request's failure outcome.
 */
function ruleOutcomes({ verdict, clients }: DecisionEvent): [string, string][] {
  switch (verdict.kind) {
    case "allowed":
    case "refused": {
      const violated = verdict.kind === "refused" ? verdict.violated : [];
      return verdict.outcomes.map(({ rule, decision }): [string, string] => {
        if (violated.some((refusing) => refusing.name === rule.name)) return [rule.name, "refused"];
        if (decision.outcome !== "allowed" && rule.mode === "shadow") return [rule.name, "shadow_refused"];
        return [rule.name, verdict.kind === "refused" ? "not_charged" : "allowed"];
      });
    }
    case "fail-open":
      return verdict.rules.map((rule) => [rule.name, "fail_open"]);
    case "fail-closed":
      return clients.map(({ rule }) => [rule, "fail_closed"]);
    case "concurrency-refused":
      return [[verdict.rule.name, "refused"]];
    case "missing-key":
      return [[verdict.rule.name, "missing_key"]];
    case "cost-exceeds-capacity":
      return [[verdict.rule.name, "misconfigured"]];
    default:
      return [];
  }
}
