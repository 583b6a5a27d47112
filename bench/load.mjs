// @ts-check
/**
 * One bounded load run with autocannon (its programmatic API), summarised the way the report
 * needs it: throughput, latency percentiles, and responses by outcome.
 */
import http from "node:http";
import { setTimeout as delay } from "node:timers/promises";
import autocannon from "autocannon";

/**
 * @typedef {object} LoadOptions
 * @property {string} url
 * @property {number} connections
 * @property {number} durationS    time bound of the run
 * @property {number} maxRequests  count bound of the run (whichever comes first ends it)
 * @property {Record<string, string>} [headers]  sent with every request
 * @property {string} [keyPerConnection]  if set, each connection is its own client: `x-api-key: <this>-<n>`
 * @property {string} [keyPerRequest]  if set, each request is a new client: `x-api-key: <this>-<n>`
 * @property {number} [overallRate]  requests per second across all connections (default: as fast as answered)
 * @property {boolean} [recordAllowedTimes]  keep the arrival time (performance.now()) of every 2xx
 * @property {number} [startDelayMs]  wait this long before starting
 */

/**
 * @typedef {object} LoadResult
 * @property {number} responses
 * @property {number} elapsedS     first request to last response
 * @property {number} rps          responses per second
 * @property {number} p50Ms
 * @property {number} p99Ms
 * @property {number} allowed      2xx
 * @property {number} refused      429
 * @property {number} other        any other status
 * @property {number} errors       connection errors and timeouts
 * @property {Record<string, number>} statusCodes
 * @property {number[]} allowedTimes  performance.now() of each 2xx (only with recordAllowedTimes)
 * @property {number} startedAt    performance.now() when the run started
 */

/**
 * Runs autocannon against `url` until `durationS` or `maxRequests`, whichever comes first.
 * @param {LoadOptions} options
 * @returns {Promise<LoadResult>}
 * @example
 * const result = await runLoad({ url: "http://127.0.0.1:8787/", connections: 16, durationS: 10, maxRequests: 200_000 });
 * console.log(result.rps, result.p99Ms);
 */
export async function runLoad(options) {
  if (options.startDelayMs) await delay(options.startDelayMs);
  /** @type {number[]} */
  const latencies = [];
  /** @type {number[]} */
  const allowedTimes = [];
  /** @type {Record<string, number>} */
  const statusCodes = {};
  let connection = 0;
  let sent = 0;
  let lastResponseAt = 0;

  const startedAt = performance.now();
  /** @type {(result: autocannon.Result) => void} */
  let finished = () => {};
  /** @type {(error: Error) => void} */
  let failed = () => {};
  /** @type {Promise<autocannon.Result>} */
  const done = new Promise((resolve, reject) => ([finished, failed] = [resolve, reject]));
  // With a callback autocannon returns its instance, whose events give each answer's status and time.
  const instance = autocannon(
    {
      url: options.url,
      connections: options.connections,
      duration: options.durationS,
      maxOverallRequests: options.maxRequests,
      overallRate: options.overallRate,
      headers: options.headers ?? {},
      timeout: 10,
      // autocannon notices the end of a run at its next sample: sample often, so runs end promptly.
      sampleInt: 100,
      setupClient: options.keyPerConnection ? (client) => client.setHeaders({ ...options.headers, "x-api-key": `${options.keyPerConnection}-${connection++}` }) : undefined,
      ...(options.keyPerRequest && {
        requests: [
          {
            setupRequest: (/** @type {any} */ request) => ({ ...request, headers: { ...options.headers, "x-api-key": `${options.keyPerRequest}-${sent++}` } }),
          },
        ],
      }),
    },
    (error, result) => (error ? failed(error) : finished(result)),
  );
  instance.on("response", (_client, statusCode, _bytes, responseTime) => {
    const now = performance.now();
    lastResponseAt = now;
    latencies.push(responseTime);
    statusCodes[statusCode] = (statusCodes[statusCode] ?? 0) + 1;
    if (options.recordAllowedTimes && statusCode >= 200 && statusCode < 300) allowedTimes.push(now);
  });
  const result = await done;

  const responses = latencies.length;
  const elapsedS = Math.max(((lastResponseAt || performance.now()) - startedAt) / 1000, 1e-3);
  latencies.sort((a, b) => a - b);
  const count = (/** @type {(code: number) => boolean} */ match) => Object.entries(statusCodes).reduce((sum, [code, n]) => sum + (match(Number(code)) ? n : 0), 0);
  const allowed = count((code) => code >= 200 && code < 300);
  const refused = count((code) => code === 429);
  return {
    responses,
    elapsedS,
    rps: responses / elapsedS,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    allowed,
    refused,
    other: responses - allowed - refused,
    errors: result.errors + result.timeouts,
    statusCodes,
    allowedTimes,
    startedAt,
  };
}

