// @ts-check
/**
 * The scale scenario (issue 19, "a million clients"): one request from each of many distinct
 * clients, and what they leave in the store.
 *
 * Redis limiters, one after the other, each on a flushed database: Redis memory per client
 * (`INFO memory` used_memory after − before, ÷ clients), keys per client (`DBSIZE`), commands per
 * decision (every client is new: the cold path) and its cost at the published prices, and how the
 * keys expire, two ways:
 * - TTL check: every key the run left is read (`SCAN` + `PTTL`): none may lack a TTL, and the
 *   longest is reported against the policy's (`SCALE_POLICY`: one token refills in 500 s, so no
 *   key can expire during the run and skew the memory figure);
 * - expiry: the same limiters with a 1 s policy (`EXPIRY_POLICY`), a few hundred clients each, then
 *   a wait past the longest TTL they set: keys left must be 0 (`SCAN` expires what it meets).
 * Durable Objects: the storage-counting gateway (`workers/sluice-do-counted.ts`): objects created
 * and storage calls per client, and object calls per decision (its health). Cleanup is the alarm
 * of `ClientBuckets` (at the earliest a minute later: not waited for here, stated from the design).
 * Then a model on paper for `MODEL_CLIENTS` clients from the per-client figures.
 */
import { randomUUID } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { createClient } from "redis";
import { BENCH_HEALTH_DETAILS } from "./hot-key.mjs";
import { runLoad } from "./load.mjs";
import { costPerMillion, PRICES } from "./prices.mjs";
import { throughputRow } from "./scenarios.mjs";
import { diffCommands } from "./redis-stats.mjs";

/** Distinct clients per Redis limiter, and on the Durable Object gateway (each an object of its own, a SQLite database in Miniflare). */
export const SCALE_CLIENTS = { full: { redis: 100_000, durableObject: 5_000 }, quick: { redis: 1_000, durableObject: 100 } };
/** One request per client, allowed; the token takes 500 s to refill, so every key outlives the run. */
export const SCALE_POLICY = { capacity: 1, rate: 0.002 };
/** The expiry check: keys live about a second. */
export const EXPIRY_POLICY = { capacity: 1, rate: 1 };
const EXPIRY_CLIENTS = 200;
export const MODEL_CLIENTS = 1_000_000;
const CONNECTIONS = 32;
const SETTLE_MS = 300;
// Each limiter's keys, for the expiry check (the three run at once there).
const KEY_PATTERNS = { "sluice-upstash": "sluice:*", "upstash-ratelimit": "bench:upstash-ratelimit*", "hono-rate-limiter": "bench:hono-rate-limiter:*" };
export const SCALE_REDIS_LIMITERS = /** @type {(keyof typeof KEY_PATTERNS)[]} */ (Object.keys(KEY_PATTERNS));

/** @typedef {import("./limiters.mjs").Limiter} Limiter */
/** @typedef {{ sendCommand: (args: string[]) => Promise<unknown> }} RedisCommands  the part of a `redis` client used here */

/**
 * @typedef {object} RedisScaleRow
 * @property {string} limiter
 * @property {number} clients            requests sent, one per client
 * @property {number} allowed
 * @property {number} refused
 * @property {number} other
 * @property {number} rps
 * @property {number} bytesPerClient     used_memory delta ÷ clients
 * @property {number} keysPerClient      DBSIZE ÷ clients
 * @property {number} keys
 * @property {number} keysWithoutTtl     keys the run left with no expiry (must be 0)
 * @property {number} maxTtlS            the longest TTL left
 * @property {number} policyTtlS         the policy's longest: one token's refill (capacity ÷ rate for fixed windows)
 * @property {number} commandsPerDecision
 * @property {Record<string, number>} commands
 * @property {import("./prices.mjs").DecisionCost | null} cost
 * @property {{ clients: number, maxTtlS: number, waitedS: number, keysLeft: number } | null} expiry
 */

