import { Hono } from "hono";
import { peerAddress } from "./core/identity";
import { withGateway, type GatewayEnv } from "./gateway/gateway";
import { requestIdOf } from "./gateway/log";
import { forwardToOrigin } from "./gateway/proxy";
import { reservedRoutes } from "./gateway/reserved";
import { rateLimiter } from "./hono";

export { ClientBuckets } from "./backends/durable-object";
export { GatewayMetrics } from "./gateway/metrics-object";
export { LimiterService } from "./gateway/rpc";

/** The sluice Worker: reserved limiter routes, then configuration, rate limiting, and the proxy. */
const app = new Hono<GatewayEnv>();

// First: /__limiter in any spelling (case, escapes, //) is the gateway's own, never the origin's.
app.use("*", reservedRoutes);
app.use("*", withGateway);
app.use(
  "*",
  rateLimiter<GatewayEnv>({
    limiter: (c) => c.var.gateway.limiter,
    requestId: (c) => requestIdOf(c.req.raw.headers),
    onResponse: (c) => c.var.gateway.metrics.afterRequest(c.executionCtx),
  }),
);
app.all("*", async (c) => {
  const { config, metrics } = c.var.gateway;
  const started = performance.now();
  const response = await forwardToOrigin(c.req.raw, {
    originUrl: config.origin.url,
    timeoutMs: config.origin.timeoutMs,
    clientIp: peerAddress(c.req.raw.headers),
    requestId: requestIdOf(c.req.raw.headers),
  });
  metrics.recorder.recordOrigin(response.status, performance.now() - started);
  return response;
});

export default app;
