import { describe, expect, it } from "vitest";
import { BucketTable, type TableCharge } from "../../src/core/bucket-table";
import { LEASE_SHARE } from "../../src/core/lease-ledger";

const policy = { capacity: 80, refillTokens: 1, refillPeriodMs: 60_000 }; // slow refill: time barely matters
const charge: TableCharge = { rule: "api", policy, cost: 1, enforced: true };
const lease = (want: number) => ({ rule: "api", policy, cost: 1, want, ttlMs: 1_000 });
/** Whole tokens charging one at a time can take from the table at `nowMs`. */
function drain(table: BucketTable, nowMs: number, one: TableCharge = charge): number {
  let taken = 0;
  while (table.charge([one], nowMs)[0]?.decision.outcome === "allowed") taken += 1;
  return taken;
}
/** An isolate's call as the object makes it: its request charged, then a lease asked for (granted from what is left). */
function busyCall(table: BucketTable, holder: string, seq: number, nowMs: number, ask = lease(1_000), one: TableCharge = charge) {
  expect(table.charge([one], nowMs)[0]?.decision.outcome).toBe("allowed");
  return table.grantLease(ask, holder, seq, nowMs);
}

describe("the Durable Object's bucket table and lease ledger (pure, injected clock)", () => {
  it("a lease takes at most 1/LEASE_SHARE of what the bucket holds, and none under blockFor", () => {
    const table = new BucketTable();
    const grant = busyCall(table, "isolate-a", 1, 0);
    expect(grant?.granted).toBe(Math.floor(79 / LEASE_SHARE));
    const blocking = new BucketTable();
    expect(blocking.grantLease({ ...lease(5), policy: { ...policy, blockForMs: 60_000 } }, "isolate-a", 1, 0)).toBeNull();
  });

  it("no lease under a queue (queueMs): every queued decision is the object's", () => {
    const table = new BucketTable();
    expect(table.grantLease({ ...lease(5), policy: { ...policy, queueMs: 2_000 } }, "isolate-a", 1, 0)).toBeNull();
  });

  it("a reset while leases are out never lets more through than one full bucket", () => {
    const table = new BucketTable();
    const a = busyCall(table, "isolate-a", 1, 0)!;
    const b = busyCall(table, "isolate-b", 1, 0)!;
    table.reset("api", 1);
    // What the isolates may still spend from their leases, plus what the bucket hands out now.
    expect(a.granted + b.granted + drain(table, 2)).toBeLessThanOrEqual(policy.capacity);
  });

  it("a give-back is honoured only for the holder's lease of that call, at most what it took", () => {
    const table = new BucketTable();
    const grant = busyCall(table, "isolate-a", 7, 0)!;
    const back = { rule: "api", policy, cost: grant.granted, enforced: true, charged: grant.charged };
    expect(table.counted("isolate-b", [{ ...back, seq: 7 }], 1)).toEqual([]); // another isolate
    expect(table.counted("isolate-a", [{ ...back, seq: 6 }], 1)).toEqual([]); // another call
    const honoured = table.counted("isolate-a", [{ ...back, seq: 7, cost: 1_000 }], 1);
    expect(honoured.map((refund) => refund.cost)).toEqual([grant.granted]);
    table.endLeases("isolate-a", 8, [{ ...back, seq: 7, cost: 1_000 }], 1);
    expect(drain(table, 2)).toBe(policy.capacity - 1); // everything came back but the one charge, nothing more
  });

  it("a lowered override while leases are out caps the bucket plus the leases at the new capacity", () => {
    const table = new BucketTable();
    const grant = busyCall(table, "isolate-a", 1, 0)!;
    table.setOverride("api", { capacity: 20, refillTokens: 1, refillPeriodMs: 60_000 }, 1);
    expect(grant.granted + drain(table, 2)).toBe(20);
  });

  it("names every bucket it changed, once, for the object to write through", () => {
    const table = new BucketTable();
    table.charge([charge, { ...charge, rule: "other" }], 0);
    table.charge([charge], 0);
    expect(table.takeDirty().sort()).toEqual(["api", "other"]);
    expect(table.takeDirty()).toEqual([]);
  });

  it("a give-back under an exact override keeps the rule's algorithm and block: a window's charge comes back", () => {
    const window = { algorithm: "fixed-window" as const, capacity: 5, refillTokens: 5, refillPeriodMs: 60_000 };
    const table = new BucketTable();
    table.setOverride("api", { ...window, capacity: 2, refillTokens: 2 }, 0);
    const [taken] = table.charge([{ rule: "api", policy: window, cost: 2, enforced: true }], 1);
    expect(taken?.charged).not.toBeNull();
    table.giveBack([{ rule: "api", policy: window, cost: 2, enforced: true, charged: taken?.charged ?? expect.fail("nothing charged") }], 2);
    expect(table.peek([{ rule: "api", policy: window, cost: 0, enforced: true }], 3)[0]?.decision.remaining).toBe(2);
  });
});