/**
 * @typedef {object} DurableObjectScaleRow
 * @property {string} limiter
 * @property {number} clients
 * @property {number} allowed
 * @property {number} other
 * @property {number} rps
 * @property {number} objectsPerClient      objects constructed ÷ clients
 * @property {number} objectCallsPerDecision
 * @property {Record<string, number>} storageCallsPerClient   put, setAlarm, … ÷ clients
 * @property {number} rowsWrittenPerClient  put + delete + setAlarm + deleteAll calls ÷ clients
 * @property {import("./prices.mjs").DecisionCost | null} cost
 */

/**
 * @param {{ limiters: Limiter[], redisUrl: string, profile: import("./scenarios.mjs").Profile,
 *   stats: import("./scenarios.mjs").RedisStats, progress?: (message: string) => void }} options
 *   `limiters`: those of `SCALE_REDIS_LIMITERS` and `sluice-do-counted`
 * @returns {Promise<{ redis: RedisScaleRow[], durableObject: DurableObjectScaleRow | null }>}
 * @example
 * const scale = await measureScale({ limiters, redisUrl: stack.redisUrl, profile, stats });
 * formatScale(scale, labels);
 */
export async function measureScale({ limiters, redisUrl, profile, stats, progress = () => {} }) {
  const clients = profile.name === "quick" ? SCALE_CLIENTS.quick : SCALE_CLIENTS.full;
  const redis = createClient({ url: redisUrl });
  redis.on("error", () => {});
  await redis.connect();
  try {
    const byId = new Map(limiters.map((l) => [l.id, l]));
    const present = SCALE_REDIS_LIMITERS.flatMap((id) => byId.get(id) ?? []);

    progress(`scale: expiry check, ${EXPIRY_CLIENTS} clients each, ${present.length} limiters at once, policy ${EXPIRY_POLICY.capacity} at ${EXPIRY_POLICY.rate}/s`);
    const expiry = await expiryCheck(present, redis);

    /** @type {RedisScaleRow[]} */
    const rows = [];
    for (const limiter of present) {
      progress(`scale: ${clients.redis} clients, ${limiter.label}`);
      await redis.sendCommand(["FLUSHALL", "SYNC"]);
      const instance = await limiter.start(SCALE_POLICY);
      try {
        // The first request loads the script and reads the override registry: not per client.
        await fetch(`${instance.url}/`, { headers: { "x-api-key": `scale-probe-${randomUUID()}` } }).then((r) => r.arrayBuffer());
        await delay(SETTLE_MS);
        const keysBefore = Number(await redis.sendCommand(["DBSIZE"]));
        const memoryBefore = await usedMemory(redis);
        const commandsBefore = await stats.snapshot();
        const load = await runLoad({ url: `${instance.url}/`, connections: CONNECTIONS, durationS: 600, maxRequests: clients.redis, keyPerRequest: `scale-${randomUUID()}` });
        await delay(SETTLE_MS);
        const used = diffCommands(commandsBefore, await stats.snapshot());
        const memoryAfter = await usedMemory(redis);
        const keys = Number(await redis.sendCommand(["DBSIZE"])) - keysBefore;
        const ttls = await readTtls(redis, "*");
        const decisions = load.allowed + load.refused;
        const commandsPerDecision = decisions > 0 ? used.total / decisions : Number.NaN;
        rows.push({
          limiter: limiter.id,
          clients: load.responses,
          allowed: load.allowed,
          refused: load.refused,
          other: load.other + load.errors,
          rps: load.rps,
          bytesPerClient: (memoryAfter - memoryBefore) / load.responses,
          keysPerClient: keys / load.responses,
          keys,
          keysWithoutTtl: ttls.withoutTtl,
          maxTtlS: ttls.maxTtlMs / 1000,
          policyTtlS: policyTtlS(SCALE_POLICY),
          commandsPerDecision,
          commands: used.byCommand,
          cost: costPerMillion("redis", throughputRow(limiter.id, "allowed", load, { redisCommandsPerDecision: commandsPerDecision, backendCallsPerRequest: null, redisCommands: used.byCommand })),
          expiry: expiry.get(limiter.id) ?? null,
        });
      } finally {
        await instance.dispose();
      }
    }
    await redis.sendCommand(["FLUSHALL", "SYNC"]);

    const counted = byId.get("sluice-do-counted");
    let durableObject = null;
    if (counted) {
      progress(`scale: ${clients.durableObject} clients, ${counted.label}`);
      durableObject = await durableObjectScale(counted, clients.durableObject);
    }
    return { redis: rows, durableObject };
  } finally {
    await redis.quit().catch(() => redis.destroy());
  }
}

