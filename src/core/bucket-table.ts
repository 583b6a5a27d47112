import type { BucketAnswer } from "./backend";
import { expiresInMs, isBucketState, isTokenBucket, type RateState } from "./algorithms/index";
import { newGeneration, refundTokens, takeBuckets, type BucketPolicy } from "./token-bucket";
import { grantLease, underLeases } from "./leases";
import { keptUntilMs, leaseEntries, liveLease, sameShape, shapeOf, withinLeases, withinNewLimit, type LeasedOut, type LeaseRequest, type StoredBucket } from "./lease-ledger";
import type { LeaseGrant } from "./lease-wallet";

/** One charge of a table's bucket, by the bucket's name (a rule's, in a client's object). */
export interface TableCharge {
  readonly rule: string;
  readonly policy: BucketPolicy;
  readonly cost: number;
  readonly enforced: boolean;
}

/** One charge's answer: the decision, the policy in force, and the state it wrote (what a refund needs), or null. */
export interface TableAnswer extends BucketAnswer {
  readonly charged: RateState | null;
}

/** A charge to give back: the charge as made (its cost is what to return) and the state its take wrote. */
export type TableRefund = TableCharge & { readonly charged: RateState };

/** An unused lease's rest: a refund of tokens the lease took in the call numbered `seq`. */
export type LeaseReturn = TableRefund & { readonly seq?: number };

/**
 * Buckets and their exact overrides by name, with the lease ledger, pure: every operation takes
 * the clock (`nowMs`) and notes the buckets it changed (see {@link BucketTable.takeDirty}), for a
 * store to write through. One client's Durable Object (`ClientBuckets`) wraps it with storage and
 * alarms, its buckets named by rule; the memory backend keeps every client's in one table, named
 * by `bucketId`, so a take across several clients is all or nothing too. Tests drive it in Node.
 *
 * @example
 * const table = new BucketTable();
 * const [answer] = table.charge([{ rule: "api", policy, cost: 1, enforced: true }], Date.now());
 * for (const name of table.takeDirty()) save(name, table.buckets.get(name));
 */
export class BucketTable {
  readonly buckets = new Map<string, StoredBucket>();
  /** Exact overrides by bucket: capacity and refill only (the rule's block stays). */
  readonly overrides = new Map<string, BucketPolicy>();
  /** Buckets changed since the last {@link BucketTable.takeDirty}. */
  private readonly dirty = new Set<string>();

  /** The buckets changed since the last call, and forgets them. */
  takeDirty(): string[] {
    const names = [...this.dirty];
    this.dirty.clear();
    return names;
  }

  /** One request's charges, all or nothing. */
  charge(charges: readonly TableCharge[], nowMs: number): TableAnswer[] {
    for (const charge of charges) this.reckon(charge.rule, charge.policy, nowMs);
    const { results } = takeBuckets(this.entries(charges, nowMs), nowMs);
    return results.map(({ entry, decision, next, expiresInMs, charged }, i) => {
      if (next !== undefined) this.remember(entry.rule, next, Math.max(nowMs + expiresInMs, fullUnder(next, charges[i]?.policy ?? entry.policy, nowMs)), nowMs);
      // Only spent tokens are something to refund; a block is not. A compact receipt (a sliding window's one admission).
      return { decision, policy: entry.policy, charged: charged ?? null };
    });
  }

  /** What `charge` would answer now, changing nothing. */
  peek(charges: readonly TableCharge[], nowMs: number): BucketAnswer[] {
    return takeBuckets(this.entries(charges, nowMs), nowMs).results.map(({ entry, decision }) => ({ decision, policy: entry.policy, charged: null }));
  }

  /** Gives charges back with refund semantics (only what each still withholds, within its bucket's generation). */
  giveBack(charges: readonly TableRefund[], nowMs: number): void {
    for (const { rule: bucket, cost, charged, policy: given } of charges) {
      // An exact override replaces capacity and refill; the rule's algorithm and block stay (as in a take).
      const override = this.overrides.get(bucket);
      const policy = override === undefined ? given : { ...given, ...override };
      const before = this.buckets.get(bucket);
      const refunded = refundTokens(before, policy, cost, charged, nowMs);
      if (refunded === undefined || refunded === before) continue;
      // What comes back fills the bucket only up to its capacity less the leases still out.
      const state = withinLeases(refunded, before?.leased, policy, nowMs) ?? refunded;
      this.remember(bucket, state, Math.max(fullUnder(state, policy, nowMs), fullUnder(state, given, nowMs)), nowMs);
    }
  }

