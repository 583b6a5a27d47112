/**
 * The gateway's log lines: one JSON object per line, one schema for every event (the README's
 * "Logs" table lists the events and their fields). Workers observability collects them.
 *
 * { "time": ISO 8601, "level": "info" | "warn" | "error", "event": "<area>.<what>",
 *   "requestId": "<cf-ray or a UUID>" (when a request caused it), …the event's own fields }
 */
export type LogLevel = "info" | "warn" | "error";

/**
 * Writes one event. Never logs secrets: callers pass names and hashes, never tokens or keys.
 *
 * @example
 * logEvent("error", { event: "proxy.origin_unreachable", origin: "https://api.example.com", reason }, requestId);
 */
export function logEvent(level: LogLevel, fields: { readonly event: string; readonly [field: string]: unknown }, requestId?: string): void {
  const line = JSON.stringify({ time: new Date().toISOString(), level, ...fields, ...(requestId !== undefined && { requestId }) });
  if (level === "error") console.error(line);
  else if (level === "warn") console.warn(line);
  else console.log(line);
}

/**
 * The id a request is logged under: Cloudflare's `cf-ray` when present, else a fresh UUID.
 *
 * @example
 * const requestId = requestIdOf(request.headers);
 */
export function requestIdOf(headers: Headers): string {
  let id = requestIds.get(headers);
  if (id === undefined) requestIds.set(headers, (id = headers.get("cf-ray") ?? crypto.randomUUID()));
  return id;
}

// One id per request, however many places ask (the limiter's log and the proxy's must agree).
const requestIds = new WeakMap<Headers, string>();
