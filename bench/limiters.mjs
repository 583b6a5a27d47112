// @ts-check
/**
 * The things under test: the bare proxy, sluice on each backend, and the peers. Each knows how to
 * start one instance of itself (one workerd process) for a given token-bucket policy.
 */
import { versionOf } from "./machine.mjs";
import { LOCAL_UPSTASH_TOKEN, upstashVars } from "../dev/local-stack.mjs";
import { buildGatewayBundle, startGateway } from "../dev/miniflare-gateway.mjs";
import { startWorkerd } from "../dev/workerd.mjs";
import { BENCH_ADMIN_TOKEN } from "./hot-key.mjs";
import { bundleWorker, startWorker } from "./miniflare-worker.mjs";

/** @typedef {{ capacity: number, rate: number }} Policy  tokens, and tokens per second */
/** @typedef {{ url: string, dispose: () => Promise<void> }} Instance */

/**
 * @typedef {object} Limiter
 * @property {string} id
 * @property {string} label
 * @property {"none" | "durable-object" | "redis" | "rate-limiting-binding"} store  "redis": commands can be counted from INFO
 * @property {boolean} sharesStateAcrossProcesses  false: separate processes would not share buckets
 * @property {boolean} [countsStorage]  answers `/__bench/storage-ops` with its bucket objects' storage calls
 * @property {(policy: Policy) => Promise<Instance>} start
 */

/**
 * Builds every bundle (sluice as `wrangler deploy` would, the others with esbuild) and returns
 * the limiters, in report order.
 * @param {{ originUrl: string, bridgeUrl: string }} stack
 * @returns {Promise<Limiter[]>}
 */
export async function prepareLimiters(stack) {
  const [[sluice, sluiceCounted], bare, upstashRatelimit, honoRateLimiter, rlBinding, answer] = await Promise.all([
    // The counted variant imports the dashboard assets the gateway's build step generates.
    Promise.resolve()
      .then(buildGatewayBundle)
      .then(async (bundle) => /** @type {const} */ ([bundle, await bundleWorker("sluice-do-counted")])),
    bundleWorker("bare"),
    bundleWorker("upstash-ratelimit"),
    bundleWorker("hono-rate-limiter"),
    bundleWorker("rl-binding"),
    bundleWorker("answer"),
  ]);

  /** @param {Policy} policy @returns {Record<string, string>} */
  const sluiceVars = (policy) => ({
    ORIGIN_URL: stack.originUrl,
    // Health shows the backend call count (isolate.backendCalls) to the holder of a token.
    LIMITER_ADMIN_TOKEN: BENCH_ADMIN_TOKEN,
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
      start: (policy) => startGateway({ scriptPath: sluice, vars: sluiceVars(policy), direct: true }),
    },
    {
      id: "sluice-do-no-metrics",
      label: "sluice, Durable Object, metrics off",
      store: "durable-object",
      sharesStateAcrossProcesses: false,
      start: (policy) => startGateway({ scriptPath: sluice, vars: { ...sluiceVars(policy), LIMITER_METRICS: "off" }, direct: true }),
    },
    {
      id: "sluice-do-counted",
      label: "sluice, Durable Object, storage calls counted",
      store: "durable-object",
      sharesStateAcrossProcesses: false,
      countsStorage: true,
      start: (policy) => startGateway({ scriptPath: sluiceCounted, vars: sluiceVars(policy), direct: true }),
    },
    {
      id: "sluice-upstash",
      label: "sluice, Upstash",
      store: "redis",
      sharesStateAcrossProcesses: true,
      start: (policy) => startGateway({ scriptPath: sluice, vars: { ...sluiceVars(policy), ...upstash }, direct: true }),
    },
    {
      id: "upstash-ratelimit",
      label: `@upstash/ratelimit ${versionOf("@upstash/ratelimit")} tokenBucket`,
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
    {
      id: "rl-binding",
      label: "Workers Rate Limiting binding (Miniflare)",
      store: "rate-limiting-binding",
      // Each Miniflare process keeps its own counters (and on Cloudflare each location does).
      sharesStateAcrossProcesses: false,
      start: (policy) => startRateLimitingBindingWorker(rlBinding, { ORIGIN_URL: stack.originUrl }, bindingPolicy(policy)),
    },
    {
      id: "answer-sluice",
      label: "sluice's 429 alone (no limiter)",
      store: "none",
      sharesStateAcrossProcesses: false,
      start: () => startWorker({ scriptPath: answer, vars: { SHAPE: "sluice" } }),
    },
    {
      id: "answer-peer",
      label: "the peer's 429 alone (no limiter)",
      store: "none",
      sharesStateAcrossProcesses: false,
      start: () => startWorker({ scriptPath: answer, vars: { SHAPE: "peer" } }),
    },
  ];
}

/**
 * The Rate Limiting binding's own policy for a token-bucket policy: `limit` calls per `period`
 * (10 or 60 s, all it accepts), with the bucket's long-run rate. The shortest period that holds
 * the bucket's capacity keeps its burst too when capacity ÷ rate ≤ 10 s (the flood's 10 at 1/s:
 * 10 per 10 s); otherwise the window lets through `rate × period`, more than the bucket's burst
 * (the accuracy scenario's 50 at 20/s becomes 200 per 10 s).
 * @param {Policy} policy
 * @returns {{ limit: number, period: 10 | 60 }}
 * @example
 * bindingPolicy({ capacity: 10, rate: 1 }); // { limit: 10, period: 10 }
 */
export function bindingPolicy({ capacity, rate }) {
  const period = capacity / rate <= 10 ? 10 : 60;
  return { limit: Math.max(capacity, Math.round(rate * period)), period };
}

/**
 * Starts the Rate Limiting binding peer on its own workerd process with the binding as Miniflare
 * provides it (`ratelimits`, what wrangler's `[[ratelimits]]` becomes).
 * @param {string} scriptPath
 * @param {Record<string, string>} vars
 * @param {{ limit: number, period: 10 | 60 }} simple
 * @returns {Promise<Instance>}
 */
async function startRateLimitingBindingWorker(scriptPath, vars, simple) {
  return startWorkerd({ scriptPath, vars, ratelimits: { LIMITER: { namespace_id: "1001", simple } }, direct: true });
}
