import { ISOLATE_BOUNDS } from "./defaults";
/** Options of {@link CircuitBreaker}. */
export interface CircuitBreakerOptions {
  /** Consecutive failures that open the circuit. */
  readonly failureThreshold: number;
  /** How long the circuit stays open before one probe call is let through. */
  readonly cooldownMs: number;
}

/**
 * Per-isolate circuit breaker for backend calls. After `failureThreshold` consecutive
 * failures it opens: calls are skipped (the fail mode applies at once, so an outage does not
 * add the timeout to every request) until `cooldownMs` has passed. Then one call probes the
 * backend: success closes the circuit, failure opens it for another cool-down.
 *
 * @example
 * const breaker = new CircuitBreaker({ failureThreshold: 5, cooldownMs: 5000 });
 * if (!breaker.allowCall(Date.now())) return applyFailMode();
 * try { await call(); breaker.recordSuccess(); } catch { breaker.recordFailure(Date.now()); }
 */
export class CircuitBreaker {
  private consecutiveFailures = 0;
  private openUntilMs = 0;
  /** When the current probe started; a probe whose request was cancelled never reports back. */
  private probeStartedAtMs: number | undefined;

  constructor(private readonly options: CircuitBreakerOptions) {}

  /** Whether a backend call may be made now; while open, only one probe after the cool-down. */
  allowCall(nowMs: number): boolean {
    if (this.consecutiveFailures < this.options.failureThreshold) return true;
    if (nowMs < this.openUntilMs || this.probing(nowMs)) return false;
    this.probeStartedAtMs = nowMs;
    return true;
  }

  recordSuccess(): void {
    this.consecutiveFailures = 0;
    this.probeStartedAtMs = undefined;
  }

  /** Counts a failure; returns whether it opened the circuit (from closed, or by a failed probe). */
  recordFailure(nowMs: number): boolean {
    const probing = this.probeStartedAtMs !== undefined;
    this.consecutiveFailures += 1;
    this.probeStartedAtMs = undefined;
    if (this.consecutiveFailures < this.options.failureThreshold) return false;
    this.openUntilMs = nowMs + this.options.cooldownMs;
    return probing || this.consecutiveFailures === this.options.failureThreshold;
  }

  /** `closed` (calls go through), `open` (skipped), or `half-open` (a probe may go). */
  state(nowMs: number): "closed" | "open" | "half-open" {
    if (this.consecutiveFailures < this.options.failureThreshold) return "closed";
    return nowMs < this.openUntilMs || this.probing(nowMs) ? "open" : "half-open";
  }

  /** A probe is out; one silent for a whole cool-down (its request was cancelled) counts as lost. */
  private probing(nowMs: number): boolean {
    return this.probeStartedAtMs !== undefined && nowMs - this.probeStartedAtMs < this.options.cooldownMs;
  }
}

/**
 * The isolate's breakers where one store is many objects (a Durable Object per client): a failing
 * object opens only its own client's circuit, so one hot or broken object cannot switch every
 * client to the fail mode. The store's circuit opens only when failures span at least two
 * clients with no success between them, or on a failure of the whole store (no client given).
 *
 * @example
 * const breaker = new ScopedBreaker({ failureThreshold: 5, cooldownMs: 5000 });
 * if (!breaker.allowCall(Date.now(), clientKey)) return applyFailMode();
 * try { await call(); breaker.recordSuccess(clientKey); } catch { breaker.recordFailure(Date.now(), clientKey); }
 */
export class ScopedBreaker {
  private readonly store: CircuitBreaker;
  private readonly clients = new Map<string, CircuitBreaker>();
  /** Clients that failed since the last success (two are enough to tell). */
  private readonly failing = new Set<string>();

  constructor(private readonly options: CircuitBreakerOptions) {
    this.store = new CircuitBreaker(options);
  }

  /** Whether a call for `client` (or for the whole store, when undefined) may be made now. */
  allowCall(nowMs: number, client?: string): boolean {
    if (!this.store.allowCall(nowMs)) return false;
    return client === undefined || (this.clients.get(client)?.allowCall(nowMs) ?? true);
  }

  recordSuccess(client?: string): void {
    this.store.recordSuccess();
    this.failing.clear();
    if (client !== undefined) this.clients.delete(client);
  }

  /** Counts a failure; returns whether it opened (or re-opened) the store's circuit. */
  recordFailure(nowMs: number, client?: string): boolean {
    if (client === undefined) return this.store.recordFailure(nowMs);
    let circuit = this.clients.get(client);
    if (circuit === undefined) {
      circuit = new CircuitBreaker(this.options);
      this.clients.set(client, circuit);
      for (const oldest of this.clients.keys()) {
        if (this.clients.size <= ISOLATE_BOUNDS.clientCircuits) break;
        this.clients.delete(oldest);
      }
    }
    circuit.recordFailure(nowMs);
    if (this.failing.size < 2) this.failing.add(client);
    return this.failing.size >= 2 && this.store.recordFailure(nowMs);
  }

  /** The store's circuit: `closed`, `open` or `half-open`. */
  state(nowMs: number): "closed" | "open" | "half-open" {
    return this.store.state(nowMs);
  }

  /** Clients whose own circuit is open or half-open now. */
  openClients(nowMs: number): number {
    let open = 0;
    for (const circuit of this.clients.values()) if (circuit.state(nowMs) !== "closed") open += 1;
    return open;
  }
}
