// @ts-check
/**
 * Runs the gateway's deployable bundle directly on workerd (through the shared launcher,
 * `workerd.mjs`): one process per gateway, no `wrangler dev` proxy in front. Tests start several of these to play separate
 * servers sharing one store; the benchmark uses them for load.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startWorkerd } from "./workerd.mjs";

const projectRoot = new URL("..", import.meta.url).pathname;

/**
 * Bundles the Worker exactly as `wrangler deploy` would (dry run, nothing is uploaded).
 * @returns {string} the path of the bundled module
 * @example
 * const script = buildGatewayBundle(); // ".../index.js"
 */
export function buildGatewayBundle() {
  const outdir = mkdtempSync(join(tmpdir(), "sluice-bundle-"));
  execFileSync("npx", ["wrangler", "deploy", "--dry-run", "--outdir", outdir], { cwd: projectRoot, stdio: "pipe" });
  return join(outdir, "index.js");
}

/**
 * Starts one gateway on its own workerd process, listening on loopback.
 * @param {{ scriptPath: string, vars: Record<string, string>, direct?: boolean }} options  `direct`: see `startWorkerd`
 * @returns {Promise<{ url: string, dispose: () => Promise<void> }>}
 * @example
 * const gateway = await startGateway({ scriptPath: buildGatewayBundle(), vars: { ORIGIN_URL: origin.url } });
 * await fetch(`${gateway.url}/echo`);
 * await gateway.dispose();
 */
export function startGateway({ scriptPath, vars, direct = false }) {
  return startWorkerd({
    scriptPath,
    vars,
    direct,
    durableObjects: {
      LIMITER_BUCKETS: { className: "ClientBuckets", useSQLite: true },
      LIMITER_METRICS_STORE: { className: "GatewayMetrics", useSQLite: true },
    },
  });
}
