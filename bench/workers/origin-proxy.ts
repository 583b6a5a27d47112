/**
 * What every benchmark worker does with a request it lets through: sluice's own proxy, so the
 * bare worker and the peers differ from sluice only in the limiter.
 */
import type { Context } from "hono";
import { connectingAddress } from "../../src/core/identity";
import { forwardToOrigin } from "../../src/gateway/proxy";

/** Vars shared by the benchmark workers. */
export interface BenchEnv {
  ORIGIN_URL: string;
}

/** Vars of the peers: the Upstash REST endpoint and one token-bucket policy. */
export interface PeerEnv extends BenchEnv {
  UPSTASH_REDIS_REST_URL: string;
  UPSTASH_REDIS_REST_TOKEN: string;
  /** Bucket size (largest burst). */
  CAPACITY: string;
  /** Tokens per second. */
  REFILL_RATE: string;
}

/** Forwards the request to `ORIGIN_URL` exactly as the sluice gateway does. */
export function proxyToOrigin(request: Request, env: BenchEnv): Promise<Response> {
  return forwardToOrigin(request, {
    originUrl: new URL(env.ORIGIN_URL),
    timeoutMs: 30_000,
    clientIp: connectingAddress(request.headers),
  });
}

/** The client a request is charged to: the same header sluice is configured with in the benchmark. */
export function clientId(c: Context): string {
  return c.req.header("x-api-key") ?? "anonymous";
}
