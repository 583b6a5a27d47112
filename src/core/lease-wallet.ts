import type { BucketAnswer } from "./backend";
import { ceilDiv, floorDiv, type BucketPolicy, type BucketState } from "./algorithms/token-bucket";

/**
 * The isolate side of leases, shared by the Durable Object and Upstash backends (each has its own
 * store side: `src/backends/durable-object/bucket-table.ts`, `src/core/leases.ts` with its Lua twin).
 */

/** A charge as a lease matches it: the bucket's name, its policy and the cost. */
export interface LeaseCharge {
  readonly rule: string;
  readonly policy: BucketPolicy;
  readonly cost: number;
}

/** A lease granted: `granted` charges of the lease's cost, taken from the bucket in one step. */
export interface LeaseGrant {
  readonly granted: number;
  /** The state the lease's take wrote: what giving back the unused part refunds against. */
  readonly charged: BucketState;
  /** The bucket after the lease (remaining whole tokens, time until full), under `policy`. */
  readonly remaining: number;
  readonly resetMs: number;
  readonly policy: BucketPolicy;
}

/** An ended lease's unused rest (`cost` tokens; 0 when it was all spent), given back with the client's next call. */
export interface LeaseReturn {
  readonly rule: string;
  readonly policy: BucketPolicy;
  readonly cost: number;
  readonly enforced: true;
  readonly charged: BucketState;
  /** The call that took the lease (what the store knows it by). */
  readonly seq: number;
}

/** The first lease a busy client gets, and how much each spent lease grows. */
const FIRST_LEASE = 4;
const LEASE_GROWTH = 4;

/** A lease this isolate holds: charges of one bucket, already taken from the object, to hand out. */
export interface Lease {
  readonly rule: string;
  readonly cost: number;
  /** The policy the charges were asked under (what a request must match to use the lease). */
  readonly asked: BucketPolicy;
  readonly grant: LeaseGrant;
  /** The call that took it (what the object knows it by). */
  readonly seq: number;
  /** Charges left to hand out. */
  left: number;
  /** Isolate clock when granted (headers only), and when what is left goes back: the call's send time plus the lifetime (the object counts it from later). */
  readonly grantedAtMs: number;
  readonly expiresAtMs: number;
}

/**
 * One client's lease as this isolate holds it, pure (the clock is passed in): hands out leased
 * charges to matching one-charge requests, sizes the next lease to the client's demand (4, 16,
 * 64 while calls follow each other within a lease's lifetime; halved after one that ran out of
 * time with charges left), and keeps what is left of ended leases to give back with the next call.
 *
 * @example
 * const wallet = new LeaseWallet();
 * const answer = wallet.take(charges, Date.now()); // an allowed answer from the lease, or undefined
 */
export class LeaseWallet {
  /** `returnSpent`: a lease spent to the last charge is returned too (cost 0), so the store stops counting it at once. */
  constructor(private readonly options: { readonly returnSpent?: boolean } = {}) {}

  lease: Lease | undefined;
  /** Unused leased charges to give back with the next call. */
  readonly returns: LeaseReturn[] = [];
  /** Lease size asked for next. */
  want = 0;
  /** The last lease ended with charges left over (it was larger than the demand). */
  private wasted = false;
  private lastCallMs = -Infinity;

  /** Whether a lease the isolate may still spend is held. */
  live(nowMs: number): boolean {
    return this.lease !== undefined && this.lease.expiresAtMs > nowMs;
  }

  /** A leased charge for a one-charge request that matches the lease, or undefined. */
  take(charges: readonly LeaseCharge[], nowMs: number): BucketAnswer | undefined {
    const lease = this.lease;
    if (lease === undefined) return undefined;
    if (nowMs >= lease.expiresAtMs) {
      this.end();
      return undefined;
    }
    const [charge] = charges;
    if (charges.length !== 1 || charge === undefined || lease.left < 1) return undefined;
    if (charge.rule !== lease.rule || charge.cost !== lease.cost || !samePolicy(charge.policy, lease.asked)) return undefined;
    lease.left -= 1;
    return leasedAnswer(lease, nowMs);
  }

