// @ts-check
/**
 * CPU profiles of the gateway under load: `node dev/profile-gateway.mjs [seconds] [scenario…]`.
 *
 * Each scenario starts the gateway's deployable bundle (or the bare proxy) in Miniflare with
 * workerd's V8 inspector on, loads it with autocannon (16 connections; the origin, the Upstash
 * bridge and redis-server in a child process, as the benchmark runs them) and records a CPU profile
 * of the serving isolate over the measured window through the inspector (Chrome DevTools
 * Protocol). Self time is attributed to the bundle's source modules (esbuild keeps a
 * `// src/…` marker before each one), so the table says where each path spends its time.
 * The Durable Object runs in the same isolate as the worker that defines it, so its share is in
 * the same profile. Profiles are written to $TMPDIR/sluice-profile-<scenario>.cpuprofile (open
 * them in Chrome DevTools).
 *
 * Scenarios: bare, allowed (each connection its own client, huge budget), flood (one client over
 * capacity 10 at 1/s), hot (one client, huge budget, over 3 isolates on one namespace). A
 * scenario written `allowed@base` runs the bundle at $PROFILE_BASE_BUNDLE instead (another
 * build of the gateway, e.g. the commit before a change), so before and after share one run.
 * `flood:upstash-ratelimit` and `flood:hono-rate-limiter` profile the benchmark's peers under the
 * same flood (their Redis: redis-server behind the Upstash REST bridge, `dev/local-stack.mjs`), and
 * `allowed:<peer>` on the allowed load (`flood:answer=sluice` and `flood:answer=peer`: the two 429s alone); `allowed-upstash` and `flood-upstash` run sluice on the
 * Upstash backend against the same stack.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import autocannon from "autocannon";
import { BENCH_ADMIN_TOKEN, BENCH_HEALTH_DETAILS } from "../bench/hot-key.mjs";
import { bundleWorker } from "../bench/miniflare-worker.mjs";
import { startStackProcess } from "../bench/stack.mjs";
import { buildGatewayBundle } from "./miniflare-gateway.mjs";
import { startGatewayIsolates } from "./miniflare-isolates.mjs";
import { LOCAL_UPSTASH_TOKEN } from "./local-stack.mjs";
import { startWorkerd } from "./workerd.mjs";

const seconds = Number(process.argv[2] ?? 4);
const wanted = process.argv.slice(3);
const scenarios = wanted.length > 0 ? wanted : ["bare", "allowed", "flood", "hot"];
const INSPECTOR_PORT = 9230;

// The origin, the Upstash bridge and redis-server in a child process, as the benchmark starts them
// (bench/stack.mjs): on this process they would share autocannon's event loop, and that loop, not
// the worker, would set the pace of every scenario alike (the ratios squeezed towards 1).
const stack = await startStackProcess();
const origin = stack.origin;
const currentBundle = buildGatewayBundle();
const bareBundle = await bundleWorker("bare");
const vars = (/** @type {number} */ capacity, /** @type {number} */ rate) => ({
  ORIGIN_URL: origin.url,
  LIMITER_ADMIN_TOKEN: BENCH_ADMIN_TOKEN, // health's details (isolate.backendCalls) need a token
  LIMITER_CAPACITY: String(capacity),
  LIMITER_REFILL_RATE: String(rate),
  LIMITER_KEY: "header:x-api-key",
  LIMITER_FAIL_MODE: "closed",
  LIMITER_TIMEOUT_MS: "5000",
});

/** Module markers of a bundle: [line, module] sorted by line. */
function moduleMap(/** @type {string} */ bundlePath) {
  /** @type {[number, string][]} */
  const markers = [];
  readFileSync(bundlePath, "utf8")
    .split("\n")
    .forEach((line, i) => {
      // esbuild names a module by its path from the project: `node_modules/…`, or `../../main/node_modules/…` when node_modules is a symlink.
      const m = /^\/\/ (?:\S*?\/)?((?:src|node_modules|bench)\/\S+)$/.exec(line);
      if (m?.[1]) markers.push([i, m[1].replace(/^node_modules\/(\.pnpm\/)?/, "npm:").replace(/^(npm:(@[^/]+\/)?[^/]+)\/.*/, "$1")]);
    });
  return markers;
}