  /**
   * Makes a bucket full again, less what isolates may still hand out from leases taken before
   * (they were spent from the old bucket, but can still be spent after the reset), so a reset
   * never lets more through than a full bucket. The bucket starts a new generation, so a refund
   * of a charge made before gives nothing; only the unused rest of a lease the reset counted as
   * out comes back (see {@link BucketTable.counted}). Returns whether the bucket is gone.
   */
  reset(name: string, nowMs: number): boolean {
    const leased = liveLease(this.buckets.get(name), nowMs);
    if (leased !== undefined) {
      // Full under the policy in force (an exact override, else the one the leases were last reckoned under), less the leases out.
      const policy = shapeOf(this.overrides.get(name) ?? leased.policy);
      const state = underLeases(undefined, leaseEntries(leased), policy, nowMs, newGeneration());
      if (state !== undefined) {
        this.remember(name, state, fullUnder(state, policy, nowMs), nowMs, { ...leased, policy });
        return false;
      }
    }
    this.buckets.delete(name);
    return true;
  }

  /**
   * Sets or (with null) removes a bucket's exact override; its tokens stay, capped by the next
   * take (or at once, while leases are out). The bucket is kept until it is full under the new
   * override too. Returns the bucket as now kept, if any.
   */
  setOverride(name: string, policy: BucketPolicy | null, nowMs: number): StoredBucket | undefined {
    if (policy === null) this.overrides.delete(name);
    else this.overrides.set(name, shapeOf(policy));
    const current = this.buckets.get(name);
    if (current === undefined) return undefined;
    const capped = withinNewLimit(current, policy, nowMs);
    const kept: StoredBucket = { ...capped, fullAtMs: policy === null ? capped.fullAtMs : Math.max(capped.fullAtMs, fullUnder(capped, policy, nowMs)) };
    this.buckets.set(name, kept);
    return kept;
  }

  /**
   * The give-backs of `holder`'s leases the table still has a record of, from the same call
   * (`seq`), at most what each took. A reset, an override or another charge of the bucket drops
   * the records of leases past their lifetime, and then their give-backs (towards refusing): a
   * reset or override no longer reckons with those tokens, so adding them could over-admit.
   */
  counted(holder: string, returns: readonly LeaseReturn[], nowMs: number): TableRefund[] {
    const honoured: TableRefund[] = [];
    const left = new Map<string, number>();
    for (const item of returns) {
      this.reckon(item.rule, item.policy, nowMs);
      // The holder's record, live or not: one past its lifetime is no longer counted as out, but
      // until a reset, an override or another charge of the bucket drops it, its unused rest can
      // still come back (a client that paused gets it back with its next call).
      const bucket = this.buckets.get(item.rule);
      const entry = bucket?.leased?.holders[holder];
      if (bucket === undefined || entry === undefined || entry.seq !== item.seq) continue;
      const tokens = Math.min(item.cost, left.get(item.rule) ?? entry.tokens);
      left.set(item.rule, (left.get(item.rule) ?? entry.tokens) - tokens);
      // A lease still on record is counted in this generation of the bucket (a reset subtracted
      // it from the new one), so its rest comes back, whichever generation it was taken from.
      if (tokens >= 1) honoured.push({ rule: item.rule, policy: item.policy, cost: tokens, enforced: item.enforced, charged: { ...item.charged, generation: bucket.generation } });
    }
    return honoured;
  }

  /**
   * An isolate's call `seq` ends its earlier leases: the unused rest of those the table still
   * records comes back ({@link BucketTable.counted}), after they stop counting as out, so the
   * cap of the leases out (capacity less what they took) reckons only with the others'.
   *
   * @example
   * table.endLeases("isolate-a", 8, [{ ...charge, cost: 40, charged: grant.charged, seq: 7 }], Date.now());
   */
  endLeases(holder: string, seq: number | undefined, returns: readonly LeaseReturn[], nowMs: number): void {
    const honoured = returns.length === 0 ? [] : this.counted(holder, returns, nowMs);
    this.releaseHolder(holder, seq);
    if (honoured.length > 0) this.giveBack(honoured, nowMs);
  }

  /**
   * An isolate calls again: its previous leases have ended (their rest comes back in this call),
   * so they are no longer out. A lease taken by a later call of it (this one arrived late) stays.
   */
  releaseHolder(holder: string, seq: number | undefined): void {
    for (const [name, bucket] of this.buckets) {
      const leased = bucket.leased;
      const entry = leased?.holders[holder];
      if (leased === undefined || entry === undefined) continue;
      if (seq !== undefined && entry.seq !== undefined && entry.seq > seq) continue;
      const { [holder]: _ended, ...holders } = leased.holders;
      const { leased: _old, ...rest } = bucket;
      this.buckets.set(name, Object.keys(holders).length === 0 ? rest : { ...rest, leased: { ...leased, holders } });
      this.dirty.add(name);
    }
  }

