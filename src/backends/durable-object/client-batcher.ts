import type { BucketAnswer } from "../../core/backend";
import { isTokenBucket } from "../../core/algorithms/index";
import type { ClientBuckets } from "./client-buckets";
import { commonCharge, LeaseWallet, type Lease } from "../../core/lease-wallet";
import type { ObjectAnswer, ObjectCharge, BatchRequest } from "./wire";

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

/** A request waiting for its client's next call to the object. */
interface Waiter {
  readonly charges: readonly ObjectCharge[];
  readonly signal: AbortSignal;
  sent: boolean;
  result?: { ok: true; answers: BucketAnswer[] } | { ok: false; error: unknown };
  /** Wakes the waiting request (in its own request context) to look again. */
  wake?: () => void;
}

/** One client key's queue, call in flight and lease. */
interface Client {
  readonly queue: Waiter[];
  inFlight: boolean;
  /** Which call is in flight (a stale call's late answer must not clear a newer one's flag), and since when. */
  flight: number;
  flightStartedMs: number;
  flightSignal: AbortSignal | undefined;
  readonly wallet: LeaseWallet;
}

/**
 * The isolate side of the Durable Object backend for one client's requests: makes a hot client
 * cost its object far fewer calls than requests, and never over-admits.
 *
 * - **Batching.** At most one call per client key is in flight from this isolate. Requests of
 *   that client arriving meanwhile queue, and the next call carries all of them: the object
 *   charges each in order, exactly as that many separate calls would.
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
 *
 * Each request waits on a promise of its own and is woken to look again, so every call is made
 * from the context of a request that is part of it (a call made for a finished request could be
 * cancelled with it).
 */
