// @ts-check
/**
 * The one launcher of Workers on Miniflare/workerd (no `wrangler dev` proxy in front) that dev
 * tooling, tests and the benchmark share: one workerd process per call, on loopback, with the
 * compatibility date and flags of wrangler.toml, read by wrangler itself.
 */
import { join } from "node:path";
import { build } from "esbuild";
import { Miniflare } from "miniflare";

const projectRoot = new URL("..", import.meta.url).pathname;

/** @type {Promise<{ compatibilityDate: string, compatibilityFlags: string[] }> | undefined} */
let compatibility;

/**
 * wrangler.toml's `compatibility_date` and `compatibility_flags`.
 * @returns {Promise<{ compatibilityDate: string, compatibilityFlags: string[] }>}
 * @example
 * const { compatibilityDate } = await wranglerCompatibility(); // "2026-11-01"
 */
export function wranglerCompatibility() {
  compatibility ??= import("wrangler").then(({ experimental_readRawConfig }) => {
    const { rawConfig } = experimental_readRawConfig({ config: join(projectRoot, "wrangler.toml") });
    if (!rawConfig.compatibility_date) throw new Error("wrangler.toml sets no compatibility_date");
    return { compatibilityDate: rawConfig.compatibility_date, compatibilityFlags: rawConfig.compatibility_flags ?? [] };
  });
  return compatibility;
}

/**
 * Starts one Worker bundle (an ES module) on its own workerd process, listening on loopback.
 * `direct` serves it on a socket of its own instead of through Miniflare's entry worker, which
 * adds a hop of its own to every request (the benchmark measures workers that way, as deployed
 * Workers have no such hop; tests keep the entry worker, which sets `CF-Connecting-IP`).
 * @param {{ scriptPath: string, vars: Record<string, string>, durableObjects?: Record<string, { className: string, useSQLite: boolean }>,
 *   ratelimits?: Record<string, { namespace_id: string, simple: { limit: number, period: 10 | 60 } }>, direct?: boolean }} options
 * @returns {Promise<{ url: string, dispose: () => Promise<void> }>}
 * @example
 * const worker = await startWorkerd({ scriptPath, vars: { ORIGIN_URL: origin.url } });
 * await fetch(`${worker.url}/echo`);
 * await worker.dispose();
 */
export async function startWorkerd({ scriptPath, vars, durableObjects = {}, ratelimits, direct = false }) {
  const worker = {
    name: "worker",
    modules: /** @type {const} */ ([{ type: "ESModule", path: scriptPath }]),
    modulesRoot: join(scriptPath, ".."),
    ...(await wranglerCompatibility()),
    bindings: vars,
    durableObjects,
    ...(ratelimits !== undefined && { ratelimits }),
    ...(direct && { unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }] }),
  };
  const mf = new Miniflare({ workers: [worker], host: "127.0.0.1", port: 0 });
  const url = await mf.ready;
  return { url: direct ? (await mf.unsafeGetDirectURL("worker")).origin : url.origin, dispose: () => mf.dispose() };
}

/**
 * Bundles a Worker's entry module into one ES module the way wrangler would (the same package
 * conditions; the runtime's own modules left as imports).
 * @param {string} entry the entry file
 * @param {string} outfile where the bundle goes
 * @returns {Promise<string>} `outfile`
 * @example
 * await bundleForWorkers("bench/workers/bare.ts", "/tmp/bare/index.js");
 */
export async function bundleForWorkers(entry, outfile) {
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    conditions: ["workerd", "worker", "browser"],
    mainFields: ["module", "main"],
    external: ["cloudflare:*", "node:*"],
    logLevel: "error",
  });
  return outfile;
}