describe("the bucket table while a lease is held and the bucket refills (the cap shared with Upstash: src/core/leases.ts)", () => {
  // 20 tokens a second: what a lease took is refilled in well under its lifetime (1 s, plus 1 s slack for clocks).
  const refilling = { capacity: 80, refillTokens: 20, refillPeriodMs: 1_000 };
  const one: TableCharge = { rule: "api", policy: refilling, cost: 1, enforced: true };
  const ask = (want: number) => ({ rule: "api", policy: refilling, cost: 1, want, ttlMs: 1_000 });
  /** A's call at 0 takes 1 and leases 9 (⌊79 / 8⌋); by 1.5 s the bucket has refilled them all. */
  function leasedThenRefilled() {
    const table = new BucketTable();
    const grant = busyCall(table, "isolate-a", 1, 0, ask(1_000), one);
    expect(grant?.granted).toBe(9);
    return { table, leased: grant?.granted ?? 0 };
  }

  it("a take sees at most the capacity less the tokens leased out: bucket plus lease never exceed the capacity", () => {
    const { table, leased } = leasedThenRefilled();
    expect(drain(table, 1_500, one) + leased).toBe(refilling.capacity);
  });

  it("a peek answers the same capped bucket", () => {
    const { table, leased } = leasedThenRefilled();
    expect(table.peek([{ ...one, cost: 0 }], 1_500)[0]?.decision.remaining).toBe(refilling.capacity - leased);
  });

  it("another isolate's lease is its share of the capped bucket", () => {
    const { table, leased } = leasedThenRefilled();
    expect(busyCall(table, "isolate-b", 1, 1_500, ask(1_000), one)?.granted).toBe(Math.floor((refilling.capacity - leased - 1) / LEASE_SHARE));
  });

  it("a refund fills the bucket only up to the capacity less the leases out", () => {
    const { table, leased } = leasedThenRefilled();
    const [taken] = table.charge([{ ...one, cost: 30 }], 1_500);
    table.giveBack([{ ...one, cost: 30, charged: taken?.charged ?? expect.fail("nothing charged") }], 1_500);
    expect(drain(table, 1_500, one) + leased).toBe(refilling.capacity);
  });

  it("the lease's own give-back is not capped by that lease: once its holder calls again, all of it comes back", () => {
    const table = new BucketTable();
    const grant = busyCall(table, "isolate-a", 1, 0, ask(1_000), one) ?? expect.fail("no lease");
    table.endLeases("isolate-a", 2, [{ ...one, cost: grant.granted, charged: grant.charged, seq: 1 }], 1_500);
    expect(drain(table, 1_500, one)).toBe(refilling.capacity);
  });

  it("the cleanup keeps the bucket and its lease record until the lease ends, although the bucket alone is full sooner", () => {
    const { table, leased } = leasedThenRefilled();
    expect(table.sweep(1_000).removed).toEqual([]); // the state alone is full at 0.5 s; the lease is out until 2 s
    expect(drain(table, 1_500, one) + leased).toBe(refilling.capacity);
  });

  it("once the lease has ended, the bucket refills to its full capacity again", () => {
    const { table } = leasedThenRefilled();
    expect(table.sweep(2_000).removed).toEqual(["api"]);
    expect(drain(table, 5_000, one)).toBe(refilling.capacity);
  });
});
