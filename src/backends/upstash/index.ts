import type { BucketAnswer, BucketCharge, LimiterBackend, OverrideRecord, SlotClaim } from "../../core/backend";
import { runScript, runScripts, SLOTS, UpstashClient, type ScriptCall } from "./client";
import { decodeGrant, decodeReply, decodeSlotReply, type LeaseArgs, overrideArgs, resetArgs, scriptArgs, scriptKeys, slotArgs, storedValues, type SlotOperation } from "./wire";
import { logLimiterEvent } from "../../core/events";
import { DEFAULTS } from "../../core/defaults";
import { LeaseKeeper } from "./lease-keeper";
import { KeyedBatcher, type Settled } from "../../core/keyed-batcher";
import { sharedRefusal } from "../../core/shared-refusal";

/** One request's takes as the batcher queues them: its buckets' keys, its charges, and the one a lease may serve. */
interface Take {
  readonly keys: string[];
  readonly charges: readonly BucketCharge[];
  readonly leasable: BucketCharge | undefined;
}

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
  /** A client's call in flight longer than this (ms) no longer holds back its next one: use the limiter's backend budget. Default 1000. */
  readonly staleAfterMs?: number;
}

/** Most script calls in one pipeline (about 200 bytes each). */
const MAX_PIPELINE = 1_000;

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

  /** Script calls in one REST request (a pipeline; one alone: EVALSHA), each settled on its own, in order. */
  const scripts = async (calls: readonly ScriptCall[], signal: AbortSignal): Promise<Settled<unknown>[]> => {
    const [only] = calls;
    if (calls.length === 1 && only !== undefined) return [{ ok: true, value: await script(only.keys, only.args, signal) }];
    try {
      const replies = await runScripts(redis, calls, signal);
      replies.forEach((reply, i) => {
        const keys = calls[i]?.keys ?? [];
        if (reply.ok) remember(keys, storedValues(reply.value));
        else for (const key of keys) hints.delete(key);
      });
      return replies;
    } catch (error) {
      for (const { keys } of calls) for (const key of keys) hints.delete(key);
      throw error;
    }
  };

  const leases = new LeaseKeeper(Math.max(0, Math.floor(options.maxLease ?? DEFAULTS.leases.maxLease)), Math.max(1, options.leaseTtlMs ?? DEFAULTS.leases.leaseTtlMs));
  // A client's takes of the same buckets: one REST request in flight per isolate, the requests that
  // arrive meanwhile sent together in the next (a pipeline, one script call each, in order).
  const takes = new KeyedBatcher<Take, BucketAnswer[]>(
    {
      send: async (key, batch, signal, current) => {
        // A leasable take has one bucket: the batch's key is that bucket's. The rest of an ended
        // lease goes back with the first call (the batch may spend it); a new lease is asked with
        // the last, after every request of the batch was charged.
        const first = batch[0];
        const last = batch.at(-1);
        const call = last?.leasable === undefined ? undefined : leases.prepare(key, last.leasable, Date.now());
        const { ask, giveBack } = call?.args ?? {};
        const leaseArgs = (i: number): LeaseArgs | undefined => {
          const giving = giveBack !== undefined && (i === 0 ? first?.leasable !== undefined : i === batch.length - 1 && first?.leasable === undefined);
          const asking = ask !== undefined && i === batch.length - 1;
          return giving || asking ? { ...(giving && { giveBack }), ...(asking && { ask }) } : undefined;
        };
        const replies = await scripts(
          batch.map(({ keys, charges }, i) => {
            // Only the first knows what the key holds: each script call changes it.
            const known = keys.map((k) => (i === 0 ? (hints.get(k) ?? "") : ""));
            return { keys, args: scriptArgs(charges, true, undefined, undefined, known, undefined, leaseArgs(i)) };
          }),
          signal,
        );
        return replies.map((reply, i): Settled<BucketAnswer[]> => {
          const take = batch[i];
          if (!reply.ok || take === undefined) return reply.ok ? { ok: false, error: new Error("a reply for no request") } : reply;
          try {
            const answers = decodeReply(reply.value);
            if (answers.length !== take.charges.length) throw new Error(`script answered ${answers.length} decisions for ${take.charges.length} charges`);
            const grant = i === batch.length - 1 && call !== undefined ? decodeGrant(reply.value) : undefined;
            // The lease of a call that went stale (a newer one was sent) goes back unused.
            if (grant !== undefined && take.leasable !== undefined && call !== undefined && answers[0] !== undefined) leases.install(key, take.leasable, call, grant, answers[0].policy, current());
            return { ok: true, value: answers };
          } catch (error) {
            return { ok: false, error };
          }
        });
      },
      // A pipeline's body stays well under Upstash's request size limit (1 MB on the free plan).
      maxBatch: MAX_PIPELINE,
      answerQueued: (key, { leasable, charges }, answered) => {
        const local = leasable === undefined ? undefined : leases.local(key, leasable, Date.now());
        return local === undefined ? sharedRefusal(charges, answered, (take) => take.charges) : [local];
      },
    },
    Math.max(1, options.staleAfterMs ?? DEFAULTS.timeoutMs),
  );
  const decide = async (charges: readonly BucketCharge[], signal: AbortSignal, charge: boolean) => {
    const keys = scriptKeys(options.keyPrefix, charges);
    if (charge) {
      const leasable = leases.leasable(charges);
      const local = leasable === undefined ? undefined : leases.local(keys[0] ?? "", leasable, Date.now());
      return local === undefined ? takes.run(keys.join(" "), { keys, charges, leasable }, signal) : [local];
    }
    const reply = await script(keys, scriptArgs(charges, false), signal);
    const answers = decodeReply(reply);
    if (answers.length !== charges.length) throw new Error(`script answered ${answers.length} decisions for ${charges.length} charges`);
    return answers;
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
