import type { ClientBuckets } from "../backends/durable-object/client-buckets";
import type { GatewayMetrics } from "./metrics-object";

/** A wrangler var arrives as a string, or as a number/boolean when written bare in TOML. */
export type VarValue = string | number | boolean | undefined;

/** The Worker's bindings: the vars and secrets docs/configuration.md documents, plus the Durable Object namespace. */
export interface Env {
  ORIGIN_URL?: VarValue;
  ORIGIN_TIMEOUT_MS?: VarValue;
  LIMITER_BACKEND?: VarValue;
  LIMITER_CAPACITY?: VarValue;
  LIMITER_REFILL_RATE?: VarValue;
  LIMITER_KEY?: VarValue;
  LIMITER_FAIL_MODE?: VarValue;
  LIMITER_LOCAL_FRACTION?: VarValue;
  LIMITER_TIMEOUT_MS?: VarValue;
  LIMITER_HEADERS?: VarValue;
  LIMITER_RULES?: VarValue;
  LIMITER_KEY_PREFIX?: VarValue;
  LIMITER_MISSING_KEY?: VarValue;
  LIMITER_IP_HEADER?: VarValue;
  LIMITER_IPV6_PREFIX?: VarValue;
  LIMITER_TRUSTED_PROXIES?: VarValue;
  LIMITER_DENY_CACHE_SIZE?: VarValue;
  LIMITER_BREAKER_THRESHOLD?: VarValue;
  LIMITER_BREAKER_COOLDOWN_MS?: VarValue;
  LIMITER_ADMIN_TOKEN?: VarValue;
  LIMITER_METRICS_TOKEN?: VarValue;
  LIMITER_HASH_KEY?: VarValue;
  LIMITER_METRICS?: VarValue;
  LIMITER_METRICS_FLUSH_MS?: VarValue;
  UPSTASH_REDIS_REST_URL?: VarValue;
  UPSTASH_REDIS_REST_TOKEN?: VarValue;
  LIMITER_BUCKETS: DurableObjectNamespace<ClientBuckets>;
  /** The metrics object's namespace (metrics stay per isolate without it). */
  LIMITER_METRICS_STORE?: DurableObjectNamespace<GatewayMetrics>;
  /** Optional Workers Analytics Engine dataset: one data point per decision. */
  LIMITER_ANALYTICS?: AnalyticsEngineDataset;
}

/** The names of the Worker's vars and secrets (every binding but the namespaces and datasets). */
export type VarName = Exclude<keyof Env, "LIMITER_BUCKETS" | "LIMITER_METRICS_STORE" | "LIMITER_ANALYTICS">;
