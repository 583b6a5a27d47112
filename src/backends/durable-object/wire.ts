import type { BucketAnswer } from "../../core/backend";
import type { RateState } from "../../core/algorithms/index";
import type { BucketPolicy, BucketState } from "../../core/token-bucket";

/**
 * What isolates and a client's object say to each other (`ClientBuckets`' RPC methods): one
 * home for the wire types, so the object, the backend and the batcher agree by construction.
 */

/** One charge as the object sees it: the bucket's name within this client. */
export interface ObjectCharge {
  readonly rule: string;
  readonly policy: BucketPolicy;
  readonly cost: number;
  readonly enforced: boolean;
}

/** One slot claim as the object sees it: the concurrency rule's name, the lease id, limit and duration. */
export interface ObjectSlotClaim {
  readonly rule: string;
  readonly id: string;
  readonly limit: number;
  readonly leaseMs: number;
  readonly enforced: boolean;
}

/** One charge's answer: the decision, the policy in force, and the state it wrote (what a refund needs), or null. */
export interface ObjectAnswer extends BucketAnswer {
  readonly charged: RateState | null;
}

/** A charge to give back: the charge as made (its cost is what to return) and the state its take wrote. */
export type ObjectRefund = ObjectCharge & { readonly charged: RateState };

/** An unused lease's rest: a refund of tokens the lease took in the call numbered `seq`. */
export type LeaseReturn = ObjectRefund & { readonly seq?: number };

/**
 * One call of an isolate's batch (see `ClientBuckets.serve`): unused leased tokens to give back,
 * then several requests' charges applied one after another, then possibly a new lease.
 */
export interface BatchRequest {
  /** The calling isolate (its batcher's id): its previous leases of this client have ended with this call. */
  readonly holder?: string;
  /** This call's number: increasing per holder, so a late call cannot end (or replace) a newer call's lease. */
  readonly seq?: number;
  /**
   * Unused leased tokens, given back first with refund semantics (only what each still
   * withholds), and only while the object still counts that lease (its holder's entry, same
   * `seq`), at most what the lease took; otherwise dropped (towards refusing).
   */
  readonly giveBack?: readonly LeaseReturn[];
  /** Each request's charges, all or nothing per request, in order: exactly as many `take` calls. */
  readonly takes: readonly (readonly ObjectCharge[])[];
  /** After the takes: up to `want` more charges of `cost` on one bucket, for the isolate to spend locally. */
  readonly lease?: LeaseRequest;
}

/** A request for a lease: up to `want` charges of `cost` on `bucket`, spendable for `ttlMs`. */
export interface LeaseRequest {
  readonly rule: string;
  readonly policy: BucketPolicy;
  readonly cost: number;
  readonly want: number;
  readonly ttlMs: number;
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

/** The answer to a {@link BatchRequest}: each request's answers, and the lease, if one was granted. */
export interface BatchAnswer {
  readonly answers: ObjectAnswer[][];
  readonly lease: LeaseGrant | null;
}
