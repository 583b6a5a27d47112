import { BackendConfigError, type BucketRef, type LimiterBackend } from "./backend";
import { ScopedBreaker, type CircuitBreakerOptions } from "./circuit-breaker";
import { BackendTimeoutError, withDeadline } from "./deadline";
import type { LimiterEvent } from "./events";

/** How the store call of one check went (none when the deny cache answered or no rule applied). */
export type BackendCall = { readonly result: "ok" | "error" | "timeout" | "breaker_open" | "misconfigured"; readonly latencyMs: number };

/** What a check records of its store call, filled in as it goes. */
export interface CallTrace {
  /** The check's request id, for its log events. */
  readonly requestId: string | undefined;
  /** Runs work after the answer (a Worker's `ctx.waitUntil`), when the caller has one. */
  readonly background: ((task: Promise<unknown>) => void) | undefined;
  backendCall: BackendCall | undefined;
  breakerOpened: boolean;
}

/** How one guarded store call ended. */
export type GuardedResult<T> =
  | { readonly kind: "answered"; readonly value: T }
  | { readonly kind: "misconfigured"; readonly variable: string; readonly message: string }
  | { readonly kind: "unreachable"; readonly reason: string };

/** The backend's health as one isolate sees it. */
export type BackendHealth =
  | { readonly ok: true; readonly latencyMs: number }
  | { readonly ok: false; readonly error: string; readonly configError?: { readonly variable: string; readonly message: string } };

/** While the breaker is open, the store is probed in the background at most this often. */
export const BACKGROUND_PROBE_MS = 250;

/**
 * A store call another request made (and counted) failed, or could not be waited for in time:
 * this request gets its fail mode, but the breaker counts only calls a request made itself, so
 * one burst's shared call is one failure, not one per request that waited on it.
 */
export class SharedCallError extends Error {
  override readonly name = "SharedCallError";

  constructor(readonly original: unknown) {
    super(original instanceof Error ? original.message : String(original));
  }
}

/** What a {@link StoreGuard} needs. */
export interface StoreGuardOptions {
  readonly backend: LimiterBackend;
  readonly breaker: CircuitBreakerOptions;
  readonly timeoutMs: number;
  readonly clock: () => number;
  readonly log: (event: LimiterEvent, requestId: string | undefined) => void;
}

/**
 * Every call a limiter makes to its store: under the deadline and counted; decisions also under
 * the circuit breaker (skipped while it is open, with a background probe that closes it as soon as
 * the store answers). A misconfigured store is an operator's error, never an outage.
 *
 * @example
 * const guard = new StoreGuard({ backend, breaker: DEFAULTS.breaker, timeoutMs: 1000, clock: Date.now, log });
 * const result = await guard.decide((reached) => { reached(); return guard.send((signal) => backend.take(charges, signal)); }, trace, undefined);
 * if (result.kind === "unreachable") applyFailMode(result.reason);
 */
export class StoreGuard {
  /** Store calls made: decisions, registry reads, resets, releases, refunds (health reports it; the benchmark divides it by requests). */
  readonly stats = { backendCalls: 0 };
  private readonly breaker: ScopedBreaker;
  private lastProbeMs = 0;
  private probing = false;

  constructor(private readonly options: StoreGuardOptions) {
    this.breaker = new ScopedBreaker(options.breaker);
  }

  get backend(): LimiterBackend {
    return this.options.backend;
  }

  get timeoutMs(): number {
    return this.options.timeoutMs;
  }

  /**
   * One store operation under the deadline, counted. Not skipped by the breaker: resets, releases,
   * refunds and admin writes carry state the store must get.
   */
  send<T>(operation: (signal: AbortSignal) => Promise<T>): Promise<T> {
    this.stats.backendCalls += 1;
    return withDeadline(operation, this.options.timeoutMs);
  }

