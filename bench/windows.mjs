// @ts-check
/**
 * The windows scenario: sluice's fixed and sliding windows beside @upstash/ratelimit's
 * fixedWindow and slidingWindow, all on the same Upstash (the local REST bridge to the same
 * redis-server), each in this Node process as a library: three instances per limiter (each with
 * its own store client, as three isolates have), no gateway in front.
 *
 * Accuracy: one schedule for every limiter at once (each on its own client key): per round, bursts
 * of 2L requests spread over the three instances at a window edge − 150 ms, at the edge + 2 ms and
 * at the edge + 450 ms. Reported: the worst trailing-window count, a sound lower bound (the most
 * admitted units whose whole span, first send to last answer, is shorter than W: each admission's
 * store time lies between its send and its answer). Sluice's sliding window must stay ≤ L.
 * Speed: each limiter alone, `CONCURRENCY` loops over many clients with a budget above the load:
 * decisions/s and Redis commands per decision (INFO commandstats, bench/redis-stats.mjs).
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { build } from "esbuild";
import { LOCAL_UPSTASH_TOKEN } from "../dev/local-stack.mjs";
import { diffCommands } from "./redis-stats.mjs";

/** The accuracy schedule's limit L per window W. */
export const WINDOWS_POLICY = { limit: 10, windowMs: 1_000 };
const INSTANCES = 3;
const CONCURRENCY = 16;
/** The speed runs' budget: above what the loops can spend per client. */
const SPEED_LIMIT = 1_000;
const SPEED_CLIENTS = 64;

/** @typedef {{ sentMs: number, answeredMs: number, units: number }} Admission */
/** @typedef {{ check: (client: string) => Promise<boolean> }} WindowLimiter  one instance: true when allowed */
/**
 * @typedef {object} WindowsRow
 * @property {string} limiter
 * @property {string} algorithm
 * @property {number} admitted        units admitted over the schedule
 * @property {number} worstTrailing   worst proven trailing-window count
 * @property {number} decisionsPerS
 * @property {number} redisCommandsPerDecision
 * @property {number} scriptCallsPerDecision
 * @property {Record<string, number>} commands  what Redis ran during the speed run, by command
 */

/** What the windows scenario runs: sluice's library (from src) and the peer, beside each other. */
export const WINDOWS_LIBRARY_EXPORTS = [
  'export { Limiter } from "./src/core/limiter";',
  'export { upstashBackend } from "./src/backends/upstash/index";',
  'export { Ratelimit } from "@upstash/ratelimit";',
  'export { Redis } from "@upstash/redis/cloudflare";',
];

/**
 * Bundles these export lines (paths from the repository's root) for Node with esbuild and imports the bundle.
 * @param {readonly string[]} exportLines
 * @returns {Promise<any>}
 */
export async function importBundled(exportLines) {
  const root = new URL("..", import.meta.url).pathname;
  const outfile = join(mkdtempSync(join(tmpdir(), "sluice-bench-windows-")), "windows-lib.mjs");
  await build({ stdin: { contents: exportLines.join("\n"), resolveDir: root, loader: "ts" }, bundle: true, platform: "node", format: "esm", outfile, logLevel: "silent" });
  return import(pathToFileURL(outfile).href);
}

/**
 * Bundles sluice's library (from src) and @upstash/ratelimit for Node, and returns the makers.
 * @returns {Promise<{ make: Record<string, (limit: number, store: { url: string, token: string }) => WindowLimiter> }>}
 */
