import type { BackendHealth } from "../core/limiter";

/**
 * How long one probe of the store answers `/__limiter/health` (and the dashboard's store tile)
 * for, per isolate. Health is open to anyone: without this, each call would cost a store
 * operation (an Upstash command, a Durable Object request), a free way to run up the bill.
 */
export const HEALTH_PROBE_TTL_MS = 2_000;

/** A probe's answer and how old it is. */
export type ProbedHealth = BackendHealth & { readonly ageMs: number };

/**
 * One isolate's cached probe of the store: at most one probe per `ttlMs`; callers that arrive
 * while a probe is out share it. Each caller waits at most `waitMs` (the limiter's budget):
 * a probe started by a request that was then cancelled may never settle, and after `waitMs`
 * the next caller starts another.
 *
 * @example
 * const probe = new HealthProbe(() => limiter.ping(), limiter.timeoutMs);
 * const health = await probe.read(); // { ok: true, latencyMs: 3.1, ageMs: 0 }
 */
export class HealthProbe {
  private last: { readonly atMs: number; readonly health: BackendHealth } | undefined;
  private inFlight: { readonly startedMs: number; readonly answer: Promise<BackendHealth> } | undefined;

  constructor(
    private readonly ping: () => Promise<BackendHealth>,
    private readonly waitMs: number,
    private readonly ttlMs = HEALTH_PROBE_TTL_MS,
    private readonly clock: () => number = Date.now,
  ) {}

  /** The last probe's answer while it is fresh, else the answer of the probe out now, or of a new one. */
  async read(): Promise<ProbedHealth> {
    const nowMs = this.clock();
    if (this.last !== undefined && nowMs - this.last.atMs < this.ttlMs) return { ...this.last.health, ageMs: nowMs - this.last.atMs };
    if (this.inFlight === undefined || nowMs - this.inFlight.startedMs > this.waitMs) {
      const flight = { startedMs: nowMs, answer: this.ping() };
      this.inFlight = flight;
      void flight.answer.then((health) => {
        if (this.inFlight === flight) this.inFlight = undefined;
        if (this.last === undefined || this.last.atMs <= flight.startedMs) this.last = { atMs: flight.startedMs, health };
      });
    }
    const { startedMs, answer } = this.inFlight;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const gaveUp = new Promise<BackendHealth>((resolve) => {
      timer = setTimeout(() => resolve({ ok: false, error: `the store did not answer within ${this.waitMs} ms` }), Math.max(0, startedMs + this.waitMs - nowMs) + 50);
    });
    try {
      const health = await Promise.race([answer, gaveUp]);
      return { ...health, ageMs: Math.max(0, this.clock() - startedMs) };
    } finally {
      clearTimeout(timer);
    }
  }
}
