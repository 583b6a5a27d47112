/**
 * `sluice`: the rate limiter's framework-free core. Rules, client identity, the token bucket,
 * the deny cache, the circuit breaker and the problem catalogue, behind one {@link Limiter};
 * the in-memory backend; and the port other backends implement (`sluice/durable-object`,
 * `sluice/upstash`). Adapters: `sluice/hono`.
 *
 * @example
 * import { Limiter, memoryBackend, requestSubject, verdictResponse } from "sluice";
 * const limiter = new Limiter({ backend: memoryBackend(), rules: [{ name: "api", key: "header:x-api-key", capacity: 5, rate: "1/1m" }] });
 * const refusal = verdictResponse(await limiter.check(requestSubject(request)));
 */
export { Limiter, type BackendHealth, type CheckOptions, type LimiterEvent, type LimiterOptions, type MissingKeyMode } from "./limiter";
export { passes, type RateLimitHeaders, type RuleOutcome, type Verdict } from "./verdict";
export { verdictResponse } from "./verdict-response";
export { requestSubject, type ClientSubject, type RequestSubject, type Subject } from "./subject";
export {
  compileRules,
  describeRuleError,
  InvalidRulesError,
  parseRulesJson,
  ruleMatches,
  type ConcurrencyRule,
  type FailMode,
  type MatchableRequest,
  type RouteMatch,
  type Rule,
  type RuleError,
  type RuleMode,
  type RuleSpec,
  type RulesResult,
} from "./rules";
export { describeKey, keySpec, parseKeyPart, type KeyPart, type KeySpec } from "./key-parts";
export { clientIp, groupAddress, ipv6Prefix, type IdentityOptions } from "./identity";
export { normalizePath } from "./path";
export { mostRestrictive, rateLimitHeaders, retryAfterSeconds, withConcurrencyHeaders, type HeaderMode } from "./headers";
export * from "./problems";
export { BackendConfigError, type BucketAnswer, type BucketCharge, type BucketRef, type LimiterBackend, type OverrideRecord, type OverrideRegistry, type Refund, type SlotClaim } from "./backend";
export { acquireSlot, acquireSlots, releaseSlot, type SlotDecision, type SlotLease, type SlotState } from "./slots";
export { BackendTimeoutError, withDeadline } from "./deadline";
export { memoryBackend, type MemoryBackendOptions } from "./memory-backend";
export { takeBuckets, takeTokens, refundTokens, type BucketDecision, type BucketPolicy, type BucketState } from "./token-bucket";
export { secondsToFill, type NamedPolicy } from "./policy";
export { parseRatePerSecond, parseRateShorthand, type RefillRate } from "./rate";
export type { CircuitBreakerOptions } from "./circuit-breaker";
export { DEFAULTS } from "./defaults";
