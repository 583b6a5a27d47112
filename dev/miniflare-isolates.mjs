// @ts-check
/**
 * Several gateway isolates sharing ONE Durable Object namespace: N copies of the gateway's
 * deployable bundle as N workers in one Miniflare instance (one workerd process, one isolate
 * per worker), each on its own loopback port. The first worker hosts the `ClientBuckets` and
 * `GatewayMetrics` classes; the others bind them across scripts (`scriptName`), so every
 * isolate talks to the same objects, as gateways in several Cloudflare locations do.
 *
 * Separate Miniflare processes (dev/miniflare-gateway.mjs) share nothing: use this launcher
 * whenever Durable Object state must be shared between isolates.
 */
import { join } from "node:path";
import { Miniflare } from "miniflare";
import { wranglerCompatibility } from "./workerd.mjs";

/**
 * Starts `count` gateway isolates on one Durable Object namespace.
 * @param {{ scriptPath: string, vars: Record<string, string>, count?: number, inspectorPort?: number }} options
 *   `inspectorPort`: expose workerd's V8 inspector (CPU profiles) on that loopback port.
 * @returns {Promise<{ urls: string[], workerNames: string[], dispose: () => Promise<void> }>}
 * @example
 * const isolates = await startGatewayIsolates({ scriptPath: buildGatewayBundle(), vars, count: 3 });
 * await Promise.all(isolates.urls.map((url) => fetch(`${url}/echo`)));
 * await isolates.dispose();
 */
export async function startGatewayIsolates({ scriptPath, vars, count = 3, inspectorPort }) {
  if (!Number.isInteger(count) || count < 1) throw new Error(`count must be an integer ≥ 1, got ${count}`);
  const compatibility = await wranglerCompatibility();
  const workerNames = Array.from({ length: count }, (_, i) => `gateway-${i}`);
  const host = workerNames[0] ?? "gateway-0";
  const mf = new Miniflare({
    ...(inspectorPort === undefined ? {} : { inspectorPort }),
    workers: workerNames.map((name) => ({
      name,
      modules: [{ type: "ESModule", path: scriptPath }],
      modulesRoot: join(scriptPath, ".."),
      ...compatibility,
      bindings: vars,
      durableObjects: {
        // Defined by the first worker, bound by name from the others: one namespace.
        LIMITER_BUCKETS: { className: "ClientBuckets", scriptName: host, useSQLite: true },
        LIMITER_METRICS_STORE: { className: "GatewayMetrics", scriptName: host, useSQLite: true },
      },
      unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }],
    })),
    host: "127.0.0.1",
    port: 0,
  });
  await mf.ready;
  const urls = await Promise.all(workerNames.map(async (name) => (await mf.unsafeGetDirectURL(name)).origin));
  return { urls, workerNames, dispose: () => mf.dispose() };
}
