import { describe, expect, it } from "vitest";
import { BucketTable, type TableCharge } from "../../src/core/bucket-table";
import { LEASE_SHARE } from "../../src/core/lease-ledger";

const policy = { capacity: 80, refillTokens: 1, refillPeriodMs: 60_000 }; // slow refill: time barely matters
const charge: TableCharge = { rule: "api", policy, cost: 1, enforced: true };
const lease = (want: number) => ({ rule: "api", policy, cost: 1, want, ttlMs: 1_000 });
/** Whole tokens charging one at a time can take from the table at `nowMs`. */
function drain(table: BucketTable, nowMs: number): number {
  let taken = 0;
  while (table.charge([charge], nowMs)[0]?.decision.outcome === "allowed") taken += 1;
  return taken;
}

describe("the Durable Object's bucket table and lease ledger (pure, injected clock)", () => {
  it("a lease takes at most 1/LEASE_SHARE of what the bucket holds, and none under blockFor", () => {
    const table = new BucketTable();
    const grant = table.grantLease(lease(1_000), "isolate-a", 1, 0);
    expect(grant?.granted).toBe(80 / LEASE_SHARE);
    const blocking = new BucketTable();
    expect(blocking.grantLease({ ...lease(5), policy: { ...policy, blockForMs: 60_000 } }, "isolate-a", 1, 0)).toBeNull();
  });

  it("no lease under a queue (queueMs): every queued decision is the object's", () => {
    const table = new BucketTable();
    expect(table.grantLease({ ...lease(5), policy: { ...policy, queueMs: 2_000 } }, "isolate-a", 1, 0)).toBeNull();
  });

  it("a reset while leases are out never lets more through than one full bucket", () => {
    const table = new BucketTable();
    const a = table.grantLease(lease(1_000), "isolate-a", 1, 0)!;
    const b = table.grantLease(lease(1_000), "isolate-b", 1, 0)!;
    table.reset("api", 1);
    // What the isolates may still spend from their leases, plus what the bucket hands out now.
    expect(a.granted + b.granted + drain(table, 2)).toBeLessThanOrEqual(policy.capacity);
  });

  it("a give-back is honoured only for the holder's lease of that call, at most what it took", () => {
    const table = new BucketTable();
    const grant = table.grantLease(lease(1_000), "isolate-a", 7, 0)!;
    const back = { rule: "api", policy, cost: grant.granted, enforced: true, charged: grant.charged };
    expect(table.counted("isolate-b", [{ ...back, seq: 7 }], 1)).toEqual([]); // another isolate
    expect(table.counted("isolate-a", [{ ...back, seq: 6 }], 1)).toEqual([]); // another call
    const honoured = table.counted("isolate-a", [{ ...back, seq: 7, cost: 1_000 }], 1);
    expect(honoured.map((refund) => refund.cost)).toEqual([grant.granted]);
    table.giveBack(honoured, 1);
    table.releaseHolder("isolate-a", 8);
    expect(drain(table, 2)).toBe(policy.capacity); // everything came back, nothing more
  });

  it("a lowered override while leases are out caps the bucket plus the leases at the new capacity", () => {
    const table = new BucketTable();
    const grant = table.grantLease(lease(1_000), "isolate-a", 1, 0)!;
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
