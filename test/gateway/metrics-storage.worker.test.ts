import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { emptyDelta, type MetricsDelta } from "../../src/gateway/metrics";
import { MAX_SLOT_BYTES, SLOT_MS, type GatewayMetrics } from "../../src/gateway/metrics-object";

/**
 * The metrics object under many distinct refused clients (issue 16, finding 8): it rewrote its
 * whole hour as one value on every flush, which passed the 2 MB value limit of a SQLite-backed
 * object in about 18 minutes. The object's clock is moved with Vitest's fake Date (the object
 * runs in the test's isolate); storage is the object's own, read with `runInDurableObject`.
 */
const HOUR_MS = 3_600_000;

afterEach(() => {
  vi.useRealTimers();
});

function store() {
  const namespace = env.LIMITER_METRICS_STORE!;
  return namespace.get(namespace.idFromName(`storage-${crypto.randomUUID()}`));
}

/** One flush with `count` refused clients never seen before. */
function refusals(count: number, slot: number): MetricsDelta {
  const delta = emptyDelta();
  for (let i = 0; i < count; i++) {
    const client = `ip:${(slot * 100_000 + i).toString(16).padStart(64, "0")}`;
    delta.refusedClients[`login ${client}`] = 1 + (i % 7);
  }
  delta.counters['sluice_rule_decisions_total{rule="login",outcome="refused"}'] = count;
  return delta;
}

/** Every stored key and the size of its value, as JSON. */
async function stored(stub: DurableObjectStub<GatewayMetrics>): Promise<Map<string, number>> {
  return runInDurableObject(stub, async (_: GatewayMetrics, state) => {
    const sizes = new Map<string, number>();
    for (const [key, value] of await state.storage.list()) sizes.set(key, JSON.stringify(value).length);
    return sizes;
  });
}

describe("the metrics object's storage", () => {
  it("keeps every stored value bounded under 250 new refused clients per flush, and deletes slots older than an hour", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    let nowMs = Date.now() - (Date.now() % SLOT_MS);
    vi.setSystemTime(nowMs);
    const stub = store();
    // 20 minutes of slots: one value holding them all passed 2 MB at about 18.
    const slots = 120;
    for (let slot = 0; slot < slots; slot++) {
      await stub.add(refusals(250, slot));
      nowMs += SLOT_MS;
      vi.setSystemTime(nowMs);
    }
    const sizes = await stored(stub);
    expect(Math.max(...sizes.values())).toBeLessThanOrEqual(MAX_SLOT_BYTES);
    expect(sizes.size).toBe(slots + 1); // a key per slot, and the totals
    // What the dashboard reads is still there: the last hour's most refused clients.
    const snapshot = await stub.snapshot();
    expect(snapshot.topRefused).toHaveLength(10);
    expect(snapshot.history).toHaveLength(slots);

    // An hour later, the next flush deletes every slot that aged out.
    vi.setSystemTime(nowMs + HOUR_MS);
    await stub.add(refusals(250, slots));
    expect([...(await stored(stub)).keys()].filter((key) => key.startsWith("slot:"))).toHaveLength(1);
  }, 60_000);

  it("deletes the history an hour after the last flush (its alarm), keeping the totals", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const startMs = Date.now() - (Date.now() % SLOT_MS);
    vi.setSystemTime(startMs);
    const stub = store();
    for (let slot = 0; slot < 5; slot++) {
      vi.setSystemTime(startMs + slot * SLOT_MS);
      await stub.add(refusals(50, slot));
    }
    const alarm = await runInDurableObject(stub, (_: GatewayMetrics, state) => state.storage.getAlarm());
    expect(alarm).not.toBeNull();
    expect(alarm! - startMs).toBeGreaterThan(HOUR_MS);
    expect([...(await stored(stub)).keys()].filter((key) => key.startsWith("slot:"))).toHaveLength(5);

    vi.setSystemTime(alarm! + 1);
    await runDurableObjectAlarm(stub);
    expect([...(await stored(stub)).keys()]).toEqual(["totals"]);
    expect(await runInDurableObject(stub, (_: GatewayMetrics, state) => state.storage.getAlarm())).toBeNull();
    const snapshot = await stub.snapshot();
    expect(snapshot.history).toEqual([]);
    expect(snapshot.totals.counters['sluice_rule_decisions_total{rule="login",outcome="refused"}']).toBe(250);
  });
});
