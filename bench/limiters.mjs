// @ts-check
/**
 * The things under test: the bare proxy, sluice on each backend, and the peers. Each knows how to
 * start one instance of itself (one workerd process) for a given token-bucket policy.
 */
import { LOCAL_UPSTASH_TOKEN, upstashVars } from "../dev/local-stack.mjs";
import { buildGatewayBundle, startGateway } from "../dev/miniflare-gateway.mjs";
import { bundleWorker, startWorker } from "./miniflare-worker.mjs";

/** @typedef {{ capacity: number, rate: number }} Policy  tokens, and tokens per second */
/** @typedef {{ url: string, dispose: () => Promise<void> }} Instance */

/**
 * @typedef {object} Limiter
 * @property {string} id
 * @property {string} label
 * @property {"none" | "durable-object" | "redis"} store  "redis": commands can be counted from INFO
 * @property {boolean} sharesStateAcrossProcesses  false: separate processes would not share buckets
 * @property {(policy: Policy) => Promise<Instance>} start
 */

/**
 * Builds every bundle (sluice as `wrangler deploy` would, the others with esbuild) and returns
 * the limiters, in report order.
 * @param {{ originUrl: string, bridgeUrl: string }} stack
 * @returns {Promise<Limiter[]>}
 */
export async function prepareLimiters(stack) {
  const [sluice, bare, upstashRatelimit, honoRateLimiter] = await Promise.all([
    Promise.resolve().then(buildGatewayBundle),
    bundleWorker("bare"),
    bundleWorker("upstash-ratelimit"),
    bundleWorker("hono-rate-limiter"),
  ]);

  /** @param {Policy} policy @returns {Record<string, string>} */
  const sluiceVars = (policy) => ({
    ORIGIN_URL: stack.originUrl,
    LIMITER_CAPACITY: String(policy.capacity),
    LIMITER_REFILL_RATE: String(policy.rate),
    LIMITER_KEY: "header:x-api-key",
    // A store that cannot keep up must show as errors (503), not as requests let through.
    LIMITER_FAIL_MODE: "closed",
    LIMITER_TIMEOUT_MS: "5000",
  });
  /** @param {Policy} policy @returns {Record<string, string>} */
  const peerVars = (policy) => ({
    ORIGIN_URL: stack.originUrl,
    UPSTASH_REDIS_REST_URL: stack.bridgeUrl,
    UPSTASH_REDIS_REST_TOKEN: LOCAL_UPSTASH_TOKEN,
    CAPACITY: String(policy.capacity),
    REFILL_RATE: String(policy.rate),
  });
  const upstash = upstashVars({ bridge: { url: stack.bridgeUrl }, origin: { url: stack.originUrl } });

  return [
    {
      id: "bare",
      label: "bare proxy (no limiter)",
      store: "none",
      sharesStateAcrossProcesses: true,
      start: () => startWorker({ scriptPath: bare, vars: { ORIGIN_URL: stack.originUrl } }),
    },
    {
      id: "sluice-do",
      label: "sluice, Durable Object",
      store: "durable-object",
      // Each Miniflare process has its own Durable Object storage.
      sharesStateAcrossProcesses: false,
      start: (policy) => startGateway({ scriptPath: sluice, vars: sluiceVars(policy) }),
    },
    {
      id: "sluice-do-no-metrics",
      label: "sluice, Durable Object, metrics off",
      store: "durable-object",
      sharesStateAcrossProcesses: false,
      start: (policy) => startGateway({ scriptPath: sluice, vars: { ...sluiceVars(policy), LIMITER_METRICS: "off" } }),
    },
    {
      id: "sluice-upstash",
      label: "sluice, Upstash",
      store: "redis",
      sharesStateAcrossProcesses: true,
      start: (policy) => startGateway({ scriptPath: sluice, vars: { ...sluiceVars(policy), ...upstash } }),
    },
    {
      id: "upstash-ratelimit",
      label: "@upstash/ratelimit 2.0.8 tokenBucket",
      store: "redis",
      sharesStateAcrossProcesses: true,
      start: (policy) => startWorker({ scriptPath: upstashRatelimit, vars: peerVars(policy) }),
    },
    {
      id: "hono-rate-limiter",
      label: "hono-rate-limiter + RedisStore",
      store: "redis",
      sharesStateAcrossProcesses: true,
      start: (policy) => startWorker({ scriptPath: honoRateLimiter, vars: peerVars(policy) }),
    },
  ];
}
