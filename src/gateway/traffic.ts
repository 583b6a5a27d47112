import { connectingAddress } from "../core/identity";
import { internalErrorProblem } from "../core/problems";
import { limitRequest } from "../fetch";
import type { Env } from "./env";
import { configErrorResponse, gatewayFor } from "./gateway";
import { logEvent, requestIdReader } from "./log";
import { forwardToOrigin } from "./proxy";

/**
 * Every request that is not a reserved route: the isolate's gateway (or the 500 that names every
 * bad variable), its limiter around the proxy to the origin, and the isolate's metrics flushed
 * when due. No framework on this path: a flood of refusals costs the runtime's own work and the
 * limiter's, nothing per request besides (docs/profile.md, "The flood, without a router"). An
 * exception (a bug) is logged and answered with a 500 problem, never left to the runtime.
 *
 * @example
 * export default { fetch: (request, env, ctx) => reservedResponse(request, env, ctx) ?? trafficResponse(request, env, ctx) };
 */
export async function trafficResponse(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
  const requestId = requestIdReader(request.headers);
  try {
    const gateway = gatewayFor(env);
    if (!gateway.ok) return configErrorResponse(gateway.errors);
    const { config, limiter, metrics } = gateway;
    const response = await limitRequest(
      request,
      async () => {
        const started = performance.now();
        const response = await forwardToOrigin(request, {
          originUrl: config.origin.url,
          timeoutMs: config.origin.timeoutMs,
          clientIp: connectingAddress(request.headers),
          requestId,
        });
        metrics.recorder.recordOrigin(response.status, performance.now() - started);
        return response;
      },
      { limiter, requestId, waitUntil: (task) => ctx.waitUntil(task) },
    );
    metrics.afterRequest(ctx);
    return response;
  } catch (error) {
    logEvent({ event: "gateway.internal_error", reason: error instanceof Error ? error.message : String(error) }, requestId());
    return internalErrorProblem(requestId());
  }
}
