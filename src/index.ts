import { Hono } from "hono";
import type { Env } from "./config/env";
import { configErrorResponse } from "./gateway/config-error-response";
import { gatewayFor, type ReadyGateway } from "./gateway/gateway";
import { limiterRoutes } from "./gateway/limiter-routes";
import { peerAddress } from "./limiter/identity";
import { rateLimiter } from "./limiter/middleware";
import { forwardToOrigin } from "./proxy/forward";

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

app.use(
  "*",
  rateLimiter((c: { var: GatewayEnv["Variables"] }) => {
    const { config, backend, denyCache, breaker } = c.var.gateway;
    return { ...config, backend, denyCache, breaker };
  }),
);

app.all("*", (c) =>
  forwardToOrigin(c.req.raw, {
    originUrl: c.var.gateway.config.originUrl,
    timeoutMs: c.var.gateway.config.originTimeoutMs,
    clientIp: peerAddress(c.req.raw.headers),
  }),
);

export default app;
