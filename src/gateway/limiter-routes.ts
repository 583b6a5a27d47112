import { Hono, type Handler } from "hono";
import { methodNotAllowedProblem, notFoundProblem } from "../core/problems";
import { adminRoutes } from "./admin-routes";
import { bearerMatches } from "./bearer";
import { describeConfigErrors, type GatewayConfig } from "./config";
import { gatewayFor, withGateway, type GatewayEnv } from "./gateway";
import { metricsRoutes } from "./metrics-routes";
import { statusRoute } from "./status-route";

/**
 * The reserved `/__limiter/*` routes; nothing under this prefix is ever proxied or charged to a
 * client's buckets. `GET /__limiter/health` is described at {@link healthRoute};
 * `/__limiter/status` and `/__limiter/admin/*` where they are defined.
 *
 * @example
 * app.route("/__limiter", limiterRoutes);
 */
export const limiterRoutes = new Hono<GatewayEnv>();

/** Health is read live by monitors: no cache keeps a copy. */
const NO_STORE = { "Cache-Control": "no-store" };

/** Where health's details are, for a caller without a token. */
const HEALTH_DETAILS_HINT = "the store, circuit breaker and rules need Authorization: Bearer with LIMITER_ADMIN_TOKEN or LIMITER_METRICS_TOKEN";

/**
 * `GET /__limiter/health`: `ok` (200) when the store answered, `degraded` (200) when it answered
 * but this isolate's circuit breaker is not closed yet, `error` (503) when it did not answer or
 * the configuration is invalid. The store is probed at most once per 2 s per isolate
 * (`HEALTH_PROBE_TTL_MS`; callers in between get that answer), so a call costs the store nothing.
 * Anyone gets the status, and the variables a configuration error names (every other request
 * answers them too); the store's name, latency and error text, the breaker and the rule names
 * need the admin or the metrics token.
 *
 * @example
 * // curl https://gateway.example.com/__limiter/health
 * // {"status":"ok","details":"… need Authorization: Bearer …"}
 */
export const healthRoute: Handler<GatewayEnv> = async (c) => {
  const gateway = gatewayFor(c.env);
  if (!gateway.ok) {
    return c.json({ status: "error", config: { ok: false, errors: describeConfigErrors(gateway.errors) } }, 503, NO_STORE);
  }
  const { limiter, health, config } = gateway;
  const backend = await health.read();
  // What this isolate knows besides the probe: its circuit breaker, deny cache and call count.
  const isolate = limiter.isolateState();
  const status = !backend.ok ? "error" : isolate.breaker === "closed" ? "ok" : "degraded";
  const code = status === "error" ? 503 : 200;
  const configErrors = !backend.ok && backend.configError !== undefined ? [`${backend.configError.variable}: ${backend.configError.message}`] : undefined;
  const configPart = { config: configErrors === undefined ? { ok: true } : { ok: false, errors: configErrors } };
  if (!(await holdsAToken(c.req.raw.headers, config))) {
    return c.json({ status, ...(configErrors !== undefined && configPart), details: HEALTH_DETAILS_HINT }, code, NO_STORE);
  }
  const name = limiter.backend.name;
  const backendPart = backend.ok
    ? { name, ok: true, latencyMs: backend.latencyMs, ageMs: backend.ageMs }
    : { name, ok: false, ...(configErrors === undefined && { error: backend.error }), ageMs: backend.ageMs };
  return c.json({ status, ...configPart, backend: backendPart, isolate }, code, NO_STORE);
};

/** Whether the request carries the admin token or the metrics token. */
async function holdsAToken(headers: Headers, config: GatewayConfig): Promise<boolean> {
  const tokens = [config.admin.kind === "on" ? config.admin.token : undefined, config.metrics.kind === "on" ? config.metrics.token : undefined];
  for (const token of new Set(tokens)) if (token !== undefined && (await bearerMatches(headers, token))) return true;
  return false;
}

limiterRoutes.get("/health", healthRoute);

limiterRoutes.use("/status", withGateway);
limiterRoutes.get("/status", statusRoute);
limiterRoutes.use("/admin/*", withGateway);
limiterRoutes.route("/admin", adminRoutes);
limiterRoutes.use("/metrics", withGateway);
limiterRoutes.use("/dashboard", withGateway);
limiterRoutes.use("/dashboard/*", withGateway);
limiterRoutes.route("/", metricsRoutes);

// Anything else: a 405 naming the methods an endpoint takes, or a 404 for a path that is none.
limiterRoutes.all("*", (c) => {
  const path = new URL(c.req.url).pathname;
  const allowed = allowedMethods(path);
  return allowed.length > 0 ? methodNotAllowedProblem(path, c.req.method, allowed) : notFoundProblem(path);
});

/** The methods this router's endpoints take at `path` (canonical, `/__limiter/…`), HEAD beside GET. */
function allowedMethods(path: string): string[] {
  const route = path.slice(path.indexOf("/", 1));
  const methods = new Set(limiterRoutes.routes.filter((r) => r.method !== "ALL" && r.path === route).map((r) => r.method));
  if (methods.has("GET")) methods.add("HEAD");
  return [...methods];
}