async function prepare() {
  const lib = await importBundled(WINDOWS_LIBRARY_EXPORTS);
  const window = `${WINDOWS_POLICY.windowMs / 1000}s`;
  const sluice = (/** @type {string} */ algorithm) => (/** @type {number} */ limit, /** @type {{ url: string, token: string }} */ store) => {
    const limiter = new lib.Limiter({
      rules: [{ name: "w", key: "header:x-api-key", algorithm, limit, window }],
      backend: lib.upstashBackend({ url: store.url, token: store.token, keyPrefix: "bench-windows" }),
      log: () => {},
    });
    return {
      check: async (/** @type {string} */ client) => (await limiter.check({ kind: "request", method: "GET", path: "/", headers: new Headers({ "x-api-key": client }) })).kind === "allowed",
    };
  };
  const upstash =
    (/** @type {"fixedWindow" | "slidingWindow"} */ algorithm, autoPipelining = true) =>
    (/** @type {number} */ limit, /** @type {{ url: string, token: string }} */ store) => {
      // One instance per isolate, as its docs ask (its in-memory cache of blocked clients is on by default).
      const limiter = new lib.Ratelimit({
        // Auto-pipelining (the client's default) sends the commands of concurrent calls in one REST request.
        redis: new lib.Redis({ url: store.url, token: store.token, enableTelemetry: false, enableAutoPipelining: autoPipelining }),
        limiter: lib.Ratelimit[algorithm](limit, `${WINDOWS_POLICY.windowMs / 1000} s`),
        prefix: `bench:windows:${algorithm}`,
      });
      return { check: async (/** @type {string} */ client) => (await limiter.limit(client)).success };
    };
  return {
    make: {
      "sluice fixed-window": sluice("fixed-window"),
      "sluice sliding-window": sluice("sliding-window"),
      "@upstash/ratelimit fixedWindow": upstash("fixedWindow"),
      "@upstash/ratelimit slidingWindow": upstash("slidingWindow"),
      // As sluice calls Redis: one REST request per decision (see bench/README.md, "Windows").
      "@upstash/ratelimit slidingWindow, auto-pipelining off": upstash("slidingWindow", false),
    },
  };
}

/**
 * Runs the windows scenario on a running local stack.
 * @param {{ bridgeUrl: string, stats: Awaited<ReturnType<typeof import("./redis-stats.mjs").connectRedisStats>>, quick: boolean, progress?: (message: string) => void }} options
 * @returns {Promise<{ policy: typeof WINDOWS_POLICY, rounds: number, speedS: number, rows: WindowsRow[] }>}
 */
export async function measureWindows({ bridgeUrl, stats, quick, progress = () => {} }) {
  const { make } = await prepare();
  const store = { url: bridgeUrl, token: LOCAL_UPSTASH_TOKEN };
  const rounds = quick ? 2 : 8;
  const speedS = quick ? 1 : 4;
  const names = Object.keys(make);
  progress(`windows: accuracy, ${rounds} rounds of edge bursts, ${names.length} limiters × ${INSTANCES} instances on one schedule`);
  const instances = Object.fromEntries(names.map((name) => [name, Array.from({ length: INSTANCES }, () => make[name]?.(WINDOWS_POLICY.limit, store))]));
  /** @type {Record<string, Admission[]>} */
  const admitted = Object.fromEntries(names.map((name) => [name, []]));
  /** @type {Record<string, number>} */
  const worst = Object.fromEntries(names.map((name) => [name, 0]));
  const W = WINDOWS_POLICY.windowMs;
  for (let round = 0; round < rounds; round++) {
    const clients = Object.fromEntries(names.map((name) => [name, `win-${randomUUID()}`]));
    /** @type {Record<string, Admission[]>} */
    const thisRound = Object.fromEntries(names.map((name) => [name, []]));
    const edge = Math.ceil((Date.now() + 300) / W) * W;
    for (const offset of [-150, 2, 450]) {
      await sleep(edge + offset - Date.now());
      await Promise.all(
        names.flatMap((name) =>
          Array.from({ length: 2 * WINDOWS_POLICY.limit }, async (_, i) => {
            const sentMs = Date.now();
            const allowed = await instances[name]?.[i % INSTANCES]?.check(clients[name] ?? "");
            if (allowed) thisRound[name]?.push({ sentMs, answeredMs: Date.now(), units: 1 });
          }),
        ),
      );
    }
    for (const name of names) {
      admitted[name]?.push(...(thisRound[name] ?? []));
      worst[name] = Math.max(worst[name] ?? 0, provenWorst(thisRound[name] ?? [], W));
    }
  }

  /** @type {WindowsRow[]} */
  const rows = [];
  for (const name of names) {
    progress(`windows: speed, ${name}`);
    const speed = Array.from({ length: INSTANCES }, () => make[name]?.(SPEED_LIMIT, store));
    const clients = Array.from({ length: SPEED_CLIENTS }, () => `speed-${randomUUID()}`);
    const before = await stats.snapshot();
    let decisions = 0;
    const startedMs = performance.now();
    const endMs = startedMs + speedS * 1000;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async (_, loop) => {
        for (let i = loop; performance.now() < endMs; i += CONCURRENCY) {
          await speed[i % INSTANCES]?.check(clients[i % SPEED_CLIENTS] ?? "");
          decisions += 1;
        }
      }),
    );
    const elapsedS = (performance.now() - startedMs) / 1000;
    const used = diffCommands(before, await stats.snapshot());
    const [limiter = name, ...algorithm] = name.split(" ");
    rows.push({
      limiter,
      algorithm: algorithm.join(" "),
      admitted: (admitted[name] ?? []).length,
      worstTrailing: worst[name] ?? 0,
      decisionsPerS: decisions / elapsedS,
      redisCommandsPerDecision: decisions > 0 ? used.total / decisions : Number.NaN,
      scriptCallsPerDecision: decisions > 0 ? used.scriptCalls / decisions : Number.NaN,
      commands: used.byCommand,
    });
  }
  return { policy: WINDOWS_POLICY, rounds, speedS, rows };
}