/** The longest a key of one client's single request lives under `policy`, by each limiter's rule: one token's refill, or a fixed window of capacity ÷ rate. */
function policyTtlS(/** @type {{ capacity: number, rate: number }} */ policy) {
  return Math.max(1 / policy.rate, policy.capacity / policy.rate);
}

/**
 * Every limiter at once with the 1 s policy, then past the longest TTL: keys left per limiter.
 * @param {Limiter[]} limiters
 * @param {RedisCommands} redis
 */
async function expiryCheck(limiters, redis) {
  await redis.sendCommand(["FLUSHALL", "SYNC"]);
  const instances = await Promise.all(limiters.map((l) => l.start(EXPIRY_POLICY)));
  try {
    await Promise.all(instances.map((instance) => runLoad({ url: `${instance.url}/`, connections: 8, durationS: 60, maxRequests: EXPIRY_CLIENTS, keyPerRequest: `expiry-${randomUUID()}` })));
  } finally {
    await Promise.all(instances.map((i) => i.dispose()));
  }
  const ttls = await Promise.all(limiters.map((l) => readTtls(redis, KEY_PATTERNS[/** @type {keyof typeof KEY_PATTERNS} */ (l.id)])));
  const longestMs = Math.max(0, ...ttls.map((t) => t.maxTtlMs));
  const waitMs = longestMs + 500;
  await delay(waitMs);
  /** @type {Map<string, { clients: number, maxTtlS: number, waitedS: number, keysLeft: number }>} */
  const result = new Map();
  for (const [i, limiter] of limiters.entries()) {
    const left = await readTtls(redis, KEY_PATTERNS[/** @type {keyof typeof KEY_PATTERNS} */ (limiter.id)]);
    result.set(limiter.id, { clients: EXPIRY_CLIENTS, maxTtlS: (ttls[i]?.maxTtlMs ?? 0) / 1000, waitedS: waitMs / 1000, keysLeft: left.keys });
  }
  return result;
}

/** @param {RedisCommands} redis */
async function usedMemory(redis) {
  const info = String(await redis.sendCommand(["INFO", "memory"]));
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? Number.NaN);
}

/**
 * Every key matching `pattern` and its TTL (`SCAN` skips, and deletes, keys already expired).
 * @param {RedisCommands} redis
 * @param {string} pattern
 */
async function readTtls(redis, pattern) {
  let cursor = "0";
  let keys = 0;
  let withoutTtl = 0;
  let maxTtlMs = 0;
  do {
    const [next, batch] = /** @type {[string, string[]]} */ (await redis.sendCommand(["SCAN", cursor, "MATCH", pattern, "COUNT", "1000"]));
    cursor = next;
    const ttls = await Promise.all(batch.map((key) => redis.sendCommand(["PTTL", key])));
    for (const ttl of ttls.map(Number)) {
      if (ttl === -2) continue; // expired between SCAN and PTTL
      keys += 1;
      if (ttl === -1) withoutTtl += 1;
      else maxTtlMs = Math.max(maxTtlMs, ttl);
    }
  } while (cursor !== "0");
  return { keys, withoutTtl, maxTtlMs };
}

