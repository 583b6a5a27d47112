import { isObject } from "./units";
import { DEFAULTS } from "./defaults";
import { describeKey, keySpec, type KeyPart, type KeySpec } from "./key-parts";
import type { NamedPolicy } from "./policy";
import { gcd } from "./rate";
import { parseMatch, type RouteMatch } from "./rule-match";
import { CALENDAR_NOMINAL_MS, type CalendarPeriod, type WeekStart } from "./algorithms/calendar";
import { MAX_SAFE_UNITS } from "./token-bucket";
import { isInteger, parseCalendarRule, parseCost, parseCount, parseDuration, parseKeyParts, parseQueue, parseRuleRate, parseWindowRule } from "./rule-fields";

export { ruleMatches, type MatchableRequest, type RouteMatch } from "./rule-match";

/** What a backend failure does to a request a rule covers: allow it, refuse with 503, or decide on the isolate's local share of the limit. */
export type FailMode = "open" | "closed" | "local";

/** How a rule counts: a token bucket (the default), a fixed window, an exact sliding window or a calendar quota. */
export type RuleAlgorithm = "token-bucket" | "fixed-window" | "sliding-window" | "calendar";

/** Whether a rule refuses (`enforce`) or is charged and reported only (`shadow`). */
export type RuleMode = "enforce" | "shadow";

/**
 * A rule as people write it, in `LIMITER_RULES` (JSON) and in code alike.
 *
 * @example
 * const rule: RuleSpec = { name: "api", key: "header:x-api-key", capacity: 100, rate: "100/1m" };
 */
export interface RuleSpec {
  /** Unique, 1–64 of `A-Z a-z 0-9 _ . -`; names the bucket and appears in headers. */
  readonly name: string;
  /** Which requests it covers; every request when left out. */
  readonly match?: {
    readonly path?: string;
    readonly methods?: readonly string[];
    /** Header values the request must carry: an exact value, or `*` for "present" (e.g. a plan an auth layer set). */
    readonly headers?: Readonly<Record<string, string>>;
    /** Hosts the request must be for (`api.example.com`, or `*.example.com` for its subdomains). */
    readonly hosts?: readonly string[];
  };
  /** Whose bucket: one key part or several combined. Default `ip`. */
  readonly key?: KeySpec | readonly KeySpec[];
  /**
   * How the limit is counted: `token-bucket` (the default: capacity and rate), `fixed-window` (at
   * most `limit` per `window` aligned to the Unix epoch) or `sliding-window` (at most `limit` in
   * every trailing `window`, exact; limit ≤ 1000) or `calendar` (at most `limit` per calendar
   * `period` in `timeZone`).
   */
  readonly algorithm?: RuleAlgorithm;
  /** A window rule's limit: units per window, integer 1–1000000000 (sliding: 1–1000). Only with `window`; a calendar rule's per `period`. */
  readonly limit?: number;
  /** A window rule's window, `"1s"` to `"30d"` (ms, s, m, h, d). Only with `limit`. */
  readonly window?: string;
  /** A calendar rule's period: `day`, `week` or `month`, resetting at local midnight of its first day. */
  readonly period?: CalendarPeriod;
  /** A calendar rule's IANA time zone (`"Europe/Berlin"`). Default `UTC`. */
  readonly timeZone?: string;
  /** A weekly calendar rule's first day: `monday` (the default) or `sunday`. */
  readonly weekStart?: WeekStart;
  /** Bucket size (largest burst), integer 1–1000000000. Not with `concurrency`. */
  readonly capacity?: number;
  /** Tokens per second (`10`, `0.5`), or `"N/period"` with period ms, s, m, h, d (`"100/1m"`). Not with `concurrency`. */
  readonly rate?: number | string;
  /** Tokens one request costs, ≤ capacity. Default 1. */
  readonly cost?: number;
  /** Default `enforce`. */
  readonly mode?: RuleMode;
  /** Default: the limiter's fail mode (`LIMITER_FAIL_MODE`, else `open`). */
  readonly failMode?: FailMode;
  /** After this rule refuses a client, refuse all its requests for this long: `"10m"`, `"30s"`, `"1h"` (ms, s, m, h, d). */
  readonly blockFor?: string;
  /** Charge only responses with these statuses (`401`) or classes (`"5xx"`); others are given back. Default: every response. */
  readonly count?: readonly (number | string)[];
  /**
   * Token-bucket and sliding-window rules, not with `blockFor`: a request the rule would admit within
   * `maxWait` (`"2s"`, 1 ms–60 s) is charged now and waits that long (a timer), then proceeds;
   * one that would wait longer is refused at once with the real wait.
   */
  readonly queue?: { readonly maxWait: string };
  /**
   * Makes this a concurrency rule instead of a bucket: at most this many requests of one client
   * in flight at the origin at once (integer 1–100000). Takes no capacity, rate, cost, blockFor or count.
   */
  readonly concurrency?: number;
  /** A concurrency rule's lease: how long a slot an isolate lost stays taken (`"30s"`, 1 s–1 h). Default 30 s. */
  readonly lease?: string;
}

