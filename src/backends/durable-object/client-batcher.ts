import type { BucketAnswer } from "../../core/backend";
import { isTokenBucket } from "../../core/algorithms/index";
import type { ClientBuckets } from "./client-buckets";
import { commonCharge, LeaseWallet, type Lease } from "../../core/lease-wallet";
import { KeyedBatcher, type Settled } from "../../core/keyed-batcher";
import { sharedRefusal } from "../../core/shared-refusal";
import type { ObjectAnswer, ObjectCharge, BatchRequest } from "./wire";

/** A request's charges on one object as they wait for its next call; `leased`: a lease may answer them. */
interface QueuedTake {
  readonly charges: readonly ObjectCharge[];
  readonly leased: boolean;
}

/** How an isolate shares calls to one client's object (see {@link ClientBatcher}). */
export interface LeaseOptions {
  /** Largest lease, in charges of the request's cost; 0 turns leases off (batching stays). Default 64. */
  readonly maxLease?: number;
  /** A lease's unused tokens are given back once it is this old (ms). Default 1000. */
  readonly leaseTtlMs?: number;
  /**
   * A call in flight longer than this (ms) no longer holds back the client's next call: its
   * request may have been cancelled, and a cancelled request's I/O never settles. Use the
   * limiter's backend budget. Default 1000.
   */
  readonly staleAfterMs?: number;
}

const DEFAULT_MAX_LEASE = 64;
const DEFAULT_LEASE_TTL_MS = 1_000;
const DEFAULT_STALE_AFTER_MS = 1_000;
/** Per-client state kept per isolate; idle entries without a live lease are dropped beyond this. */
const MAX_CLIENTS = 10_000;

/**
 * The isolate side of the Durable Object backend for one client's requests: makes a hot client
 * cost its object far fewer calls than requests, and never over-admits.
 *
 * - **Batching** ({@link KeyedBatcher}). At most one call per client key is in flight from this
 *   isolate. Requests of that client arriving meanwhile queue, and the next call carries all of
 *   them: the object charges each in order, exactly as that many separate calls would.
 * - **Leases.** A call made while the client is busy (its previous call within a lease's
 *   lifetime) also asks for a lease: up to `want` more charges of the same cost, taken from the
 *   bucket in the same call (the object grants at most 1/{@link LEASE_SHARE} of what it holds,
 *   none near the limit). Requests then take a leased charge with no call at all. The tokens
 *   left when the lease is a `leaseTtlMs` old (counted from the call's send) go back with the
 *   next call, with refund semantics (only what they still withhold), and the object takes them
 *   only while it still counts that lease. No lease under a policy with `blockForMs` or `queueMs`, and none
 *   from the late answer of a call that went stale. Every admitted request spent a token already taken from the
 *   object: the error is only towards refusing (tokens parked in one isolate), bounded by one
 *   lease per isolate and client.
 */
export class ClientBatcher {
  /** Per client key: the lease this isolate holds and the rests to give back. */
  private readonly wallets = new Map<string, LeaseWallet>();
  private readonly calls: KeyedBatcher<QueuedTake, BucketAnswer[]>;
  private readonly maxLease: number;
  private readonly leaseTtlMs: number;
  /** Names this isolate's leases to the objects (see `ClientBuckets.chargeBatch`). */
  private readonly holder = crypto.randomUUID();
  /** Numbers this isolate's calls, increasing, so an object can tell a late call from a newer one. */
  private seq = 0;

  /**
   * @param stubFor the client's object
   * @param clock the isolate's clock (lease lifetimes, staleness); injected by tests
   */
  constructor(
    private readonly stubFor: (clientKey: string) => DurableObjectStub<ClientBuckets>,
    options: LeaseOptions = {},
    private readonly clock: () => number = Date.now,
  ) {
    this.maxLease = Math.max(0, Math.floor(options.maxLease ?? DEFAULT_MAX_LEASE));
    this.leaseTtlMs = Math.max(1, options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS);
    const staleAfterMs = Math.max(1, options.staleAfterMs ?? DEFAULT_STALE_AFTER_MS);
    this.calls = new KeyedBatcher(
      {
        send: (clientKey, batch, _signal, current) =>
          this.send(
            clientKey,
            batch.map(({ charges }) => charges),
            current,
            batch.every(({ leased }) => leased),
          ),
        answerQueued: (clientKey, { charges, leased }, answered) => {
          const local = leased ? this.takeHeld(clientKey, charges) : undefined;
          return local === undefined ? sharedRefusal(charges, answered, (queued) => queued.charges) : [local];
        },
      },
      staleAfterMs,
      clock,
    );
  }

