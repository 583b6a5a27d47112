import { Redis } from "@upstash/redis/cloudflare";
import { BackendConfigError, type BucketCharge, type LimiterBackend, type OverrideRecord, type SlotClaim } from "../../core/backend";
import { SLOTS_UPSTASH_LUA, SLOTS_UPSTASH_SHA1 } from "./slots-script";
import { TOKEN_BUCKET_UPSTASH_LUA, TOKEN_BUCKET_UPSTASH_SHA1 } from "./token-bucket-script";
import { decodeGrant, decodeReply, decodeSlotReply, overrideArgs, resetArgs, scriptArgs, scriptKeys, slotArgs, storedValues, type SlotOperation } from "./wire";
import { logLimiterEvent } from "../../core/events";
import { DEFAULTS } from "../../core/defaults";
import { LeaseKeeper } from "./lease-keeper";

/** Options of {@link upstashBackend}. */
export interface UpstashBackendOptions {
  /** `UPSTASH_REDIS_REST_URL`. */
  readonly url: string;
  /** `UPSTASH_REDIS_REST_TOKEN`. */
  readonly token: string;
  /** Namespace of every key, so several gateways can share one database. */
  readonly keyPrefix: string;
  /** Largest lease, in charges of the request's cost; 0 turns leases off. Default 64 (`DEFAULTS.leases`). */
  readonly maxLease?: number;
  /** A lease's unused charges go back once it is this old (ms). Default 1000. */
  readonly leaseTtlMs?: number;
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
 * Leases: while a client keeps calling one isolate, its one-charge token-bucket requests also ask
 * for a lease (charges taken from the bucket in the same script call, recorded beside it), and
 * the isolate answers its next requests from the lease with no call (`LeaseKeeper`,
 * `src/core/leases.ts`; docs/design.md, "Upstash Redis").
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

  const leases = new LeaseKeeper(Math.max(0, Math.floor(options.maxLease ?? DEFAULTS.leases.maxLease)), Math.max(1, options.leaseTtlMs ?? DEFAULTS.leases.leaseTtlMs));
  const decide = async (charges: readonly BucketCharge[], signal: AbortSignal, charge: boolean) => {
    const keys = scriptKeys(options.keyPrefix, charges);
    const leasable = charge ? leases.leasable(charges) : undefined;
    const [key = ""] = keys;
    if (leasable !== undefined) {
      for (;;) {
        const local = leases.local(key, leasable, Date.now());
        if (local !== undefined) return [local];
        const inFlight = leases.leaseInFlight(key, signal, Date.now());
        if (inFlight === undefined) break;
        await inFlight;
        signal.throwIfAborted();
      }
    }
    const call = leasable === undefined ? undefined : leases.prepare(key, leasable, Date.now());
    try {
      const args = scriptArgs(charges, charge, undefined, undefined, charge ? keys.map((k) => hints.get(k) ?? "") : undefined, undefined, call?.args);
      const reply = await script(keys, args, signal);
      const answers = decodeReply(reply);
      if (answers.length !== charges.length) throw new Error(`script answered ${answers.length} decisions for ${charges.length} charges`);
      const grant = call === undefined ? undefined : decodeGrant(reply);
      if (leasable !== undefined && call !== undefined && grant !== undefined && answers[0] !== undefined) leases.install(key, leasable, call, grant, answers[0].policy);
      return answers;
    } finally {
      if (call !== undefined) leases.settled(key, call);
    }
  };
  const registryKey = `${options.keyPrefix}:__overrides`;
  // A client's slots under a concurrency rule: a sorted set under the rule's name (names are unique across rules).
  const slots = (claims: readonly SlotClaim[], operation: SlotOperation, signal: AbortSignal) => runScript(redis, scriptKeys(options.keyPrefix, claims), slotArgs(claims, operation), signal, SLOTS);

  return {
    name: "upstash",
    take: (charges, signal) => decide(charges, signal, true),
    takeHeld(charges) {
      const leasable = leases.leasable(charges);
      const [key] = scriptKeys(options.keyPrefix, charges);
      const local = leasable === undefined || key === undefined ? undefined : leases.local(key, leasable, Date.now());
      return local === undefined ? undefined : [local];
    },
    peek: (charges, signal) => decide(charges, signal, false),
    async refund(refunds, signal) {
      if (refunds.length === 0) return;
      const charges = refunds.map((r) => r.charge);
      const args = scriptArgs(
        charges,
        false,
        undefined,
        refunds.map((r) => r.charged),
      );
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
      if (refs.length === 0) return;
      const keys = scriptKeys(options.keyPrefix, refs);
      // This isolate stops handing out leased charges of these buckets (the rest goes back with its next call).
      for (const key of keys) leases.end(key);
      await script(keys, resetArgs(), signal, 1);
    },
    async setOverride(ref, policy, signal) {
      leases.end(scriptKeys(options.keyPrefix, [ref])[0] ?? "");
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
        throw withoutCommand(error);
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
  logLimiterEvent({ event: "limiter.override_unreadable", backend: "upstash", value: String(value).slice(0, 200) });
  return [];
}

/** A Lua script and the SHA-1 of its text (EVALSHA's name for it). */
interface Script {
  readonly lua: string;
  readonly sha1: string;
}

// Sent with Upstash's flags line: Upstash locks only the keys in KEYS.
const TOKEN_BUCKET: Script = { lua: TOKEN_BUCKET_UPSTASH_LUA, sha1: TOKEN_BUCKET_UPSTASH_SHA1 };
const SLOTS: Script = { lua: SLOTS_UPSTASH_LUA, sha1: SLOTS_UPSTASH_SHA1 };

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

/**
 * The client's errors end with the whole command (", command was: [...]"), a script's full text
 * included: kilobytes per log line. The reason is the part before it.
 */
function withoutCommand(error: unknown): unknown {
  if (!(error instanceof Error)) return error;
  const at = error.message.indexOf(", command was");
  if (at < 0) return error;
  const trimmed = new Error(error.message.slice(0, at));
  trimmed.name = error.name;
  return trimmed;
}
