import type { FailMode } from "./rules";
import type { BucketDecision } from "./token-bucket";

/** Events the limiter and its backends log; docs/operations.md documents them. */
export type LimiterEvent =
  | { readonly event: "limiter.shadow_refusal"; readonly rule: string; readonly outcome: BucketDecision["outcome"] }
  | { readonly event: "limiter.backend_failure"; readonly backend: string; readonly failMode: FailMode; readonly reason: string }
  | { readonly event: "limiter.backend_config_error"; readonly variable: string; readonly reason: string }
  | { readonly event: "limiter.breaker_opened"; readonly backend: string }
  | { readonly event: "limiter.breaker_closed"; readonly backend: string }
  | { readonly event: "limiter.refund_failure"; readonly backend: string; readonly reason: string }
  | { readonly event: "limiter.slot_release_failure"; readonly backend: string; readonly reason: string }
  | { readonly event: "limiter.override_unreadable"; readonly backend: string; readonly value: string };

/** How loud a log line is. */
export type LogLevel = "info" | "warn" | "error";

/** Each limiter event's level: the one table every writer uses (the gateway's adds its own events). */
export const LIMITER_EVENT_LEVELS: Readonly<Record<LimiterEvent["event"], LogLevel>> = {
  "limiter.shadow_refusal": "info",
  "limiter.backend_failure": "error",
  "limiter.backend_config_error": "error",
  "limiter.breaker_opened": "warn",
  "limiter.breaker_closed": "info",
  "limiter.refund_failure": "warn",
  "limiter.slot_release_failure": "warn",
  "limiter.override_unreadable": "warn",
};

/**
 * Writes one log line: a JSON object `{ time, level, event, …fields, requestId? }` on the console
 * stream of its level. Callers pass names and hashes, never tokens or keys.
 *
 * @example
 * writeLogLine("warn", { event: "limiter.refund_failure", backend: "durable-object", reason: "timeout" });
 */
export function writeLogLine(level: LogLevel, fields: { readonly event: string; readonly [field: string]: unknown }, requestId?: string): void {
  const line = JSON.stringify({ time: new Date().toISOString(), level, ...fields, ...(requestId !== undefined && { requestId }) });
  if (level === "error") console.error(line);
  else if (level === "warn") console.warn(line);
  else console.log(line);
}

/**
 * Writes a limiter event at its level (the limiter's default `log`, and the backends' own events).
 *
 * @example
 * logLimiterEvent({ event: "limiter.breaker_opened", backend: "upstash" }, requestId);
 */
export function logLimiterEvent(event: LimiterEvent, requestId?: string): void {
  writeLogLine(LIMITER_EVENT_LEVELS[event.event], event, requestId);
}