  /** A one-charge request's answer from this isolate's lease for the client, with no call; undefined when it holds none that matches. */
  takeHeld(clientKey: string, charges: readonly ObjectCharge[]): BucketAnswer | undefined {
    return this.wallets.get(clientKey)?.take(charges, this.clock());
  }

  /**
   * One request's charges on one client's object: from a lease, or in the client's next call.
   * `leased: false` (the part of a request that charges several clients' objects) always goes
   * to the object: all or nothing across objects is kept by giving back what the others took,
   * and only a charge the object made is given back that way.
   */
  take(clientKey: string, charges: readonly ObjectCharge[], signal: AbortSignal, { leased = true } = {}): Promise<BucketAnswer[]> {
    const local = leased ? this.takeHeld(clientKey, charges) : undefined;
    return local === undefined ? this.calls.run(clientKey, { charges, leased }, signal) : Promise.resolve([local]);
  }

  /** Ends this isolate's lease on a bucket (reset, override): what it held is not handed out, and goes back with the next call. */
  endLeaseOf(clientKey: string, bucket: string): void {
    const wallet = this.wallets.get(clientKey);
    if (wallet?.lease?.rule === bucket) wallet.end();
  }

  private wallet(clientKey: string): LeaseWallet {
    let wallet = this.wallets.get(clientKey);
    if (wallet === undefined) {
      if (this.wallets.size >= MAX_CLIENTS) {
        const nowMs = this.clock();
        // An idle client's wallet goes (an expired lease's rest is lost: towards refusing).
        for (const [key, kept] of this.wallets) if (!kept.live(nowMs) && this.wallets.size >= MAX_CLIENTS) this.wallets.delete(key);
      }
      this.wallets.set(clientKey, (wallet = new LeaseWallet()));
    }
    return wallet;
  }

  /** Sends the client's queued requests (and any lease request and give-back) in one call. */
  private async send(clientKey: string, batch: readonly (readonly ObjectCharge[])[], current: () => boolean, leasing: boolean): Promise<Settled<BucketAnswer[]>[]> {
    const nowMs = this.clock();
    const wallet = this.wallet(clientKey);
    const seq = ++this.seq;
    // No lease for a batch with a part of a several-object request: such a client could not spend
    // it. Any call ends the lease this isolate holds (its rest goes back with this call): the
    // object stops counting a holder's lease once the holder calls again.
    if (!leasing) wallet.end();
    const want = leasing ? wallet.nextWant(nowMs, this.maxLease, this.leaseTtlMs) : 0;
    const common = want > 0 ? commonCharge(batch) : undefined;
    // A policy that blocks after a refusal gets no lease, nor does a window or a queue (the object grants none either).
    const leaseCharge = common !== undefined && (common.policy.blockForMs ?? 0) === 0 && (common.policy.queueMs ?? 0) === 0 && isTokenBucket(common.policy) ? common : undefined;
    const request: BatchRequest = {
      holder: this.holder,
      seq,
      takes: batch,
      ...(wallet.returns.length > 0 && { giveBack: wallet.returns.splice(0) }),
      ...(leaseCharge !== undefined && { lease: { rule: leaseCharge.rule, policy: leaseCharge.policy, cost: leaseCharge.cost, want, ttlMs: this.leaseTtlMs } }),
    };
    const answer = await this.stubFor(clientKey).chargeBatch(request);
    if (answer.lease !== null && leaseCharge !== undefined) {
      const lease: Lease = {
        rule: leaseCharge.rule,
        cost: leaseCharge.cost,
        asked: leaseCharge.policy,
        grant: answer.lease,
        seq,
        left: answer.lease.granted,
        grantedAtMs: this.clock(),
        // Counted from the send: the object counts it from when it took it, which is later.
        expiresAtMs: nowMs + this.leaseTtlMs,
      };
      // The answer of a call that went stale (a newer one was sent): its lease goes back unused.
      if (current()) wallet.install(lease);
      else wallet.giveBack(lease);
    }
    return batch.map((_, i) => {
      const answers = answer.answers[i];
      return answers === undefined ? { ok: false, error: new Error("the object answered fewer requests than it was sent") } : { ok: true, value: answers.map(plainAnswer) };
    });
  }
}

/** An object's answer as the port returns it (RPC results carry nothing else, but be explicit). */
function plainAnswer({ decision, policy, charged }: ObjectAnswer): BucketAnswer {
  return { decision, policy, charged };
}
