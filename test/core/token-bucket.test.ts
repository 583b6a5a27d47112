import { describe, expect, it } from "vitest";
import { ceilDiv, floorDiv, newGeneration, refundTokens, stateExpiresInMs, takeTokens, waitForTokensMs, type BucketPolicy, type BucketState } from "../../src/core/token-bucket";
import { policy as perSecond } from "../support/helpers";

/** Runs (time, cost) steps through one bucket, returning each decision. */
function run(policy: BucketPolicy, steps: [atMs: number, cost: number][]) {
  let state: BucketState | undefined;
  return steps.map(([at, cost]) => {
    const { decision, next } = takeTokens(state, policy, cost, at);
    state = next ?? state;
    return decision;
  });
}

describe("takeTokens", () => {
  it("a new bucket starts full and allows a burst of exactly its capacity", () => {
    const decisions = run(perSecond(3, "1"), [
      [0, 1],
      [0, 1],
      [0, 1],
      [0, 1],
    ]);
    expect(decisions.map((d) => d.outcome)).toEqual(["allowed", "allowed", "allowed", "denied"]);
    expect(decisions.map((d) => d.remaining)).toEqual([2, 1, 0, 0]);
  });

  it("refills continuously and never above capacity", () => {
    const policy = perSecond(5, "2"); // a token every 500 ms
    const [, , atHalf, afterLong] = run(policy, [
      [0, 5],
      [0, 1],
      [499, 1],
      [100_000, 1],
    ]);
    expect(atHalf).toEqual({ outcome: "denied", remaining: 0, resetMs: 2001, retryAfterMs: 1 });
    expect(afterLong).toEqual({ outcome: "allowed", remaining: 4, resetMs: 500 });
  });

  it("handles fractional rates exactly (0.5/s = one token per 2 s)", () => {
    const [, denied, stillDenied, allowed] = run(perSecond(1, "0.5"), [
      [0, 1],
      [1, 1],
      [1999, 1],
      [2000, 1],
    ]);
    expect(denied).toMatchObject({ outcome: "denied", retryAfterMs: 1999 });
    expect(stillDenied).toMatchObject({ outcome: "denied", retryAfterMs: 1 });
    expect(allowed).toMatchObject({ outcome: "allowed", remaining: 0, resetMs: 2000 });
  });

  it("rounds remaining down and waits up at the edges (3 tokens/s: 333.3 ms per token)", () => {
    const policy = perSecond(3, "3");
    const [, atOneThird] = run(policy, [
      [0, 3],
      [333, 1],
    ]);
    expect(atOneThird).toEqual({ outcome: "denied", remaining: 0, resetMs: 667, retryAfterMs: 1 });
    const [, , exact] = run(policy, [
      [0, 3],
      [333, 1],
      [334, 1],
    ]);
    expect(exact).toEqual({ outcome: "allowed", remaining: 0, resetMs: 1000 });
  });

  it("a cost larger than the bucket can never pass and changes nothing", () => {
    const policy = perSecond(5, "1");
    const { decision, next } = takeTokens(undefined, policy, 6, 0);
    expect(decision).toEqual({ outcome: "cost_exceeds_capacity", remaining: 5, resetMs: 0 });
    expect(next).toBeUndefined();
  });

  it("a denied request consumes nothing", () => {
    const policy = perSecond(4, "1");
    const spent = takeTokens(undefined, policy, 3, 0).next!;
    const denied = takeTokens(spent, policy, 2, 10);
    expect(denied.decision.outcome).toBe("denied");
    expect(denied.next).toBeUndefined();
    expect(takeTokens(spent, policy, 1, 10).decision).toMatchObject({ outcome: "allowed", remaining: 0 });
  });

  it("a clock that steps backwards refills nothing, and never the same time twice", () => {
    const policy = perSecond(2, "1");
    const spent = takeTokens(undefined, policy, 2, 10_000).next!;
    expect(takeTokens(spent, policy, 1, 5_000).decision.outcome).toBe("denied");
    // capacity 10 at 1/s: 5 at t=100 s, 5 at t=95 s, then t=100 s again: only 10 tokens existed.
    const ten = perSecond(10, "1");
    const outcomes = run(ten, [
      [100_000, 5],
      [95_000, 5],
      [100_000, 5],
    ]).map((d) => d.outcome);
    expect(outcomes).toEqual(["allowed", "allowed", "denied"]);
  });

  it("a refund gives back only what the charge still withholds", () => {
    const policy = perSecond(2, "100"); // a token every 10 ms
    const charged = takeTokens(undefined, policy, 1, 0).next!; // 1 left
    // Refunded at once: back to full.
    expect(refundTokens(charged, policy, 1, charged, 0)).toMatchObject({ level: 2 * policy.refillPeriodMs });
    // By t=20 the bucket would be full anyway; another request took a token at t=20: the refund adds nothing.
    const other = takeTokens(charged, policy, 1, 20).next!;
    const refunded = refundTokens(other, policy, 1, charged, 20) as BucketState;
    expect(takeTokens(refunded, policy, 1, 20).decision).toMatchObject({ outcome: "allowed", remaining: 0 });
    expect(takeTokens(takeTokens(refunded, policy, 1, 20).next, policy, 1, 20).decision.outcome).toBe("denied");
    // A bucket already cleaned up gets nothing back.
    expect(refundTokens(undefined, policy, 1, charged, 5)).toBeUndefined();
  });

  it("a refund gives nothing to another generation of the bucket (reset since the charge), even one started in the same millisecond", () => {
    const policy = perSecond(5, "0.001");
    const charged = takeTokens(undefined, policy, 5, 0).next!;
    // Every later take carries the bucket's generation on.
    expect(takeTokens(charged, policy, 0, 1).next?.generation).toBe(charged.generation);
    // Reset (the state forgotten) and emptied again at the same millisecond: another bucket.
    const fresh = takeTokens(undefined, policy, 5, 0).next!;
    expect(fresh.generation).not.toBe(charged.generation);
    expect(refundTokens(fresh, policy, 5, charged, 0)).toBe(fresh);
    expect(refundTokens(fresh, policy, 5, fresh, 0)).toMatchObject({ level: 5 * policy.refillPeriodMs, generation: fresh.generation });
  });

  it("a stored state matters until the bucket is full and any block is over, never less than 1 ms", () => {
    const policy = { ...perSecond(10, "1"), blockForMs: 60_000 };
    const { next, expiresInMs } = takeTokens(undefined, policy, 3, 1_000);
    expect(expiresInMs).toBe(3_000);
    expect(stateExpiresInMs(next!, policy, 2_500)).toBe(1_500);
    expect(stateExpiresInMs(next!, policy, 10_000)).toBe(1);
    expect(stateExpiresInMs({ ...next!, blockedUntilMs: 70_000 }, policy, 10_000)).toBe(60_000);
    // Measured under another period: whole tokens, as the next take would see them.
    expect(stateExpiresInMs(next!, perSecond(10, "0.5"), 1_000)).toBe(6_000);
  });

  it("keeps whole tokens when the policy's rate changes", () => {
    const before = perSecond(10, "1");
    const spent = takeTokens(undefined, before, 4, 0).next!; // 6 left
    const after = perSecond(10, "0.5");
    expect(takeTokens(spent, after, 1, 0).decision).toMatchObject({ outcome: "allowed", remaining: 5 });
  });

  it("stays exact at the largest sizes the configuration accepts", () => {
    const policy = perSecond(1_000_000_000, "0.000001"); // 10^9 tokens, one every 10^6 s
    const { decision } = takeTokens(undefined, policy, 1, 1_700_000_000_000);
    expect(decision).toEqual({ outcome: "allowed", remaining: 999_999_999, resetMs: 1_000_000_000 });
  });
});

