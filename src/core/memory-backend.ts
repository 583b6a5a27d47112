import { bucketId, type BucketCharge, type LimiterBackend, type OverrideRecord } from "./backend";
import { BucketTable, type TableCharge } from "./bucket-table";
import { acquireSlots, releaseSlot, renewSlot, type SlotState } from "./slots";

/** Options of {@link memoryBackend}. */
export interface MemoryBackendOptions {
  /** The store's clock, ms. Default `Date.now`; tests inject their own. */
  readonly clock?: () => number;
}

/** Every this many bucket writes, buckets that have refilled are swept, so memory does not grow without bound. */
const SWEEP_EVERY = 1_000;

/** A charge as the table takes it: the bucket named by rule and client (`bucketId`). */
function tableCharge(charge: BucketCharge): TableCharge {
  return { rule: bucketId(charge), policy: charge.policy, cost: charge.cost, enforced: charge.enforced };
}

/**
 * Buckets in this isolate's memory: for unit tests, library users' own tests, and local
 * experiments (`LIMITER_BACKEND=memory`). Nothing is shared across isolates or processes, so
 * in production every isolate would hand out the whole limit: use the Durable Object or Upstash
 * backend there. Same semantics as theirs: every client's buckets and exact overrides live in one
 * {@link BucketTable} (the table a Durable Object runs for its client), so a request's charges
 * across several clients are all or nothing, exact within one isolate.
 *
 * @example
 * const limiter = new Limiter({ backend: memoryBackend(), rules: [{ name: "api", capacity: 5, rate: "1/1m" }] });
 */
export function memoryBackend(options: MemoryBackendOptions = {}): LimiterBackend {
  const clock = options.clock ?? Date.now;
  const table = new BucketTable();
  const registry = new Map<string, OverrideRecord>();
  const slots = new Map<string, SlotState>();
  let writes = 0;
  const keyOf = bucketId;
  /** Counts the buckets an operation wrote (nothing is written through: the table is the store) and sweeps now and then. */
  const wrote = (nowMs: number) => {
    const before = writes;
    writes += table.takeDirty().length;
    if (Math.floor(writes / SWEEP_EVERY) > Math.floor(before / SWEEP_EVERY)) table.sweep(nowMs);
  };
  const ready = async (signal: AbortSignal) => signal.throwIfAborted();

  return {
    name: "memory",
    async take(charges, signal) {
      await ready(signal);
      const nowMs = clock();
      const answers = table.charge(charges.map(tableCharge), nowMs);
      wrote(nowMs);
      return answers;
    },
    async peek(charges, signal) {
      await ready(signal);
      return table.peek(charges.map(tableCharge), clock());
    },
    async refund(refunds, signal) {
      await ready(signal);
      const nowMs = clock();
      table.giveBack(
        refunds.map(({ charge, charged }) => ({ ...tableCharge(charge), charged })),
        nowMs,
      );
      table.takeDirty();
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
      // Forgotten (no lease is ever out here): the next take starts a new generation, so refunds of earlier charges give nothing.
      const nowMs = clock();
      for (const ref of refs) table.reset(keyOf(ref), nowMs);
      table.takeDirty();
    },
    async setOverride(ref, policy, signal) {
      await ready(signal);
      // The bucket is kept until full under the new override too (under the rule's already: each take keeps it so).
      table.setOverride(keyOf(ref), policy, clock());
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
