// @ts-check
/**
 * The hot-key scenario, and Durable Object accuracy on shared isolates: several gateway isolates
 * (workers in ONE Miniflare instance, dev/miniflare-isolates.mjs) sharing one Durable Object
 * namespace, as gateways in several Cloudflare locations share one object per client.
 *
 * Hot key: one client whose budget is above the load, its requests spread evenly over
 * `HOT_KEY_ISOLATES` isolates. Reported: calls that reached an object per request (each
 * isolate's `isolate.backendCalls` in `/__limiter/health`, summed), and allowed against the
 * theoretical maximum (capacity + rate × elapsed).
 */
import { randomUUID } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { upstashVars } from "../dev/local-stack.mjs";
import { startGatewayIsolates } from "../dev/miniflare-isolates.mjs";
import { runLoad } from "./load.mjs";
import { diffCommands } from "./redis-stats.mjs";

/** Above what the load can spend here (a few thousand req/s at most), yet a real bound. */
export const HOT_KEY_POLICY = { capacity: 20_000, rate: 20_000 };
export const HOT_KEY_ISOLATES = 3;
// Leases go back within about a second of their last use: counted before the calls are read.
const GIVE_BACK_WAIT_MS = 1_500;

/** @typedef {import("./limiters.mjs").Policy} Policy */

/** The benchmark's gateways read their backend calls from health's details, which need a token. */
export const BENCH_ADMIN_TOKEN = "bench-admin-token-0123456789";
/** `fetch` options that show health's details (`isolate.backendCalls`). */
export const BENCH_HEALTH_DETAILS = { headers: { authorization: `Bearer ${BENCH_ADMIN_TOKEN}` } };

/**
 * The gateway's vars for the benchmark's sluice limiters (as bench/limiters.mjs sets them).
 * @param {string} originUrl
 * @param {Policy} policy
 * @returns {Record<string, string>}
 */
export function sluiceIsolateVars(originUrl, policy) {
  return {
    ORIGIN_URL: originUrl,
    LIMITER_ADMIN_TOKEN: BENCH_ADMIN_TOKEN,
    LIMITER_CAPACITY: String(policy.capacity),
    LIMITER_REFILL_RATE: String(policy.rate),
    LIMITER_KEY: "header:x-api-key",
    LIMITER_FAIL_MODE: "closed",
    LIMITER_TIMEOUT_MS: "5000",
  };
}

/**
 * A limiter (in bench/limiters.mjs's shape) whose instances are isolates of ONE Miniflare
 * instance sharing one Durable Object namespace: the first `count` calls of `start` within one
 * scenario share it, and the last `dispose` stops it. For the accuracy scenario, whose instances
 * must share state.
 * @param {import("./limiters.mjs").Limiter} limiter
 * @param {{ scriptPath: string, originUrl: string, count?: number }} options
 * @returns {import("./limiters.mjs").Limiter}
 */
export function onSharedIsolates(limiter, { scriptPath, originUrl, count = HOT_KEY_ISOLATES }) {
  /** @type {{ started: ReturnType<typeof startGatewayIsolates>, handedOut: number, live: number } | undefined} */
  let group;
  return {
    ...limiter,
    label: limiter.label,
    sharesStateAcrossProcesses: true,
    start: async (policy) => {
      if (group === undefined || group.handedOut >= count) {
        group = { started: startGatewayIsolates({ scriptPath, vars: sluiceIsolateVars(originUrl, policy), count }), handedOut: 0, live: 0 };
      }
      const mine = group;
      const index = mine.handedOut++;
      mine.live += 1;
      const { urls, dispose } = await mine.started;
      return {
        url: /** @type {string} */ (urls[index]),
        dispose: async () => {
          mine.live -= 1;
          if (mine.live === 0) await dispose();
        },
      };
    },
  };
}

/**
 * @typedef {object} HotKeyResult
 * @property {string} limiter         "sluice-do" or "sluice-upstash"
 * @property {number} isolates
 * @property {Policy} policy
 * @property {number} requests
 * @property {number} rps
 * @property {number} p50Ms          median over the isolates' runs
 * @property {number} p99Ms          worst of the isolates' runs
 * @property {number} allowed
 * @property {number} refused
 * @property {number} other
 * @property {number} elapsedS
 * @property {number} objectCalls     backend calls the gateways made (to a Durable Object, or a Redis script), all isolates
 * @property {number} callsPerRequest
 * @property {number | null} scriptCalls   Upstash: script calls Redis saw (EVALSHA, EVAL, SCRIPT LOAD); null on Durable Objects
 * @property {number | null} scriptCallsPerRequest
 * @property {number} theoreticalMax  capacity + rate × elapsed, rounded down
 * @property {number} overAdmission
 * @property {number[]} allowedByIsolate
 */

