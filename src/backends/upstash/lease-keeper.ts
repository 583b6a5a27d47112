import type { BucketAnswer, BucketCharge } from "../../core/backend";
import type { BucketPolicy } from "../../core/token-bucket";
import { isTokenBucket } from "../../core/algorithms/index";
import { LeaseWallet, type Lease } from "../../core/lease-wallet";
import type { GrantReply, LeaseArgs } from "./wire";

/** Buckets whose lease this isolate keeps at most; idle ones without a live lease are dropped beyond this. */
const MAX_WALLETS = 10_000;

/** What a call that may ask for a lease carries, and what installing its grant needs. */
export interface LeaseCall {
  readonly args: LeaseArgs;
  readonly seq: number;
  readonly sentAtMs: number;
}

/**
 * The isolate side of Upstash leases (the store side is the script's, `src/core/leases.ts`): per
 * bucket key, a {@link LeaseWallet} that answers a busy client's one-charge requests from a lease
 * with no call, sizes the next lease, and keeps the rests of ended leases (and the names of spent
 * ones) to give back with the next call for that bucket.
 *
 * @example
 * const keeper = new LeaseKeeper(64, 1000);
 * const local = keeper.local(key, charge, Date.now()); // an allowed answer from a lease, or undefined
 */
export class LeaseKeeper {
  private readonly wallets = new Map<string, LeaseWallet>();
  /** Names this isolate's leases in the store (with the call's number). */
  private readonly tag = crypto.getRandomValues(new Uint32Array(2)).reduce((text, n) => text + n.toString(36), "");
  private seq = 0;

  constructor(
    private readonly maxLease: number,
    private readonly leaseTtlMs: number,
  ) {}

  /** The one charge of a request that may use leases: a token bucket without block or queue; undefined otherwise or with leases off. */
  leasable(charges: readonly BucketCharge[]): BucketCharge | undefined {
    const [charge] = charges;
    if (this.maxLease === 0 || charges.length !== 1 || charge === undefined) return undefined;
    const { policy } = charge;
    return isTokenBucket(policy) && (policy.blockForMs ?? 0) === 0 && (policy.queueMs ?? 0) === 0 ? charge : undefined;
  }

  /** An allowed answer from this isolate's lease of the bucket, if it holds a matching one. */
  local(key: string, charge: BucketCharge, nowMs: number): BucketAnswer | undefined {
    return this.wallets.get(key)?.take([charge], nowMs);
  }

  /**
   * A call for the bucket is about to go (the only one in flight from this isolate: the backend
   * sends a client's takes one call at a time): the lease to ask for, while the client is busy, and a rest to give back.
   */
  prepare(key: string, charge: BucketCharge, nowMs: number): LeaseCall {
    const wallet = this.wallet(key, nowMs);
    const want = wallet.nextWant(nowMs, this.maxLease, this.leaseTtlMs);
    const seq = ++this.seq;
    const back = wallet.returns.shift();
    return {
      seq,
      sentAtMs: nowMs,
      args: {
        ...(want > 0 && { ask: { id: this.id(seq), want, cost: charge.cost, ttlMs: this.leaseTtlMs } }),
        ...(back !== undefined && { giveBack: { id: this.id(back.seq), cost: back.cost, charged: back.charged } }),
      },
    };
  }

  /**
   * Holds the lease a call brought back (`current`: the call is still its client's newest; else the
   * lease goes back unused); what is left when it ends goes back with a later call.
   */
  install(key: string, charge: BucketCharge, call: LeaseCall, grant: GrantReply, policy: BucketPolicy, current: boolean): void {
    const wallet = this.wallet(key, call.sentAtMs);
    const lease: Lease = {
      rule: charge.rule,
      cost: charge.cost,
      asked: charge.policy,
      grant: { ...grant, policy },
      seq: call.seq,
      left: grant.granted,
      grantedAtMs: Date.now(),
      // Counted from the send: the store counts it from when it took it, which is later, plus a slack.
      expiresAtMs: call.sentAtMs + this.leaseTtlMs,
    };
    if (current) wallet.install(lease);
    else wallet.giveBack(lease);
  }

  /** Ends this isolate's lease of a bucket (reset, override): nothing more is handed out; the rest goes back with the next call. */
  end(key: string): void {
    this.wallets.get(key)?.end();
  }

  private id(seq: number): string {
    return `${this.tag}.${seq.toString(36)}`;
  }

  private wallet(key: string, nowMs: number): LeaseWallet {
    let wallet = this.wallets.get(key);
    if (wallet === undefined) {
      if (this.wallets.size >= MAX_WALLETS) {
        // An idle bucket's wallet goes (an expired lease's rest is lost: towards refusing).
        for (const [old, kept] of this.wallets) if (!kept.live(nowMs) && this.wallets.size >= MAX_WALLETS) this.wallets.delete(old);
      }
      wallet = new LeaseWallet({ returnSpent: true });
      this.wallets.set(key, wallet);
    }
    return wallet;
  }
}
