/**
 * `sluice`: the rate limiter's framework-free core. One {@link Limiter} (rules, client identity,
 * token buckets, concurrency slots, the deny cache, the circuit breaker) answering typed
 * verdicts; the in-memory backend; the port other backends implement (`sluice/durable-object`,
 * `sluice/upstash`); and the verdict → Response mapping. Adapters: `sluice/fetch`, `sluice/hono`.
 *
 * Only what the README documents is exported here: a test (test/package/consumer.test.ts) fails
 * when an internal leaks out.
 *
 * @example
 * import { Limiter, memoryBackend, requestSubject, verdictResponse } from "sluice";
 * const limiter = new Limiter({ backend: memoryBackend(), rules: [{ name: "api", key: "header:x-api-key", capacity: 5, rate: "1/1m" }] });
 * const refusal = verdictResponse(await limiter.check(requestSubject(request)));
 */
export { Limiter, type BackendHealth, type CheckOptions, type DecisionEvent, type LimiterEvent, type LimiterOptions, type MissingKeyMode, type NamedBucket } from "./limiter";
export { passes, type RateLimitHeaders, type RuleOutcome, type Verdict } from "./verdict";
export { verdictResponse } from "./verdict-response";
export { requestSubject, type ClientSubject, type RequestSubject, type Subject } from "./subject";
export { InvalidRulesError, parseRulesJson, type ConcurrencyRule, type FailMode, type Rule, type RuleError, type RuleMode, type RuleSpec } from "./rules";
export type { HeaderMode } from "./headers";
export type { IdentityOptions } from "./identity";
export { PROBLEM_TYPES, type Problem } from "./problems";
export { memoryBackend, type MemoryBackendOptions } from "./memory-backend";
export {
  BackendConfigError,
  type BucketAnswer,
  type BucketCharge,
  type BucketRef,
  type LimiterBackend,
  type OverrideRecord,
  type OverrideRegistry,
  type Refund,
  type SlotClaim,
} from "./backend";
export type { SlotDecision } from "./slots";
export type { BucketDecision, BucketPolicy, BucketState } from "./token-bucket";
export type { CircuitBreakerOptions } from "./circuit-breaker";
export { DEFAULTS } from "./defaults";