/** A checked bucket rule, ready to apply: what {@link compileRules} makes of a {@link RuleSpec} with a capacity and rate. */
export interface Rule {
  readonly name: string;
  readonly match: RouteMatch;
  readonly key: readonly KeyPart[];
  /** `describeKey(key)`: rules with the same key parts name the same client. */
  readonly keyName: string;
  readonly policy: NamedPolicy;
  readonly mode: RuleMode;
  readonly failMode: FailMode;
  /** Statuses (`"401"`) and classes (`"5xx"`) that are charged; undefined: every response. */
  readonly count: readonly string[] | undefined;
  /** The rule as written, with every default filled in. */
  readonly spec: RuleSpec;
}

/** A checked concurrency rule: at most `limit` requests of one client in flight at once. */
export interface ConcurrencyRule {
  readonly name: string;
  readonly match: RouteMatch;
  readonly key: readonly KeyPart[];
  readonly keyName: string;
  readonly limit: number;
  /** How long a slot lasts unless renewed; a slot an isolate lost frees itself after this. */
  readonly leaseMs: number;
  readonly mode: RuleMode;
  readonly failMode: FailMode;
  readonly spec: RuleSpec;
}

/** A rule that did not parse: which rule (name or position), which field, and why. */
export interface RuleError {
  readonly rule: string;
  readonly field: string;
  readonly message: string;
}

/** Bucket rules and concurrency rules, each in the order written; names are unique across both. */
export type RulesResult = { readonly ok: true; readonly rules: Rule[]; readonly concurrency: ConcurrencyRule[] } | { readonly ok: false; readonly errors: RuleError[] };

/** Thrown where rules are given in code and do not check: the message lists every error. */
export class InvalidRulesError extends Error {
  override readonly name = "InvalidRulesError";
  constructor(readonly errors: readonly RuleError[]) {
    super(`invalid rules: ${errors.map(describeRuleError).join("; ")}`);
  }
}

