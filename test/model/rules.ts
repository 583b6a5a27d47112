/**
 * The rules the model test runs the gateway with (`LIMITER_RULES`), and what the model knows of
 * them. Small capacities and quick refill, so that real time matters within a short run. Each
 * route (a path prefix) is covered by the rules listed for it; every rule keys on `x-api-key`.
 */
export const ADMIN_TOKEN = "model-test-admin-token-0123456789";

export interface ModelPolicy {
  /** A bucket's capacity C; a window's limit L. */
  readonly capacity: number;
  /** Tokens per second; a window's L per W (so W = capacity / rate seconds, as an override of a window rule states it). */
  readonly rate: number;
}

export type AlgorithmName = "token-bucket" | "fixed-window" | "sliding-window";

export interface BucketRuleModel {
  readonly name: BucketRuleName;
  readonly kind: "bucket";
  /** How the store counts: a token bucket, or a window of L per W (`policy`: capacity L, rate L/W). */
  readonly algorithm: AlgorithmName;
  readonly policy: ModelPolicy;
  readonly cost: number;
  readonly mode: "enforce" | "shadow";
  readonly failMode: "open" | "closed" | "local";
  readonly blockForMs: number;
  /** Statuses charged (undefined: every one). */
  readonly count: readonly number[] | undefined;
  /** A `queue` rule's maxWait, ms (0: no queue). */
  readonly queueMs: number;
}

export interface ConcurrencyRuleModel {
  readonly name: string;
  readonly kind: "concurrency";
  readonly limit: number;
}

export type RuleModel = BucketRuleModel | ConcurrencyRuleModel;

const bucket = (name: BucketRuleName, fields: Partial<BucketRuleModel> & { policy: ModelPolicy }): BucketRuleModel => ({
  name,
  kind: "bucket",
  algorithm: "token-bucket",
  cost: 1,
  mode: "enforce",
  failMode: "open",
  blockForMs: 0,
  count: undefined,
  queueMs: 0,
  ...fields,
});

// ---- Queued rules (issue 18, "Queue instead of refuse") ----
// A short maxWait keeps runs short. The promise is checked where it matters, at the origin's
// arrivals (envelope.ts: a queued request counts when it reaches the origin, not when charged).

export type QueuedRuleName = "qbucket" | "qshadow" | "qslide" | "qpair" | "qguard";

/** The queued rules as the model sees them (RULES spreads them). */
const QUEUED_RULES = {
  // A queued token bucket (3, 5/s: a queued request waits 200 ms per token, 400 ms at most), decided locally in an outage.
  qbucket: bucket("qbucket", { policy: { capacity: 3, rate: 5 }, queueMs: 400, failMode: "local" }),
  // A shadow rule with a queue beside it: charged, never refuses, never delays (only enforced rules queue).
  qshadow: bucket("qshadow", { policy: { capacity: 2, rate: 2 }, mode: "shadow", queueMs: 300, failMode: "local" }),
  // A queued exact sliding window: 3 in every trailing second, a request waits up to 600 ms for room.
  qslide: bucket("qslide", { algorithm: "sliding-window", policy: { capacity: 3, rate: 3 }, queueMs: 600, failMode: "closed" }),
  // Two enforced rules on one route, one queued: such a request is refused, never queued (it would reach the origin after qguard counted it).
  // A token per 600 ms: a request queued by mistake would wait up to the whole maxWait, beyond the model's tolerance.
  qpair: bucket("qpair", { policy: { capacity: 1, rate: 5 / 3 }, queueMs: 600, failMode: "closed" }),
  qguard: bucket("qguard", { policy: { capacity: 4, rate: 2.5 }, failMode: "closed" }),
} as const;

const QUEUED_ROUTES = {
  qb: { path: "/qb", rules: ["qbucket", "qshadow"] },
  qs: { path: "/qs", rules: ["qslide"] },
  qpair: { path: "/qpair", rules: ["qpair", "qguard"] },
} as const satisfies Record<string, { path: string; rules: readonly BucketRuleName[] }>;

