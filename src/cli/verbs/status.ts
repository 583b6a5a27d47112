import { requireFlags, type Invocation } from "../args";
import { EXIT } from "../exit-codes";
import { failure, type GatewayClient } from "../http";
import type { Outcome } from "../outcome";
import { pairs, table } from "../table";

/** `GET /__limiter/health` as it answers (200 or 503); without a token only the status (and a configuration error). */
interface Health {
  readonly status: "ok" | "degraded" | "error";
  readonly config?: { readonly ok: boolean; readonly errors?: readonly string[] };
  /** Where the details are, when the answer has none (no token, or a refused one). */
  readonly details?: string;
  readonly backend?: { readonly name: string; readonly ok: boolean; readonly latencyMs?: number; readonly error?: string };
  readonly isolate?: { readonly breaker: string; readonly clientCircuitsOpen: number; readonly denyCacheEntries: number; readonly backendCalls: number; readonly rules: readonly string[] };
}

/** `GET /__limiter/status` as it answers. */
interface CallerStatus {
  readonly method: string;
  readonly path: string;
  readonly allowed?: boolean;
  readonly buckets: readonly { rule: string; mode: string; limit: number; remaining: number; cost: number; retryAfterSeconds: number }[];
}

/**
 * `sluice status`: the gateway's health (`GET /__limiter/health`: configuration, store round trip,
 * the answering isolate's breaker: with the admin token); exit 5 when it is unhealthy. With `--path` (and `--method`,
 * `--header`), the buckets such a request would be charged to (`GET /__limiter/status`), as the
 * caller those headers identify; exit 2 when it would be refused. Neither needs the admin token.
 *
 * @example
 * await status({ command: "status", headers: {}, … }, gateway);
 */
export function status(invocation: Invocation, gateway: GatewayClient): Promise<Outcome> {
  return invocation.path === undefined && invocation.method === undefined && Object.keys(invocation.headers).length === 0 ? health(gateway) : callerStatus(invocation, gateway);
}

async function health(gateway: GatewayClient): Promise<Outcome> {
  // The details (store, breaker, rules) need the admin token; the status does not.
  const answer = await gateway.get("/__limiter/health", {}, { withToken: true });
  if ((answer.status !== 200 && answer.status !== 503) || !isHealth(answer.body)) throw failure(answer, gateway.url, "not-sent");
  const body = answer.body;
  const rows: [string, string][] = [
    ["gateway", gateway.url],
    ["status", body.status],
  ];
  if (body.config !== undefined) rows.push(["config", body.config.ok ? "ok" : `invalid: ${(body.config.errors ?? []).join("; ")}`]);
  if (body.details !== undefined) rows.push(["details", "set SLUICE_ADMIN_TOKEN to see the store, the breaker and the rules"]);
  if (body.backend !== undefined) {
    const { name, ok, latencyMs, error } = body.backend;
    rows.push(["backend", ok ? `${name}, ok, ${latencyMs} ms` : `${name}, not answering${error ? `: ${error}` : ""}`]);
  }
  if (body.isolate !== undefined) {
    const { breaker, clientCircuitsOpen, denyCacheEntries, backendCalls, rules } = body.isolate;
    rows.push(
      ["breaker", `${breaker} (${clientCircuitsOpen} client circuits open)`],
      ["deny cache", `${denyCacheEntries} entries`],
      ["backend calls", String(backendCalls)],
      ["rules", rules.join(", ")],
    );
  }
  return { code: body.status === "error" ? EXIT.unavailable : EXIT.ok, json: body, text: pairs(rows) };
}

async function callerStatus(invocation: Invocation, gateway: GatewayClient): Promise<Outcome> {
  requireFlags(invocation, ["path"]);
  const query = new URLSearchParams({ method: invocation.method ?? "GET", path: invocation.path ?? "/" });
  const answer = await gateway.get(`/__limiter/status?${query}`, invocation.headers);
  if (answer.status !== 200) throw failure(answer, gateway.url, "not-sent");
  const body = answer.body as CallerStatus;
  const rows = body.buckets.map((b) => [b.rule, b.mode, String(b.remaining), String(b.limit), String(b.cost), b.retryAfterSeconds > 0 ? `${b.retryAfterSeconds}s` : "-"]);
  const verdict = body.allowed === undefined ? "no rule applies" : body.allowed ? "would be allowed" : "would be refused";
  const text = `${body.method} ${body.path}: ${verdict}${rows.length === 0 ? "" : `\n${table(["rule", "mode", "remaining", "limit", "cost", "retry in"], rows)}`}`;
  return { code: body.allowed === false ? EXIT.refused : EXIT.ok, json: body, text };
}

function isHealth(body: unknown): body is Health {
  return typeof body === "object" && body !== null && "status" in body;
}
