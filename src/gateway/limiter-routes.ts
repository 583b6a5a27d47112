import { Hono } from "hono";
import { invalidConfigurationProblem, notFoundProblem } from "../core/problems";
import { describeConfigErrors, type ConfigError } from "./config";
import type { Env } from "./env";
import { gatewayFor } from "./gateway";

/**
 * The reserved `/__limiter/*` routes; nothing under this prefix is ever proxied.
 * `GET /__limiter/health` answers 200 with the backend's round-trip time and this isolate's
 * breaker state, or 503 when the configuration is invalid or the backend does not answer.
 *
 * @example
 * app.route("/__limiter", limiterRoutes);
 */
export const limiterRoutes = new Hono<{ Bindings: Env }>();

limiterRoutes.get("/health", async (c) => {
  const gateway = gatewayFor(c.env);
  if (!gateway.ok) {
    return c.json({ status: "error", config: { ok: false, errors: describeConfigErrors(gateway.errors) } }, 503);
  }
  const { limiter } = gateway;
  // What this isolate knows besides the ping: its circuit breaker, deny cache and call count.
  const isolate = limiter.isolateState();
  const backend = await limiter.ping();
  const name = limiter.backend.name;
  if (backend.ok) return c.json({ status: "ok", config: { ok: true }, backend: { name, ok: true, latencyMs: backend.latencyMs }, isolate });
  if (backend.configError !== undefined) {
    const { variable, message } = backend.configError;
    return c.json({ status: "error", config: { ok: false, errors: [`${variable}: ${message}`] }, backend: { name, ok: false }, isolate }, 503);
  }
  return c.json({ status: "error", config: { ok: true }, backend: { name, ok: false, error: backend.error }, isolate }, 503);
});

limiterRoutes.all("*", (c) => notFoundProblem(new URL(c.req.url).pathname));

/**
 * The 500 every request gets while the configuration is invalid: it names each bad variable
 * and its value, so the operator sees the mistake on the first request.
 *
 * @example
 * configErrorResponse([{ variable: "LIMITER_CAPACITY", value: "abc", message: "must be an integer from 1 to 1000000000" }]);
 */
export function configErrorResponse(errors: readonly ConfigError[]): Response {
  return invalidConfigurationProblem(describeConfigErrors(errors), errors);
}
