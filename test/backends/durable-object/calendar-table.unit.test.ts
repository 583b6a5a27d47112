import { describe, expect, it } from "vitest";
import { BucketTable } from "../../../src/core/bucket-table";
import type { CalendarPolicy } from "../../../src/core/algorithms/calendar";

const DAY = 86_400_000;
const policy: CalendarPolicy = { algorithm: "calendar", capacity: 80, refillTokens: 80, refillPeriodMs: DAY, period: "day", timeZone: "America/New_York" };
const midnight = Date.parse("2026-11-01T04:00:00Z"); // the 25-hour day

describe("the Durable Object's bucket table under a calendar quota", () => {
  it("grants no lease: a quota is decided by the object alone, exactly", () => {
    const table = new BucketTable();
    expect(table.grantLease({ rule: "q", policy, cost: 1, want: 64, ttlMs: 1_000 }, "isolate-a", 1, midnight)).toBeNull();
    table.charge([{ rule: "q", policy, cost: 1, enforced: true }], midnight);
    expect(table.grantLease({ rule: "q", policy, cost: 1, want: 64, ttlMs: 1_000 }, "isolate-a", 2, midnight)).toBeNull();
    let allowed = 1;
    while (table.charge([{ rule: "q", policy, cost: 1, enforced: true }], midnight + 1)[0]?.decision.outcome === "allowed") allowed += 1;
    expect(allowed).toBe(80);
  });

  it("keeps the quota's state until the period's end (25 hours on that day), and drops it after", () => {
    const table = new BucketTable();
    const [answer] = table.charge([{ rule: "q", policy, cost: 3, enforced: true }], midnight + 1_000);
    expect(answer?.charged).toMatchObject({ algorithm: "calendar", periodStartMs: midnight, periodEndMs: midnight + 25 * 3_600_000 });
    expect(table.buckets.get("q")).toMatchObject({ algorithm: "calendar", fullAtMs: midnight + 25 * 3_600_000 });
    table.giveBack([{ rule: "q", policy, cost: 3, enforced: true, charged: answer!.charged! }], midnight + 2_000);
    expect(table.peek([{ rule: "q", policy, cost: 0, enforced: true }], midnight + 2_000)[0]?.decision).toMatchObject({ remaining: 80 });
    expect(table.sweep(midnight + 2 * DAY).removed).toEqual(["q"]);
  });
});
