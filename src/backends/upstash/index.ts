import { Redis } from "@upstash/redis/cloudflare";
import { BackendConfigError, type BucketAnswer, type BucketCharge, type BucketRef, type LimiterBackend, type OverrideRecord, type SlotClaim } from "../../core/backend";
import type { SlotDecision } from "../../core/slots";
import type { BucketDecision, BucketState } from "../../core/token-bucket";
import { SLOTS_LUA, SLOTS_SHA1 } from "./slots-script";
import { TOKEN_BUCKET_LUA, TOKEN_BUCKET_SHA1 } from "./token-bucket-script";

/** A script the backend runs: its text, and the SHA-1 EVALSHA names it by. */
interface Script {
  readonly lua: string;
  readonly sha1: string;
}
const TOKEN_BUCKET: Script = { lua: TOKEN_BUCKET_LUA, sha1: TOKEN_BUCKET_SHA1 };
const SLOTS: Script = { lua: SLOTS_LUA, sha1: SLOTS_SHA1 };
const SLOT_OPERATIONS = { acquire: "1", release: "0", renew: "2" } as const;

/** Options of {@link upstashBackend}. */
export interface UpstashBackendOptions {
  /** `UPSTASH_REDIS_REST_URL`. */
  readonly url: string;
  /** `UPSTASH_REDIS_REST_TOKEN`. */
  readonly token: string;
  /** Namespace of every key, so several gateways can share one database. */
  readonly keyPrefix: string;
}

const OUTCOMES = { 1: "allowed", 0: "denied", 2: "cost_exceeds_capacity" } as const;

/**
 * The Redis key of one bucket: prefix, bucket (policy) name, hashed client key.
 *
 * @example
 * bucketKey("sluice", { bucket: "default", clientKey: "ip:3f2a…" }); // "sluice:default:ip:3f2a…"
 */
export function bucketKey(prefix: string, ref: BucketRef): string {
  return `${prefix}:${ref.bucket}:${ref.clientKey}`;
}

/**
 * The Redis key of a bucket's exact override, read by the script beside the bucket.
 *
 * @example
 * overrideKey("sluice", { bucket: "api", clientKey: "header.x-api-key:9f…" }); // "sluice:api:header.x-api-key:9f…:override"
 */
export function overrideKey(prefix: string, ref: BucketRef): string {
  return `${bucketKey(prefix, ref)}:override`;
}

/** The script's KEYS for some charges: each bucket's key, then its override's. */
export function scriptKeys(prefix: string, refs: readonly BucketRef[]): string[] {
  return refs.flatMap((ref) => [bucketKey(prefix, ref), overrideKey(prefix, ref)]);
}

/**
 * The script's arguments for a request's charges: `charge` false only looks (a peek); `nowMs`
 * only in tests (production uses Redis's clock).
 *
 * @example
 * scriptArgs([charge], true); // ["", "1", "60", "1", "1000", "1", "1", "0", "0", "0", "0"]
 */
export function scriptArgs(charges: readonly BucketCharge[], charge: boolean, nowMs?: number, refunds?: readonly BucketState[]): string[] {
  const args = [nowMs === undefined ? "" : String(nowMs), refunds !== undefined ? "2" : charge ? "1" : "0"];
  for (const [index, { policy, cost, enforced }] of charges.entries()) {
    args.push(String(policy.capacity), String(policy.refillTokens), String(policy.refillPeriodMs), String(cost), enforced ? "1" : "0", String(policy.blockForMs ?? 0));
    const charged = refunds?.[index];
    args.push(...(charged === undefined ? ["0", "0", "0"] : [String(charged.level), String(charged.unitsPerToken), String(charged.updatedAtMs)]));
  }
  return args;
}

/**
 * The slots script's arguments; `nowMs` only in tests.
 *
 * @example
 * slotArgs([{ clientKey, bucket: "inflight", id: "r1", limit: 2, leaseMs: 30000, enforced: true }], "acquire"); // ["", "1", "r1", "2", "30000", "1"]
 */
