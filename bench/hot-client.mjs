// @ts-check
/**
 * Redis commands per decision for one client on one isolate, hot and cold (issue 19's targets:
 * ≤ 1.0 for a client sending ≥ 10 req/s to one isolate, ≤ 3 for a new client per request).
 *
 * Hot: one client, evenly spaced at `HOT_CLIENT.rps` for a few seconds after a warm-up of the
 * same client, so what is measured is its steady state (a lease taken at the start and given
 * back after the run counts: the after-snapshot waits `GIVE_BACK_WAIT_MS`). Cold: the same rate,
 * a new client on every request. Commands: `INFO commandstats` deltas (inside scripts too) ÷
 * decisions; the override registry's `HGETALL` (one per isolate every 5-10 s, whatever the
 * traffic) is shown beside the figure, not divided into it.
 */
import { randomUUID } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { runPaced } from "./load.mjs";
import { diffCommands } from "./redis-stats.mjs";
import { ALLOWED_POLICY } from "./scenarios.mjs";

/** ≥ 10 req/s, as the target reads; well below what one isolate answers. */
export const HOT_CLIENT = { rps: 20 };
/** Requests of the warm-up, the measured hot run and the cold run, per profile (at 20 req/s: 1 s + 4 s + 4 s full, 0.5 s + 1.5 s + 1 s quick). */
const COUNTS = { full: { warmup: 20, measured: 80, cold: 80 }, quick: { warmup: 10, measured: 30, cold: 20 } };
// Leases go back within about a second of the last use: wait for them before the after-snapshot.
const GIVE_BACK_WAIT_MS = 1_500;
const SETTLE_MS = 300;

/**
 * @typedef {object} ClientCommands
 * @property {number} requests
 * @property {number} decisions          2xx + 429
 * @property {number} other              neither (errors included)
 * @property {number} commands           every command Redis ran, without the registry reads
 * @property {number} scriptCalls        EVALSHA, EVAL, SCRIPT LOAD
 * @property {number} registryReads      HGETALL of the override registry (not per decision)
 * @property {number | null} commandsPerDecision
 * @property {number | null} scriptCallsPerDecision
 * @property {Record<string, number>} byCommand
 */

/**
 * @typedef {object} HotClientResult
 * @property {string} limiter
 * @property {number} rps
 * @property {ClientCommands} hot
 * @property {ClientCommands} cold
 */

/**
 * Hot and cold commands per decision of one Redis limiter on one instance.
 * @param {import("./limiters.mjs").Limiter} limiter  store "redis"
 * @param {{ profile: import("./scenarios.mjs").Profile, stats: import("./scenarios.mjs").RedisStats }} context
 * @returns {Promise<HotClientResult>}
 * @example
 * const result = await measureHotClient(limiters.find((l) => l.id === "sluice-upstash"), { profile, stats });
 * result.hot.commandsPerDecision; // ≤ 1 with leases
 */
export async function measureHotClient(limiter, { profile, stats }) {
  const counts = profile.name === "quick" ? COUNTS.quick : COUNTS.full;
  const instance = await limiter.start(ALLOWED_POLICY);
  try {
    const url = `${instance.url}/`;
    const runId = randomUUID();
    const hotHeaders = () => ({ "x-api-key": `hot-client-${runId}` });
    await runPaced({ url, rate: HOT_CLIENT.rps, count: counts.warmup, headersFor: hotHeaders });
    const hot = await counted(stats, () => runPaced({ url, rate: HOT_CLIENT.rps, count: counts.measured, headersFor: hotHeaders }));
    const cold = await counted(stats, () => runPaced({ url, rate: HOT_CLIENT.rps, count: counts.cold, headersFor: (i) => ({ "x-api-key": `cold-client-${runId}-${i}` }) }));
    return { limiter: limiter.id, rps: HOT_CLIENT.rps, hot, cold };
  } finally {
    await instance.dispose();
  }
}

/**
 * Commands Redis ran while `run` ran, and until leases went back.
 * @param {import("./scenarios.mjs").RedisStats} stats
 * @param {() => Promise<import("./load.mjs").PacedResult>} run
 * @returns {Promise<ClientCommands>}
 */
async function counted(stats, run) {
  await delay(SETTLE_MS);
  const before = await stats.snapshot();
  const result = await run();
  await delay(GIVE_BACK_WAIT_MS);
  const used = diffCommands(before, await stats.snapshot());
  const registryReads = used.byCommand.hgetall ?? 0;
  const decisions = result.allowed + result.refused;
  const commands = used.total - registryReads;
  return {
    requests: result.sent,
    decisions,
    other: result.other + result.errors,
    commands,
    scriptCalls: used.scriptCalls,
    registryReads,
    commandsPerDecision: decisions > 0 ? commands / decisions : null,
    scriptCallsPerDecision: decisions > 0 ? used.scriptCalls / decisions : null,
    byCommand: used.byCommand,
  };
}
