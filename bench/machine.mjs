// @ts-check
/** What the figures were measured on: the machine and the versions of everything in the path. */
import { readFileSync } from "node:fs";
import os from "node:os";

const nodeModules = new URL("../node_modules/", import.meta.url).pathname;

/**
 * @param {{ redisVersion: string }} measured
 * @example
 * describeMachine({ redisVersion: await stats.version() });
 */
export function describeMachine({ redisVersion }) {
  const cpus = os.cpus();
  return {
    os: `${os.type()} ${os.release()} (${os.platform()}/${os.arch()})`,
    cpuModel: cpus[0]?.model ?? "unknown",
    cpuCount: cpus.length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    redis: redisVersion,
    // The workerd binary Miniflare runs, not necessarily the one wrangler uses.
    workerd: versionOf("miniflare/node_modules/workerd") ?? versionOf("workerd"),
    miniflare: versionOf("miniflare"),
    autocannon: versionOf("autocannon"),
    hono: versionOf("hono"),
    "@upstash/redis": versionOf("@upstash/redis"),
    "@upstash/ratelimit": versionOf("@upstash/ratelimit"),
    "hono-rate-limiter": versionOf("hono-rate-limiter"),
  };
}

/**
 * The installed version of a package under node_modules (undefined when it is not there).
 * @param {string} path e.g. "hono", or "miniflare/node_modules/workerd" for a nested copy
 * @returns {string | undefined}
 */
/**
 * The installed version of a package under node_modules, if any.
 * @param {string} path
 * @returns {string | undefined}
 * @example
 * versionOf("@upstash/ratelimit"); // "2.2.0"
 */
export function versionOf(path) {
  try {
    return String(JSON.parse(readFileSync(`${nodeModules}${path}/package.json`, "utf8")).version).replace(/^v/, "");
  } catch {
    return undefined;
  }
}
