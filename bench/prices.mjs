// @ts-check
/**
 * The providers' published prices the benchmark turns its measured operations into, in one place,
 * each with where it comes from and when it was read; and what a million decisions cost from them.
 *
 * Marginal (pay-as-you-go) prices only: the monthly inclusions (10 M Workers requests, 1 M Durable
 * Object requests, 50 M rows written, the $5 Workers Paid minimum; Upstash's free 500 K commands)
 * are left out, so these are the cost of one more million decisions on an account past them.
 */

/**
 * When the prices below were read. They were read from stored copies: Cloudflare's from the
 * cloudflare-docs repository's sources of the pages named (Workers pricing at commit 07acbb66,
 * the Durable Objects pricing partial at 07e200b7, the Rate Limiting binding page at 0c50ffa0);
 * Upstash's from its billing docs page and a capture of its pricing page dated 2026-11-09.
 */
export const PRICES_READ_ON = "2026-11-30";

/** USD per unit; `source` is the page the figure is quoted from. */
export const PRICES = {
  workersRequest: {
    usd: 0.3 / 1e6,
    per: "Workers request (Standard: 10 M/month included, +$0.30 per million)",
    source: "https://developers.cloudflare.com/workers/platform/pricing/",
  },
  durableObjectRequest: {
    usd: 0.15 / 1e6,
    per: "Durable Object request (1 M/month included, +$0.15 per million; every RPC method call on a stub is one)",
    source: "https://developers.cloudflare.com/durable-objects/platform/pricing/",
  },
  durableObjectRowWritten: {
    usd: 1.0 / 1e6,
    per: "SQLite-backed Durable Object row written (50 M/month included, +$1.00 per million; each KV put(), delete() and setAlarm() is one)",
    source: "https://developers.cloudflare.com/durable-objects/platform/pricing/",
  },
  durableObjectRowRead: {
    usd: 0.001 / 1e6,
    per: "SQLite-backed Durable Object row read (25 B/month included, +$0.001 per million)",
    source: "https://developers.cloudflare.com/durable-objects/platform/pricing/",
  },
  durableObjectDuration: {
    usd: 12.5 / 1e6,
    per: "Durable Object GB-s of wall-clock while active, billed at 128 MB (400,000 GB-s included, +$12.50 per million GB-s)",
    source: "https://developers.cloudflare.com/durable-objects/platform/pricing/",
    note: "not measured here: left out of the figures",
  },
  upstashCommand: {
    usd: 0.2 / 1e5,
    per: "Upstash Redis Pay-as-You-Go command ($0.20 per 100K commands)",
    source: "https://upstash.com/pricing/redis (also https://upstash.com/docs/redis/overall/billing)",
    note: "the pages do not say how commands run inside a Lua script count: the figure is given both ways",
  },
  rateLimitingBinding: {
    usd: 0,
    per: "Workers Rate Limiting binding call (no price of its own on the binding's page; only the Workers request)",
    source: "https://developers.cloudflare.com/workers/runtime-apis/bindings/rate-limit/",
  },
};

/** What is not in the cost figures. */
export const LEFT_OUT = [
  "Durable Object duration (wall-clock GB-s while an object is active; depends on how long objects stay in memory between requests, not measurable on workerd here)",
  "Workers CPU time ($0.02 per million CPU ms past 30 M; workerd here does not report billed CPU)",
  "Durable Object rows read (the constructor's list() when an object is loaded: per object load, not per decision) and setAlarm() (once per object per cleanup cycle of at least 60 s)",
  "sluice's metrics object: one Durable Object request and a few rows written per isolate every 5 s, whatever the traffic",
  "stored data (Durable Object SQLite GB-month, Upstash storage GB), Upstash bandwidth (free to 200 GB/month) and every monthly inclusion and minimum",
];