/**
 * One client, budget above the load, over `HOT_KEY_ISOLATES` isolates on one namespace; with
 * `upstash` (the local stack's bridge and the Redis stats), the same isolates on the Upstash
 * backend, all sharing the bridge, and the script calls Redis saw counted too.
 * @param {{ scriptPath: string, originUrl: string, profile: import("./scenarios.mjs").Profile,
 *   register?: (dispose: () => Promise<void>) => () => void,
 *   upstash?: { bridgeUrl: string, stats: import("./scenarios.mjs").RedisStats } }} options  `register` tracks the instance for Ctrl-C
 * @returns {Promise<HotKeyResult>}
 * @example
 * const doResult = await measureHotKey({ scriptPath, originUrl, profile });
 * const upstashResult = await measureHotKey({ scriptPath, originUrl, profile, upstash: { bridgeUrl, stats } });
 */
export async function measureHotKey({ scriptPath, originUrl, profile, register, upstash }) {
  const policy = HOT_KEY_POLICY;
  const vars = {
    ...sluiceIsolateVars(originUrl, policy),
    ...(upstash && upstashVars({ bridge: { url: upstash.bridgeUrl }, origin: { url: originUrl } })),
  };
  const isolates = await startGatewayIsolates({ scriptPath, vars, count: HOT_KEY_ISOLATES });
  const unregister = register?.(isolates.dispose);
  try {
    const headers = { "x-api-key": `hot-${randomUUID()}` };
    for (const url of isolates.urls) {
      const response = await fetch(`${url}/`, { headers: { "x-api-key": `probe-${randomUUID()}` } });
      if (response.status !== 200) throw new Error(`hot key: an isolate answered ${response.status}: ${(await response.text()).slice(0, 300)}`);
    }
    const connections = Math.max(1, Math.round(profile.connections / HOT_KEY_ISOLATES));
    const load = (/** @type {number} */ durationS, /** @type {number} */ maxRequests) =>
      Promise.all(isolates.urls.map((url) => runLoad({ url: `${url}/`, connections, durationS, maxRequests: Math.ceil(maxRequests / HOT_KEY_ISOLATES), headers })));
    // The warm-up spends from the same bucket, so the measured run's bound counts from its start.
    await load(profile.warmupS, profile.maxRequests);
    await delay(GIVE_BACK_WAIT_MS);
    const callsBefore = await objectCalls(isolates.urls);
    const redisBefore = upstash ? await upstash.stats.snapshot() : undefined;
    const runs = await load(profile.measureS, profile.maxRequests);
    await delay(GIVE_BACK_WAIT_MS);
    const calls = (await objectCalls(isolates.urls)) - callsBefore;
    const scriptCalls = upstash && redisBefore ? diffCommands(redisBefore, await upstash.stats.snapshot()).scriptCalls : null;

    const requests = sum(runs.map((r) => r.responses));
    const start = Math.min(...runs.map((r) => r.startedAt));
    const end = Math.max(...runs.map((r) => r.startedAt + r.elapsedS * 1000));
    const elapsedS = (end - start) / 1000;
    const allowed = sum(runs.map((r) => r.allowed));
    // The warm-up may have left the bucket below full: the bound assumes it was full (the larger bound).
    const theoreticalMax = Math.floor(policy.capacity + policy.rate * elapsedS);
    const p50s = runs.map((r) => r.p50Ms).sort((a, b) => a - b);
    return {
      limiter: upstash ? "sluice-upstash" : "sluice-do",
      isolates: HOT_KEY_ISOLATES,
      policy,
      requests,
      rps: requests / elapsedS,
      p50Ms: p50s[Math.floor(p50s.length / 2)] ?? Number.NaN,
      p99Ms: Math.max(...runs.map((r) => r.p99Ms)),
      allowed,
      refused: sum(runs.map((r) => r.refused)),
      other: sum(runs.map((r) => r.other + r.errors)),
      elapsedS,
      objectCalls: calls,
      callsPerRequest: requests > 0 ? calls / requests : Number.NaN,
      scriptCalls,
      scriptCallsPerRequest: scriptCalls === null || requests === 0 ? null : scriptCalls / requests,
      theoreticalMax,
      overAdmission: Math.max(0, allowed - theoreticalMax),
      allowedByIsolate: runs.map((r) => r.allowed),
    };
  } finally {
    unregister?.();
    await isolates.dispose();
  }
}

/**
 * Backend calls the isolates made (to an object, or a Redis script), summed (`isolate.backendCalls`).
 * @param {readonly string[]} urls
 */
async function objectCalls(urls) {
  let total = 0;
  for (const url of urls) {
    const health = /** @type {{ isolate?: { backendCalls?: number } }} */ (await (await fetch(`${url}/__limiter/health`, BENCH_HEALTH_DETAILS)).json());
    const calls = health.isolate?.backendCalls;
    if (typeof calls !== "number") throw new Error(`${url}/__limiter/health reports no isolate.backendCalls`);
    total += calls;
  }
  return total;
}

/** @param {number[]} values */
function sum(values) {
  return values.reduce((a, b) => a + b, 0);
}