/**
 * Nearest-rank percentile of sorted values (NaN when there are none).
 * @param {number[]} sorted
 * @param {number} q between 0 and 1
 */
export function percentile(sorted, q) {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? Number.NaN;
}

/**
 * @typedef {object} PacedOptions
 * @property {string} url
 * @property {number} rate         requests per second, sent evenly spaced (open loop)
 * @property {number} count        requests to send
 * @property {(i: number) => Record<string, string>} headersFor  headers of the i-th request
 * @property {number} [timeoutMs]  per request (default 10 s)
 */

/**
 * @typedef {object} PacedResult
 * @property {number} sent
 * @property {number} allowed      2xx
 * @property {number} refused      429
 * @property {number} other        any other status
 * @property {number} errors       connection errors and timeouts
 * @property {number} p50Ms        latency from each request's scheduled send time to its last byte
 * @property {number} p99Ms
 * @property {number} meanMs
 * @property {number} achievedRps  requests sent ÷ time from first to last send
 * @property {number} maxLateMs    how far the sender fell behind its schedule, at worst
 */

/**
 * A fixed-rate (open-loop) run: request i leaves at start + i ÷ rate whatever the answers do, on
 * keep-alive connections (as many as are in flight), so a slow answer does not slow the offered
 * load, and latency is counted from the scheduled send time (no coordinated omission). Meant for
 * moderate rates (a few hundred per second): autocannon's `overallRate` sends each second's quota
 * back to back at the start of the second, a burst rather than a rate.
 * @param {PacedOptions} options
 * @returns {Promise<PacedResult>}
 * @example
 * const r = await runPaced({ url: "http://127.0.0.1:8787/", rate: 100, count: 1000, headersFor: (i) => ({ "x-api-key": `c${i % 16}` }) });
 */
export async function runPaced({ url, rate, count, headersFor, timeoutMs = 10_000 }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  /** @type {number[]} */
  const latencies = [];
  const counts = { allowed: 0, refused: 0, other: 0, errors: 0 };
  const target = new URL(url);
  const one = (/** @type {number} */ i, /** @type {number} */ scheduledAt) =>
    new Promise((resolve) => {
      const request = http.request(
        { host: target.hostname, port: target.port, path: `${target.pathname}${target.search}`, method: "GET", headers: headersFor(i), agent, timeout: timeoutMs },
        (response) => {
          response.on("data", () => {});
          response.on("end", () => {
            latencies.push(performance.now() - scheduledAt);
            const status = response.statusCode ?? 0;
            if (status >= 200 && status < 300) counts.allowed++;
            else if (status === 429) counts.refused++;
            else counts.other++;
            resolve(undefined);
          });
        },
      );
      request.on("timeout", () => request.destroy(new Error("timeout")));
      request.on("error", () => {
        counts.errors++;
        resolve(undefined);
      });
      request.end();
    });

  const started = performance.now();
  /** @type {Promise<unknown>[]} */
  const inFlight = [];
  let maxLateMs = 0;
  let lastSentAt = started;
  for (let i = 0; i < count; i++) {
    const scheduledAt = started + (i * 1000) / rate;
    const wait = scheduledAt - performance.now();
    if (wait > 0) await delay(wait);
    lastSentAt = performance.now();
    maxLateMs = Math.max(maxLateMs, lastSentAt - scheduledAt);
    inFlight.push(one(i, scheduledAt));
  }
  await Promise.all(inFlight);
  agent.destroy();
  latencies.sort((a, b) => a - b);
  return {
    sent: count,
    ...counts,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    meanMs: latencies.length ? latencies.reduce((a, b) => a + b, 0) / latencies.length : Number.NaN,
    achievedRps: count > 1 ? ((count - 1) * 1000) / Math.max(lastSentAt - started, 1) : 0,
    maxLateMs,
  };
}
