// @ts-check
/**
 * Alternating A/B throughput of gateway variants and the benchmark's limiters, in one run:
 * `node dev/ab-throughput.mjs` with env
 *   AB_IDS       limiters in the order of each round, e.g. `sluice-upstash,ietf,upstash-ratelimit`
 *                (bench/limiters.mjs ids, or names from AB_VARIANTS)
 *   AB_VARIANTS  `name={"LIMITER_HEADERS":"ietf"};other={…}`: sluice on Upstash with these vars on top
 *                (`"__bundle": "/path/index.js"` runs another build, e.g. the commit before a change)
 *   AB_SCENARIO  `flood` (default) or `allowed`; AB_ROUNDS (default 4); AB_SECONDS per run (default 3)
 *
 * Each round runs every limiter once (bench/scenarios.mjs `measureThroughput`, 16 connections, a
 * 1 s warm-up), so the host's drift hits all alike; the req/s of every run are printed per limiter.
 * Loopback only; each run is bounded in time and count.
 *
 * @example
 * AB_IDS=sluice-upstash,none,upstash-ratelimit AB_VARIANTS='none={"LIMITER_HEADERS":"none"}' node dev/ab-throughput.mjs
 */
import { prepareLimiters } from "../bench/limiters.mjs";
import { connectRedisStats } from "../bench/redis-stats.mjs";
import { measureThroughput } from "../bench/scenarios.mjs";
import { startStackProcess } from "../bench/stack.mjs";
import { sluiceUpstashVariant } from "./ab-variant.mjs";
import { buildGatewayBundle } from "./miniflare-gateway.mjs";

const ids = (process.env.AB_IDS ?? "sluice-upstash,upstash-ratelimit").split(",").filter(Boolean);
const scenario = process.env.AB_SCENARIO === "allowed" ? "allowed" : "flood";
const rounds = Number(process.env.AB_ROUNDS ?? 4);
const profile = { name: "ab", connections: 16, warmupS: 1, measureS: Number(process.env.AB_SECONDS ?? 3), rounds: 1, maxRequests: 200_000, accuracyS: 3 };

const stack = await startStackProcess();
const stats = await connectRedisStats(stack.redisUrl);
try {
  const limiters = await prepareLimiters(stack);
  const base = limiters.find((l) => l.id === "sluice-upstash");
  if (base === undefined) throw new Error("no sluice-upstash limiter");
  const bundle = buildGatewayBundle();
  for (const variant of (process.env.AB_VARIANTS ?? "").split(";").filter(Boolean)) {
    const at = variant.indexOf("=");
    const { __bundle, ...extraVars } = JSON.parse(variant.slice(at + 1));
    limiters.push(sluiceUpstashVariant(base, stack, { id: variant.slice(0, at), scriptPath: __bundle ?? bundle, extraVars }));
  }
  /** @type {Record<string, number[]>} */
  const rps = {};
  for (let round = 1; round <= rounds; round++) {
    for (const id of ids) {
      const limiter = limiters.find((l) => l.id === id);
      if (limiter === undefined) throw new Error(`no limiter ${id}`);
      const row = await measureThroughput(limiter, scenario, { profile, stats });
      (rps[id] ??= []).push(Math.round(row.rps));
      console.error(`round ${round}: ${id} ${Math.round(row.rps)} req/s`);
    }
  }
  console.log(JSON.stringify({ scenario, rounds, rps }));
} finally {
  await stats.close();
  await stack.stop();
}
