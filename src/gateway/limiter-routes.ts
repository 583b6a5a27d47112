import { Hono } from "hono";
import { notFoundProblem } from "../core/problems";
import { adminRoutes } from "./admin-routes";
import { describeConfigErrors } from "./config";
import { gatewayFor, withGateway, type GatewayEnv } from "./gateway";
import { metricsRoutes } from "./metrics-routes";
import { statusRoute } from "./status-route";

/**
 * The reserved `/__limiter/*` routes; nothing under this prefix is ever proxied or charged to a
 * client's buckets. `GET /__limiter/health` answers 200 with the backend's round-trip time and
 * this isolate's breaker state, or 503 when the configuration is invalid or the backend does not
 * answer; `/__limiter/status` and `/__limiter/admin/*` are described where they are defined.
 *
 * @example
 * app.route("/__limiter", limiterRoutes);
 */
export const limiterRoutes = new Hono<GatewayEnv>();

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

limiterRoutes.use("/status", withGateway);
limiterRoutes.get("/status", statusRoute);
limiterRoutes.use("/admin/*", withGateway);
limiterRoutes.route("/admin", adminRoutes);
limiterRoutes.use("/metrics", withGateway);
limiterRoutes.use("/dashboard", withGateway);
limiterRoutes.use("/dashboard/*", withGateway);
limiterRoutes.route("/", metricsRoutes);

limiterRoutes.all("*", (c) => notFoundProblem(new URL(c.req.url).pathname));
