/**
 * The rules the model test runs the gateway with (`LIMITER_RULES`), and what the model knows of
 * them. Small capacities and quick refill, so that real time matters within a short run. Each
 * route (a path prefix) is covered by the rules listed for it; every rule keys on `x-api-key`.
 */
export const ADMIN_TOKEN = "model-test-admin-token-0123456789";

export interface ModelPolicy {
  readonly capacity: number;
  /** Tokens per second. */
  readonly rate: number;
}

export interface BucketRuleModel {
  readonly name: BucketRuleName;
  readonly kind: "bucket";
  readonly policy: ModelPolicy;
  readonly cost: number;
  readonly mode: "enforce" | "shadow";
  readonly failMode: "open" | "closed" | "local";
  readonly blockForMs: number;
  /** Statuses charged (undefined: every one). */
  readonly count: readonly number[] | undefined;
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
  cost: 1,
  mode: "enforce",
  failMode: "open",
  blockForMs: 0,
  count: undefined,
  ...fields,
});

/** Every rule, as the model sees it. */
export const RULES = {
  // The default fail mode (open): during an outage it admits anything, so the model excuses it then.
  plain: bucket("plain", { policy: { capacity: 4, rate: 10 } }),
  shadow: bucket("shadow", { policy: { capacity: 2, rate: 1 }, mode: "shadow" }),
  heavy: bucket("heavy", { policy: { capacity: 5, rate: 5 }, cost: 2, failMode: "closed" }),
  blocky: bucket("blocky", { policy: { capacity: 2, rate: 10 }, blockForMs: 2_000, failMode: "closed" }),
  counted: bucket("counted", { policy: { capacity: 3, rate: 2 }, count: [401, 403], failMode: "closed" }),
  local: bucket("local", { policy: { capacity: 5, rate: 5 }, failMode: "local" }),
  inflight: { name: "inflight", kind: "concurrency", limit: 2 } as ConcurrencyRuleModel,
} as const;

export type BucketRuleName = "plain" | "shadow" | "heavy" | "blocky" | "counted" | "local";

/** Routes the commands use: path prefix → the rules that cover it. */
export const ROUTES = {
  plain: { path: "/plain", rules: ["plain", "shadow"] },
  heavy: { path: "/heavy", rules: ["heavy"] },
  block: { path: "/block", rules: ["blocky"] },
  count: { path: "/count", rules: ["counted"] },
  local: { path: "/local", rules: ["local"] },
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
  { name: "inflight", match: { path: "/work/*" }, key: "header:x-api-key", concurrency: 2, failMode: "closed" },
];

/** The rules overrides may address (the shadow rule too: it is charged like the others). */
export const OVERRIDABLE: readonly BucketRuleName[] = ["plain", "heavy", "blocky", "counted", "local"];

/** A degraded isolate's share of a policy, as docs/operations.md defines it: capacity rounded down (at least the cost), refill slowed alike. */
export function localShare(policy: ModelPolicy, fraction: number, cost: number): ModelPolicy {
  return { capacity: Math.min(policy.capacity, Math.max(cost, Math.floor(policy.capacity * fraction))), rate: policy.rate * fraction };
}
