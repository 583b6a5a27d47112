// @ts-check
/**
 * `npm run bench` / `npm run bench:quick` (`--quick`): measures added latency, accuracy across
 * servers, and backend cost per request for sluice and its peers, on this machine, in one run.
 *
 * Everything runs on loopback and is stopped at the end (or on error / Ctrl-C): the local stack
 * (redis-server, Upstash REST bridge, demo origin) in a child process, and one workerd process
 * per worker instance. Progress goes to stderr; the report to stdout and bench/results/.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { buildGatewayBundle } from "../dev/miniflare-gateway.mjs";
import { accuracyChart } from "./chart.mjs";
import { HOT_KEY_ISOLATES, HOT_KEY_POLICY, measureHotKey, onSharedIsolates } from "./hot-key.mjs";
import { prepareLimiters } from "./limiters.mjs";
import { describeMachine } from "./machine.mjs";
import { connectRedisStats } from "./redis-stats.mjs";
import { compare, formatReport } from "./report.mjs";
import { ACCURACY_POLICY, ALLOWED_POLICY, FLOOD_POLICY, measureAccuracy, measureThroughput, medianFixedRate, medianRun } from "./scenarios.mjs";
import { startStackProcess } from "./stack.mjs";
// Issue 11: fixed-rate added latency, cost per million decisions, the Rate Limiting binding peer.
import { LEFT_OUT, PRICES, PRICES_READ_ON } from "./prices.mjs";
import { compareExtras } from "./report.mjs";
import { FIXED_RATE, measureFixedRate } from "./scenarios.mjs";
// Issue 19: hot and cold clients on Upstash, the Upstash hot key, the scale scenario, its targets.
import { HOT_CLIENT, measureHotClient } from "./hot-client.mjs";
import { compareIssue19 } from "./upstash-targets.mjs";
import { EXPIRY_POLICY, measureScale, SCALE_POLICY } from "./scale.mjs";
// Issue 18: the windows scenario (sluice's fixed and sliding windows beside @upstash/ratelimit's).
import { measureWindows, windowsTargets } from "./windows.mjs";

const quick = process.argv.includes("--quick");

/** @type {import("./scenarios.mjs").Profile} */
const profile = quick
  ? { name: "quick", connections: 16, warmupS: 0.5, measureS: 1.5, rounds: 1, maxRequests: 50_000, accuracyS: 3 }
  : { name: "full", connections: 16, warmupS: 2, measureS: 10, rounds: 3, maxRequests: 500_000, accuracyS: 10 };
const resultsDir = new URL("./results/", import.meta.url).pathname;
const outputs = quick ? { json: `${resultsDir}quick.json`, svg: `${resultsDir}accuracy-quick.svg` } : { json: `${resultsDir}latest.json`, svg: `${resultsDir}accuracy.svg` };
const LIMITERS_UNDER_TEST = ["sluice-do", "sluice-upstash", "upstash-ratelimit", "hono-rate-limiter", "rl-binding"];
/** Measured for throughput only: what metrics cost, same run; the bucket objects' storage calls counted (rows written). */
const THROUGHPUT_ONLY = ["sluice-do-no-metrics", "sluice-do-counted"];
/** The flood's floor: each limiter's 429 served with no limiter (bench/workers/answer.ts). */
const FLOOD_ONLY = ["answer-sluice", "answer-peer"];

/** Everything started that must be stopped, newest last. @type {Set<() => Promise<void>>} */
const running = new Set();
let stopping = false;

async function stopAll() {
  for (const stop of [...running].reverse()) {
    running.delete(stop);
    await stop().catch((error) => console.error(`bench: while stopping: ${error}`));
  }
}
// Miniflare's own exit hook ends the process on SIGINT/SIGTERM right after killing its workerd
// processes, so this may not finish; the stack's child process then stops itself (and its
// redis-server) when it loses its parent.
for (const signal of /** @type {const} */ (["SIGINT", "SIGTERM"])) {
  process.once(signal, () => {
    stopping = true;
    console.error(`bench: ${signal}, stopping everything`);
    void stopAll().finally(() => process.exit(130));
  });
}

/** @param {string} message */
const progress = (message) => console.error(`[${((performance.now() - started) / 1000).toFixed(1).padStart(5)} s] ${message}`);
const started = performance.now();

