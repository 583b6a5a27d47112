// @ts-check
/**
 * The benchmark's own workers (bench/workers/*.ts): bundled the way wrangler would,
 * and each run on its own workerd process through the launcher dev and tests share
 * (dev/workerd.mjs).
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bundleForWorkers, startWorkerd } from "../dev/workerd.mjs";

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
  return bundleForWorkers(join(workersDir, `${name}.ts`), join(outdir, "index.js"));
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
  // On its own socket, as every worker under test here (`startWorkerd`'s `direct`).
  return startWorkerd({ scriptPath, vars, direct: true });
}