describe("waitForTokensMs", () => {
  it("never exceeds the true wait for the next request", () => {
    for (const [capacity, rate, cost] of [
      [10, "1", 1],
      [5, "0.3", 2],
      [100, "7", 3],
      [1, "2.5", 1],
    ] as const) {
      const policy = perSecond(capacity, rate);
      let state: BucketState | undefined;
      for (let t = 0; t < 5_000; t += 37) {
        const { decision, next } = takeTokens(state, policy, cost, t);
        state = next ?? state;
        if (decision.outcome !== "allowed") continue;
        const bound = waitForTokensMs(policy, cost, decision.resetMs);
        const probe = takeTokens(state, policy, cost, t + bound).decision;
        const trueWait = probe.outcome === "denied" ? bound + probe.retryAfterMs : bound;
        expect(bound).toBeLessThanOrEqual(trueWait);
        // And it is tight: at most a few ms short.
        expect(trueWait - bound).toBeLessThanOrEqual(2);
      }
    }
  });

  it("is 0 while the bucket still holds the cost", () => {
    expect(waitForTokensMs(perSecond(10, "1"), 1, 5_000)).toBe(0);
  });
});

describe("exact integer division", () => {
  it("corrects float rounding near 2^53", () => {
    const b = 2 ** 26 + 1;
    const a = b * (2 ** 26 - 3) - 1;
    expect(floorDiv(a, b)).toBe(2 ** 26 - 4);
    expect(ceilDiv(a, b)).toBe(2 ** 26 - 3);
    expect(ceilDiv(a + 1, b)).toBe(2 ** 26 - 3);
  });
});

describe("newGeneration", () => {
  it("draws integers below 2^48, none repeated, across refills of its random pool", () => {
    // 3,000 draws empty the pool (256 generations) about twelve times.
    const drawn = Array.from({ length: 3_000 }, () => newGeneration());
    for (const generation of drawn) {
      expect(Number.isInteger(generation)).toBe(true);
      expect(generation).toBeGreaterThanOrEqual(0);
      expect(generation).toBeLessThan(2 ** 48);
    }
    expect(new Set(drawn).size).toBe(drawn.length);
    // The high 16 bits are used too (a generation is not a 32-bit number).
    expect(drawn.some((generation) => generation >= 2 ** 32)).toBe(true);
  });
});
