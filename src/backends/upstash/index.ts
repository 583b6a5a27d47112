import { Redis } from "@upstash/redis/cloudflare";
import { BackendConfigError, type BucketAnswer, type BucketCharge, type BucketRef, type LimiterBackend, type OverrideRecord, type SlotClaim } from "../../core/backend";
import type { SlotDecision } from "../../core/slots";
import { newGeneration, type BucketDecision, type BucketPolicy, type BucketState } from "../../core/token-bucket";
import { luaAlgorithmById, luaAlgorithmOf } from "./algorithms/index";
import { SLOTS_LUA, SLOTS_SHA1 } from "./slots-script";
import { TOKEN_BUCKET_LUA, TOKEN_BUCKET_SHA1 } from "./token-bucket-script";

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

/** The script's KEYS for some charges: each bucket's key (its exact override lives in the same key). */
export function scriptKeys(prefix: string, refs: readonly BucketRef[]): string[] {
  return refs.map((ref) => bucketKey(prefix, ref));
}

/**
 * The script's arguments for a request's charges: `charge` false only looks (a peek); `nowMs`
 * only in tests (production uses Redis's clock); `refunds`, per charge, the state its take wrote
 * (a refund); `hints`, per charge, the value the caller last saw in the bucket's key ("" or
 * absent: none), which saves the script a read when it is right; `generation`, that of a bucket
 * this charge starts from none (default: a new one). Each charge's algorithm (its policy's) and
 * policy are written by the algorithm's Lua twin.
 *
 * @example
 * scriptArgs([charge], true); // ["", "1", "<generation>", "token-bucket", "60:1:1000:0", "1", "1", "", ""]
 */
export function scriptArgs(charges: readonly BucketCharge[], charge: boolean, nowMs?: number, refunds?: readonly BucketState[], hints?: readonly string[], generation?: number): string[] {
  const mode = refunds !== undefined ? "2" : charge ? "1" : "0";
  const args = [nowMs === undefined ? "" : String(nowMs), mode, mode === "1" ? String(generation ?? newGeneration()) : "0"];
  for (const [index, { policy, cost, enforced }] of charges.entries()) {
    const [id, twin] = luaAlgorithmOf(policy);
    const charged = refunds?.[index];
    args.push(id, twin.policyArg(policy), String(cost), enforced ? "1" : "0", charged === undefined ? "" : twin.chargedArg(charged), hints?.[index] ?? "");
  }
  return args;
}

/** The script's arguments to reset buckets: their state is forgotten, their overrides stay. */
export function resetArgs(): string[] {
  return ["", "3"];
}

/**
 * The script's arguments to set one bucket's exact override (stored in the bucket's key, beside
 * its state, which it keeps; written by the policy's algorithm's Lua twin), or to remove it with
 * `null` (the state then expires when it stops mattering under the rule's policy); `nowMs` only in tests.
 *
 * @example
 * overrideArgs({ capacity: 100, refillTokens: 1, refillPeriodMs: 600 }); // ["", "4", "100:1:600"]
 */
export function overrideArgs(policy: BucketPolicy | null, nowMs?: number): string[] {
  const now = nowMs === undefined ? "" : String(nowMs);
  return [now, "4", policy === null ? "" : luaAlgorithmOf(policy)[1].overrideArg(policy)];
}

const SLOT_OPERATIONS = { acquire: "1", release: "0", renew: "2" } as const;

/**
 * The slots script's arguments; `nowMs` only in tests.
 *
 * @example
 * slotArgs([{ clientKey, bucket: "inflight", id: "r1", limit: 2, leaseMs: 30000, enforced: true }], "acquire"); // ["", "1", "r1", "2", "30000", "1"]
 */