function moduleAt(/** @type {[number, string][]} */ markers, /** @type {number} */ line) {
  let found = "(bundle prologue)";
  for (const [start, name] of markers) {
    if (start > line) break;
    found = name;
  }
  return found;
}

/** @param {number} port */
async function inspectorTargets(port) {
  const response = await fetch(`http://127.0.0.1:${port}/json`);
  return /** @type {{ id: string, title: string, webSocketDebuggerUrl: string }[]} */ (await response.json());
}

/** A minimal CDP client over the inspector's WebSocket. @param {string} url */
async function cdp(url) {
  // Node's own WebSocket (the project's types describe the Workers one).
  /** @type {any} */
  const socket = new WebSocket(url);
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = reject;
  });
  let id = 0;
  /** @type {Map<number, (value: any) => void>} */
  const pending = new Map();
  socket.onmessage = (/** @type {{ data: unknown }} */ event) => {
    const message = JSON.parse(String(event.data));
    if (message.id !== undefined) pending.get(message.id)?.(message.result ?? message.error);
  };
  return {
    send: (/** @type {string} */ method, /** @type {object} */ params = {}) =>
      new Promise((resolve) => {
        pending.set(++id, resolve);
        socket.send(JSON.stringify({ id, method, params }));
      }),
    close: () => socket.close(),
  };
}

/** @param {{ urls: string[], headersFor: (connection: number) => Record<string, string>, connections?: number }} options */
function load({ urls, headersFor, connections = 16 }) {
  // Connection n is client n in every call, so the warm-up warms the clients measured (as the benchmark's runs do).
  let next = 0;
  return Promise.all(
    urls.map(
      (url, u) =>
        /** @type {Promise<autocannon.Result>} */ (
          new Promise((resolve, reject) =>
            autocannon(
              {
                url: `${url}/`,
                connections: Math.ceil(connections / urls.length),
                duration: seconds,
                setupClient: (client) => client.setHeaders(headersFor(next++ + u * 1000)),
              },
              (error, result) => (error ? reject(error) : resolve(result)),
            ),
          )
        ),
    ),
  );
}