/**
 * One request from each of `clients` clients to the storage-counting gateway.
 * @param {Limiter} limiter  `sluice-do-counted`
 * @param {number} clients
 * @returns {Promise<DurableObjectScaleRow>}
 */
async function durableObjectScale(limiter, clients) {
  const instance = await limiter.start(SCALE_POLICY);
  try {
    const read = async (/** @type {string} */ path, /** @type {RequestInit} */ init = {}) => /** @type {any} */ (await (await fetch(`${instance.url}${path}`, init)).json());
    await fetch(`${instance.url}/`, { headers: { "x-api-key": `scale-probe-${randomUUID()}` } }).then((r) => r.arrayBuffer());
    const storageBefore = /** @type {Record<string, number>} */ (await read("/__bench/storage-ops"));
    const objectsBefore = Number((await read("/__bench/objects")).constructed);
    const callsBefore = Number((await read("/__limiter/health", BENCH_HEALTH_DETAILS)).isolate?.backendCalls);
    const load = await runLoad({ url: `${instance.url}/`, connections: CONNECTIONS, durationS: 600, maxRequests: clients, keyPerRequest: `scale-${randomUUID()}` });
    const storageAfter = /** @type {Record<string, number>} */ (await read("/__bench/storage-ops"));
    const objects = Number((await read("/__bench/objects")).constructed) - objectsBefore;
    const calls = Number((await read("/__limiter/health", BENCH_HEALTH_DETAILS)).isolate?.backendCalls) - callsBefore;
    /** @type {Record<string, number>} */
    const storage = Object.fromEntries(Object.entries(storageAfter).map(([name, n]) => [name, n - (storageBefore[name] ?? 0)]));
    const n = load.responses;
    const rowsWritten = (storage.put ?? 0) + (storage.delete ?? 0) + (storage.setAlarm ?? 0) + (storage.deleteAll ?? 0);
    return {
      limiter: limiter.id,
      clients: n,
      allowed: load.allowed,
      other: load.other + load.errors + load.refused,
      rps: load.rps,
      objectsPerClient: objects / n,
      objectCallsPerDecision: calls / Math.max(1, load.allowed + load.refused),
      storageCallsPerClient: Object.fromEntries(Object.entries(storage).map(([name, v]) => [name, v / n])),
      rowsWrittenPerClient: rowsWritten / n,
      cost: costPerMillion(
        "durable-object",
        throughputRow(limiter.id, "allowed", load, { redisCommandsPerDecision: null, backendCallsPerRequest: calls / Math.max(1, load.responses), redisCommands: null, storageOps: storage }),
      ),
    };
  } finally {
    await instance.dispose();
  }
}

/**
 * The scale scenario's lines of the report, with the model for `MODEL_CLIENTS` clients.
 * @param {Awaited<ReturnType<typeof measureScale>>} scale
 * @param {Record<string, string>} labels
 * @returns {string[]}
 */