/**
 * The commands these limiters send over REST, each one billed command whatever it runs: script
 * calls (EVALSHA, EVAL after NOSCRIPT, SCRIPT LOAD) and sluice's read of the override list
 * (HGETALL, at most every 10 s per isolate). None of their scripts runs HGETALL; everything else
 * Redis counts runs inside a script.
 */
const REST_COMMANDS = ["evalsha", "eval", "evalsha_ro", "eval_ro", "script|load", "hgetall"];

/**
 * @typedef {object} DecisionCost
 * @property {number} storeUsdPerMillion        the store's operations, low bound
 * @property {number} storeUsdPerMillionHigh    the same, high bound (differs only for Redis: every command inside a script billed)
 * @property {number} totalUsdPerMillion        low bound + the Workers request
 * @property {Record<string, number>} operationsPerDecision  what the figure is made of
 */

/**
 * Cost of a million decisions from one throughput run's measured operations.
 *
 * - Durable Object: requests = the gateway's own count of backend calls (one RPC per call) per
 *   response; rows written: the object writes once per call that charges (a batch of requests,
 *   or a lease, is one write) and a refusal writes nothing (no `blockFor` in the benchmark's
 *   policy), so rows written ≤ min(object calls, allowed decisions): that bound is the derived
 *   figure. The counting variant (`workers/sluice-do-counted.ts`) counts them instead, as a check.
 * - Redis (Upstash): low = the commands sent over REST per decision (`REST_COMMANDS` as Redis
 *   counted them); high = every command Redis ran, inside scripts too, per decision
 *   (`INFO commandstats`).
 * - Rate Limiting binding: nothing beyond the Workers request.
 * @param {"none" | "durable-object" | "redis" | "rate-limiting-binding"} store
 * @param {import("./scenarios.mjs").ThroughputRow} row
 * @returns {DecisionCost | null} null when the run has nothing to count from
 * @example
 * costPerMillion("redis", row).storeUsdPerMillion; // 2.00 for one EVALSHA per decision
 */
export function costPerMillion(store, row) {
  const decisions = row.allowed + row.refused;
  if (decisions === 0) return null;
  const responses = decisions + row.other;
  const workers = PRICES.workersRequest.usd * 1e6;
  /** @param {number} low @param {number} high @param {Record<string, number>} operationsPerDecision */
  const result = (low, high, operationsPerDecision) => ({
    storeUsdPerMillion: low * 1e6,
    storeUsdPerMillionHigh: high * 1e6,
    totalUsdPerMillion: low * 1e6 + workers,
    operationsPerDecision,
  });
  switch (store) {
    case "none":
    case "rate-limiting-binding":
      return result(0, 0, {});
    case "durable-object": {
      if (row.backendCallsPerRequest === null) return null;
      const requests = (row.backendCallsPerRequest * responses) / decisions;
      // Counted where the gateway counts its objects' storage calls (every put, delete, setAlarm
      // and deleteAll is a row written); otherwise derived: at most one write per object call, and none for a refusal.
      const ops = row.storageOps;
      const rowsWritten = ops ? ((ops.put ?? 0) + (ops.delete ?? 0) + (ops.setAlarm ?? 0) + (ops.deleteAll ?? 0)) / decisions : Math.min(requests, row.allowed / decisions);
      const usd = requests * PRICES.durableObjectRequest.usd + rowsWritten * PRICES.durableObjectRowWritten.usd;
      return result(usd, usd, { durableObjectRequests: requests, [ops ? "rowsWrittenCounted" : "rowsWritten"]: rowsWritten });
    }
    case "redis": {
      if (row.redisCommands === null || row.redisCommandsPerDecision === null) return null;
      const restCommands = REST_COMMANDS.reduce((n, c) => n + (row.redisCommands?.[c] ?? 0), 0);
      const low = restCommands / decisions;
      const high = row.redisCommandsPerDecision;
      return result(low * PRICES.upstashCommand.usd, high * PRICES.upstashCommand.usd, { restCommands: low, redisCommands: high });
    }
  }
}