/** @param {string} label */
async function profileScenario(label) {
  if (label.includes(":")) return profilePeer(label);
  const [name = label, variant] = label.split("@");
  const baseBundle = process.env.PROFILE_BASE_BUNDLE;
  if (variant !== undefined && !baseBundle) throw new Error(`${label}: set PROFILE_BASE_BUNDLE to the other bundle's path`);
  const gatewayBundle = variant === undefined ? currentBundle : /** @type {string} */ (baseBundle);
  const runId = Math.random().toString(36).slice(2);
  const started =
    name === "bare"
      ? { ...(await startWorkerdInspected(bareBundle, { ORIGIN_URL: origin.url })), bundle: bareBundle }
      : name === "hot"
        ? { ...(await startGatewayIsolates({ scriptPath: gatewayBundle, vars: vars(1e9, 1e6), count: 3, inspectorPort: INSPECTOR_PORT })), bundle: gatewayBundle }
        : {
            ...(await startGatewayIsolates({
              scriptPath: gatewayBundle,
              vars: {
                ...(name.startsWith("flood") ? vars(10, 1) : vars(1e9, 1e6)),
                ...(name.endsWith("-upstash") && { LIMITER_BACKEND: "upstash", UPSTASH_REDIS_REST_URL: stack.bridge.url, UPSTASH_REDIS_REST_TOKEN: LOCAL_UPSTASH_TOKEN }),
              },
              count: 1,
              inspectorPort: INSPECTOR_PORT,
            })),
            bundle: gatewayBundle,
          };
  try {
    const headersFor = name.startsWith("allowed") ? (/** @type {number} */ n) => ({ "x-api-key": `allowed-${runId}-${n}` }) : () => ({ "x-api-key": `one-${runId}` });
    // Warm-up, then profile every isolate over the measured window.
    await load({ urls: started.urls, headersFor });
    const targets = (await inspectorTargets(INSPECTOR_PORT)).filter((t) => t.id.startsWith("core:user:"));
    const clients = await Promise.all(targets.map((t) => cdp(t.webSocketDebuggerUrl)));
    for (const c of clients) {
      await c.send("Profiler.enable");
      await c.send("Profiler.setSamplingInterval", { interval: 100 });
      await c.send("Profiler.start");
    }
    const healthBefore = await backendCalls(started.urls);
    const results = await load({ urls: started.urls, headersFor });
    const healthAfter = await backendCalls(started.urls);
    const profiles = [];
    for (const c of clients) {
      profiles.push(/** @type {any} */ (await c.send("Profiler.stop")).profile);
      c.close();
    }
    const requests = results.reduce((a, r) => a + r.requests.total, 0);
    const rps = results.reduce((a, r) => a + r.requests.average, 0);
    const statuses = results.reduce((a, r) => ({ n2xx: a.n2xx + r["2xx"], n4xx: a.n4xx + r["4xx"], other: a.other + r["5xx"] + r.non2xx - r["4xx"] - r["5xx"] }), { n2xx: 0, n4xx: 0, other: 0 });
    return {
      name: label,
      rps,
      requests,
      statuses,
      backendCalls: healthAfter - healthBefore,
      ...summarise(
        profiles,
        moduleMap(started.bundle),
        requests,
        label.replace("@", "-"),
        targets.map((t) => t.title),
      ),
    };
  } finally {
    await started.dispose();
  }
}

/** A peer worker of the benchmark under the flood (one client over capacity 10 at 1/s). @param {string} label */
async function profilePeer(label) {
  const [name, peerAndShape = ""] = label.split(":");
  // `flood:answer=sluice` / `flood:answer=peer`: the flood's floor, each 429 alone (bench/workers/answer.ts).
  const [peer = "", shape = "sluice"] = peerAndShape.split("=");
  if (name !== "flood" && name !== "allowed") throw new Error(`${label}: peers are profiled under flood:<peer> or allowed:<peer>`);
  const allowed = name === "allowed";
  const bundle = await bundleWorker(peer);
  const started = await startWorkerdInspected(bundle, {
    ORIGIN_URL: origin.url,
    UPSTASH_REDIS_REST_URL: stack.bridge.url,
    UPSTASH_REDIS_REST_TOKEN: LOCAL_UPSTASH_TOKEN,
    CAPACITY: allowed ? "1000000000" : "10",
    REFILL_RATE: allowed ? "1000000" : "1",
    SHAPE: shape,
  });
  try {
    const client = `one-${Math.random().toString(36).slice(2)}`;
    const headersFor = (/** @type {number} */ n) => ({ "x-api-key": allowed ? `${client}-${n}` : client });
    await load({ urls: started.urls, headersFor });
    const targets = (await inspectorTargets(INSPECTOR_PORT)).filter((t) => t.id.startsWith("core:user:"));
    const clients = await Promise.all(targets.map((t) => cdp(t.webSocketDebuggerUrl)));
    for (const c of clients) {
      await c.send("Profiler.enable");
      await c.send("Profiler.setSamplingInterval", { interval: 100 });
      await c.send("Profiler.start");
    }
    const results = await load({ urls: started.urls, headersFor });
    const profiles = [];
    for (const c of clients) {
      profiles.push(/** @type {any} */ (await c.send("Profiler.stop")).profile);
      c.close();
    }
    const requests = results.reduce((a, r) => a + r.requests.total, 0);
    const rps = results.reduce((a, r) => a + r.requests.average, 0);
    const statuses = results.reduce((a, r) => ({ n2xx: a.n2xx + r["2xx"], n4xx: a.n4xx + r["4xx"], other: a.other + r["5xx"] }), { n2xx: 0, n4xx: 0, other: 0 });
    return {
      name: label,
      rps,
      requests,
      statuses,
      backendCalls: 0,
      ...summarise(
        profiles,
        moduleMap(bundle),
        requests,
        label.replace(":", "-"),
        targets.map((t) => t.title),
      ),
    };
  } finally {
    await started.dispose();
  }
}

