import { DurableObject } from "cloudflare:workers";
import type { BucketAnswer, OverrideRecord } from "../../core/backend";
import { acquireSlots, releaseSlot, renewSlot, slotsExpireInMs, type SlotDecision, type SlotState } from "../../core/slots";
import type { BucketPolicy } from "../../core/token-bucket";
import { answerBatch } from "./answer-batch";
import { BucketTable } from "../../core/bucket-table";
import type { StoredBucket } from "../../core/lease-ledger";
import { OverrideRegistryRecords } from "./override-registry";
import type { ObjectAnswer, ObjectCharge, ObjectRefund, ObjectSlotClaim, BatchAnswer, BatchRequest } from "./wire";

export type { LeaseGrant, LeaseReturn, ObjectAnswer, ObjectCharge, ObjectRefund, ObjectSlotClaim, BatchAnswer, BatchRequest } from "./wire";
export { LEASE_SHARE } from "../../core/lease-ledger";

const BUCKET_PREFIX = "bucket:";
const OVERRIDE_PREFIX = "override:";
const SLOTS_PREFIX = "slots:";
const MAX_CLEANUP_DELAY_MS = 86_400_000;

/** The cleanup alarm never runs sooner than this: a busy client must not pay for one per request. */
export const MIN_CLEANUP_DELAY_MS = 60_000;

/** The next cleanup: when the last bucket is full, not sooner than a minute, not later than a day (it then looks again). */
function cleanupAt(latestFullAtMs: number, nowMs: number): number {
  return Math.min(Math.max(latestFullAtMs, nowMs + MIN_CLEANUP_DELAY_MS), nowMs + MAX_CLEANUP_DELAY_MS);
}

/**
 * The Durable Object behind the default backend: one object per client key, holding that
 * client's buckets. The object is single-threaded and `take` never awaits, so concurrent
 * requests are charged one after another: exact, with no locks.
 *
 * State is kept in memory and written through to storage (the output gate holds the reply
 * until the write is durable), so eviction or a restart never hands out a fresh bucket. An
 * alarm deletes the storage once every bucket would be full again (at the earliest a minute
 * after it was set, so a busy client does not pay for a cleanup cycle per request).
 *
 * An exact override of a bucket is kept beside it (`override:<bucket>`) and replaces the
 * charge's policy in the same call, so it costs no round trip. One object, named
 * `__limiter_registry`, also keeps the list of every override for the admin API and the
 * isolates' prefix caches ({@link OverrideRegistryRecords}), and answers health pings: the
 * roles share the class so that no new Durable Object class (and migration) is needed.
 *
 * @example
 * const stub = env.LIMITER_BUCKETS.get(env.LIMITER_BUCKETS.idFromName(clientKey));
 * const [answer] = await stub.take([{ rule: "default", policy, cost: 1, enforced: true }]);
 */
export class ClientBuckets extends DurableObject<object> {
  /** The client's buckets, exact overrides and lease ledger (pure; this object adds storage and alarms). */
  private readonly table = new BucketTable();
  /** The override registry (the object named `__limiter_registry` only). */
  private readonly registry: OverrideRegistryRecords;
  /** Concurrency rules' leases, by rule name; written through like buckets, so a restart forgets no request in flight. */
  private readonly slots = new Map<string, SlotState>();
  /** Whether an alarm is already set; an early alarm just reschedules itself. */
  private alarmSet = false;

  constructor(ctx: DurableObjectState, env: object) {
    super(ctx, env);
    this.registry = new OverrideRegistryRecords(ctx.storage);
    void ctx.blockConcurrencyWhile(async () => {
      const load = async <T>(prefix: string, into: Map<string, T>) => {
        for (const [key, value] of await ctx.storage.list<T>({ prefix })) into.set(key.slice(prefix.length), value);
      };
      await load(BUCKET_PREFIX, this.table.buckets);
      await load(OVERRIDE_PREFIX, this.table.overrides);
      await this.registry.load();
      await load(SLOTS_PREFIX, this.slots);
      this.alarmSet = (await ctx.storage.getAlarm()) !== null;
    });
  }

  /** Charges one request to some of this client's buckets, all or nothing, on this object's clock. */
  take(charges: readonly ObjectCharge[]): ObjectAnswer[] {
    const answers = this.table.charge(charges, Date.now());
    this.persist();
    return answers;
  }

  /**
   * An isolate's batch in one call: gives back unused leased tokens (of leases it still counts:
   * see {@link BatchRequest.giveBack}), ends the caller's earlier leases, charges each request in
   * order (the same decisions as that many `take` calls), and may grant a lease: up to
   * `lease.want` more charges taken now, for the isolate to hand out without asking, never more
   * than 1/`LEASE_SHARE` of what the bucket then holds. Each bucket is written once per call,
   * before the reply leaves (write-through: the output gate holds it until durable).
   */
  chargeBatch(request: BatchRequest): BatchAnswer {
    const answer = answerBatch(this.table, request, Date.now());
    this.persist();
    return answer;
  }

  /** What `take` would answer now, changing nothing. */
  peek(charges: readonly ObjectCharge[]): BucketAnswer[] {
    return this.table.peek(charges, Date.now());
  }

  /** Gives back what `take` charged (`charged` is the state it wrote), when another object refused the same request. */
  refund(charges: readonly ObjectRefund[]): void {
    this.table.giveBack(charges, Date.now());
    this.persist();
  }