/**
 * The most admitted units whose span (first send to last answer) is shorter than W: a sound lower
 * bound on the worst trailing-window count.
 * @param {Admission[]} admitted
 * @param {number} windowMs
 */
export function provenWorst(admitted, windowMs) {
  const sorted = [...admitted].sort((a, b) => a.sentMs - b.sentMs);
  let worst = 0;
  for (let i = 0; i < sorted.length; i++) {
    let units = 0;
    let last = 0;
    for (let j = i; j < sorted.length; j++) {
      const entry = /** @type {Admission} */ (sorted[j]);
      last = Math.max(last, entry.answeredMs);
      if (last - /** @type {Admission} */ (sorted[i]).sentMs >= windowMs) break;
      units += entry.units;
    }
    worst = Math.max(worst, units);
  }
  return worst;
}

/**
 * The report's lines for the windows scenario.
 * @param {Awaited<ReturnType<typeof measureWindows>>} windows
 * @returns {string[]}
 */
export function formatWindows(windows) {
  const { limit, windowMs } = windows.policy;
  const table = [
    ["limiter", "algorithm", "worst trailing", "admitted", "decisions/s", "redis cmd/dec", "script calls/dec"],
    ...windows.rows.map((r) => [
      r.limiter,
      r.algorithm,
      `${r.worstTrailing} (${(r.worstTrailing / limit).toFixed(1)} L)`,
      String(r.admitted),
      r.decisionsPerS.toFixed(0),
      r.redisCommandsPerDecision.toFixed(2),
      r.scriptCallsPerDecision.toFixed(2),
    ]),
  ];
  const widths = table[0]?.map((_, i) => Math.max(...table.map((row) => (row[i] ?? "").length))) ?? [];
  return [
    "",
    `Windows: L = ${limit} per ${windowMs / 1000} s, on Upstash (the bridge, one redis-server), ${INSTANCES} instances per limiter in one Node process (libraries, no gateway);`,
    `${windows.rounds} rounds of ${2 * limit}-request bursts at a window edge − 150 ms, + 2 ms and + 450 ms; worst trailing = most admitted units provably within one W.`,
    `Speed: ${CONCURRENCY} loops for ${windows.speedS} s over ${SPEED_CLIENTS} clients, budget ${SPEED_LIMIT} per window (all allowed).`,
    ...table.map((row) => `  ${row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join("  ")}`.trimEnd()),
  ];
}

/**
 * The windows scenario's target.
 * @param {Awaited<ReturnType<typeof measureWindows>>} windows
 * @returns {import("./report.mjs").TargetResult[]}
 */
export function windowsTargets(windows) {
  const sliding = windows.rows.find((r) => r.limiter === "sluice" && r.algorithm === "sliding-window");
  return [
    {
      target: "sluice sliding window: worst trailing-window count ≤ L across 3 instances",
      status: sliding === undefined ? "N/A" : sliding.worstTrailing <= windows.policy.limit ? "PASS" : "MISS",
      figure: sliding === undefined ? "not run" : `${sliding.worstTrailing} (L = ${windows.policy.limit})`,
    },
  ];
}

/** @param {number} ms */
function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}