/** @param {string} scriptPath @param {Record<string, string>} bindings */
async function startWorkerdInspected(scriptPath, bindings) {
  const { Miniflare } = await import("miniflare");
  const { wranglerCompatibility } = await import("./workerd.mjs");
  // Served on its own socket, as the gateway's isolates are (`startGatewayIsolates`): Miniflare's
  // entry worker in front would add its own cost to one side only.
  const mf = new Miniflare({
    inspectorPort: INSPECTOR_PORT,
    workers: [
      {
        name: "worker",
        modules: [{ type: "ESModule", path: scriptPath }],
        modulesRoot: join(scriptPath, ".."),
        ...(await wranglerCompatibility()),
        bindings,
        unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }],
      },
    ],
    host: "127.0.0.1",
    port: 0,
  });
  await mf.ready;
  void startWorkerd; // same settings as the shared launcher, plus the inspector
  return { urls: [(await mf.unsafeGetDirectURL("worker")).origin], dispose: () => mf.dispose() };
}

/** @param {string[]} urls */
async function backendCalls(urls) {
  let total = 0;
  for (const url of urls) {
    const body = await (await fetch(`${url}/__limiter/health`, BENCH_HEALTH_DETAILS)).text();
    try {
      total += JSON.parse(body)?.isolate?.backendCalls ?? 0;
    } catch {
      // the bare proxy has no health route
    }
  }
  return total;
}

/**
 * Self time per bundle module (and V8's own buckets), in µs per request.
 * @param {any[]} profiles @param {[number, string][]} markers @param {number} requests @param {string} name @param {string[]} titles
 */
function summarise(profiles, markers, requests, name, titles) {
  /** @type {Record<string, number>} */
  const byModule = {};
  /** @type {Record<string, number>} */
  const byFunction = {};
  let totalUs = 0;
  let idleUs = 0;
  profiles.forEach((profile, p) => {
    writeFileSync(join(tmpdir(), `sluice-profile-${name}-${p}.cpuprofile`), JSON.stringify(profile));
    /** @type {Map<number, any>} */
    const nodes = new Map(profile.nodes.map((/** @type {any} */ n) => [n.id, n]));
    const deltas = profile.timeDeltas;
    profile.samples.forEach((/** @type {number} */ id, /** @type {number} */ i) => {
      const dt = deltas[i + 1] ?? 0;
      const frame = nodes.get(id)?.callFrame;
      const fn = frame?.functionName || "(anonymous)";
      if (fn === "(idle)") {
        idleUs += dt;
        return;
      }
      totalUs += dt;
      const where = frame?.url ? (frame.url.endsWith("index.js") ? moduleAt(markers, frame.lineNumber) : frame.url) : `native ${fn}`;
      byModule[where] = (byModule[where] ?? 0) + dt;
      const key = `${fn} (${where})`;
      byFunction[key] = (byFunction[key] ?? 0) + dt;
    });
  });
  const perRequest = (/** @type {Record<string, number>} */ table, /** @type {number} */ top) =>
    Object.entries(table)
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, us]) => [k, Math.round((us / requests) * 100) / 100]);
  return { targets: titles, busyUsPerRequest: Math.round((totalUs / requests) * 100) / 100, idleUs, modules: perRequest(byModule, 25), functions: perRequest(byFunction, 25) };
}

try {
  for (const name of scenarios) {
    const result = await profileScenario(name);
    console.log(JSON.stringify(result, null, 1));
  }
} finally {
  await stack.stop();
}
