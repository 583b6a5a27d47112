import type { LeaseReturn, TableAnswer, TableCharge, TableRefund } from "../../core/bucket-table";
import type { LeaseRequest } from "../../core/lease-ledger";
import type { LeaseGrant } from "../../core/lease-wallet";

/**
 * What isolates and a client's object say to each other (`ClientBuckets`' RPC methods): one
 * home for the wire types, so the object, the backend and the batcher agree by construction. A
 * charge, answer and refund are the bucket table's (src/core/bucket-table.ts), which the object
 * runs.
 */

/** One charge as the object sees it: the bucket's name within this client (its table's charge). */
export type ObjectCharge = TableCharge;

/** One slot claim as the object sees it: the concurrency rule's name, the lease id, limit and duration. */
export interface ObjectSlotClaim {
  readonly rule: string;
  readonly id: string;
  readonly limit: number;
  readonly leaseMs: number;
  readonly enforced: boolean;
}

/** One charge's answer: the decision, the policy in force, and the state it wrote (what a refund needs), or null. */
export type ObjectAnswer = TableAnswer;

/** A charge to give back: the charge as made (its cost is what to return) and the state its take wrote. */
export type ObjectRefund = TableRefund;

/** An unused lease's rest, and a lease asked for and granted: the lease ledger's types (src/core/lease-ledger.ts). */
export type { LeaseGrant, LeaseRequest, LeaseReturn };

/**
 * One call of an isolate's batch (see `ClientBuckets.chargeBatch`): unused leased tokens to give back,
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

/** The answer to a {@link BatchRequest}: each request's answers, and the lease, if one was granted. */
export interface BatchAnswer {
  readonly answers: ObjectAnswer[][];
  readonly lease: LeaseGrant | null;
}