export function formatScale(scale, labels) {
  const usd = (/** @type {number | undefined} */ v) => (v === undefined ? "—" : `$${v.toFixed(2)}`);
  const range = (/** @type {import("./prices.mjs").DecisionCost | null} */ c) =>
    c === null ? "—" : c.storeUsdPerMillionHigh > c.storeUsdPerMillion + 1e-9 ? `${usd(c.storeUsdPerMillion)}–${usd(c.storeUsdPerMillionHigh)}` : usd(c.storeUsdPerMillion);
  const first = scale.redis[0];
  const lines = [
    "",
    `Scale: one request from each of ${first?.clients ?? "?"} distinct clients per Redis limiter (policy capacity ${SCALE_POLICY.capacity} at ${SCALE_POLICY.rate}/s: every key outlives the run), each on a flushed database`,
  ];
  lines.push(
    ...table([
      ["limiter", "clients", "req/s", "bytes/client", "keys/client", "no TTL", "max TTL s", "policy TTL s", "expiry: keys left", "cmd/decision", "$/M decisions (REST–all)"],
      ...scale.redis.map((r) => [
        labels[r.limiter] ?? r.limiter,
        String(r.clients),
        r.rps.toFixed(0),
        r.bytesPerClient.toFixed(0),
        r.keysPerClient.toFixed(3),
        String(r.keysWithoutTtl),
        r.maxTtlS.toFixed(0),
        r.policyTtlS.toFixed(0),
        r.expiry ? `${r.expiry.keysLeft} (of ${r.expiry.clients} clients, after ${r.expiry.waitedS.toFixed(1)} s)` : "—",
        r.commandsPerDecision.toFixed(2),
        range(r.cost),
      ]),
    ]),
    "(bytes/client: INFO memory used_memory after − before ÷ clients; keys: DBSIZE; no TTL / max TTL: every key read with SCAN + PTTL after the run;",
    ` expiry: the same limiters with capacity ${EXPIRY_POLICY.capacity} at ${EXPIRY_POLICY.rate}/s, ${EXPIRY_CLIENTS} clients each, keys counted with SCAN after their longest TTL + 0.5 s; cmd/decision: every client new, the cold path)`,
  );
  const d = scale.durableObject;
  if (d) {
    lines.push(
      `Durable Objects (${labels[d.limiter] ?? d.limiter}, ${d.clients} clients, ${d.rps.toFixed(0)} req/s): ${d.objectsPerClient.toFixed(3)} objects per client (counted: constructed), ` +
        `${d.objectCallsPerDecision.toFixed(3)} object calls per decision, storage calls per client ${
          Object.entries(d.storageCallsPerClient)
            .map(([k, v]) => `${k} ${v.toFixed(2)}`)
            .join(", ") || "none"
        } (rows written ${d.rowsWrittenPerClient.toFixed(2)}); ${range(d.cost)} per million decisions.`,
      "  Cleanup (from the design, src/backends/durable-object/client-buckets.ts; not waited for here): the object's alarm, set once, fires when its buckets are full again",
      "  (at the earliest 60 s after it was set) and deletes its storage (deleteAll): one more object request and the rows it stored deleted, per client per idle period.",
    );
  }
  lines.push(`Model for ${MODEL_CLIENTS.toLocaleString("en")} clients (measured per-client figures × ${MODEL_CLIENTS.toLocaleString("en")}; one decision each):`);
  for (const r of scale.redis) {
    const low = r.cost?.storeUsdPerMillion;
    const high = r.cost?.storeUsdPerMillionHigh;
    lines.push(
      `  ${labels[r.limiter] ?? r.limiter}: ${((r.bytesPerClient * MODEL_CLIENTS) / 2 ** 20).toFixed(0)} MiB of Redis memory, ${(r.keysPerClient * MODEL_CLIENTS).toFixed(0)} keys (all gone ${r.maxTtlS.toFixed(0)} s after a client's last request at most), ` +
        `${usd(low)}–${usd(high)} for their ${MODEL_CLIENTS.toLocaleString("en")} decisions (commands sent over REST – every command run, at $${(PRICES.upstashCommand.usd * 1e5).toFixed(2)} per 100K)`,
    );
  }
  if (d) {
    const cleanupUsd = PRICES.durableObjectRequest.usd + d.rowsWrittenPerClient * PRICES.durableObjectRowWritten.usd;
    lines.push(
      `  ${labels[d.limiter] ?? d.limiter}: ${(d.objectsPerClient * MODEL_CLIENTS).toFixed(0)} objects, ${usd(d.cost?.storeUsdPerMillion)} for the decisions ` +
        `+ about ${usd(cleanupUsd * MODEL_CLIENTS)} for their cleanup (one alarm request each, and deleting what was written, counted as rows written: an assumption)`,
    );
  }
  return lines;
}

/** @param {string[][]} rows */
function table(rows) {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length))) ?? [];
  return rows.map((r) =>
    r
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd(),
  );
}