const RULE_FIELDS = [
  "name",
  "match",
  "key",
  "algorithm",
  "capacity",
  "rate",
  "limit",
  "window",
  "period",
  "timeZone",
  "weekStart",
  "cost",
  "mode",
  "failMode",
  "blockFor",
  "count",
  "queue",
  "concurrency",
  "lease",
] as const;
/** Fields only a bucket rule has, and only a concurrency rule has. */
const BUCKET_FIELDS = ["algorithm", "capacity", "rate", "limit", "window", "period", "timeZone", "weekStart", "cost", "blockFor", "count", "queue"] as const;
const ALGORITHMS: readonly RuleAlgorithm[] = ["token-bucket", "fixed-window", "sliding-window", "calendar"];
/** Fields only a calendar rule has. */
const CALENDAR_FIELDS = ["period", "timeZone", "weekStart"] as const;
const CONCURRENCY_FIELDS = ["lease"] as const;
const MIN_LEASE_MS = 1_000;
const MAX_LEASE_MS = 3_600_000;
const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * Checks a list of rules (parsed JSON or code) and compiles them. Every problem is reported
 * with the rule and the field it is in; nothing is guessed.
 *
 * @example
 * compileRules([{ name: "login", match: { path: "/login", methods: ["POST"] }, capacity: 5, rate: "5/1m" }]);
 * // { ok: true, rules: [{ name: "login", key: [{ kind: "ip" }], … }] }
 * compileRules([{ name: "login", rate: 1 }]);
 * // { ok: false, errors: [{ rule: '"login" (#1)', field: "capacity", message: "is missing" }] }
 */
