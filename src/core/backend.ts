import type { BucketDecision, BucketPolicy } from "./token-bucket";

/** One charge against one bucket of one client. */
export interface BucketCharge {
  /** Hashed client identity (see `hashedClientKey`). */
  readonly clientKey: string;
  /** The rule's name: one client can have several buckets. */
  readonly bucket: string;
  readonly policy: BucketPolicy;
  readonly cost: number;
  /** A shadow charge (false) is applied and reported but never refuses the request. */
  readonly enforced: boolean;
}

/**
 * The port every store of token buckets implements (Durable Objects, Upstash, memory): the core
 * calls nothing else. `signal` aborts when the caller's deadline passes; a backend cancels what
 * it still can (an HTTP request), but may not be able to recall a call already delivered (a
 * Durable Object RPC): the caller never waits past the deadline either way.
 *
 * @example
 * const backend: LimiterBackend = memoryBackend();
 * const [decision] = await backend.take([{ clientKey: "ip:…", bucket: "api", policy, cost: 1, enforced: true }], signal);
 */
export interface LimiterBackend {
  readonly name: string;
  /**
   * Charges one request to its buckets, all or nothing: when an enforced charge is refused,
   * no bucket keeps a charge. Returns one decision per charge, in order.
   */
  take(charges: readonly BucketCharge[], signal: AbortSignal): Promise<BucketDecision[]>;
  /** What `take` would decide now, changing nothing. */
  peek(charges: readonly BucketCharge[], signal: AbortSignal): Promise<BucketDecision[]>;
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
