/**
 * `sluice/gateway`: the whole gateway Worker, configured by its vars (docs/configuration.md). A
 * deployment's entry module re-exports it with the classes its wrangler.toml binds, e.g. the
 * src/index.ts `npx sluice init` writes (this repository's is the same line, importing
 * "./gateway/index": "sluice/gateway" would resolve to dist/, built only by `npm run build`):
 *
 *   export { default, ClientBuckets, GatewayMetrics, LimiterService } from "sluice/gateway";
 */
import { Hono } from "hono";
import { connectingAddress } from "../core/identity";
import type { Env } from "./env";
import { withGateway, type GatewayEnv } from "./gateway";
import { requestIdOf } from "./log";
import { forwardToOrigin } from "./proxy";
import { reservedRoutes } from "./reserved";
import { rateLimiter } from "../hono";

export { ClientBuckets } from "../backends/durable-object";
export { GatewayMetrics } from "./metrics-object";
export { LimiterService } from "./rpc";

/** The sluice Worker: reserved limiter routes, then configuration, rate limiting, and the proxy. */
const app = new Hono<GatewayEnv>();

// First: /__limiter in any spelling (case, escapes, //) is the gateway's own, never the origin's.
app.use("*", reservedRoutes);
app.use("*", withGateway);
app.use(
  "*",
  rateLimiter<GatewayEnv>({
    // c.get, not c.var: Hono builds a new object for every read of c.var.
    limiter: (c) => c.get("gateway").limiter,
    requestId: requestIdOf,
    onResponse: (c) => c.get("gateway").metrics.afterRequest(c.executionCtx),
  }),
);
app.all("*", async (c) => {
  const { config, metrics } = c.get("gateway");
  const started = performance.now();
  const response = await forwardToOrigin(c.req.raw, {
    originUrl: config.origin.url,
    timeoutMs: config.origin.timeoutMs,
    clientIp: connectingAddress(c.req.raw.headers),
    requestId: () => requestIdOf(c),
  });
  metrics.recorder.recordOrigin(response.status, performance.now() - started);
  return response;
});

/** The default export's type: a Worker's fetch handler, so the package's declarations need no Hono. */
interface GatewayWorker {
  fetch(request: Request, env: Env, ctx: ExecutionContext): Response | Promise<Response>;
}

const worker: GatewayWorker = app;
export default worker;