export class ClientBatcher {
  private readonly clients = new Map<string, Client>();
  private readonly maxLease: number;
  private readonly leaseTtlMs: number;
  private readonly staleAfterMs: number;
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
    this.staleAfterMs = Math.max(1, options.staleAfterMs ?? DEFAULT_STALE_AFTER_MS);
  }

  /** A one-charge request's answer from this isolate's lease for the client, with no call; undefined when it holds none that matches. */
  takeHeld(clientKey: string, charges: readonly ObjectCharge[]): BucketAnswer | undefined {
    return this.clients.get(clientKey)?.wallet.take(charges, this.clock());
  }

  /** One request's charges on one client's object: from a lease, or in the client's next call. */
  async take(clientKey: string, charges: readonly ObjectCharge[], signal: AbortSignal): Promise<BucketAnswer[]> {
    const client = this.client(clientKey);
    const local = client.wallet.take(charges, this.clock());
    if (local !== undefined) return [local];
    const waiter: Waiter = { charges, signal, sent: false };
    client.queue.push(waiter);
    for (;;) {
      const result = waiter.result;
      if (result !== undefined) {
        if (result.ok) return result.answers;
        throw result.error;
      }
      if (signal.aborted) {
        // Leaves on its own deadline, even behind (or in) a call that never settles.
        const at = client.queue.indexOf(waiter);
        if (at >= 0) client.queue.splice(at, 1);
        signal.throwIfAborted();
      }
      if (!waiter.sent && (!client.inFlight || this.stale(client))) {
        await this.call(clientKey, client, signal);
        continue;
      }
      await this.wait(waiter, client, signal);
    }
  }

  /** Until woken, this request's deadline, or (queued, not sent) the call in flight going stale. */
  private wait(waiter: Waiter, client: Client, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = () => {
        if (timer !== undefined) clearTimeout(timer);
        signal.removeEventListener("abort", done);
        waiter.wake = undefined;
        resolve();
      };
      waiter.wake = done;
      signal.addEventListener("abort", done);
      if (!waiter.sent && client.inFlight) timer = setTimeout(done, Math.max(0, client.flightStartedMs + this.staleAfterMs + 1 - this.clock()));
    });
  }

  /** Ends this isolate's lease on a bucket (reset, override): what it held is not handed out, and goes back with the next call. */
  endLeaseOf(clientKey: string, bucket: string): void {
    const client = this.clients.get(clientKey);
    if (client?.wallet.lease?.rule === bucket) client.wallet.end();
  }

  private client(clientKey: string): Client {
    let client = this.clients.get(clientKey);
    if (client === undefined) {
      if (this.clients.size >= MAX_CLIENTS) this.forgetIdle();
      this.clients.set(clientKey, (client = { queue: [], inFlight: false, flight: 0, flightStartedMs: 0, flightSignal: undefined, wallet: new LeaseWallet() }));
    }
    return client;
  }

  /** The call in flight outlived its request's budget (or its request): the next may go. */
  private stale(client: Client): boolean {
    return client.flightSignal?.aborted === true || this.clock() - client.flightStartedMs > this.staleAfterMs;
  }

  private forgetIdle(): void {
    const nowMs = this.clock();
    for (const [key, client] of this.clients) {
      if ((client.inFlight && !this.stale(client)) || client.queue.length > 0) continue;
      if (client.wallet.live(nowMs)) continue;
      this.clients.delete(key); // an expired lease's rest is lost: towards refusing
    }
  }

  /** Sends the client's queue (and any lease request and give-back) in one call, and answers every request in it. */
  private async call(clientKey: string, client: Client, signal: AbortSignal): Promise<void> {
    const nowMs = this.clock();
    const batch = client.queue.splice(0).filter((waiter) => !waiter.signal.aborted);
    if (batch.length === 0) return;
    for (const waiter of batch) waiter.sent = true;
    const flight = ++client.flight;
    const seq = ++this.seq;
    client.inFlight = true;
    client.flightStartedMs = nowMs;
    client.flightSignal = signal;
    const want = client.wallet.nextWant(nowMs, this.maxLease, this.leaseTtlMs);
    const common = want > 0 ? commonCharge(batch.map((waiter) => waiter.charges)) : undefined;
    // A policy that blocks after a refusal gets no lease, nor does a window or a queue (the object grants none either).
    const leaseCharge = common !== undefined && (common.policy.blockForMs ?? 0) === 0 && (common.policy.queueMs ?? 0) === 0 && isTokenBucket(common.policy) ? common : undefined;
    const request: BatchRequest = {
      holder: this.holder,
      seq,
      takes: batch.map((waiter) => waiter.charges),
      ...(client.wallet.returns.length > 0 && { giveBack: client.wallet.returns.splice(0) }),
      ...(leaseCharge !== undefined && { lease: { rule: leaseCharge.rule, policy: leaseCharge.policy, cost: leaseCharge.cost, want, ttlMs: this.leaseTtlMs } }),
    };
    try {
      const answer = await this.stubFor(clientKey).chargeBatch(request);
      batch.forEach((waiter, i) => {
        const answers = answer.answers[i];
        waiter.result = answers === undefined ? { ok: false, error: new Error("the object answered fewer requests than it was sent") } : { ok: true, answers: answers.map(plainAnswer) };
      });
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
        if (client.flight === flight) client.wallet.install(lease);
        else client.wallet.giveBack(lease);
      }
    } catch (error) {
      for (const waiter of batch) waiter.result = { ok: false, error };
    } finally {
      if (client.flight === flight) client.inFlight = false;
    }
    for (const waiter of batch) waiter.wake?.();
    // Requests that queued meanwhile: served from the new lease where they can, else woken so one of them calls.
    const waiting = client.queue.splice(0);
    const answeredAt = this.clock();
    for (const waiter of waiting) {
      const local = client.wallet.take(waiter.charges, answeredAt);
      if (local === undefined) client.queue.push(waiter);
      else waiter.result = { ok: true, answers: [local] };
      waiter.wake?.();
    }
  }
}

/** An object's answer as the port returns it (RPC results carry nothing else, but be explicit). */
function plainAnswer({ decision, policy, charged }: ObjectAnswer): BucketAnswer {
  return { decision, policy, charged };
}
