/**
 * `sluice/gateway`: the whole gateway Worker, configured by its vars (docs/configuration.md). A
 * deployment's entry module re-exports it with the classes its wrangler.toml binds, e.g. the
 * src/index.ts `npx sluice init` writes (this repository's is the same line, importing
 * "./gateway/index": "sluice/gateway" would resolve to dist/, built only by `npm run build`):
 *
 *   export { default, ClientBuckets, GatewayMetrics, LimiterService } from "sluice/gateway";
 */
import type { Env } from "./env";
import { reservedResponse } from "./reserved";
import { trafficResponse } from "./traffic";

export { ClientBuckets } from "../backends/durable-object";
export { GatewayMetrics } from "./metrics-object";
export { LimiterService } from "./rpc";

/** The default export's type: a Worker's fetch handler, so the package's declarations need no Hono. */
interface GatewayWorker {
  fetch(request: Request, env: Env, ctx: ExecutionContext): Response | Promise<Response>;
}

/** The sluice Worker: the reserved limiter routes, then the limiter around the proxy for everything else. */
const worker: GatewayWorker = {
  fetch: (request, env, ctx) => reservedResponse(request, env, ctx) ?? trafficResponse(request, env, ctx),
};
export default worker;