  /**
   * A call is about to go: ends the current lease and sizes the next one. A spent lease is
   * renewed four times as large while the client keeps calling; one that ran out of time with
   * charges left over was too large: halve it. Returns the size to ask for (0: none).
   */
  nextWant(nowMs: number, maxLease: number, leaseTtlMs: number): number {
    if (this.lease !== undefined) this.end();
    const leftOver = this.wasted;
    this.wasted = false;
    const busy = nowMs - this.lastCallMs < leaseTtlMs;
    this.want = maxLease === 0 || !busy ? 0 : leftOver ? Math.max(1, this.want >> 1) : Math.min(maxLease, Math.max(FIRST_LEASE, this.want * LEASE_GROWTH));
    this.lastCallMs = nowMs;
    return this.want;
  }

  /** Holds a lease a call brought back (ending any other first). */
  install(lease: Lease): void {
    if (this.lease !== undefined) this.end();
    this.lease = lease;
  }

  /** Ends the lease; what is left goes back with the next call. */
  end(): void {
    const lease = this.lease;
    this.lease = undefined;
    if (lease === undefined) return;
    if (lease.left >= 1) this.wasted = true;
    this.giveBack(lease);
  }

  /** What is left of a lease goes back with the client's next call (the object honours it while it still counts the lease). */
  giveBack(lease: Lease): void {
    if (lease.left < 1 && this.options.returnSpent !== true) return;
    this.returns.push({ rule: lease.rule, policy: lease.asked, cost: lease.left * lease.cost, enforced: true, charged: lease.grant.charged, seq: lease.seq });
  }
}

/**
 * The one charge every request of a batch makes, when they all make the same single charge
 * (what a lease can be taken for).
 *
 * @example
 * commonCharge([[charge], [charge]]); // charge
 */
export function commonCharge<C extends LeaseCharge>(batch: readonly (readonly C[])[]): C | undefined {
  const first = batch[0];
  const charge = first?.length === 1 ? first[0] : undefined;
  if (charge === undefined) return undefined;
  for (const charges of batch) {
    const other = charges[0];
    if (charges.length !== 1 || other === undefined || other.rule !== charge.rule || other.cost !== charge.cost || !samePolicy(other.policy, charge.policy)) return undefined;
  }
  return charge;
}

/**
 * The answer for a charge taken from a lease: allowed, with what this client has left as seen
 * from here (the bucket after the lease plus the charges still leased; refill since the lease is
 * counted on the isolate's clock, for headers only; never more than the capacity less what the
 * lease already handed out, which the store still counts as out), and the state a refund of this charge
 * needs: the bucket as if the lease's charges had been taken one by one, this one last so far.
 */
function leasedAnswer(lease: Lease, nowMs: number): BucketAnswer {
  const { grant } = lease;
  const policy = grant.policy;
  const unit = policy.refillPeriodMs;
  const full = policy.capacity * unit;
  const stillLeased = lease.left * lease.cost * unit;
  const elapsedMs = Math.max(0, nowMs - lease.grantedAtMs);
  const missingAtGrant = Math.min(full, grant.resetMs * policy.refillTokens);
  const handedOut = (grant.granted - lease.left) * lease.cost * unit;
  const level = Math.min(full - handedOut, full - missingAtGrant + stillLeased + elapsedMs * policy.refillTokens);
  const charged: BucketState = { level: grant.charged.level + stillLeased, unitsPerToken: grant.charged.unitsPerToken, updatedAtMs: grant.charged.updatedAtMs, generation: grant.charged.generation };
  return {
    decision: { outcome: "allowed", remaining: Math.max(grant.remaining + lease.left * lease.cost, floorDiv(level, unit)), resetMs: ceilDiv(full - level, policy.refillTokens) },
    policy,
    charged,
  };
}

/** Same capacity, refill and block period. */
function samePolicy(a: BucketPolicy, b: BucketPolicy): boolean {
  return a.capacity === b.capacity && a.refillTokens === b.refillTokens && a.refillPeriodMs === b.refillPeriodMs && (a.blockForMs ?? 0) === (b.blockForMs ?? 0);
}