try {
  progress(`mode ${profile.name}: starting redis-server, the Upstash REST bridge and the origin`);
  const stack = await startStackProcess();
  running.add(stack.stop);
  const stats = await connectRedisStats(stack.redisUrl);
  running.add(stats.close);

  progress("bundling sluice (wrangler deploy --dry-run), the bare worker and the peers (esbuild)");
  // Every instance is registered, so an error or Ctrl-C mid-scenario still stops its workerd.
  const track = (/** @type {import("./limiters.mjs").Limiter} */ limiter) => ({
    ...limiter,
    start: async (/** @type {import("./limiters.mjs").Policy} */ policy) => {
      if (stopping) throw new Error("stopping");
      const instance = await limiter.start(policy);
      const dispose = async () => {
        running.delete(dispose);
        await instance.dispose();
      };
      running.add(dispose);
      return { url: instance.url, dispose };
    },
  });
  const limiters = (await prepareLimiters(stack)).map(track);
  // Durable Object accuracy and the hot key: isolates of one Miniflare instance sharing one namespace.
  const isolatesBundle = buildGatewayBundle();
  const byId = (/** @type {string} */ id) => {
    const found = limiters.find((l) => l.id === id);
    if (!found) throw new Error(`no limiter ${id}`);
    return found;
  };
  const labels = Object.fromEntries(limiters.map((l) => [l.id, l.label]));
  const context = { profile, stats };

  // The ceiling is measured first and last, so drift during the run shows.
  const bareRuns = [];
  const rows = [];
  progress("ceiling: bare proxy");
  bareRuns.push(await measureThroughput(byId("bare"), "allowed", context));
  // The host's noise comes and goes over seconds (two ceiling runs have differed by 25 %): each
  // limiter runs `rounds` times, interleaved with the others, and its median run is reported.
  const roundContext = { ...context, profile: { ...profile, measureS: profile.measureS / profile.rounds } };
  for (const scenario of /** @type {const} */ (["allowed", "flood"])) {
    /** @type {Map<string, import("./scenarios.mjs").ThroughputRow[]>} */
    const runs = new Map();
    // With rounds, the bare proxy runs in each allowed round too: the ceiling then moves with the host as the rows do.
    const ids = [...(scenario === "allowed" && profile.rounds > 1 ? ["bare"] : []), ...LIMITERS_UNDER_TEST, ...THROUGHPUT_ONLY, ...(scenario === "flood" ? FLOOD_ONLY : [])];
    for (let round = 1; round <= profile.rounds; round++) {
      for (const id of ids) {
        progress(`${scenario}${profile.rounds > 1 ? ` (round ${round} of ${profile.rounds})` : ""}: ${labels[id]}`);
        runs.set(id, [...(runs.get(id) ?? []), await measureThroughput(byId(id), scenario, roundContext)]);
      }
    }
    for (const [id, idRuns] of runs) {
      if (id === "bare") bareRuns.push(...idRuns);
      else rows.push(medianRun(idRuns));
    }
  }
  progress("ceiling again: bare proxy");
  bareRuns.push(await measureThroughput(byId("bare"), "allowed", context));

  // Added latency at a fixed moderate rate: the bare proxy in each round and last. With rounds, each limiter's runs are interleaved with the others' and the bare proxy's, and
  // its p50 and p99 are the medians of its runs (a p99 of 1,500 requests moves with the host).
  /** @type {Map<string, import("./scenarios.mjs").FixedRateRow[]>} */
  const fixedRuns = new Map();
  for (let round = 1; round <= profile.rounds; round++) {
    for (const id of ["bare", ...LIMITERS_UNDER_TEST]) {
      progress(`fixed rate ${FIXED_RATE.rps} req/s${profile.rounds > 1 ? ` (round ${round} of ${profile.rounds})` : ""}: ${labels[id]}`);
      fixedRuns.set(id, [...(fixedRuns.get(id) ?? []), await measureFixedRate(byId(id), { profile })]);
    }
  }
  progress(`fixed rate ${FIXED_RATE.rps} req/s: ${labels.bare} (last)`);
  const fixedRate = [...(fixedRuns.get("bare") ?? []), await measureFixedRate(byId("bare"), { profile })];
  for (const id of LIMITERS_UNDER_TEST) fixedRate.push(medianFixedRate(fixedRuns.get(id) ?? []));

  const accuracy = [];
  for (const id of LIMITERS_UNDER_TEST) {
    progress(`accuracy: ${labels[id]}`);
    if (id === "sluice-do") {
      const shared = track(onSharedIsolates(byId(id), { scriptPath: isolatesBundle, originUrl: stack.originUrl }));
      const result = await measureAccuracy(shared, { profile });
      accuracy.push({
        ...result,
        note: `${result.instances} gateway isolates (workers of one Miniflare instance) sharing one Durable Object namespace`,
        spread: `${result.instances} isolates, 1 namespace`,
      });
    } else {
      accuracy.push(await measureAccuracy(byId(id), { profile }));
    }
  }

  progress(`hot key: one client over ${HOT_KEY_ISOLATES} isolates sharing one Durable Object namespace`);
  const hotKey = await measureHotKey({
    scriptPath: isolatesBundle,
    originUrl: stack.originUrl,
    profile,
    register: (dispose) => {
      running.add(dispose);
      return () => running.delete(dispose);
    },
  });

  // --- issue 19 block: the Upstash hot key, hot and cold clients, scale ---
  progress(`hot key: one client over ${HOT_KEY_ISOLATES} isolates on the Upstash backend, sharing the bridge`);
  const hotKeyUpstash = await measureHotKey({
    scriptPath: isolatesBundle,
    originUrl: stack.originUrl,
    profile,
    upstash: { bridgeUrl: stack.bridgeUrl, stats },
    register: (dispose) => {
      running.add(dispose);
      return () => running.delete(dispose);
    },
  });
  const hotClients = [];
  // The peer's figures are context (4 commands a decision either way): full runs only, to keep the quick run short.
  for (const id of quick ? ["sluice-upstash"] : ["sluice-upstash", "upstash-ratelimit"]) {
    progress(`hot and cold client at ${HOT_CLIENT.rps} req/s, one isolate: ${labels[id]}`);
    hotClients.push(await measureHotClient(byId(id), { profile, stats }));
  }
  const scale = await measureScale({ limiters, redisUrl: stack.redisUrl, profile, stats, progress });
  // --- end of the issue 19 block ---
  // Issue 18: the windows scenario (libraries in this process, on the same stack).
  const windows = await measureWindows({ bridgeUrl: stack.bridgeUrl, stats, quick, progress });

  const machine = describeMachine({ redisVersion: await stats.version() });
  const durationS = (performance.now() - started) / 1000;
  const comparison = compare({ bareRuns, rows, accuracy, hotKey });
  const extras = compareExtras({ fixedRate, rows, accuracy, stores: Object.fromEntries(limiters.map((l) => [l.id, l.store])), bareRps: comparison.bareRps });
  comparison.targets.push(...extras.targets);
  const issue19 = compareIssue19({ rows, extras, hotKeyUpstash, hotClients, scale, labels });
  comparison.targets.push(...issue19.targets);
  comparison.targets.push(...windowsTargets(windows));
  const report = { mode: profile.name, durationS, machine, profile, bareRuns, rows, accuracy, hotKey, labels, ...comparison, fixedRate, extras, hotKeyUpstash, hotClients, scale, windows };
  console.log(formatReport(report));

  mkdirSync(resultsDir, { recursive: true });
  const json = {
    generatedAt: new Date().toISOString(),
    ...report,
    policies: {
      allowed: ALLOWED_POLICY,
      flood: FLOOD_POLICY,
      accuracy: ACCURACY_POLICY,
      fixedRate: FIXED_RATE,
      hotKey: HOT_KEY_POLICY,
      hotClient: HOT_CLIENT,
      scale: SCALE_POLICY,
      expiry: EXPIRY_POLICY,
    },
    prices: { readOn: PRICES_READ_ON, prices: PRICES, leftOut: LEFT_OUT },
    notes: [
      "Every ratio is taken within this run. ÷bare uses the mean of the ceiling runs.",
      "redisCommandsPerDecision: INFO commandstats delta (calls + rejected_calls, INFO/CONFIG and the health reads' PING excluded) ÷ (2xx + 429).",
      "backendCallsPerRequest: backend calls ÷ responses; for sluice its own count (isolate.backendCalls in /__limiter/health), for the peers the script calls (EVALSHA, EVAL, SCRIPT LOAD) Redis saw.",
      "Accuracy and hot key for the Durable Object backend: three gateway isolates (workers of one Miniflare instance) sharing one Durable Object namespace, each stream on its own isolate.",
      "Hot key: calls that reached a Durable Object (isolate.backendCalls summed over the isolates) ÷ responses; allowed against capacity + rate × elapsed.",
      "fixedRate: evenly spaced requests (open loop) at FIXED_RATE.rps, every one allowed; latency from each request's scheduled time; extras.limiters[].addedP50Ms/addedP99Ms subtract the mean of the bare proxy's fixed-rate runs.",
      "Cost per million decisions (extras.limiters[].costAllowed/costRefused): Durable Object requests = the gateway's backend calls (calls that reached an object), rows written = one per object call that charged (ClientBuckets writes once per call; a refusal writes nothing), checked by the storage-counting variant in the same run; Redis = commands sent over REST (low) or every command Redis ran (high), at the prices in `prices`.",
      "hotKeyUpstash: the hot key on the Upstash backend (3 isolates sharing the bridge); scriptCallsPerRequest = script calls Redis saw ÷ responses, read 1.5 s after the run so leases given back count.",
      "hotClients: one client at HOT_CLIENT.rps on one isolate (hot, after a warm-up) and a new client per request (cold); commandsPerDecision = INFO commandstats delta without the override registry's HGETALL ÷ decisions.",
      "scale: one request per distinct client on a flushed database; bytesPerClient = used_memory delta ÷ clients; keys = DBSIZE; every key's PTTL read after the run; expiry = keys left after the longest TTL of a 1 s policy.",
      "rl-binding: the Workers Rate Limiting binding as Miniflare runs it (a fixed-window counter in one local object); its accuracy streams hit one process.",
    ],
  };
  writeFileSync(outputs.json, `${JSON.stringify(json, null, 2)}\n`);
  const title = `Accuracy: one client at ${accuracy[0]?.offeredRps} req/s over 3 instances, capacity ${ACCURACY_POLICY.capacity}, ${ACCURACY_POLICY.rate}/s (${profile.name})`;
  writeFileSync(outputs.svg, accuracyChart(accuracy, labels, title));
  progress(`wrote ${outputs.json} and ${outputs.svg}`);
} catch (error) {
  console.error(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  process.exitCode = 1;
} finally {
  await stopAll();
}