const QUEUED_MODEL_RULES = [
  { name: "qbucket", match: { path: "/qb/*" }, key: "header:x-api-key", capacity: 3, rate: 5, queue: { maxWait: "400ms" }, failMode: "local" },
  { name: "qshadow", match: { path: "/qb/*" }, key: "header:x-api-key", capacity: 2, rate: 2, mode: "shadow", queue: { maxWait: "300ms" }, failMode: "local" },
  { name: "qslide", match: { path: "/qs/*" }, key: "header:x-api-key", algorithm: "sliding-window", limit: 3, window: "1s", queue: { maxWait: "600ms" }, failMode: "closed" },
  { name: "qpair", match: { path: "/qpair/*" }, key: "header:x-api-key", capacity: 1, rate: "5/3s", queue: { maxWait: "600ms" }, failMode: "closed" },
  { name: "qguard", match: { path: "/qpair/*" }, key: "header:x-api-key", capacity: 4, rate: 2.5, failMode: "closed" },
];

/** The queued rules overrides may address, and the routes requests go to (commands.ts adds them to its generators). */
export const QUEUED_OVERRIDABLE: readonly BucketRuleName[] = ["qbucket", "qslide", "qpair", "qguard"];
export const QUEUED_ROUTE_NAMES = ["qb", "qs", "qpair"] as const;

/** Whether a request on this route may wait: a queued enforced rule covers it (the model then counts its rules' admissions at the origin's arrivals). */
export const queuedRoute = (route: RouteName | "work"): boolean => route !== "work" && ROUTES[route].rules.some((name) => RULES[name].mode === "enforce" && RULES[name].queueMs > 0);

/** How long a request on this route may wait, ms: its queued rule's maxWait; 0 where no rule queues, or where more than one enforced rule covers it (never queued). */
export function routeMaxWait(route: RouteName | "work"): number {
  if (route === "work") return 0;
  const enforced = ROUTES[route].rules.filter((name) => RULES[name].mode === "enforce");
  return enforced.length === 1 ? RULES[enforced[0] as BucketRuleName].queueMs : 0;
}

/** Every rule, as the model sees it. */
export const RULES = {
  // The default fail mode (open): during an outage it admits anything, so the model excuses it then.
  plain: bucket("plain", { policy: { capacity: 4, rate: 10 } }),
  shadow: bucket("shadow", { policy: { capacity: 2, rate: 1 }, mode: "shadow" }),
  heavy: bucket("heavy", { policy: { capacity: 5, rate: 5 }, cost: 2, failMode: "closed" }),
  blocky: bucket("blocky", { policy: { capacity: 2, rate: 10 }, blockForMs: 2_000, failMode: "closed" }),
  counted: bucket("counted", { policy: { capacity: 3, rate: 2 }, count: [401, 403], failMode: "closed" }),
  local: bucket("local", { policy: { capacity: 5, rate: 5 }, failMode: "local" }),
  // Windows of 1 s: 3 per epoch-aligned second with refunds; 4 in every trailing second, decided locally in an outage.
  fixed: bucket("fixed", { algorithm: "fixed-window", policy: { capacity: 3, rate: 3 }, count: [401, 403], failMode: "closed" }),
  sliding: bucket("sliding", { algorithm: "sliding-window", policy: { capacity: 4, rate: 4 }, failMode: "local" }),
  // Large enough for leases (a lease takes at most 1/8 of the bucket), refilling slowly: a busy client leases, and spends leases near its limit.
  bulk: bucket("bulk", { policy: { capacity: 24, rate: 4 }, failMode: "closed" }),
  inflight: { name: "inflight", kind: "concurrency", limit: 2 } as ConcurrencyRuleModel,
  ...QUEUED_RULES,
} as const;

export type BucketRuleName = "plain" | "shadow" | "heavy" | "blocky" | "counted" | "local" | "fixed" | "sliding" | "bulk" | QueuedRuleName;

/** Routes the commands use: path prefix → the rules that cover it. */
export const ROUTES = {
  plain: { path: "/plain", rules: ["plain", "shadow"] },
  heavy: { path: "/heavy", rules: ["heavy"] },
  block: { path: "/block", rules: ["blocky"] },
  count: { path: "/count", rules: ["counted"] },
  local: { path: "/local", rules: ["local"] },
  fixed: { path: "/fixed", rules: ["fixed"] },
  slide: { path: "/slide", rules: ["sliding"] },
  bulk: { path: "/bulk", rules: ["bulk"] },
  ...QUEUED_ROUTES,
} as const satisfies Record<string, { path: string; rules: readonly BucketRuleName[] }>;

