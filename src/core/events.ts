import type { FailMode } from "./rules";
import type { BucketDecision } from "./token-bucket";

/** Events the limiter logs; the gateway's README documents them. */
export type LimiterEvent =
  | { readonly event: "limiter.shadow_refusal"; readonly rule: string; readonly outcome: BucketDecision["outcome"] }
  | { readonly event: "limiter.backend_failure"; readonly backend: string; readonly failMode: FailMode; readonly reason: string }
  | { readonly event: "limiter.backend_config_error"; readonly variable: string; readonly reason: string }
  | { readonly event: "limiter.breaker_opened"; readonly backend: string }
  | { readonly event: "limiter.breaker_closed"; readonly backend: string }
  | { readonly event: "limiter.refund_failure"; readonly backend: string; readonly reason: string }
  | { readonly event: "limiter.slot_release_failure"; readonly backend: string; readonly reason: string };
