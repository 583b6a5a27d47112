import type { BucketDecision, BucketPolicy } from "../limiter/token-bucket";

/** One charge against one bucket of one client. */
export interface BucketCharge {
  /** Hashed client identity (see `clientKey`). */
  readonly clientKey: string;
  /** The policy's name: one client can have several buckets. */
  readonly bucket: string;
  readonly policy: BucketPolicy;
  readonly cost: number;
  /** A shadow charge (false) is applied and reported but never refuses the request. */
  readonly enforced: boolean;
}

/**
 * A store of token buckets shared by every isolate. Implementations must honour `signal`:
 * once it aborts, the call must not go on to spend tokens unnoticed.
 */
export interface LimiterBackend {
  readonly name: string;
  /**
   * Charges one request to its buckets, all or nothing: when an enforced charge is refused,
   * no bucket keeps a charge. Returns one decision per charge, in order.
   */
  take(charges: readonly BucketCharge[], signal: AbortSignal): Promise<BucketDecision[]>;
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

/** The backend did not answer within its budget. */
export class BackendTimeoutError extends Error {
  override readonly name = "BackendTimeoutError";
}

/**
 * Runs one backend call under a deadline: the signal aborts the call at `timeoutMs`, and the
 * returned promise rejects with {@link BackendTimeoutError} at the same moment.
 *
 * @example
 * const decisions = await withDeadline((signal) => backend.take([charge], signal), 1000);
 */
export async function withDeadline<T>(call: (signal: AbortSignal) => Promise<T>, timeoutMs: number): Promise<T> {
  const controller = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = new BackendTimeoutError(`no answer within ${timeoutMs} ms`);
      controller.abort(error);
      reject(error);
    }, timeoutMs);
  });
  try {
    return await Promise.race([call(controller.signal), deadline]);
  } finally {
    clearTimeout(timer);
  }
}
