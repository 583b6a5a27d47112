import type { BucketCharge, BucketRef, LimiterBackend, OverrideRecord } from "./backend";
import { acquireSlots, releaseSlot, renewSlot, type SlotState } from "./slots";
import { expiresInMs as stateExpiresInMs, refundTokens, takeBuckets, type RateState } from "./algorithms/index";
import type { BucketPolicy } from "./token-bucket";

/** Options of {@link memoryBackend}. */
export interface MemoryBackendOptions {
  /** The store's clock, ms. Default `Date.now`; tests inject their own. */
  readonly clock?: () => number;
}

interface StoredBucket {
  readonly state: RateState;
  /** When the bucket is full again: then it can be forgotten (a missing bucket is full). */
  readonly fullAtMs: number;
}

/** Every this many writes, buckets that have refilled are swept, so memory does not grow without bound. */
const SWEEP_EVERY = 1_000;

/**
 * Buckets in this isolate's memory: for unit tests, library users' own tests, and local
 * experiments (`LIMITER_BACKEND=memory`). Nothing is shared across isolates or processes, so
 * in production every isolate would hand out the whole limit: use the Durable Object or Upstash
 * backend there. Same semantics as theirs (the core's algorithms, through their registry), exact within one isolate.
 *
 * @example
 * const limiter = new Limiter({ backend: memoryBackend(), rules: [{ name: "api", capacity: 5, rate: "1/1m" }] });
 */
export function memoryBackend(options: MemoryBackendOptions = {}): LimiterBackend {
  const clock = options.clock ?? Date.now;
  const buckets = new Map<string, StoredBucket>();
  /** Capacity and refill only: an override never changes the rule's block period. */
  const exactOverrides = new Map<string, Pick<BucketPolicy, "capacity" | "refillTokens" | "refillPeriodMs">>();
  const registry = new Map<string, OverrideRecord>();
  const slots = new Map<string, SlotState>();
  let writes = 0;
  const keyOf = (ref: BucketRef) => `${ref.rule}|${ref.clientKey}`;

  const decide = (charges: readonly BucketCharge[], write: boolean) => {
    const nowMs = clock();
    const entries = charges.map((charge) => ({
      ...charge,
      // An override replaces capacity and refill; the rule's block period stays.
      policy: { ...charge.policy, ...exactOverrides.get(keyOf(charge)) },
      state: buckets.get(keyOf(charge))?.state,
    }));
    const { results } = takeBuckets(entries, nowMs);
    for (const [i, { entry, next, expiresInMs }] of results.entries()) {
      if (!write || next === undefined) continue;
      // Kept until full under the charge's own policy too, so removing an override leaves it an end.
      buckets.set(keyOf(entry), { state: next, fullAtMs: nowMs + Math.max(expiresInMs, stateExpiresInMs(next, charges[i]?.policy ?? entry.policy, nowMs)) });
      if (++writes % SWEEP_EVERY === 0) sweep(nowMs);
    }
    return results.map(({ entry, decision, charged }) => ({ decision, policy: entry.policy, charged: write ? (charged ?? null) : null }));
  };
  const sweep = (nowMs: number) => {
    for (const [key, bucket] of buckets) if (bucket.fullAtMs <= nowMs) buckets.delete(key);
  };
  const ready = async (signal: AbortSignal) => signal.throwIfAborted();

  return {
    name: "memory",
    async take(charges, signal) {
      await ready(signal);
      return decide(charges, true);
    },
    async peek(charges, signal) {
      await ready(signal);
      return decide(charges, false);
    },
    async refund(refunds, signal) {
      await ready(signal);
      const nowMs = clock();
      for (const { charge, charged } of refunds) {
        const key = keyOf(charge);
        const policy = { ...charge.policy, ...exactOverrides.get(key) };
        const before = buckets.get(key);
        const state = refundTokens(before?.state, policy, charge.cost, charged, nowMs);
        if (state === undefined || state === before?.state) continue;
        buckets.set(key, { state, fullAtMs: nowMs + Math.max(stateExpiresInMs(state, policy, nowMs), stateExpiresInMs(state, charge.policy, nowMs)) });
      }
    },
    async acquire(claims, signal) {
      await ready(signal);
      const nowMs = clock();
      const { decisions, writes } = acquireSlots(
        claims.map((claim) => ({ claim, state: slots.get(keyOf(claim)), enforced: claim.enforced })),
        nowMs,
      );
      for (const { entry, next } of writes) slots.set(keyOf(entry.claim), next);
      return decisions;
    },
    async renew(claims, signal) {
      await ready(signal);
      for (const claim of claims) {
        const current = slots.get(keyOf(claim));
        if (current !== undefined) slots.set(keyOf(claim), renewSlot(current, claim, clock()));
      }
    },
    async release(claims, signal) {
      await ready(signal);
      for (const claim of claims) {
        const next = releaseSlot(slots.get(keyOf(claim)), claim.id, clock());
        if (next.length === 0) slots.delete(keyOf(claim));
        else slots.set(keyOf(claim), next);
      }
    },
    async reset(refs, signal) {
      await ready(signal);
      // Forgotten: the next take starts a new generation, so refunds of earlier charges give nothing.
      for (const ref of refs) buckets.delete(keyOf(ref));
    },
    async setOverride(ref, policy, signal) {
      await ready(signal);
      if (policy === null) exactOverrides.delete(keyOf(ref));
      else exactOverrides.set(keyOf(ref), { capacity: policy.capacity, refillTokens: policy.refillTokens, refillPeriodMs: policy.refillPeriodMs });
      // Kept until full under the new override too (under the rule's already: see `decide`).
      const current = buckets.get(keyOf(ref));
      const nowMs = clock();
      if (current !== undefined && policy !== null) buckets.set(keyOf(ref), { ...current, fullAtMs: Math.max(current.fullAtMs, nowMs + stateExpiresInMs(current.state, policy, nowMs)) });
    },
    overrides: {
      async list(signal) {
        await ready(signal);
        return [...registry.values()];
      },
      async put(record, signal) {
        await ready(signal);
        registry.set(record.id, record);
      },
      async remove(id, signal) {
        await ready(signal);
        return registry.delete(id);
      },
    },
    ping: ready,
  };
}
