// @ts-check
/**
 * Counts what a limiter asked of Redis, from `INFO commandstats` snapshots taken before and after
 * a load run. Commands a script runs (TIME, MGET, HSET, …) count as well as the script call.
 */
import { createClient } from "redis";

// What the harness causes; never charged to a limiter: INFO and CONFIG it sends itself, PING the
// gateway's /__limiter/health sends when the harness reads its call count before and after a run.
const HARNESS_COMMANDS = new Set(["info", "config", "ping"]);
// Calls that are one round trip from the worker to the store each: the limiters here are all
// script-based (EVALSHA, EVAL on NOSCRIPT, SCRIPT LOAD), so these are their "backend calls".
const SCRIPT_CALLS = new Set(["evalsha", "eval", "evalsha_ro", "eval_ro", "script|load"]);

/** @typedef {Map<string, number>} CommandCounts command name → calls (including rejected ones) */

/**
 * Connects to Redis for INFO reads.
 * @param {string} url
 * @example
 * const stats = await connectRedisStats(stack.redisUrl);
 * const before = await stats.snapshot();
 * // … load …
 * const used = diffCommands(before, await stats.snapshot());
 * await stats.close();
 */
export async function connectRedisStats(url) {
  const client = createClient({ url });
  client.on("error", () => {}); // a failure surfaces as a rejected command
  await client.connect();
  return {
    /** @returns {Promise<CommandCounts>} */
    async snapshot() {
      return parseCommandStats(String(await client.sendCommand(["INFO", "commandstats"])));
    },
    /** @returns {Promise<string>} e.g. "7.0.15" */
    async version() {
      const info = String(await client.sendCommand(["INFO", "server"]));
      return /redis_version:([^\r\n]+)/.exec(info)?.[1] ?? "unknown";
    },
    close: () =>
      client.quit().then(
        () => undefined,
        () => client.destroy(),
      ),
  };
}

/**
 * @param {string} info the text of `INFO commandstats`
 * @returns {CommandCounts}
 * @example
 * parseCommandStats("cmdstat_get:calls=3,usec=9,usec_per_call=3.00,rejected_calls=0,failed_calls=0"); // Map { "get" => 3 }
 */
export function parseCommandStats(info) {
  /** @type {CommandCounts} */
  const counts = new Map();
  for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+).*?rejected_calls=(\d+)/gm)) {
    // Rejected calls (e.g. a NOSCRIPT EVALSHA) still cost a round trip.
    counts.set(match[1] ?? "", Number(match[2]) + Number(match[3]));
  }
  return counts;
}

/**
 * What was called between two snapshots, without the harness's own INFO/CONFIG and the health reads' PING.
 * @param {CommandCounts} before
 * @param {CommandCounts} after
 * @returns {{ total: number, scriptCalls: number, byCommand: Record<string, number> }}
 */
export function diffCommands(before, after) {
  /** @type {Record<string, number>} */
  const byCommand = {};
  let total = 0;
  let scriptCalls = 0;
  for (const [name, calls] of after) {
    const delta = calls - (before.get(name) ?? 0);
    if (delta <= 0 || HARNESS_COMMANDS.has(name)) continue;
    byCommand[name] = delta;
    total += delta;
    if (SCRIPT_CALLS.has(name)) scriptCalls += delta;
  }
  return { total, scriptCalls, byCommand };
}
