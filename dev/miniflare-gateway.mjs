// @ts-check
/**
 * Runs the gateway's deployable bundle directly on Miniflare/workerd: one workerd process per
 * gateway, no `wrangler dev` proxy in front. Tests start several of these to play separate
 * servers sharing one store; the benchmark uses them for load.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Miniflare } from "miniflare";

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
 * @param {{ scriptPath: string, vars: Record<string, string> }} options
 * @returns {Promise<{ url: string, dispose: () => Promise<void> }>}
 * @example
 * const gateway = await startGateway({ scriptPath: buildGatewayBundle(), vars: { ORIGIN_URL: origin.url } });
 * await fetch(`${gateway.url}/echo`);
 * await gateway.dispose();
 */
export async function startGateway({ scriptPath, vars }) {
  const mf = new Miniflare({
    modules: [{ type: "ESModule", path: scriptPath }],
    modulesRoot: join(scriptPath, ".."),
    // Miniflare 4's workerd is older than wrangler's: the newest date it knows.
    compatibilityDate: "2026-07-01",
    compatibilityFlags: ["nodejs_compat"],
    bindings: vars,
    durableObjects: { LIMITER_BUCKETS: { className: "ClientBuckets", useSQLite: true } },
    host: "127.0.0.1",
    port: 0,
  });
  const url = await mf.ready;
  return { url: url.origin, dispose: () => mf.dispose() };
}
