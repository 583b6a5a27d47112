import { Hono } from "hono";
import { peerAddress } from "./core/identity";
import { withGateway, type GatewayEnv } from "./gateway/gateway";
import { limiterRoutes } from "./gateway/limiter-routes";
import { forwardToOrigin } from "./gateway/proxy";
import { rateLimiter } from "./hono";

export { ClientBuckets } from "./backends/durable-object";
export { LimiterService } from "./gateway/rpc";

/** The sluice Worker: reserved limiter routes, then configuration, rate limiting, and the proxy. */
const app = new Hono<GatewayEnv>();

app.route("/__limiter", limiterRoutes);
app.use("*", withGateway);
app.use("*", rateLimiter<GatewayEnv>({ limiter: (c) => c.var.gateway.limiter }));
app.all("*", (c) => {
  const { origin } = c.var.gateway.config;
  return forwardToOrigin(c.req.raw, { originUrl: origin.url, timeoutMs: origin.timeoutMs, clientIp: peerAddress(c.req.raw.headers) });
});

export default app;
