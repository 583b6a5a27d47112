import { describe, expect, it } from "vitest";
import { BucketTable } from "../../../src/core/bucket-table";
import type { BucketPolicy } from "../../../src/core/token-bucket";

const DAY = 86_400_000;
const windowPolicy = (algorithm: "fixed-window" | "sliding-window", limit: number): BucketPolicy => ({ algorithm, capacity: limit, refillTokens: limit, refillPeriodMs: DAY });

describe.each(["fixed-window", "sliding-window"] as const)("the Durable Object's bucket table under a %s", (algorithm) => {
  const policy = windowPolicy(algorithm, 80);

  it("grants no lease: a window is decided by the object alone, exactly", () => {
    const table = new BucketTable();
    expect(table.grantLease({ rule: "api", policy, cost: 1, want: 64, ttlMs: 1_000 }, "isolate-a", 1, 0)).toBeNull();
    table.charge([{ rule: "api", policy, cost: 1, enforced: true }], 0);
    expect(table.grantLease({ rule: "api", policy, cost: 1, want: 64, ttlMs: 1_000 }, "isolate-a", 2, 0)).toBeNull();
    let allowed = 1;
    while (table.charge([{ rule: "api", policy, cost: 1, enforced: true }], 1)[0]?.decision.outcome === "allowed") allowed += 1;
    expect(allowed).toBe(80);
  });

  it("keeps the window's state whole, and drops it when it stops mattering", () => {
    const table = new BucketTable();
    const [answer] = table.charge([{ rule: "api", policy, cost: 3, enforced: true }], 1_000);
    expect(answer?.charged).toMatchObject({ algorithm });
    expect(table.buckets.get("api")).toMatchObject({ algorithm, fullAtMs: algorithm === "fixed-window" ? DAY : DAY + 1_000 });
    table.giveBack([{ rule: "api", policy, cost: 3, enforced: true, charged: answer!.charged! }], 2_000);
    expect(table.peek([{ rule: "api", policy, cost: 0, enforced: true }], 2_000)[0]?.decision).toMatchObject({ remaining: 80 });
    expect(table.sweep(2 * DAY).removed).toEqual(["api"]);
  });
});
