import type { LimiterBackend } from "./backend";
import type { CircuitBreakerOptions } from "./circuit-breaker";
import type { LimiterEvent } from "./events";
import type { HeaderMode } from "./headers";
import type { IdentityOptions } from "./identity";
import type { FailMode, RuleSpec } from "./rules";
import type { BackendCall } from "./store-guard";
import type { MissingKeyMode } from "./subject-resolver";
import type { Verdict } from "./verdict";

/**
 * One decision as metrics see it: the verdict and what it took. The limiter hands every one to
 * `onDecision`, so counting happens in one place whatever asked (traffic, admin, RPC).
 */
export interface DecisionEvent {
  readonly verdict: Verdict;
  readonly mode: "charge" | "peek";
  /** Wall time of the whole check, ms. */
  readonly durationMs: number;
  readonly backendCall: BackendCall | undefined;
  /** Whether this check's failure opened the circuit breaker. */
  readonly breakerOpened: boolean;
  /** The hashed client of each rule charged (distinct-client estimates, top refused clients). */
  readonly clients: readonly { readonly rule: string; readonly clientKey: string }[];
}

/** Options of {@link Limiter}; everything but `backend` and `rules` has a default (see `DEFAULTS`). */
export interface LimiterOptions {
  /** Where buckets live: `memoryBackend()`, `durableObjectBackend(…)`, `upstashBackend(…)`. */
  readonly backend: LimiterBackend;
  /** Every rule that matches a request applies; the request passes only if every enforced one allows it. */
  readonly rules: readonly RuleSpec[];
  /** Fail mode of rules that do not set one. Default: `DEFAULTS.failMode`. */
  readonly failMode?: FailMode;
  /** Budget of one backend call, ms. Default: `DEFAULTS.timeoutMs`. */
  readonly timeoutMs?: number;
  /** Which rate-limit headers verdicts carry. Default: `DEFAULTS.headers`. */
  readonly headers?: HeaderMode;
  /** How client addresses are read. Default: `DEFAULTS.identity`. */
  readonly identity?: Partial<IdentityOptions>;
  /** Default: `DEFAULTS.missingKey`. */
  readonly missingKey?: MissingKeyMode;
  /** Entries of this limiter's deny cache; 0 turns it off. Default: `DEFAULTS.denyCacheSize`. */
  readonly denyCacheSize?: number;
  /** Default: `DEFAULTS.breaker`. */
  readonly breaker?: CircuitBreakerOptions;
  /** Share of each `failMode: "local"` rule an isolate enforces on its own while the store is unreachable, 0.01–1. Default: `DEFAULTS.localFraction`. */
  readonly localFraction?: number;
  /** Milliseconds since the epoch; tests inject their own. The buckets themselves use the store's clock. */
  readonly clock?: () => number;
  /** Where events go, with the check's request id if it had one. Default: one JSON line on the console. */
  readonly log?: (event: LimiterEvent, requestId: string | undefined) => void;
  /** Called with every decision, after it is made (metrics). Must not throw or block. */
  readonly onDecision?: (event: DecisionEvent) => void;
}

/** Options of one {@link Limiter.check}. */
export interface CheckOptions {
  /** Tokens to charge each applying rule instead of its own `cost` (a peek may ask about 0: the bucket as it stands). */
  readonly cost?: number;
  /** `charge` (default) takes the tokens; `peek` only looks, changing nothing. */
  readonly mode?: "charge" | "peek";
  /**
   * Passed to the log with every event this check causes; a function is called only when an
   * event is logged (most checks log none, so an id that costs something to read costs nothing).
   */
  readonly requestId?: string | (() => string | undefined);
  /**
   * Runs work after the answer (a Worker's `ctx.waitUntil`). With it, while the circuit breaker
   * is open the limiter probes the store in the background, so decisions come from it again
   * soon after it answers, and no request waits for a probe.
   */
  readonly background?: (task: Promise<unknown>) => void;
}