export function compileRules(specs: unknown, defaultFailMode: FailMode = DEFAULTS.failMode): RulesResult {
  if (!Array.isArray(specs) || specs.length === 0) {
    return { ok: false, errors: [{ rule: "(all)", field: "(list)", message: "must be a non-empty list of rules" }] };
  }
  const errors: RuleError[] = [];
  const rules: Rule[] = [];
  const concurrency: ConcurrencyRule[] = [];
  const seen = new Set<string>();
  // biome-ignore lint/suspicious/useIterableCallbackReturn: each rule's checks stop early by returning fail(…), which returns nothing
  specs.forEach((raw: unknown, index) => {
    const label = isObject(raw) && typeof raw.name === "string" ? `"${raw.name}" (#${index + 1})` : `#${index + 1}`;
    const fail = (field: string, message: string) => {
      errors.push({ rule: label, field, message });
      return undefined;
    };
    if (!isObject(raw)) return fail("(rule)", "must be an object");
    for (const field of Object.keys(raw)) {
      if (!(RULE_FIELDS as readonly string[]).includes(field)) fail(field, `is not a rule field (known: ${RULE_FIELDS.join(", ")})`);
    }

    const name = typeof raw.name === "string" && NAME.test(raw.name) ? raw.name : fail("name", "must be 1-64 characters of letters, digits, _ . -");
    if (name !== undefined && seen.has(name)) fail("name", "is used by another rule");
    if (name !== undefined) seen.add(name);

    const match = parseMatch(raw.match, fail);
    const key = parseKeyParts(raw.key ?? DEFAULTS.rule.key) ?? fail("key", "must be ip, bearer, route, header:<name>, or a list of them");
    const mode = raw.mode === undefined ? DEFAULTS.rule.mode : raw.mode === "enforce" || raw.mode === "shadow" ? raw.mode : fail("mode", "must be enforce or shadow");
    const failMode =
      raw.failMode === undefined
        ? defaultFailMode
        : raw.failMode === "open" || raw.failMode === "closed" || raw.failMode === "local"
          ? raw.failMode
          : fail("failMode", "must be open, closed or local");

    if (raw.concurrency !== undefined) {
      for (const field of BUCKET_FIELDS) if (raw[field] !== undefined) fail(field, "is not used by a concurrency rule (it has concurrency instead of a bucket)");
      const limit = isInteger(raw.concurrency, 1, 100_000) ? raw.concurrency : fail("concurrency", "must be an integer from 1 to 100000 (requests in flight at once)");
      const leaseMs = raw.lease === undefined ? DEFAULTS.leaseMs : parseDuration(raw.lease);
      const lease = leaseMs !== undefined && leaseMs >= MIN_LEASE_MS && leaseMs <= MAX_LEASE_MS ? leaseMs : fail("lease", 'must be a duration from 1s to 1h, e.g. "30s"');
      if (name && match && key && limit && lease && mode && failMode) {
        const spec: RuleSpec = { name, match, key: key.map(keySpec), concurrency: limit, lease: typeof raw.lease === "string" ? raw.lease : `${lease / 1000}s`, mode, failMode };
        concurrency.push({ name, match, key, keyName: describeKey(key), limit, leaseMs: lease, mode, failMode, spec });
      }
      return undefined;
    }
    for (const field of CONCURRENCY_FIELDS) if (raw[field] !== undefined) fail(field, "is only for concurrency rules (set concurrency, or leave it out)");
    const algorithm: RuleAlgorithm | undefined =
      raw.algorithm === undefined
        ? "token-bucket"
        : (ALGORITHMS as readonly unknown[]).includes(raw.algorithm)
          ? (raw.algorithm as RuleAlgorithm)
          : fail("algorithm", `must be ${ALGORITHMS.join(", ")}`);
    if (algorithm === undefined) return undefined;
    const queues = algorithm === "token-bucket" || algorithm === "sliding-window";
    if (!queues && raw.queue !== undefined) fail("queue", `is only for token-bucket and sliding-window rules (this rule's algorithm is ${algorithm})`);
    if (algorithm === "calendar") {
      const calendar = parseCalendarRule(raw, fail);
      if (name && match && key && calendar && mode && failMode) {
        const { limit, period, timeZone, weekStart, cost, blockForMs, count } = calendar;
        const spec: RuleSpec = {
          name,
          match,
          key: key.map(keySpec),
          algorithm,
          limit,
          period,
          timeZone,
          ...(weekStart !== undefined && { weekStart }),
          cost,
          mode,
          failMode,
          ...(typeof raw.blockFor === "string" && { blockFor: raw.blockFor }),
          ...(count !== null && { count }),
        };
        const divisor = gcd(limit, CALENDAR_NOMINAL_MS[period]);
        const rate = { refillTokens: limit / divisor, refillPeriodMs: CALENDAR_NOMINAL_MS[period] / divisor };
        const policy = { name, algorithm, capacity: limit, ...rate, cost, ...(blockForMs > 0 && { blockForMs }), period, timeZone, ...(weekStart !== undefined && { weekStart }) };
        rules.push({ name, match, key, keyName: describeKey(key), policy, mode, failMode, count: count ?? undefined, spec });
      }
      return undefined;
    }
    for (const field of CALENDAR_FIELDS) if (raw[field] !== undefined) fail(field, 'is only for calendar rules (set "algorithm": "calendar")');
    if (algorithm !== "token-bucket") {
      const window = parseWindowRule(raw, algorithm, fail);
      const queueMs = raw.queue === undefined || !queues ? 0 : parseQueue(raw.queue, fail);
      if (queueMs && raw.blockFor !== undefined) fail("queue", "cannot be combined with blockFor (a blocked client is refused, not queued)");
      if (name && match && key && window && mode && failMode && queueMs !== undefined) {
        const { limit, rate, cost, blockForMs, count } = window;
        const spec: RuleSpec = {
          name,
          match,
          key: key.map(keySpec),
          algorithm,
          limit,
          window: String(raw.window).trim(),
          cost,
          mode,
          failMode,
          ...(typeof raw.blockFor === "string" && { blockFor: raw.blockFor }),
          ...(count !== null && { count }),
          ...(queueMs > 0 && { queue: { maxWait: String((raw.queue as { maxWait: unknown }).maxWait).trim() } }),
        };
        const policy = { name, algorithm, capacity: limit, ...rate, cost, ...(blockForMs > 0 && { blockForMs }), ...(queueMs > 0 && { queueMs }) };
        rules.push({ name, match, key, keyName: describeKey(key), policy, mode, failMode, count: count ?? undefined, spec });
      }
      return undefined;
    }
    for (const field of ["limit", "window"] as const)
      if (raw[field] !== undefined) fail(field, 'is only for window rules (set "algorithm": "fixed-window" or "sliding-window"; a token bucket has capacity and rate)');
    const capacity = isInteger(raw.capacity, 1, 1_000_000_000)
      ? raw.capacity
      : fail("capacity", raw.capacity === undefined ? "is missing (a bucket rule needs capacity and rate; a concurrency rule sets concurrency)" : "must be an integer from 1 to 1000000000");
    const rate =
      raw.rate === undefined
        ? fail("rate", "is missing")
        : (parseRuleRate(raw.rate) ?? fail("rate", 'must be tokens per second > 0 (e.g. 10 or 0.5) or "N/period" (e.g. "100/1m", "5/30s", "10000/1d")'));
    const cost = parseCost(raw.cost, fail);
    if (capacity !== undefined && cost !== undefined && cost > capacity) fail("cost", `${cost} exceeds capacity ${capacity}: no request could ever pass`);
    if (capacity !== undefined && rate !== undefined && capacity * rate.refillPeriodMs > MAX_SAFE_UNITS) {
      fail("rate", "is too fine-grained for this capacity to compute exactly");
    }
    const blockForMs = raw.blockFor === undefined ? 0 : (parseDuration(raw.blockFor) ?? fail("blockFor", 'must be a duration from 1 ms to 30 days, e.g. "10m", "30s", "1h"'));
    const count = raw.count === undefined ? null : (parseCount(raw.count) ?? fail("count", 'must be a non-empty list of statuses or classes, e.g. [401, 403] or ["4xx", "5xx"]'));
    const queueMs = raw.queue === undefined ? 0 : parseQueue(raw.queue, fail);
    if (queueMs !== undefined && queueMs > 0 && raw.blockFor !== undefined) fail("queue", "cannot be combined with blockFor (a blocked client is refused, not queued)");
    // A queue lets the level go below zero by up to queueMs × rate: that too must stay exact.
    if (queueMs && capacity !== undefined && rate !== undefined && capacity * rate.refillPeriodMs + queueMs * rate.refillTokens > MAX_SAFE_UNITS) {
      fail("queue", "is too long for this rate to compute exactly");
    }

    if (name && match && key && capacity && rate && cost && mode && failMode && blockForMs !== undefined && count !== undefined && queueMs !== undefined) {
      const spec: RuleSpec = {
        name,
        match,
        key: key.map(keySpec),
        capacity,
        rate: typeof raw.rate === "number" ? raw.rate : String(raw.rate),
        cost,
        mode,
        failMode,
        ...(typeof raw.blockFor === "string" && { blockFor: raw.blockFor }),
        ...(count !== null && { count }),
        ...(queueMs > 0 && { queue: { maxWait: String((raw.queue as { maxWait: unknown }).maxWait).trim() } }),
      };
      const policy = { name, capacity, ...rate, cost, ...(blockForMs > 0 && { blockForMs }), ...(queueMs > 0 && { queueMs }) };
      rules.push({ name, match, key, keyName: describeKey(key), policy, mode, failMode, count: count ?? undefined, spec });
    }
    return undefined;
  });
  return errors.length > 0 ? { ok: false, errors } : { ok: true, rules, concurrency };
}

/**
 * Parses `LIMITER_RULES`: JSON text holding a list of rules, checked by {@link compileRules}.
 *
 * @example
 * parseRulesJson('[{"name":"login","key":"ip","capacity":5,"rate":"5/1m"}]', "open"); // { ok: true, rules: […] }
 */
export function parseRulesJson(text: string, defaultFailMode: FailMode = DEFAULTS.failMode): RulesResult {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return { ok: false, errors: [{ rule: "(all)", field: "(json)", message: `is not valid JSON: ${(error as Error).message}` }] };
  }
  return compileRules(json, defaultFailMode);
}

/**
 * One rule error as a line: `rule "login" (#1): field "capacity" is missing`.
 *
 * @example
 * describeRuleError({ rule: '"login" (#1)', field: "capacity", message: "is missing" });
 */
export function describeRuleError(error: RuleError): string {
  return `rule ${error.rule}: field "${error.field}" ${error.message}`;
}

export { countsStatus } from "./rule-fields";
