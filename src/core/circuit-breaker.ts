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