  /** Takes up to `want` × `cost` tokens for an isolate to spend locally, within the bucket's share; null when none. */
  grantLease(lease: LeaseRequest, holder: string, seq: number | undefined, nowMs: number): LeaseGrant | null {
    if (lease.want < 1 || lease.cost < 1) return null;
    this.reckon(lease.rule, lease.policy, nowMs);
    const [entry] = this.entries([{ rule: lease.rule, policy: lease.policy, cost: 0, enforced: true }], nowMs);
    // A policy that blocks after a refusal is decided by the object alone: a lease would keep admitting during a block.
    // A window is too: its units do not refill as a level, so a lease's rest could not be given back exactly.
    // A queue is too: a lease spends only whole tokens on hand, so queued requests would be refused locally.
    if (entry === undefined || (entry.policy.blockForMs ?? 0) > 0 || (entry.policy.queueMs ?? 0) > 0 || !isTokenBucket(entry.policy)) return null;
    const stored = this.buckets.get(lease.rule);
    const before = liveLease(stored, nowMs);
    const mine = before?.holders[holder];
    // This call arrived after a later one of the same isolate, which holds the current lease: none for it.
    if (seq !== undefined && mine?.seq !== undefined && mine.seq > seq) return null;
    // The shared lease math (src/core/leases.ts, as on Upstash): the share of what the bucket holds under the leases out.
    const state = stored !== undefined && isBucketState(stored) ? stored : undefined;
    const ask = { id: holder, want: lease.want, cost: lease.cost, ttlMs: Math.max(0, lease.ttlMs) };
    const grant = grantLease({ state, leases: leaseEntries(before) }, entry.policy, ask, nowMs);
    const taken = grant?.bucket.leases.at(-1);
    if (grant === undefined || taken === undefined) return null;
    // Amounts in whole tokens, so leases taken under another period are counted as what they are.
    const holders = { ...before?.holders, [holder]: { tokens: taken.tokens, untilMs: taken.untilMs, ...(seq !== undefined && { seq }) } };
    const fullAtMs = Math.max(fullUnder(grant.charged, entry.policy, nowMs), fullUnder(grant.charged, lease.policy, nowMs));
    this.remember(lease.rule, grant.charged, fullAtMs, nowMs, { policy: shapeOf(entry.policy), holders });
    return { granted: grant.granted, charged: grant.charged, remaining: grant.remaining, resetMs: grant.resetMs, policy: entry.policy };
  }

  /** Drops buckets full again; returns the latest time a kept one is full, or 0 when none is kept. */
  sweep(nowMs: number): { readonly removed: string[]; readonly latestFullAtMs: number } {
    const removed: string[] = [];
    let latestFullAtMs = 0;
    for (const [name, bucket] of this.buckets) {
      if (bucket.fullAtMs <= nowMs) {
        this.buckets.delete(name);
        removed.push(name);
      } else {
        latestFullAtMs = Math.max(latestFullAtMs, bucket.fullAtMs);
      }
    }
    return { removed, latestFullAtMs };
  }

  /**
   * A bucket with leases out, charged under another policy than the one they were last reckoned
   * under (an override set or removed, a changed rule): the charge's capacity caps the bucket
   * plus the leases still out, as `setOverride` does (removing an override cannot: the rule's
   * policy is only known here).
   */
  private reckon(name: string, given: BucketPolicy, nowMs: number): void {
    const bucket = this.buckets.get(name);
    if (bucket?.leased === undefined) return;
    const policy = this.overrides.get(name) ?? given;
    if (sameShape(bucket.leased.policy, policy)) return;
    const capped = withinNewLimit(bucket, policy, nowMs);
    if (capped === bucket) return;
    this.buckets.set(name, capped);
    this.dirty.add(name);
  }

  /** The charges as the bucket math takes them: current state, and an exact override's capacity and refill where one is set. */
  private entries(charges: readonly TableCharge[], nowMs: number) {
    return charges.map((charge) => {
      const override = this.overrides.get(charge.rule);
      const policy = override === undefined ? charge.policy : { ...charge.policy, ...override };
      // While leases are out, the bucket holds at most its capacity less what they took.
      const stored = this.buckets.get(charge.rule);
      return { ...charge, policy, state: withinLeases(stored, stored?.leased, policy, nowMs) };
    });
  }

  /**
   * Keeps a bucket's new state. Leases still out are kept beside it (`leased`, else the previous
   * record while live), and the bucket is kept at least as long as they are.
   */
  private remember(name: string, state: RateState, fullAtMs: number, nowMs: number, leased?: LeasedOut): void {
    // The state alone (one given back was read from the table, with its bookkeeping beside it).
    const { fullAtMs: _full, leased: _leased, ...own } = state as StoredBucket;
    const out = leased ?? liveLease(this.buckets.get(name), nowMs);
    this.buckets.set(name, {
      ...own,
      fullAtMs: keptUntilMs(fullAtMs, out),
      ...(out !== undefined && { leased: out }),
    });
    this.dirty.add(name);
  }
}

/**
 * When a state stops mattering under a policy (full again, any block over). A bucket is kept
 * until then under both the policy in force and the charge's own (the rule's, or its prefix
 * override's), so removing an exact override never leaves a bucket without an end.
 */
function fullUnder(state: RateState, policy: BucketPolicy, nowMs: number): number {
  return nowMs + expiresInMs(state, policy, nowMs);
}
