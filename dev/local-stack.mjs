// @ts-check
/**
 * The local stand-ins for production, started together: a real redis-server, the Upstash REST
 * bridge in front of it, and the demo origin. Used by `npm run dev:upstash`, tests and the benchmark.
 */
import { startOrigin } from "./origin.mjs";
import { startRedis } from "./redis-server.mjs";
import { startUpstashBridge } from "./upstash-bridge.mjs";

/** The token the local bridge accepts (a real deployment uses `wrangler secret put`). */
export const LOCAL_UPSTASH_TOKEN = "local-dev-token";

/**
 * Starts redis-server, the bridge and the origin on loopback (port 0 = any free port).
 * @param {{ redisPort?: number, bridgePort?: number, originPort?: number }} [ports]
 * @example
 * const stack = await startLocalStack();
 * const vars = upstashVars(stack); // for a gateway
 * await stack.stop();
 */
export async function startLocalStack({ redisPort = 0, bridgePort = 0, originPort = 0 } = {}) {
  const redis = await startRedis({ port: redisPort });
  const bridge = await startUpstashBridge({ redisUrl: redis.url, token: LOCAL_UPSTASH_TOKEN, port: bridgePort });
  const origin = await startOrigin({ port: originPort });
  return {
    redis,
    bridge,
    origin,
    async stop() {
      await origin.close();
      await bridge.close();
      await redis.stop();
    },
  };
}

/**
 * Gateway vars for the Upstash backend on a local stack.
 * @param {{ bridge: { url: string }, origin: { url: string } }} stack
 * @returns {Record<string, string>}
 */
export function upstashVars(stack) {
  return {
    ORIGIN_URL: stack.origin.url,
    LIMITER_BACKEND: "upstash",
    UPSTASH_REDIS_REST_URL: stack.bridge.url,
    UPSTASH_REDIS_REST_TOKEN: LOCAL_UPSTASH_TOKEN,
  };
}
