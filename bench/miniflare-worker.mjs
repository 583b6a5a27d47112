// @ts-check
/**
 * The benchmark's own workers (bench/workers/*.ts): bundled with esbuild the way wrangler would,
 * and each run on its own workerd process through the launcher dev and tests share
 * (dev/workerd.mjs).
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";
import { startWorkerd } from "../dev/workerd.mjs";

const workersDir = new URL("./workers/", import.meta.url).pathname;

/**
 * Bundles bench/workers/<name>.ts into one ES module.
 * @param {string} name e.g. "bare"
 * @returns {Promise<string>} the bundle's path
 * @example
 * const script = await bundleWorker("bare");
 */
export async function bundleWorker(name) {
  const outdir = mkdtempSync(join(tmpdir(), `sluice-bench-${name}-`));
  const outfile = join(outdir, "index.js");
  await build({
    entryPoints: [join(workersDir, `${name}.ts`)],
    outfile,
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    // The package entry points a Worker gets (wrangler uses the same conditions).
    conditions: ["workerd", "worker", "browser"],
    mainFields: ["module", "main"],
    external: ["cloudflare:*", "node:*"],
    logLevel: "error",
  });
  return outfile;
}

/**
 * Starts one worker bundle on its own workerd process, on loopback.
 * @param {{ scriptPath: string, vars: Record<string, string> }} options
 * @returns {Promise<{ url: string, dispose: () => Promise<void> }>}
 * @example
 * const worker = await startWorker({ scriptPath: await bundleWorker("bare"), vars: { ORIGIN_URL: origin.url } });
 * await worker.dispose();
 */
export function startWorker({ scriptPath, vars }) {
  return startWorkerd({ scriptPath, vars });
}
