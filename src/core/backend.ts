import type { SlotDecision } from "./slots";
import type { RateState } from "./algorithms/index";
import type { BucketDecision, BucketPolicy } from "./token-bucket";

/** One bucket of one client, as stores name it. */
export interface BucketRef {
  /** Hashed client identity (see `hashedClientKey`). */
  readonly clientKey: string;
  /** The rule's name: one client can have several buckets. */
  readonly rule: string;
}

/**
 * One string naming a bucket within an isolate (local tables, caches): the rule and the client.
 *
 * @example
 * bucketId({ rule: "api", clientKey: "ip:3f2a…" }); // "api|ip:3f2a…"
 */
export function bucketId(ref: BucketRef): string {
  return `${ref.rule}|${ref.clientKey}`;
}

/** One charge against one bucket of one client. */
export interface BucketCharge extends BucketRef {
  /** The policy unless the store holds an exact override for this bucket (which then wins). */
  readonly policy: BucketPolicy;
  readonly cost: number;
  /** A shadow charge (false) is applied and reported but never refuses the request. */
  readonly enforced: boolean;
}

/** A store's answer for one charge: the decision, and the policy it was made under (an exact override's, or the charge's). */
export interface BucketAnswer {
  readonly decision: BucketDecision;
  readonly policy: BucketPolicy;
  /** The state the charge wrote when it took tokens (what a refund needs), else null. */
  readonly charged: RateState | null;
}

/** Giving back one charge: the charge as it was made and the state its take wrote. */
export interface Refund {
  readonly charge: BucketCharge;
  readonly charged: RateState;
}

/**
 * One request's claim on a client's concurrency slots under one rule (`bucket` is the rule's
 * name): the lease `id` (one per request), the rule's `limit`, and how long a lease lasts.
 */
export interface SlotClaim extends BucketRef {
  readonly id: string;
  readonly limit: number;
  readonly leaseMs: number;
  /** A shadow claim (false) is reported but never refuses the request. */
  readonly enforced: boolean;
}

/** An override as an operator wrote it: a client (values may end in `*`) of a rule, and its limits. */
export interface OverrideRecord {
  /** Stable identity: the rule and the client, canonical (see `overrideId`). */
  readonly id: string;
  readonly rule: string;
  readonly client: Readonly<Record<string, string>>;
  readonly capacity: number;
  readonly rate: number | string;
}

/**
 * Where every override is listed, exact and prefix ones alike: for `GET /__limiter/admin/overrides`
 * and for each isolate's prefix-override cache. (Exact overrides are also written beside their
 * bucket, where `take` applies them.)
 */
export interface OverrideRegistry {
  list(signal: AbortSignal): Promise<OverrideRecord[]>;
  put(record: OverrideRecord, signal: AbortSignal): Promise<void>;
  /** Whether there was such a record. */
  remove(id: string, signal: AbortSignal): Promise<boolean>;
}

/**
 * The port every store of token buckets implements (Durable Objects, Upstash, memory): the core
 * calls nothing else. `signal` aborts when the caller's deadline passes; a backend cancels what
 * it still can (an HTTP request), but may not be able to recall a call already delivered (a
 * Durable Object RPC): the caller never waits past the deadline either way.
 *
 * @example
 * const backend: LimiterBackend = memoryBackend();
 * const [answer] = await backend.take([{ clientKey: "ip:…", rule: "api", policy, cost: 1, enforced: true }], signal);
 */
export interface LimiterBackend {
  readonly name: string;
  /**
   * Calls that reached the store, when the backend counts them itself (it may share one call
   * among requests, or answer some from a lease): health reports this instead of the limiter's count.
   */
  readonly stats?: { readonly calls: number };
  /**
   * `client` when each client lives in an object of its own that can fail alone (Durable
   * Objects): a failure then opens only that client's circuit. Absent or `store`: one store, whose
   * failures are everyone's.
   */
  readonly failureScope?: "store" | "client";
  /**
   * Charges one request to its buckets, all or nothing: when an enforced charge is refused,
   * no bucket keeps a charge. An exact override stored for a bucket replaces the charge's policy
   * in the same call. Returns one answer per charge, in order.
   */
  take(charges: readonly BucketCharge[], signal: AbortSignal): Promise<BucketAnswer[]>;
  /**
   * `take`'s answer from what this isolate already holds (a lease the store granted and charged),
   * with no store call: no deadline or breaker is needed. Undefined when only the store can decide.
   * Optional: a backend without leases leaves it out.
   */
  readonly takeHeld?: (charges: readonly BucketCharge[]) => BucketAnswer[] | undefined;
  /** What `take` would answer now, changing nothing. */
  peek(charges: readonly BucketCharge[], signal: AbortSignal): Promise<BucketAnswer[]>;
  /**
   * Gives charges back (a response a `count` rule does not count): only what each charge still
   * withholds, as `refundTokens` defines it, so a refund never over-admits.
   */
  refund(refunds: readonly Refund[], signal: AbortSignal): Promise<void>;
  /**
   * Takes (or renews, for an id that holds one) a concurrency slot per claim, all or nothing:
   * when an enforced claim is refused, no claim keeps its slot. One answer per claim, in order.
   */
  acquire(claims: readonly SlotClaim[], signal: AbortSignal): Promise<SlotDecision[]>;
  /**
   * Extends the leases these ids still hold (a long response keeps its slots); never takes a
   * slot and never gives one back, whatever else happens. An id that holds none is ignored.
   */
  renew(claims: readonly SlotClaim[], signal: AbortSignal): Promise<void>;
  /** Gives slots back (the response ended or the client went away); an unknown id is ignored. */
  release(claims: readonly SlotClaim[], signal: AbortSignal): Promise<void>;
  /** Makes buckets full again (their state is forgotten; overrides stay). */
  reset(buckets: readonly BucketRef[], signal: AbortSignal): Promise<void>;
  /**
   * Sets the exact override of one bucket (capacity and refill; the charge keeps its cost), or
   * removes it with `null`. The bucket keeps its tokens, capped to the new capacity.
   */
  setOverride(bucket: BucketRef, policy: BucketPolicy | null, signal: AbortSignal): Promise<void>;
  readonly overrides: OverrideRegistry;
  /** A cheap round trip that proves the store answers. */
  ping(signal: AbortSignal): Promise<void>;
}

/**
 * The backend refused the gateway's credentials or settings: an operator's mistake, answered
 * with a 500 that names `variable`, never treated as an outage by the fail mode.
 */
export class BackendConfigError extends Error {
  override readonly name = "BackendConfigError";
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(message);
  }
}