  /**
   * A decision's call under the breaker, recorded in `trace`: skipped while the breaker is open, a
   * misconfigured store reported as such, any other failure counted against the breaker (except a
   * {@link SharedCallError}: another request's call) and reported `unreachable` with its reason. `onFailure` runs
   * first whenever the call does not answer. `client` scopes the breaker (see {@link StoreGuard.scope}):
   * a failure after `run` called `reached` (the call went to the client's own object) counts
   * against that client's circuit, one before it against the store's.
   */
  async decide<T>(run: (reached: () => void) => Promise<T>, trace: CallTrace, client: string | undefined, onFailure: () => void = () => {}): Promise<GuardedResult<T>> {
    const { clock, backend, log } = this.options;
    if (!this.breaker.allowCall(clock(), client)) {
      onFailure();
      this.probeInBackground(trace);
      trace.backendCall = { result: "breaker_open", latencyMs: 0 };
      return { kind: "unreachable", reason: "circuit open: backend skipped during cool-down" };
    }
    const started = performance.now();
    const call = (result: BackendCall["result"]) => (trace.backendCall = { result, latencyMs: performance.now() - started });
    let reachedClient = false;
    try {
      const value = await run(() => (reachedClient = true));
      this.breaker.recordSuccess(client);
      call("ok");
      return { kind: "answered", value };
    } catch (error) {
      onFailure();
      if (error instanceof BackendConfigError) {
        call("misconfigured");
        this.breaker.recordSuccess(client); // the backend answered: it is misconfigured, not down
        log({ event: "limiter.backend_config_error", variable: error.variable, reason: error.message }, trace.requestId);
        return { kind: "misconfigured", variable: error.variable, message: error.message };
      }
      const shared = error instanceof SharedCallError;
      const cause = shared ? error.original : error;
      call(cause instanceof BackendTimeoutError ? "timeout" : "error");
      if (!shared) trace.breakerOpened = this.breaker.recordFailure(clock(), reachedClient ? client : undefined);
      if (trace.breakerOpened) log({ event: "limiter.breaker_opened", backend: backend.name }, trace.requestId);
      return { kind: "unreachable", reason: cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause) };
    }
  }

  /**
   * The circuit a call for these buckets or slots counts against: where each client is an object
   * of its own (`failureScope: "client"`), the clients it addresses; else the store's (undefined).
   */
  scope(refs: readonly BucketRef[]): string | undefined {
    return this.options.backend.failureScope === "client" ? refs.map(({ clientKey }) => clientKey).join("|") : undefined;
  }

  /** The store's circuit, and how many clients' own circuits are open. */
  state(): { readonly breaker: "closed" | "open" | "half-open"; readonly clientCircuitsOpen: number } {
    const nowMs = this.options.clock();
    return { breaker: this.breaker.state(nowMs), clientCircuitsOpen: this.breaker.openClients(nowMs) };
  }

  /** One round trip to the store under the deadline (not counted among the calls decisions make). */
  async ping(): Promise<BackendHealth> {
    const started = performance.now();
    try {
      await withDeadline((signal) => this.options.backend.ping(signal), this.options.timeoutMs);
      return { ok: true, latencyMs: Math.round((performance.now() - started) * 100) / 100 };
    } catch (error) {
      if (error instanceof BackendConfigError) {
        return { ok: false, error: error.message, configError: { variable: error.variable, message: error.message } };
      }
      return { ok: false, error: error instanceof Error ? error.message : String(error) };
    }
  }

  /**
   * While the breaker is open: a ping of the store, off the request path, at most every
   * {@link BACKGROUND_PROBE_MS}; its success closes the breaker, so the next request asks the
   * store again (rather than after the whole cool-down).
   */
  private probeInBackground(trace: CallTrace): void {
    const { clock, backend, log, timeoutMs } = this.options;
    const nowMs = clock();
    if (trace.background === undefined || this.probing || nowMs - this.lastProbeMs < BACKGROUND_PROBE_MS) return;
    this.probing = true;
    this.lastProbeMs = nowMs;
    const probe = withDeadline((signal) => backend.ping(signal), timeoutMs)
      .then(() => {
        if (this.breaker.state(clock()) !== "closed") log({ event: "limiter.breaker_closed", backend: backend.name }, trace.requestId);
        this.breaker.recordSuccess();
      })
      .catch(() => {
        // Still down: the breaker stays open; the next request after the interval probes again.
      })
      .finally(() => (this.probing = false));
    trace.background(probe);
  }
}
