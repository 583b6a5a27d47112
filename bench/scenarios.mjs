// @ts-check
/**
 * The measurements: throughput of one limiter under a given load (allowed path or flood), and
 * accuracy of one limiter when one client's requests are spread over three instances.
 */
import { randomUUID } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { BENCH_HEALTH_DETAILS } from "./hot-key.mjs";
import { diffCommands } from "./redis-stats.mjs";
import { runLoad } from "./load.mjs";
import { runPaced } from "./load.mjs";

/** @typedef {import("./limiters.mjs").Limiter} Limiter */
/** @typedef {import("./limiters.mjs").Policy} Policy */
/** @typedef {import("./limiters.mjs").Instance} Instance */
/** @typedef {Awaited<ReturnType<typeof import("./redis-stats.mjs").connectRedisStats>>} RedisStats */

/**
 * @typedef {object} Profile
 * @property {string} name
 * @property {number} connections       autocannon connections of a throughput run
 * @property {number} warmupS
 * @property {number} measureS          intended length of a throughput run
 * @property {number} rounds            throughput runs per limiter and scenario, interleaved; the median one is reported
 * @property {number} maxRequests       hard cap on one run's requests
 * @property {number} accuracyS
 */

/** Budget far above what the load can spend: every request takes the allowed path. */
export const ALLOWED_POLICY = { capacity: 1_000_000_000, rate: 1_000_000 };
/** One client flooding: after the first few, every request is refused. */
export const FLOOD_POLICY = { capacity: 10, rate: 1 };
/** The accuracy scenario's policy, and the load: `ACCURACY_LOAD_FACTOR` × its rate. */
export const ACCURACY_POLICY = { capacity: 50, rate: 20 };
const ACCURACY_LOAD_FACTOR = 3;
const ACCURACY_INSTANCES = 3;
const ACCURACY_CONNECTIONS_PER_STREAM = 4;
const INTERVAL_MS = 250;
// The warm-up ends on time, cutting requests in flight whose store calls may still land: wait
// them out before the first INFO snapshot, so they are not charged to the measured run.
const SETTLE_MS = 300;

/**
 * @typedef {object} ThroughputRow
 * @property {string} limiter
 * @property {"allowed" | "flood"} scenario
 * @property {number} rps
 * @property {number} p50Ms
 * @property {number} p99Ms
 * @property {number} allowed
 * @property {number} refused
 * @property {number} other       responses neither 2xx nor 429
 * @property {number} errors      connection errors and timeouts
 * @property {number} elapsedS
 * @property {number | null} redisCommandsPerDecision   null when the store is not Redis
 * @property {number | null} backendCallsPerRequest      null when it cannot be counted
 * @property {Record<string, number> | null} redisCommands
 * @property {Record<string, number> | null} [storageOps]  bucket objects' storage calls during the run (limiters that count them)
 * @property {number[]} [roundsRps]  req/s of each interleaved run, when the row is their median
 */

/**
 * One throughput run: start the limiter, check it answers, warm up, then a load bounded by count
 * (so no request is in flight when INFO is read) and by time.
 * `allowed`: every connection is its own client with a huge budget. `flood`: every connection
 * is the same client, far over a small budget.
 * @param {Limiter} limiter
 * @param {"allowed" | "flood"} scenario
 * @param {{ profile: Profile, stats: RedisStats }} context
 * @returns {Promise<ThroughputRow>}
 */
