import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startWorkerd } from "../../dev/workerd.mjs";

/** A Worker that waits a second on a timer unless `request.signal` aborts, then tells the origin which happened. */
const PROBE_WORKER = `export default {
  async fetch(request, env) {
    const aborted = await new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), 1000);
      request.signal.addEventListener("abort", () => { clearTimeout(timer); resolve(true); }, { once: true });
    });
    await fetch(env.ORIGIN + "/probe?aborted=" + aborted);
    return new Response("done");
  },
};
`;

/**
 * Whether the local runtime (workerd, wrangler.toml's compatibility flags, `enable_request_signal`)
 * aborts `request.signal` when the client disconnects while the Worker waits: the gateway's queue
 * gives a leaving client's place back only then. Measured with a Worker of its own, so that a
 * gateway bug is never taken for the runtime's.
 *
 * @example
 * await runtimeDeliversDisconnects(); // false on workerd 1.20261117 (cloudflare/workerd#4185)
 */
export async function runtimeDeliversDisconnects(): Promise<boolean> {
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(req.url ?? "");
    req.resume();
    res.end("ok");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const address = server.address();
  const dir = mkdtempSync(join(tmpdir(), "sluice-probe-"));
  writeFileSync(join(dir, "probe.mjs"), PROBE_WORKER);
  const worker = await startWorkerd({ scriptPath: join(dir, "probe.mjs"), vars: { ORIGIN: `http://127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}` } });
  try {
    const client = new AbortController();
    const answer = fetch(`${worker.url}/`, { signal: client.signal }).catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 200));
    client.abort();
    await answer;
    const deadline = performance.now() + 3_000;
    while (seen.length === 0 && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    return seen.some((url) => url.includes("aborted=true"));
  } finally {
    await worker.dispose();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