export function slotArgs(claims: readonly SlotClaim[], operation: "acquire" | "renew" | "release", nowMs?: number): string[] {
  return [nowMs === undefined ? "" : String(nowMs), SLOT_OPERATIONS[operation], ...claims.flatMap(({ id, limit, leaseMs, enforced }) => [id, String(limit), String(leaseMs), enforced ? "1" : "0"])];
}

/**
 * Decodes the slots script's reply (2 integers per claim).
 *
 * @example
 * decodeSlotReply([1, 2]); // [{ granted: true, inFlight: 2 }]
 */
export function decodeSlotReply(reply: unknown): SlotDecision[] {
  if (!Array.isArray(reply) || reply.length % 2 !== 0) throw new Error(`unexpected slots reply: ${JSON.stringify(reply)}`);
  const decisions: SlotDecision[] = [];
  for (let i = 0; i < reply.length; i += 2) decisions.push({ granted: Number(reply[i]) === 1, inFlight: Number(reply[i + 1]) });
  return decisions;
}

/**
 * Decodes the script's reply (10 integers per bucket) into answers: the decision, the policy in
 * force, and the state a charge wrote.
 *
 * @example
 * decodeReply([1, 9, 1000, 0, 10, 1, 1000, 9000, 1000, 1700000000000]);
 * // [{ decision: { outcome: "allowed", remaining: 9, resetMs: 1000 }, policy: { capacity: 10, … }, charged: { level: 9000, … } }]
 */
export function decodeReply(reply: unknown): BucketAnswer[] {
  if (!Array.isArray(reply) || reply.length % 10 !== 0) throw new Error(`unexpected script reply: ${JSON.stringify(reply)}`);
  const answers: BucketAnswer[] = [];
  for (let i = 0; i < reply.length; i += 10) {
    const [code, remaining, resetMs, retryAfterMs, capacity, refillTokens, refillPeriodMs, level, unitsPerToken, updatedAtMs] = reply.slice(i, i + 10).map(Number) as [
      number, number, number, number, number, number, number, number, number, number,
    ];
    const outcome = OUTCOMES[code as keyof typeof OUTCOMES];
    if (outcome === undefined) throw new Error(`unexpected outcome code ${code}`);
    const decision: BucketDecision = outcome === "denied" ? { outcome, remaining, resetMs, retryAfterMs } : { outcome, remaining, resetMs };
    const charged = level >= 0 ? { level, unitsPerToken, updatedAtMs } : null;
    answers.push({ decision, policy: { capacity, refillTokens, refillPeriodMs }, charged });
  }
  return answers;
}

/**
 * The Upstash backend: one atomic token-bucket script per decision over the REST API,
 * EVALSHA first and EVAL only when Redis answers NOSCRIPT. A call whose signal aborts is
 * cancelled at the HTTP level, so a late answer cannot be mistaken for a decision.
 *
 * @example
 * const backend = upstashBackend({ url: env.UPSTASH_REDIS_REST_URL, token: env.UPSTASH_REDIS_REST_TOKEN, keyPrefix: "sluice" });
 * const decisions = await backend.take([charge], AbortSignal.timeout(1000));
 */