  /** Makes these buckets full again, less what isolates may still hand out from earlier leases (see `BucketTable.reset`). */
  reset(buckets: readonly string[]): void {
    const nowMs = Date.now();
    for (const name of buckets) if (this.table.reset(name, nowMs)) void this.ctx.storage.delete(BUCKET_PREFIX + name);
    this.persist();
  }

  /**
   * Sets or (with null) removes a bucket's exact override; its tokens stay, capped by the next
   * take. The bucket is kept until it is full under the new override too; removing one needs
   * nothing more (each write keeps a bucket until it is full under the charge's own policy as well).
   */
  setOverride(bucket: string, policy: BucketPolicy | null): void {
    const kept = this.table.setOverride(bucket, policy, Date.now());
    const override = this.table.overrides.get(bucket);
    if (override === undefined) void this.ctx.storage.delete(OVERRIDE_PREFIX + bucket);
    else void this.ctx.storage.put(OVERRIDE_PREFIX + bucket, override);
    if (kept !== undefined) void this.ctx.storage.put(BUCKET_PREFIX + bucket, kept);
  }

  /** The registry object's list of every override. */
  listOverrides(): OverrideRecord[] {
    return this.registry.list();
  }

  putOverride(record: OverrideRecord): void {
    this.registry.put(record);
  }

  removeOverride(id: string): boolean {
    return this.registry.remove(id);
  }

  /** Takes (or renews) one slot per claim, all or nothing over enforced claims (`acquireSlots`). */
  acquireSlots(claims: readonly ObjectSlotClaim[]): SlotDecision[] {
    const nowMs = Date.now();
    const { decisions, writes } = acquireSlots(
      claims.map((claim) => ({ claim, enforced: claim.enforced, state: this.slots.get(claim.rule) })),
      nowMs,
    );
    for (const { entry, next } of writes) this.storeSlots(entry.claim.rule, next, nowMs);
    return decisions;
  }

  /** Extends the leases these ids still hold; never takes a slot. */
  renewSlots(claims: readonly ObjectSlotClaim[]): void {
    const nowMs = Date.now();
    for (const claim of claims) {
      const current = this.slots.get(claim.rule);
      if (current !== undefined) this.storeSlots(claim.rule, renewSlot(current, claim, nowMs), nowMs);
    }
  }

  /** Gives slots back; an id that holds none is ignored. */
  releaseSlots(claims: readonly { readonly rule: string; readonly id: string }[]): void {
    const nowMs = Date.now();
    for (const { rule, id } of claims) this.storeSlots(rule, releaseSlot(this.slots.get(rule), id, nowMs), nowMs);
  }

  /** Round trip for health checks, sent to the registry object (`__limiter_registry`): the object's clock. */
  ping(): number {
    return Date.now();
  }

  /** Forgets refilled buckets; deletes everything once all are full and nothing else is kept. */
  override async alarm(): Promise<void> {
    const nowMs = Date.now();
    const swept = this.table.sweep(nowMs);
    for (const name of swept.removed) void this.ctx.storage.delete(BUCKET_PREFIX + name);
    let latestFullAt = swept.latestFullAtMs;
    for (const [name, leases] of this.slots) {
      const expiresInMs = slotsExpireInMs(leases, nowMs);
      if (expiresInMs > 0) latestFullAt = Math.max(latestFullAt, nowMs + expiresInMs);
      else this.storeSlots(name, [], nowMs);
    }
    if (this.table.buckets.size > 0 || this.slots.size > 0) {
      await this.ctx.storage.setAlarm(cleanupAt(latestFullAt, nowMs));
      return;
    }
    this.alarmSet = false;
    // Overrides and the registry are configuration: they stay until an operator removes them.
    if (this.table.overrides.size === 0 && this.registry.size === 0) await this.ctx.storage.deleteAll();
  }

  private storeSlots(name: string, leases: SlotState, nowMs: number): void {
    if (leases.length === 0) {
      if (this.slots.delete(name)) void this.ctx.storage.delete(SLOTS_PREFIX + name);
      return;
    }
    this.slots.set(name, leases);
    void this.ctx.storage.put(SLOTS_PREFIX + name, leases);
    if (!this.alarmSet) {
      this.alarmSet = true;
      void this.ctx.storage.setAlarm(nowMs + Math.max(slotsExpireInMs(leases, nowMs), MIN_CLEANUP_DELAY_MS));
    }
  }

  /**
   * Writes the buckets this call changed through to storage, before its reply: the output gate
   * holds the reply until the write is durable, so no answer is ever based on a state a restart
   * could lose. The cleanup alarm is set once, not per write.
   */
  private persist(): void {
    const entries: Record<string, StoredBucket> = {};
    let latestFullAt = 0;
    let count = 0;
    for (const name of this.table.takeDirty()) {
      const stored = this.table.buckets.get(name);
      if (stored === undefined) continue;
      entries[BUCKET_PREFIX + name] = stored;
      latestFullAt = Math.max(latestFullAt, stored.fullAtMs);
      count += 1;
    }
    if (count === 0) return;
    if (count === 1) for (const [key, stored] of Object.entries(entries)) void this.ctx.storage.put(key, stored);
    else void this.ctx.storage.put(entries);
    if (!this.alarmSet) {
      this.alarmSet = true;
      void this.ctx.storage.setAlarm(cleanupAt(latestFullAt, Date.now()));
    }
  }
}
