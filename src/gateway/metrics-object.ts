import { DurableObject } from "cloudflare:workers";
import { emptyDelta, estimateClients, mergeDelta, trimRefusedClients, type MetricsDelta } from "../core/metrics";

/** One slot of history: what every isolate flushed during it. */
export interface HistorySlot {
  /** Start of the slot, ms since the epoch (the object's clock). */
  readonly atMs: number;
  readonly delta: MetricsDelta;
}

/** Everything the metrics endpoints read: totals since the object started counting, and the last hour by slot. */
export interface MetricsSnapshot {
  readonly totals: MetricsDelta;
  readonly history: readonly HistorySlot[];
  readonly slotMs: number;
  /** Distinct clients (HyperLogLog estimate) in the last minute and the last hour. */
  readonly clients: { readonly lastMinute: number; readonly lastHour: number };
  /** The most refused (rule, hashed client) pairs of the last hour. */
  readonly topRefused: readonly { readonly rule: string; readonly client: string; readonly refusals: number }[];
}

/** History is kept in slots of 10 s for an hour. */
export const SLOT_MS = 10_000;
const SLOTS = 360;
const TOTALS_KEY = "totals";
const HISTORY_KEY = "history";

/**
 * The gateway's one metrics object (named `global`): isolates flush their counts' deltas here,
 * off the request path, and it keeps the totals (exact across isolates: a delta is added once)
 * and an hour of history for the dashboard. Both are written to storage, so a restart loses
 * nothing already added.
 *
 * @example
 * await env.LIMITER_METRICS.get(env.LIMITER_METRICS.idFromName("global")).add(delta);
 */
export class GatewayMetrics extends DurableObject<object> {
  private totals = emptyDelta();
  private history: HistorySlot[] = [];

  constructor(ctx: DurableObjectState, env: object) {
    super(ctx, env);
    void ctx.blockConcurrencyWhile(async () => {
      this.totals = (await ctx.storage.get<MetricsDelta>(TOTALS_KEY)) ?? emptyDelta();
      this.history = (await ctx.storage.get<HistorySlot[]>(HISTORY_KEY)) ?? [];
    });
  }

  /** Adds one isolate's deltas to the totals and to the current slot of history. */
  add(delta: MetricsDelta): void {
    const nowMs = Date.now();
    // Top refused clients are shown for the last hour only: the totals do not keep them.
    mergeDelta(this.totals, { ...delta, refusedClients: {} });
    for (const key of Object.keys(this.totals.refusedClients)) delete this.totals.refusedClients[key]; // totals stored before this fix
    const atMs = nowMs - (nowMs % SLOT_MS);
    let slot = this.history.at(-1);
    if (slot === undefined || slot.atMs !== atMs) {
      slot = { atMs, delta: emptyDelta() };
      this.history.push(slot);
    }
    mergeDelta(slot.delta, delta);
    trimRefusedClients(slot.delta);
    this.history = this.history.filter((s) => s.atMs > nowMs - SLOTS * SLOT_MS);
    void this.ctx.storage.put({ [TOTALS_KEY]: this.totals, [HISTORY_KEY]: this.history });
  }

  snapshot(): MetricsSnapshot {
    const nowMs = Date.now();
    const lastHour = emptyDelta();
    const lastMinute = emptyDelta();
    for (const slot of this.history) {
      if (slot.atMs > nowMs - SLOTS * SLOT_MS) mergeDelta(lastHour, slot.delta);
      if (slot.atMs > nowMs - 60_000 - SLOT_MS) mergeDelta(lastMinute, slot.delta);
    }
    const topRefused = Object.entries(lastHour.refusedClients)
      .sort(([, a], [, b]) => b - a)
      .slice(0, 10)
      .map(([key, refusals]) => {
        const [rule = "", client = ""] = key.split(" ");
        return { rule, client, refusals };
      });
    return {
      totals: this.totals,
      history: this.history,
      slotMs: SLOT_MS,
      clients: { lastMinute: estimateClients(lastMinute.clients), lastHour: estimateClients(lastHour.clients) },
      topRefused,
    };
  }
}
