import type { DecisionEvent } from "../core/limiter";
import { MetricsRecorder, type MetricsDelta } from "./metrics";
import { logEvent } from "./log";

/** Where flushed deltas go (the metrics object), if anywhere. */
export type MetricsSink = ((delta: MetricsDelta) => Promise<void>) | undefined;

/**
 * One isolate's metrics: counts in memory, flushed to the metrics object at most every
 * `flushMs`, always off the request path (`ctx.waitUntil`). After a request counted something,
 * a flush is scheduled for the end of the interval, so every count leaves within about one
 * interval while the isolate lives; a flush that fails is retried with the next one. Counts of an
 * isolate that dies before its flush are lost: at most one interval's.
 *
 * @example
 * const pipeline = new MetricsPipeline(sink, 5000, env.LIMITER_ANALYTICS);
 * new Limiter({ …, onDecision: (event) => pipeline.recordDecision(event) });
 * pipeline.afterRequest(ctx);
 */
export class MetricsPipeline {
  readonly recorder = new MetricsRecorder();
  private lastFlushMs = 0;
  private scheduledAtMs: number | undefined;

  constructor(
    private readonly sink: MetricsSink,
    private readonly flushMs: number,
    private readonly analytics: AnalyticsEngineDataset | undefined,
  ) {}

  recordDecision(event: DecisionEvent): void {
    this.recorder.recordDecision(event);
    if (this.analytics !== undefined && event.mode === "charge") writeDataPoint(this.analytics, event);
  }

  /** Makes sure what this request counted is flushed within the interval, without making it wait. */
  afterRequest(ctx: Pick<ExecutionContext, "waitUntil">): void {
    if (this.sink === undefined || !this.recorder.hasPending) return;
    const nowMs = Date.now();
    // A flush whose request context was cancelled never reports back: after a while, schedule anew.
    if (this.scheduledAtMs !== undefined && nowMs - this.scheduledAtMs < this.flushMs + 30_000) return;
    this.scheduledAtMs = nowMs;
    const waitMs = Math.max(0, this.lastFlushMs + this.flushMs - nowMs);
    ctx.waitUntil(new Promise((resolve) => setTimeout(resolve, waitMs)).then(() => this.flush()).finally(() => (this.scheduledAtMs = undefined)));
  }

  /** Sends the counts now (the metrics endpoint does this before it reads). */
  async flush(): Promise<void> {
    const delta = this.recorder.take();
    if (delta === undefined || this.sink === undefined) return;
    this.lastFlushMs = Date.now();
    try {
      await this.sink(delta);
    } catch (error) {
      this.recorder.restore(delta);
      logEvent({ event: "metrics.flush_failed", reason: error instanceof Error ? error.message : String(error) });
    }
  }
}

/**
 * One Analytics Engine data point per decision (the schema in docs/operations.md): index = the hashed client
 * (Analytics Engine samples by index), blobs = outcome, rule, client, backend, source,
 * doubles = decision ms, tokens charged, retry-after ms.
 */
function writeDataPoint(dataset: AnalyticsEngineDataset, event: DecisionEvent): void {
  const { verdict } = event;
  const [first] = event.clients;
  const rule = verdict.kind === "refused" ? (verdict.violated[0]?.name ?? "") : verdict.kind === "concurrency-refused" ? verdict.rule.name : (first?.rule ?? "");
  const client = event.clients.find((c) => c.rule === rule)?.clientKey ?? first?.clientKey ?? "";
  const charged = verdict.kind === "allowed" ? verdict.outcomes.reduce((sum, o) => sum + (o.decision.outcome === "allowed" ? o.policy.cost : 0), 0) : 0;
  const source = verdict.kind === "refused" && verdict.cached ? "deny_cache" : event.backendCall === undefined ? "none" : "backend";
  try {
    dataset.writeDataPoint({
      indexes: [client.slice(0, 96)],
      blobs: [verdict.kind, rule, client, event.backendCall?.result ?? "none", source],
      doubles: [event.durationMs, charged, verdict.kind === "refused" ? verdict.retryAfterMs : 0],
    });
  } catch (error) {
    // Past the per-invocation limit, or the dataset is unavailable: metrics never fail a request.
    logEvent({ event: "metrics.analytics_write_failed", reason: error instanceof Error ? error.message : String(error) });
  }
}