export async function measureThroughput(limiter, scenario, { profile, stats }) {
  const instance = await limiter.start(scenario === "allowed" ? ALLOWED_POLICY : FLOOD_POLICY);
  try {
    const runId = randomUUID();
    const url = `${instance.url}/`;
    const keying = scenario === "allowed" ? { keyPerConnection: `allowed-${runId}` } : { headers: { "x-api-key": `flood-${runId}` } };
    await expectAnswer(url, keying.headers, limiter);

    const warmup = await runLoad({ url, connections: profile.connections, durationS: profile.warmupS, maxRequests: profile.maxRequests, ...keying });
    // Sized from the warm-up so the count ends the run (all answers in) near the intended time.
    const amount = Math.min(profile.maxRequests, Math.max(profile.connections * 20, Math.round(warmup.rps * profile.measureS)));
    if (limiter.store === "redis") await delay(SETTLE_MS);
    const before = limiter.store === "redis" ? await stats.snapshot() : undefined;
    const callsBefore = await gatewayBackendCalls(instance.url);
    const storageBefore = limiter.countsStorage ? await storageOps(instance.url) : null;
    const load = await runLoad({ url, connections: profile.connections, durationS: profile.measureS * 3, maxRequests: amount, ...keying });
    const used = before ? diffCommands(before, await stats.snapshot()) : undefined;
    const callsAfter = await gatewayBackendCalls(instance.url);
    const storageAfter = limiter.countsStorage ? await storageOps(instance.url) : null;
    // sluice counts its backend calls (health); for the peers, script calls seen by Redis.
    const backendCalls = callsBefore !== null && callsAfter !== null ? callsAfter - callsBefore : used?.scriptCalls;

    const decisions = load.allowed + load.refused;
    return throughputRow(limiter.id, scenario, load, {
      redisCommandsPerDecision: used && decisions > 0 ? used.total / decisions : null,
      backendCallsPerRequest: backendCalls !== undefined && load.responses > 0 ? backendCalls / load.responses : null,
      redisCommands: used?.byCommand ?? null,
      ...(storageBefore && storageAfter ? { storageOps: Object.fromEntries(Object.entries(storageAfter).map(([name, n]) => [name, n - (storageBefore[name] ?? 0)])) } : {}),
    });
  } finally {
    await instance.dispose();
  }
}

/**
 * The run with the median req/s of one limiter's interleaved runs (the lower middle of an even
 * count), with every run's req/s beside it, so the spread shows.
 * @param {ThroughputRow[]} runs
 * @returns {ThroughputRow}
 * @example
 * medianRun([rowAt1500, rowAt1200, rowAt1700]); // rowAt1500, roundsRps [1500, 1200, 1700]
 */
export function medianRun(runs) {
  const sorted = [...runs].sort((a, b) => a.rps - b.rps);
  const median = sorted[Math.floor((sorted.length - 1) / 2)];
  if (median === undefined) throw new Error("medianRun: no runs");
  return { ...median, roundsRps: runs.map((run) => run.rps) };
}

/**
 * One throughput row from a load run's figures and what the store counted.
 * @param {string} limiter
 * @param {ThroughputRow["scenario"]} scenario
 * @param {Awaited<ReturnType<typeof runLoad>>} load
 * @param {Pick<ThroughputRow, "redisCommandsPerDecision" | "backendCallsPerRequest" | "redisCommands"> & Partial<Pick<ThroughputRow, "storageOps">>} counted
 * @returns {ThroughputRow}
 * @example
 * throughputRow("sluice-do", "allowed", load, { redisCommandsPerDecision: null, backendCallsPerRequest: 0.02, redisCommands: null });
 */
export function throughputRow(limiter, scenario, load, counted) {
  const { rps, p50Ms, p99Ms, allowed, refused, other, errors, elapsedS } = load;
  return { limiter, scenario, rps, p50Ms, p99Ms, allowed, refused, other, errors, elapsedS, ...counted };
}

/**
 * Storage calls of a counting gateway's bucket objects so far (`workers/sluice-do-counted.ts`).
 * @param {string} baseUrl
 * @returns {Promise<Record<string, number>>}
 */
async function storageOps(baseUrl) {
  const response = await fetch(`${baseUrl}/__bench/storage-ops`);
  if (!response.ok) throw new Error(`storage-ops answered ${response.status}`);
  return /** @type {Record<string, number>} */ (await response.json());
}

/**
 * Backend calls a sluice gateway has made, from `/__limiter/health` (one workerd process is one
 * isolate here); null for workers that have no such endpoint.
 * @param {string} baseUrl
 * @returns {Promise<number | null>}
 */
async function gatewayBackendCalls(baseUrl) {
  const response = await fetch(`${baseUrl}/__limiter/health`, BENCH_HEALTH_DETAILS);
  const body = await response.text();
  try {
    const calls = JSON.parse(body)?.isolate?.backendCalls;
    return typeof calls === "number" ? calls : null;
  } catch {
    return null;
  }
}

