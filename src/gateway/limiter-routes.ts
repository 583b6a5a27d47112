import { Hono } from "hono";
import { BackendConfigError, withDeadline } from "../backends/backend";
import { describeConfigErrors } from "../config/gateway-config";
import type { Env } from "../config/env";
import { problemResponse } from "../http/problem";
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
  const { backend, config, breaker, denyCache, stats } = gateway;
  // What this isolate knows besides the ping: its circuit breaker, deny cache and call count.
  const isolate = {
    breaker: breaker.state(Date.now()),
    denyCacheEntries: denyCache.size,
    backendCalls: stats.backendCalls,
    rules: config.rules.map((rule) => rule.name),
  };
  const started = performance.now();
  try {
    await withDeadline((signal) => backend.ping(signal), config.timeoutMs);
  } catch (error) {
    if (error instanceof BackendConfigError) {
      return c.json(
        { status: "error", config: { ok: false, errors: [`${error.variable}: ${error.message}`] }, backend: { name: backend.name, ok: false }, isolate },
        503,
      );
    }
    return c.json(
      {
        status: "error",
        config: { ok: true },
        backend: { name: backend.name, ok: false, error: error instanceof Error ? error.message : String(error) },
        isolate,
      },
      503,
    );
  }
  const latencyMs = Math.round((performance.now() - started) * 100) / 100;
  return c.json({ status: "ok", config: { ok: true }, backend: { name: backend.name, ok: true, latencyMs }, isolate });
});

limiterRoutes.all("*", (c) =>
  problemResponse({
    type: "/problems/not-found",
    title: "Not Found",
    status: 404,
    detail: `${new URL(c.req.url).pathname} is not a limiter endpoint; /__limiter/ is reserved and never proxied.`,
  }),
);