export function slotArgs(claims: readonly SlotClaim[], operation: keyof typeof SLOT_OPERATIONS, nowMs?: number): string[] {
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

/** Values per bucket in a charge's or peek's reply. */
const REPLY_WIDTH = 8;

/** A reply's value as text (Redis answers integers as numbers, strings as strings). */
const text = (value: unknown) => (typeof value === "string" ? value : String(value));

/**
 * Decodes the script's reply (8 values per bucket) into answers: the decision, the policy in
 * force, and the state a charge wrote (the texts as the bucket's algorithm's Lua twin reads them).
 *
 * @example
 * decodeReply(["token-bucket", 1, 9, 1000, 0, "10:1:1000", "9000:1000:1700000000000:42", "9000:1000:1700000000000:42:1700000001000"]);
 * // [{ decision: { outcome: "allowed", remaining: 9, resetMs: 1000 }, policy: { capacity: 10, … }, charged: { level: 9000, … } }]
 */
export function decodeReply(reply: unknown): BucketAnswer[] {
  if (!Array.isArray(reply) || reply.length % REPLY_WIDTH !== 0) throw new Error(`unexpected script reply: ${JSON.stringify(reply)}`);
  const answers: BucketAnswer[] = [];
  for (let i = 0; i < reply.length; i += REPLY_WIDTH) {
    const twin = luaAlgorithmById(text(reply[i]));
    const [code, remaining, resetMs, retryAfterMs] = reply.slice(i + 1, i + 5).map(Number) as [number, number, number, number];
    const outcome = OUTCOMES[code as keyof typeof OUTCOMES];
    if (outcome === undefined) throw new Error(`unexpected outcome code ${code}`);
    const decision: BucketDecision = outcome === "denied" ? { outcome, remaining, resetMs, retryAfterMs } : { outcome, remaining, resetMs };
    const charged = text(reply[i + 6]);
    answers.push({ decision, policy: twin.policyOfReply(text(reply[i + 5])), charged: charged === "" ? null : twin.chargedOfReply(charged) });
  }
  return answers;
}

/**
 * The value each bucket's key holds after the call ("" for none), from a charge's or peek's reply
 * (`width` 8) or a refund's, reset's or override's (`width` 1): the next call's hints.
 *
 * @example
 * storedValues(["token-bucket", 1, 9, 1000, 0, "10:1:1000", "9000:1000:1700000000000:42", "9000:1000:1700000000000:42:1700000001000"]);
 * // ["9000:1000:1700000000000:42:1700000001000"]
 */
export function storedValues(reply: unknown, width = REPLY_WIDTH): string[] {
  if (!Array.isArray(reply)) return [];
  return reply.filter((_, i) => i % width === width - 1).map((value) => (typeof value === "string" ? value : ""));
}

/** How many buckets' last seen values an isolate keeps as hints (the oldest go first). */
const HINTS_KEPT = 10_000;

/**
 * The Upstash backend: one atomic rate-limit script per decision over the REST API,
 * EVALSHA first and EVAL only when Redis answers NOSCRIPT. A call whose signal aborts is
 * cancelled at the HTTP level, so a late answer cannot be mistaken for a decision.
 *
 * One `@upstash/redis` client serves every call; each command carries its caller's signal. The
 * backend remembers, per bucket, the value the script last reported for its key and sends it as
 * a hint, so an allowed decision usually costs Redis one `SET … GET` (see the script).
 *
 * @example
 * const backend = upstashBackend({ url: env.UPSTASH_REDIS_REST_URL, token: env.UPSTASH_REDIS_REST_TOKEN, keyPrefix: "sluice" });
 * const decisions = await backend.take([charge], AbortSignal.timeout(1000));
 */
export function upstashBackend(options: UpstashBackendOptions): LimiterBackend {
  const redis = new UpstashClient({
    url: options.url,
    token: options.token,
    retry: { retries: 0 },
    automaticDeserialization: false,
    enableTelemetry: false,
    readYourWrites: false,
    // Everything stored here is UTF-8 text (ASCII bucket values, JSON registry entries): the REST API
    // need not base64 every string, nor the client decode each one with a new TextDecoder.
    responseEncoding: false,
    // One decision is one REST request with one command.
    enableAutoPipelining: false,
  });
  // bucket key → the value the script last reported for it (a Map keeps insertion order: oldest first).
  const hints = new Map<string, string>();
  const remember = (keys: readonly string[], values: readonly string[]) => {
    for (const [i, key] of keys.entries()) {
      hints.delete(key);
      const value = values[i];
      if (value !== undefined) hints.set(key, value);
    }
    for (const oldest of hints.keys()) {
      if (hints.size <= HINTS_KEPT) break;
      hints.delete(oldest);
    }
  };
  const script = async (keys: string[], args: string[], signal: AbortSignal, width?: number) => {
    try {
      const reply = await runScript(redis, keys, args, signal);
      remember(keys, storedValues(reply, width));
      return reply;
    } catch (error) {
      // Whatever the key holds now is unknown.
      for (const key of keys) hints.delete(key);
      throw error;
    }
  };

  const decide = async (charges: readonly BucketCharge[], signal: AbortSignal, charge: boolean) => {
    const keys = scriptKeys(options.keyPrefix, charges);
    const args = scriptArgs(charges, charge, undefined, undefined, charge ? keys.map((key) => hints.get(key) ?? "") : undefined);
    const answers = decodeReply(await script(keys, args, signal));
    if (answers.length !== charges.length) throw new Error(`script answered ${answers.length} decisions for ${charges.length} charges`);
    return answers;
  };
  const registryKey = `${options.keyPrefix}:__overrides`;
  // A client's slots under a concurrency rule: a sorted set under the rule's name (names are unique across rules).
  const slots = (claims: readonly SlotClaim[], operation: keyof typeof SLOT_OPERATIONS, signal: AbortSignal) =>
    runScript(redis, scriptKeys(options.keyPrefix, claims), slotArgs(claims, operation), signal, SLOTS);

  return {
    name: "upstash",
    take: (charges, signal) => decide(charges, signal, true),
    peek: (charges, signal) => decide(charges, signal, false),
    async refund(refunds, signal) {
      if (refunds.length === 0) return;
      const charges = refunds.map((r) => r.charge);
      const args = scriptArgs(charges, false, undefined, refunds.map((r) => r.charged));
      await script(scriptKeys(options.keyPrefix, charges), args, signal, 1);
    },
    async acquire(claims, signal) {
      const decisions = decodeSlotReply(await slots(claims, "acquire", signal));
      if (decisions.length !== claims.length) throw new Error(`slots script answered ${decisions.length} decisions for ${claims.length} claims`);
      return decisions;
    },
    async renew(claims, signal) {
      if (claims.length > 0) await slots(claims, "renew", signal);
    },
    async release(claims, signal) {
      if (claims.length > 0) await slots(claims, "release", signal);
    },
    async reset(refs, signal) {
      if (refs.length > 0) await script(scriptKeys(options.keyPrefix, refs), resetArgs(), signal, 1);
    },
    async setOverride(ref, policy, signal) {
      // The override is written into the bucket's key, which keeps its state and, while it holds
      // an override, never expires; removing it gives the state back the expiry it carries.
      await script(scriptKeys(options.keyPrefix, [ref]), overrideArgs(policy), signal, 1);
    },
    overrides: {
      async list(signal) {
        // Raw (no automatic deserialisation): HGETALL's flat [field, value, …] list.
        const all: unknown = await redis.send(signal, (r) => r.hgetall(registryKey));
        const values = Array.isArray(all) ? all.filter((_, i) => i % 2 === 1) : Object.values(all ?? {});
        return values.flatMap((value) => parseRecord(value));
      },
      async put(record, signal) {
        await redis.send(signal, (r) => r.hset(registryKey, { [record.id]: JSON.stringify(record) }));
      },
      async remove(id, signal) {
        return Number(await redis.send(signal, (r) => r.hdel(registryKey, id))) > 0;
      },
    },
    async ping(signal) {
      await redis.send(signal, (r) => r.ping());
    },
  };
}

/**
 * The `@upstash/redis` client, plus {@link UpstashClient.send}: one command under its caller's
 * signal, so one client (built once per backend) serves calls with different deadlines.
 */
class UpstashClient extends Redis {
  /**
   * Runs the one command `call` issues, aborted with `signal`. The client builds a command from
   * its options when the method is called, so options carrying this call's signal are in place
   * for exactly that synchronous moment (no other call can run in between). A plain signal makes
   * the client turn an aborted fetch into a fake reply rather than an error: whatever it returns,
   * an aborted signal throws its reason here, so a late or fake answer is never taken for a decision.
   */
  async send<T>(signal: AbortSignal, call: (redis: this) => Promise<T>): Promise<T> {
    const shared = this.opts;
    let pending: Promise<T>;
    this.opts = { ...shared, streamOptions: { signal } };
    try {
      pending = call(this);
    } finally {
      this.opts = shared;
    }
    return withAuthCheck(async () => {
      let result: T;
      try {
        result = await pending;
      } catch (error) {
        signal.throwIfAborted();
        throw error;
      }
      signal.throwIfAborted();
      return result;
    });
  }
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

/** A Lua script and the SHA-1 of its text (EVALSHA's name for it). */
interface Script {
  readonly lua: string;
  readonly sha1: string;
}

const TOKEN_BUCKET: Script = { lua: TOKEN_BUCKET_LUA, sha1: TOKEN_BUCKET_SHA1 };
const SLOTS: Script = { lua: SLOTS_LUA, sha1: SLOTS_SHA1 };

/** EVALSHA, then EVAL only if the script is not cached (NOSCRIPT): never a separate SCRIPT LOAD. */
async function runScript(redis: UpstashClient, keys: string[], args: string[], signal: AbortSignal, script: Script = TOKEN_BUCKET): Promise<unknown> {
  try {
    return await redis.send(signal, (r) => r.evalsha(script.sha1, keys, args));
  } catch (error) {
    if (error instanceof Error && error.message.includes("NOSCRIPT")) return redis.send(signal, (r) => r.eval(script.lua, keys, args));
    throw error;
  }
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