export type RouteName = keyof typeof ROUTES;

/** `LIMITER_RULES` for the gateways: the same rules, as a user writes them. */
export const MODEL_RULES = [
  { name: "plain", match: { path: "/plain/*" }, key: "header:x-api-key", capacity: 4, rate: 10 },
  { name: "shadow", match: { path: "/plain/*" }, key: "header:x-api-key", capacity: 2, rate: 1, mode: "shadow" },
  { name: "heavy", match: { path: "/heavy/*" }, key: "header:x-api-key", capacity: 5, rate: 5, cost: 2, failMode: "closed" },
  { name: "blocky", match: { path: "/block/*" }, key: "header:x-api-key", capacity: 2, rate: 10, blockFor: "2s", failMode: "closed" },
  { name: "counted", match: { path: "/count/*" }, key: "header:x-api-key", capacity: 3, rate: 2, count: [401, 403], failMode: "closed" },
  { name: "local", match: { path: "/local/*" }, key: "header:x-api-key", capacity: 5, rate: 5, failMode: "local" },
  { name: "fixed", match: { path: "/fixed/*" }, key: "header:x-api-key", algorithm: "fixed-window", limit: 3, window: "1s", count: [401, 403], failMode: "closed" },
  { name: "sliding", match: { path: "/slide/*" }, key: "header:x-api-key", algorithm: "sliding-window", limit: 4, window: "1s", failMode: "local" },
  { name: "bulk", match: { path: "/bulk/*" }, key: "header:x-api-key", capacity: 24, rate: 4, failMode: "closed" },
  { name: "inflight", match: { path: "/work/*" }, key: "header:x-api-key", concurrency: 2, failMode: "closed" },
  ...QUEUED_MODEL_RULES,
];

/** The rules overrides may address (the shadow rule too: it is charged like the others). */
export const OVERRIDABLE: readonly BucketRuleName[] = ["plain", "heavy", "blocky", "counted", "local", "fixed", "sliding", "bulk"];

/**
 * Whether the model sets overrides of the window rules through the admin API (on; MODEL_WINDOW_OVERRIDES=0
 * leaves them out). The envelope bounds window overrides (L2 per 1 s).
 */
export const WINDOW_OVERRIDES = process.env.MODEL_WINDOW_OVERRIDES !== "0";

/** Whether a rule counts in windows (its policy is L per W) rather than with a token bucket. */
export const isWindow = (rule: BucketRuleModel): boolean => rule.algorithm !== "token-bucket";

/** The largest limit a sliding window decides (src/core/algorithms/sliding-window.ts: a larger override is decided at it). */
export const MAX_SLIDING_LIMIT = 1_000;

/**
 * A window policy's W in ms: the time its rate takes to deliver its capacity, rounded up as the
 * store rounds it (src/core/algorithms/window-policy.ts).
 *
 * @example
 * windowOf({ capacity: 3, rate: 3 }); // 1000
 */
export function windowOf(policy: ModelPolicy): number {
  return Math.max(1, Math.ceil((policy.capacity * 1000) / policy.rate - 1e-9));
}

/** The limit a window policy decides: its capacity (a sliding window's at most MAX_SLIDING_LIMIT). */
export function limitOf(rule: BucketRuleModel, policy: ModelPolicy): number {
  return rule.algorithm === "sliding-window" ? Math.min(policy.capacity, MAX_SLIDING_LIMIT) : policy.capacity;
}

/** A degraded isolate's share of a policy, as docs/operations.md defines it: capacity rounded down (at least the cost), refill slowed alike (a window's W kept: rate scaled with its limit). */
export function localShare(policy: ModelPolicy, fraction: number, cost: number, algorithm: AlgorithmName = "token-bucket"): ModelPolicy {
  const capacity = Math.min(policy.capacity, Math.max(cost, Math.floor(policy.capacity * fraction)));
  return { capacity, rate: algorithm === "token-bucket" ? policy.rate * fraction : (capacity * 1000) / windowOf(policy) };
}