export function upstashBackend(options: UpstashBackendOptions): LimiterBackend {
  // One client per call: the abort signal is per request, and a function-valued signal is the
  // only form @upstash/redis turns into a thrown error (a plain one yields a fake "Aborted" result).
  const clientFor = (signal: AbortSignal) =>
    new Redis({
      url: options.url,
      token: options.token,
      signal: () => signal,
      retry: { retries: 0 },
      automaticDeserialization: false,
      enableTelemetry: false,
      readYourWrites: false,
      // One decision is one REST request with one command.
      enableAutoPipelining: false,
    });

  const decide = async (charges: readonly BucketCharge[], signal: AbortSignal, charge: boolean) => {
    const answers = decodeReply(await runScript(clientFor(signal), TOKEN_BUCKET, scriptKeys(options.keyPrefix, charges), scriptArgs(charges, charge)));
    if (answers.length !== charges.length) throw new Error(`script answered ${answers.length} decisions for ${charges.length} charges`);
    return answers;
  };
  const registryKey = `${options.keyPrefix}:__overrides`;

  return {
    name: "upstash",
    take: (charges, signal) => decide(charges, signal, true),
    peek: (charges, signal) => decide(charges, signal, false),
    async refund(refunds, signal) {
      if (refunds.length === 0) return;
      const charges = refunds.map((r) => r.charge);
      const args = scriptArgs(charges, false, undefined, refunds.map((r) => r.charged));
      await runScript(clientFor(signal), TOKEN_BUCKET, scriptKeys(options.keyPrefix, charges), args);
    },
    async acquire(claims, signal) {
      const keys = claims.map((claim) => bucketKey(options.keyPrefix, claim));
      const decisions = decodeSlotReply(await runScript(clientFor(signal), SLOTS, keys, slotArgs(claims, "acquire")));
      if (decisions.length !== claims.length) throw new Error(`slots script answered ${decisions.length} decisions for ${claims.length} claims`);
      return decisions;
    },
    async renew(claims, signal) {
      if (claims.length === 0) return;
      await runScript(clientFor(signal), SLOTS, claims.map((claim) => bucketKey(options.keyPrefix, claim)), slotArgs(claims, "renew"));
    },
    async release(claims, signal) {
      if (claims.length === 0) return;
      await runScript(clientFor(signal), SLOTS, claims.map((claim) => bucketKey(options.keyPrefix, claim)), slotArgs(claims, "release"));
    },
    async reset(refs, signal) {
      if (refs.length > 0) await withAuthCheck(() => clientFor(signal).del(...refs.map((ref) => bucketKey(options.keyPrefix, ref))));
    },
    async setOverride(ref, policy, signal) {
      const key = overrideKey(options.keyPrefix, ref);
      const pipeline = clientFor(signal).pipeline();
      if (policy === null) pipeline.del(key);
      else pipeline.set(key, `${policy.capacity}:${policy.refillTokens}:${policy.refillPeriodMs}`);
      // The bucket's expiry was its time to full under the old policy: drop it, the next take sets the new one.
      pipeline.persist(bucketKey(options.keyPrefix, ref));
      await withAuthCheck(() => pipeline.exec());
    },
    overrides: {
      async list(signal) {
        // Raw (no automatic deserialisation): HGETALL's flat [field, value, …] list.
        const all: unknown = await withAuthCheck(() => clientFor(signal).hgetall(registryKey));
        const values = Array.isArray(all) ? all.filter((_, i) => i % 2 === 1) : Object.values(all ?? {});
        return values.flatMap((value) => parseRecord(value));
      },
      async put(record, signal) {
        await withAuthCheck(() => clientFor(signal).hset(registryKey, { [record.id]: JSON.stringify(record) }));
      },
      async remove(id, signal) {
        return (await withAuthCheck(() => clientFor(signal).hdel(registryKey, id))) > 0;
      },
    },
    async ping(signal) {
      await withAuthCheck(() => clientFor(signal).ping());
    },
  };
}

/** One registry entry; one that does not parse is skipped (and logged), never fatal to traffic. */
function parseRecord(value: unknown): OverrideRecord[] {
  try {
    const record: unknown = typeof value === "string" ? JSON.parse(value) : value;
    if (typeof record === "object" && record !== null && "id" in record && "rule" in record && "client" in record) return [record as OverrideRecord];
  } catch {
    // reported below
  }
  console.error(JSON.stringify({ event: "limiter.override_unreadable", value: String(value).slice(0, 200) }));
  return [];
}

/** EVALSHA, then EVAL only if the script is not cached (NOSCRIPT): never a separate SCRIPT LOAD. */
async function runScript(redis: Redis, script: Script, keys: string[], args: string[]): Promise<unknown> {
  return withAuthCheck(async () => {
    try {
      return await redis.evalsha(script.sha1, keys, args);
    } catch (error) {
      if (error instanceof Error && error.message.includes("NOSCRIPT")) return redis.eval(script.lua, keys, args);
      throw error;
    }
  });
}

async function withAuthCheck<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof Error && /unauthorized|WRONGPASS|invalid.*token/i.test(error.message)) {
      // A wrong token is a configuration error, not an outage.
      throw new BackendConfigError("UPSTASH_REDIS_REST_TOKEN", `the Upstash REST API refused the token: ${error.message.split(", command was")[0]}`);
    }
    throw error;
  }
}