/**
 * @typedef {object} AccuracyResult
 * @property {string} limiter
 * @property {number} instances          load streams
 * @property {number} processes          workerd processes they were spread over
 * @property {string} note
 * @property {Policy} policy
 * @property {number} offeredRps
 * @property {number} elapsedS           first request to last answer
 * @property {number} allowed
 * @property {number} refused
 * @property {number} other
 * @property {number} theoreticalMax     capacity + rate × elapsed, rounded down
 * @property {number} overAdmission      allowed beyond the theoretical maximum (0 = held)
 * @property {number[]} allowedByStream
 * @property {number} intervalMs
 * @property {number[]} allowedPerInterval
 */

/**
 * One client at `ACCURACY_LOAD_FACTOR` × the policy's rate, spread evenly over three load
 * streams for a fixed time. Each stream hits its own instance (workerd process) when the
 * limiter's state is shared between processes; otherwise all three hit one process.
 * @param {Limiter} limiter
 * @param {{ profile: Profile }} context
 * @returns {Promise<AccuracyResult>}
 */
export async function measureAccuracy(limiter, { profile }) {
  const policy = ACCURACY_POLICY;
  const processes = limiter.sharesStateAcrossProcesses ? ACCURACY_INSTANCES : 1;
  const instances = await Promise.all(Array.from({ length: processes }, () => limiter.start(policy)));
  try {
    const headers = { "x-api-key": `accuracy-${randomUUID()}` };
    // Not on the measured client: a check that each instance answers, then let the load begin.
    for (const instance of instances) await expectAnswer(`${instance.url}/`, { "x-api-key": `probe-${randomUUID()}` }, limiter);

    const streamRate = (policy.rate * ACCURACY_LOAD_FACTOR) / ACCURACY_INSTANCES;
    const perStream = Math.round(streamRate * profile.accuracyS);
    // autocannon paces per second (each second's requests leave at its start): staggering the
    // streams by a third of a second spreads the client's load over the second.
    const loads = await Promise.all(
      Array.from({ length: ACCURACY_INSTANCES }, (_, i) =>
        runLoad({
          url: `${instances[i % processes]?.url}/`,
          connections: ACCURACY_CONNECTIONS_PER_STREAM,
          overallRate: streamRate,
          // Bounded by count so every admitted request is seen; the time bound is a safety net.
          maxRequests: perStream,
          durationS: profile.accuracyS * 3,
          headers,
          recordAllowedTimes: true,
          startDelayMs: (i * 1000) / ACCURACY_INSTANCES,
        }),
      ),
    );

    const start = Math.min(...loads.map((l) => l.startedAt));
    const end = Math.max(...loads.map((l) => l.startedAt + l.elapsedS * 1000));
    const elapsedS = (end - start) / 1000;
    const allowed = sum(loads.map((l) => l.allowed));
    const theoreticalMax = Math.floor(policy.capacity + policy.rate * elapsedS);
    const allowedPerInterval = Array.from({ length: Math.ceil((end - start) / INTERVAL_MS) }, () => 0);
    for (const t of loads.flatMap((l) => l.allowedTimes)) {
      const slot = Math.min(allowedPerInterval.length - 1, Math.floor((t - start) / INTERVAL_MS));
      allowedPerInterval[slot] = (allowedPerInterval[slot] ?? 0) + 1;
    }
    return {
      limiter: limiter.id,
      instances: ACCURACY_INSTANCES,
      processes,
      note:
        processes === ACCURACY_INSTANCES
          ? `${ACCURACY_INSTANCES} workerd processes sharing one store`
          : `${ACCURACY_INSTANCES} concurrent load streams against ONE workerd process (separate Miniflare processes do not share Durable Object state)`,
      policy,
      offeredRps: policy.rate * ACCURACY_LOAD_FACTOR,
      elapsedS,
      allowed,
      refused: sum(loads.map((l) => l.refused)),
      other: sum(loads.map((l) => l.other + l.errors)),
      theoreticalMax,
      overAdmission: Math.max(0, allowed - theoreticalMax),
      allowedByStream: loads.map((l) => l.allowed),
      intervalMs: INTERVAL_MS,
      allowedPerInterval,
    };
  } finally {
    await Promise.all(instances.map((instance) => instance.dispose()));
  }
}

/**
 * Fails early, with the answer, when an instance does not proxy (e.g. a configuration error).
 * @param {string} url
 * @param {Record<string, string> | undefined} headers
 * @param {Limiter} limiter
 */
