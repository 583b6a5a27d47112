import { Hono } from "hono";
import { peerAddress } from "./core/identity";
import type { Env } from "./gateway/env";
import { gatewayFor, type ReadyGateway } from "./gateway/gateway";
import { configErrorResponse, limiterRoutes } from "./gateway/limiter-routes";
import { forwardToOrigin } from "./gateway/proxy";
import { rateLimiter } from "./hono";

export { ClientBuckets } from "./backends/durable-object";

type GatewayEnv = { Bindings: Env; Variables: { gateway: ReadyGateway } };

/** The sluice Worker: reserved limiter routes, then configuration, rate limiting, and the proxy. */
const app = new Hono<GatewayEnv>();

app.route("/__limiter", limiterRoutes);

app.use("*", async (c, next) => {
  const gateway = gatewayFor(c.env);
  if (!gateway.ok) return configErrorResponse(gateway.errors);
  c.set("gateway", gateway);
  return next();
});

app.use("*", rateLimiter<GatewayEnv>({ limiter: (c) => c.var.gateway.limiter }));

app.all("*", (c) => {
  const { origin } = c.var.gateway.config;
  return forwardToOrigin(c.req.raw, { originUrl: origin.url, timeoutMs: origin.timeoutMs, clientIp: peerAddress(c.req.raw.headers) });
});

export default app;
