import type { Context } from "hono";
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
  | { readonly event: "proxy.origin_unreachable"; readonly origin: string; readonly reason: string }
  | { readonly event: "proxy.origin_timeout"; readonly origin: string; readonly timeoutMs: number }
  | { readonly event: "admin.failure"; readonly path: string; readonly reason: string }
  | { readonly event: "metrics.flush_failed"; readonly reason: string }
  | { readonly event: "metrics.analytics_write_failed"; readonly reason: string };

/** Every event the gateway writes, and its level: the one table. */
export const EVENT_LEVELS: Readonly<Record<LimiterEvent["event"] | GatewayEvent["event"], LogLevel>> = {
  ...LIMITER_EVENT_LEVELS,
  "config.invalid": "error",
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
 * The id a request is logged under: Cloudflare's `cf-ray` when present, else one of this
 * isolate's own (a random tag drawn once and a counter: unique without drawing a UUID per
 * request, which a flood would pay for on every refusal). The same however many places ask (the
 * limiter's log and the proxy's must agree): kept in the request's context.
 *
 * @example
 * const requestId = requestIdOf(c); // "8c2f1e3a9b7d-1" without cf-ray
 */
export function requestIdOf<E extends { Variables: RequestIdVariables }>(c: Context<E>): string {
  const vars = c as unknown as Context<{ Variables: RequestIdVariables }>;
  let id = vars.get("requestId") as string | undefined;
  if (id === undefined) {
    id = c.req.raw.headers.get("cf-ray") ?? `${(isolateTag ??= [...crypto.getRandomValues(new Uint8Array(6))].map((b) => b.toString(16).padStart(2, "0")).join(""))}-${(++requestCount).toString(36)}`;
    vars.set("requestId", id);
  }
  return id;
}

/** Where {@link requestIdOf} keeps a request's id. */
export type RequestIdVariables = { requestId: string };

// Drawn on first use: a Worker may not generate random values at global scope.
let isolateTag: string | undefined;
let requestCount = 0;
