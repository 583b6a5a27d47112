import { DurableObject } from "cloudflare:workers";
import { emptyDelta, estimateClients, mergeDelta, trimRefusedClients, type MetricsDelta } from "./metrics";

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
const HISTORY_MS = SLOTS * SLOT_MS;
/**
 * Largest stored slot, as JSON. A slot's refused clients are trimmed to the most refused first
 * (`trimRefusedClients`); if it is still larger (very long rule names), they are halved until it
 * fits. So storage holds at most {@link SLOTS} slots of this size and one totals value, far
 * under the 2 MB a value of a SQLite-backed object may have.
 */
export const MAX_SLOT_BYTES = 64 * 1024;
const TOTALS_KEY = "totals";
/** Each slot is a key of its own: `slot:` and its start, zero-padded so keys sort by time. */
const SLOT_PREFIX = "slot:";

const slotKey = (atMs: number) => `${SLOT_PREFIX}${String(atMs).padStart(15, "0")}`;

/**
 * The gateway's one metrics object (named `global`): isolates flush their counts' deltas here,
 * off the request path, and it keeps the totals (exact across isolates: a delta is added once)
 * and an hour of history for the dashboard. A flush writes the totals and its own slot only
 * (each slot is a key of its own, bounded by {@link MAX_SLOT_BYTES}); slots older than an hour
 * are deleted as new ones start, and an alarm an hour after the newest slot deletes what is left
 * when traffic stops. A restart loses nothing already added.
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
      const { storage } = ctx;
      this.totals = (await storage.get<MetricsDelta>(TOTALS_KEY)) ?? emptyDelta();
      const slots = await storage.list<MetricsDelta>({ prefix: SLOT_PREFIX });
      this.history = [...slots].map(([key, delta]) => ({ atMs: Number(key.slice(SLOT_PREFIX.length)), delta }));
      await this.dropExpired();
    });
  }

  /** Adds one isolate's deltas to the totals and to the current slot of history. */
  async add(delta: MetricsDelta): Promise<void> {
    const nowMs = Date.now();
    // Top refused clients are shown for the last hour only: the totals do not keep them.
    mergeDelta(this.totals, { ...delta, refusedClients: {} });
    const atMs = nowMs - (nowMs % SLOT_MS);
    let slot = this.history.at(-1);
    if (slot === undefined || slot.atMs !== atMs) {
      slot = { atMs, delta: emptyDelta() };
      this.history.push(slot);
      // A new slot: when traffic stops, the alarm deletes the history an hour after this one.
      await this.ctx.storage.setAlarm(atMs + HISTORY_MS + SLOT_MS);
      await this.dropExpired();
    }
    mergeDelta(slot.delta, delta);
    bounded(slot.delta);
    await this.ctx.storage.put({ [TOTALS_KEY]: this.totals, [slotKey(slot.atMs)]: slot.delta });
  }

  /** Deletes the slots older than an hour; once none is left, nothing is scheduled. */
  override async alarm(): Promise<void> {
    await this.dropExpired();
    const newest = this.history.at(-1);
    if (newest !== undefined) await this.ctx.storage.setAlarm(newest.atMs + HISTORY_MS + SLOT_MS);
  }

  snapshot(): MetricsSnapshot {
    const nowMs = Date.now();
    const lastHour = emptyDelta();
    const lastMinute = emptyDelta();
    const history = this.history.filter((slot) => slot.atMs > nowMs - HISTORY_MS);
    for (const slot of history) {
      mergeDelta(lastHour, slot.delta);
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
      history,
      slotMs: SLOT_MS,
      clients: { lastMinute: estimateClients(lastMinute.clients), lastHour: estimateClients(lastHour.clients) },
      topRefused,
    };
  }

  private async dropExpired(): Promise<void> {
    const cutoff = Date.now() - HISTORY_MS;
    const expired = this.history.filter((slot) => slot.atMs <= cutoff);
    if (expired.length === 0) return;
    this.history = this.history.filter((slot) => slot.atMs > cutoff);
    // At most 128 keys per delete call.
    const keys = expired.map((slot) => slotKey(slot.atMs));
    for (let i = 0; i < keys.length; i += 128) await this.ctx.storage.delete(keys.slice(i, i + 128));
  }
}

/** Trims a slot's refused clients until the slot fits {@link MAX_SLOT_BYTES}; returns it. */
function bounded(delta: MetricsDelta): MetricsDelta {
  trimRefusedClients(delta);
  let entries = Object.entries(delta.refusedClients);
  while (entries.length > 0 && JSON.stringify(delta).length > MAX_SLOT_BYTES) {
    entries = entries.sort(([, a], [, b]) => b - a).slice(0, Math.floor(entries.length / 2));
    for (const key of Object.keys(delta.refusedClients)) delete delta.refusedClients[key];
    for (const [key, count] of entries) delta.refusedClients[key] = count;
  }
  return delta;
}