async function expectAnswer(url, headers, limiter) {
  const response = await fetch(url, { headers: headers ?? { "x-api-key": `probe-${randomUUID()}` }, signal: AbortSignal.timeout(10_000) });
  const body = await response.text();
  if (response.status !== 200) throw new Error(`${limiter.label} answered ${response.status} to a first request: ${body.slice(0, 500)}`);
}

/** @param {number[]} values */
function sum(values) {
  return values.reduce((a, b) => a + b, 0);
}

/**
 * The fixed-rate scenario: well below saturation (the slowest limiter here saturates near 400
 * req/s on the 2-core machine), evenly spaced, every request allowed (each of `clients` clients
 * with the allowed policy's huge budget). What a limiter adds to a request when it is not busy.
 */
export const FIXED_RATE = { rps: 100, clients: 16 };
/** Warm-up and measured requests per profile (at `FIXED_RATE.rps`: 1 s + 15 s full, 0.5 s + 2.5 s quick). */
const FIXED_RATE_COUNTS = { full: { warmup: 100, measured: 1500 }, quick: { warmup: 50, measured: 250 } };

/**
 * @typedef {object} FixedRateRow
 * @property {string} limiter
 * @property {number} rps            offered (evenly spaced)
 * @property {number} achievedRps    what the sender managed
 * @property {number} sent
 * @property {number} p50Ms
 * @property {number} p99Ms
 * @property {number} meanMs
 * @property {number} allowed
 * @property {number} refused
 * @property {number} other          any other status, plus connection errors and timeouts
 * @property {number} maxLateMs      the sender's worst lag behind its schedule
 * @property {{ p50Ms: number, p99Ms: number }[]} [rounds]  each run's, when p50 and p99 are their medians
 */

/**
 * One limiter's fixed-rate runs as one row: the median p50 and the median p99 of its runs (each
 * on its own), the worst sender lag, and every run's percentiles beside them.
 * @param {FixedRateRow[]} runs
 * @returns {FixedRateRow}
 * @example
 * medianFixedRate([run1, run2, run3]).p99Ms; // the middle one of the three p99s
 */
export function medianFixedRate(runs) {
  const [first] = runs;
  if (first === undefined) throw new Error("medianFixedRate: no runs");
  const median = (/** @type {number[]} */ values) => /** @type {number} */ ([...values].sort((a, b) => a - b)[Math.floor((values.length - 1) / 2)]);
  return {
    ...first,
    p50Ms: median(runs.map((r) => r.p50Ms)),
    p99Ms: median(runs.map((r) => r.p99Ms)),
    maxLateMs: Math.max(...runs.map((r) => r.maxLateMs)),
    rounds: runs.map(({ p50Ms, p99Ms }) => ({ p50Ms, p99Ms })),
  };
}

/**
 * One fixed-rate run: start the limiter with the allowed policy, check it answers, warm up at the
 * same rate, then `measured` requests evenly spaced at `FIXED_RATE.rps`; latency from each
 * request's scheduled time to its last byte.
 * @param {Limiter} limiter
 * @param {{ profile: Profile }} context
 * @returns {Promise<FixedRateRow>}
 */
export async function measureFixedRate(limiter, { profile }) {
  const counts = profile.name === "quick" ? FIXED_RATE_COUNTS.quick : FIXED_RATE_COUNTS.full;
  const instance = await limiter.start(ALLOWED_POLICY);
  try {
    const runId = randomUUID();
    const url = `${instance.url}/`;
    const headersFor = (/** @type {number} */ i) => ({ "x-api-key": `fixed-${runId}-${i % FIXED_RATE.clients}` });
    await expectAnswer(url, headersFor(0), limiter);
    await runPaced({ url, rate: FIXED_RATE.rps, count: counts.warmup, headersFor });
    const run = await runPaced({ url, rate: FIXED_RATE.rps, count: counts.measured, headersFor });
    return {
      limiter: limiter.id,
      rps: FIXED_RATE.rps,
      achievedRps: run.achievedRps,
      sent: run.sent,
      p50Ms: run.p50Ms,
      p99Ms: run.p99Ms,
      meanMs: run.meanMs,
      allowed: run.allowed,
      refused: run.refused,
      other: run.other + run.errors,
      maxLateMs: run.maxLateMs,
    };
  } finally {
    await instance.dispose();
  }
}
