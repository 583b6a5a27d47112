import { LIMITER_EVENT_LEVELS, writeLogLine, type LimiterEvent, type LogLevel } from "../core/events";

/**
 * The gateway's log lines: one JSON object per line, one schema for every event (the "Logs"
 * table of docs/operations.md lists the events and their fields; a test checks it against {@link EVENT_LEVELS}).
 * Workers observability collects them.
 *
 * { "time": ISO 8601, "level": "info" | "warn" | "error", "event": "<area>.<what>",
 *   "requestId": "<cf-ray, or the isolate's tag-counter>" (when a request caused it), …the event's own fields }
 */
export type { LogLevel };

/** The gateway's own events (the limiter's are {@link LimiterEvent}). */
export type GatewayEvent =
  | { readonly event: "config.invalid"; readonly errors: readonly string[] }
  | { readonly event: "gateway.internal_error"; readonly reason: string }
  | { readonly event: "proxy.origin_unreachable"; readonly origin: string; readonly reason: string }
  | { readonly event: "proxy.origin_timeout"; readonly origin: string; readonly timeoutMs: number }
  | { readonly event: "admin.failure"; readonly path: string; readonly reason: string }
  | { readonly event: "metrics.flush_failed"; readonly reason: string }
  | { readonly event: "metrics.analytics_write_failed"; readonly reason: string };

/** Every event the gateway writes, and its level: the one table. */
export const EVENT_LEVELS: Readonly<Record<LimiterEvent["event"] | GatewayEvent["event"], LogLevel>> = {
  ...LIMITER_EVENT_LEVELS,
  "config.invalid": "error",
  "gateway.internal_error": "error",
  "proxy.origin_unreachable": "error",
  "proxy.origin_timeout": "error",
  "admin.failure": "error",
  "metrics.flush_failed": "warn",
  "metrics.analytics_write_failed": "warn",
};

/**
 * Writes one event at its level. Never logs secrets: callers pass names and hashes, never tokens or keys.
 *
 * @example
 * logEvent({ event: "proxy.origin_unreachable", origin: "https://api.example.com", reason }, requestId);
 */
export function logEvent(event: LimiterEvent | GatewayEvent, requestId?: string): void {
  writeLogLine(EVENT_LEVELS[event.event], event, requestId);
}

/**
 * A reader of the id a request is logged under: Cloudflare's `cf-ray` when present, else one of
 * this isolate's own (a random tag drawn once and a counter: unique without drawing a UUID per
 * request, which a flood would pay for on every refusal). Drawn on the first call (most requests
 * log nothing, so most never draw one) and the same on every later one: the limiter's log lines
 * and the proxy's agree.
 *
 * @example
 * const requestId = requestIdReader(request.headers);
 * logEvent(event, requestId()); // "8c2f1e3a9b7d-2" without cf-ray, every time for this request
 */
export function requestIdReader(headers: Headers): () => string {
  let id: string | undefined;
  return () => (id ??= newRequestId(headers));
}

function newRequestId(headers: Headers): string {
  return headers.get("cf-ray") ?? `${(isolateTag ??= [...crypto.getRandomValues(new Uint8Array(6))].map((b) => b.toString(16).padStart(2, "0")).join(""))}-${(++requestCount).toString(36)}`;
}

// Drawn on first use: a Worker may not generate random values at global scope.
let isolateTag: string | undefined;
let requestCount = 0;
