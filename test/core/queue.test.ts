import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { RuleSpec } from "../../src/core/rules";
import { Limiter } from "../../src/core/limiter";
import { memoryBackend } from "../../src/core/memory-backend";
import { compileRules } from "../../src/core/rules";
import { requestSubject } from "../../src/core/subject";
import { refundSlidingWindow, takeSlidingWindow, type SlidingWindowState } from "../../src/core/algorithms/sliding-window";
import { refundBucket, takeTokens, type BucketPolicy, type BucketState } from "../../src/core/token-bucket";
import { policy as perSecond } from "../support/helpers";

/** Capacity 2, one token a second, a queue of 2 s. */
const queued: BucketPolicy = { ...perSecond(2, "1"), queueMs: 2_000 };

describe("queue instead of refuse: the token bucket's math", () => {
  it("admits within maxWait with the wait, charging now (a level below zero by at most maxWait × rate); refuses beyond with the real wait", () => {
    let state: BucketState | undefined;
    const take = (nowMs: number) => {
      const taken = takeTokens(state, queued, 1, nowMs, 7);
      state = taken.next ?? state;
      return taken;
    };
    expect(take(0).decision).toEqual({ outcome: "allowed", remaining: 1, resetMs: 1_000 });
    expect(take(0).decision).toEqual({ outcome: "allowed", remaining: 0, resetMs: 2_000 });
    const third = take(0);
    expect(third.decision).toEqual({ outcome: "allowed", remaining: 0, resetMs: 3_000, waitMs: 1_000 });
    expect(third.next?.level).toBe(-1_000);
    // The debt matters until it is paid back and the bucket is full again.
    expect(third.expiresInMs).toBe(3_000);
    expect(take(0).decision).toEqual({ outcome: "allowed", remaining: 0, resetMs: 4_000, waitMs: 2_000 });
    expect(state?.level).toBe(-2_000); // -maxWait × rate, the deepest
    // Beyond maxWait: refused at once, with the real wait (the debt included), nothing written.
    const refused = take(0);
    expect(refused.decision).toEqual({ outcome: "denied", remaining: 0, resetMs: 4_000, retryAfterMs: 3_000 });
    expect(refused.next).toBeUndefined();
    // 500 ms later the debt is 1.5 tokens: a request would wait 2.5 s (refused); at 1 s, 2 s (queued).
    expect(take(500).decision).toMatchObject({ outcome: "denied", retryAfterMs: 2_500 });
    expect(take(1_000).decision).toEqual({ outcome: "allowed", remaining: 0, resetMs: 4_000, waitMs: 2_000 });
  });

  it("a queued charge given back (the client left) restores the level it took", () => {
    const full = takeTokens(undefined, queued, 2, 0, 7).next;
    const charged = takeTokens(full, queued, 1, 0).next as BucketState;
    expect(charged.level).toBe(-1_000);
    expect(refundBucket(charged, queued, 1, charged, 100)?.level).toBe(100);
  });

  it("never with a block: blockForMs refuses as before", () => {
    const blocking = { ...queued, blockForMs: 10_000 };
    const empty = takeTokens(undefined, blocking, 2, 0, 7).next;
    expect(takeTokens(empty, blocking, 1, 0).decision.outcome).toBe("denied");
  });

  it("exact: whatever the schedule, the units that proceed (at charge time + wait) in any interval T are ≤ C + ρ·T, and the level never goes below −maxWait × rate", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.constantFrom("0.5", "1", "3", "7", "10", "2500"),
        fc.integer({ min: 1, max: 5_000 }),
        fc.array(fc.record({ elapsedMs: fc.oneof(fc.integer({ min: 0, max: 50 }), fc.integer({ min: 0, max: 3_000 })), cost: fc.integer({ min: 1, max: 3 }) }), { minLength: 1, maxLength: 60 }),
        (capacity, rate, queueMs, steps) => {
          const policy: BucketPolicy = { ...perSecond(capacity, rate), queueMs };
          let state: BucketState | undefined;
          let nowMs = 0;
          const proceeded: { atMs: number; cost: number }[] = [];
          for (const { elapsedMs, cost } of steps) {
            nowMs += elapsedMs;
            const { decision, next } = takeTokens(state, policy, Math.min(cost, capacity), nowMs, 1);
            if (decision.outcome !== "allowed") continue;
            expect(decision.waitMs ?? 0).toBeLessThanOrEqual(queueMs);
            state = next;
            expect(next?.level).toBeGreaterThanOrEqual(-queueMs * policy.refillTokens);
            proceeded.push({ atMs: nowMs + (decision.waitMs ?? 0), cost: Math.min(cost, capacity) });
          }
          // Exact integers: units × period ≤ C × period + refillTokens × T.
          for (const from of proceeded) {
            const inWindow = (toMs: number) => proceeded.filter(({ atMs }) => atMs >= from.atMs && atMs <= toMs).reduce((sum, { cost }) => sum + cost, 0);
            for (const to of proceeded) {
              if (to.atMs < from.atMs) continue;
              expect(inWindow(to.atMs) * policy.refillPeriodMs).toBeLessThanOrEqual(capacity * policy.refillPeriodMs + policy.refillTokens * (to.atMs - from.atMs));
            }
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

/** A sliding window of 2 per second, a queue of 1.5 s. */
const slidingQueued: BucketPolicy = { algorithm: "sliding-window", capacity: 2, refillTokens: 2, refillPeriodMs: 1_000, queueMs: 1_500 };

describe("queue instead of refuse: the sliding window", () => {
  it("logs a queued request at the time it proceeds (when the oldest units leave the window), in line behind those queued before; refuses beyond maxWait with the real wait", () => {
    let state: SlidingWindowState | undefined;
    const take = (nowMs: number, cost = 1) => {
      const taken = takeSlidingWindow(state, slidingQueued, cost, nowMs, 7);
      state = taken.next ?? state;
      return taken;
    };
    expect(take(0).decision).toEqual({ outcome: "allowed", remaining: 1, resetMs: 1_000 });
    expect(take(200).decision).toEqual({ outcome: "allowed", remaining: 0, resetMs: 800 });
    // Full: the unit admitted at 0 frees at 1000, so the third request is logged then and waits 700 ms.
    const third = take(300);
    expect(third.decision).toEqual({ outcome: "allowed", remaining: 0, resetMs: 700, waitMs: 700 });
    expect(third.next?.log).toEqual([
      { atMs: 0, units: 1 },
      { atMs: 200, units: 1 },
      { atMs: 1_000, units: 1 },
    ]);
    expect(third.expiresInMs).toBe(1_700); // until the queued unit leaves its window
    // The fourth waits for the unit at 200 (frees at 1200): 900 ms.
    expect(take(300).decision).toMatchObject({ outcome: "allowed", waitMs: 900 });
    // The fifth would wait for the queued unit at 1000 to free (2000): 1700 ms > 1500 ms, refused with that wait, nothing written.
    const refused = take(300);
    expect(refused.decision).toEqual({ outcome: "denied", remaining: 0, resetMs: 700, retryAfterMs: 1_700 });
    expect(refused.next).toBeUndefined();
    // At 600 the same wait is 1400 ms: queued.
    expect(take(600).decision).toMatchObject({ outcome: "allowed", waitMs: 1_400 });
    expect(state?.log.at(-1)).toEqual({ atMs: 2_000, units: 1 });
  });

  it("without a queue, a full window refuses as before (the oldest unit's freeing time)", () => {
    const plain: BucketPolicy = { ...slidingQueued, queueMs: undefined };
    const first = takeSlidingWindow(undefined, plain, 2, 0, 7).next;
    expect(takeSlidingWindow(first, plain, 1, 300).decision).toEqual({ outcome: "denied", remaining: 0, resetMs: 700, retryAfterMs: 700 });
  });

  it("a queued charge given back (the client left) frees its place: the next request waits no longer than it did", () => {
    const full = takeSlidingWindow(undefined, slidingQueued, 2, 0, 7).next;
    const queuedTake = takeSlidingWindow(full, slidingQueued, 1, 100);
    expect(queuedTake.decision).toMatchObject({ waitMs: 900 });
    const charged = queuedTake.next as SlidingWindowState;
    const givenBack = refundSlidingWindow(charged, slidingQueued, 1, charged, 150);
    expect(givenBack?.log).toEqual([{ atMs: 0, units: 2 }]);
    expect(takeSlidingWindow(givenBack, slidingQueued, 1, 150).decision).toMatchObject({ outcome: "allowed", waitMs: 850 });
  });

  it("never with a block: blockForMs refuses as before", () => {
    const blocking = { ...slidingQueued, blockForMs: 10_000 };
    const full = takeSlidingWindow(undefined, blocking, 2, 0, 7).next;
    expect(takeSlidingWindow(full, blocking, 1, 0).decision.outcome).toBe("denied");
  });

  it("exact: whatever the schedule (costs, refunds of queued charges), every trailing window of the times requests proceed holds at most L units, and no wait exceeds maxWait", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.constantFrom(1_000, 2_000, 5_000),
        fc.integer({ min: 1, max: 6_000 }),
        fc.array(
          fc.record({
            elapsedMs: fc.oneof(fc.integer({ min: 0, max: 50 }), fc.integer({ min: 0, max: 3_000 }), fc.constantFrom(500, 1_000)),
            cost: fc.integer({ min: 1, max: 3 }),
            giveBack: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
          }),
          { minLength: 1, maxLength: 60 },
        ),
        (limit, windowMs, queueMs, steps) => {
          const policy: BucketPolicy = { algorithm: "sliding-window", capacity: limit, refillTokens: limit, refillPeriodMs: windowMs, queueMs };
          let state: SlidingWindowState | undefined;
          let nowMs = 0;
          const proceeded: { atMs: number; cost: number; charged: SlidingWindowState; gone: boolean }[] = [];
          for (const { elapsedMs, cost: wanted, giveBack } of steps) {
            nowMs += elapsedMs;
            const cost = Math.min(wanted, limit);
            // A client still waiting leaves: its queued charge comes back and it never proceeds.
            const waiting = proceeded.find((p) => !p.gone && p.atMs > nowMs);
            if (giveBack && waiting !== undefined) {
              state = refundSlidingWindow(state, policy, waiting.cost, waiting.charged, nowMs);
              waiting.gone = true;
              continue;
            }
            const { decision, next } = takeSlidingWindow(state, policy, cost, nowMs, 1);
            if (decision.outcome !== "allowed" || next === undefined) continue;
            expect(decision.waitMs ?? 0).toBeLessThanOrEqual(queueMs);
            state = next;
            proceeded.push({ atMs: nowMs + (decision.waitMs ?? 0), cost, charged: next, gone: false });
          }
          const went = proceeded.filter(({ gone }) => !gone);
          for (const from of went) {
            const inWindow = went.filter(({ atMs }) => atMs >= from.atMs && atMs < from.atMs + windowMs).reduce((total, { cost }) => total + cost, 0);
            expect(inWindow).toBeLessThanOrEqual(limit);
          }
        },
      ),
      { numRuns: 400 },
    );
  });
});

describe("queue: the rule option", () => {
  const base = { name: "api", capacity: 2, rate: 1 };
  it('compiles "queue": { "maxWait": "2s" } into the policy\'s queueMs and keeps it in the spec', () => {
    const result = compileRules([{ ...base, queue: { maxWait: "2s" } }]);
    expect(result.ok && result.rules[0]?.policy.queueMs).toBe(2_000);
    expect(result.ok && result.rules[0]?.spec.queue).toEqual({ maxWait: "2s" });
  });

  it.each([
    [{ ...base, queue: { maxWait: "61s" } }, "maxWait must be a duration from 1ms to 60s"],
    [{ ...base, queue: { maxWait: "0s" } }, "maxWait must be a duration from 1ms to 60s"],
    [{ ...base, queue: "2s" }, "must be an object"],
    [{ ...base, queue: { maxWait: "2s", size: 3 } }, "unknown field size"],
    [{ ...base, blockFor: "1m", queue: { maxWait: "2s" } }, "cannot be combined with blockFor"],
    [{ name: "w", algorithm: "fixed-window", limit: 5, window: "1m", queue: { maxWait: "2s" } }, "only for token-bucket and sliding-window rules"],
    [{ name: "c", algorithm: "calendar", limit: 5, period: "day", queue: { maxWait: "2s" } }, "only for token-bucket and sliding-window rules"],
    [{ name: "s", algorithm: "sliding-window", limit: 5, window: "1m", blockFor: "1m", queue: { maxWait: "2s" } }, "cannot be combined with blockFor"],
    [{ name: "s", algorithm: "sliding-window", limit: 5, window: "1m", queue: { maxWait: "2m" } }, "maxWait must be a duration from 1ms to 60s"],
    [{ name: "c", concurrency: 3, queue: { maxWait: "2s" } }, "not used by a concurrency rule"],
  ])("refuses %j with a clear error", (rule, message) => {
    const result = compileRules([rule]);
    expect(result.ok).toBe(false);
    expect(!result.ok && result.errors.find((e) => e.field === "queue")?.message).toContain(message);
  });
});

describe("queue: the limiter", () => {
  const rules = [{ name: "api", key: "header:x-api-key", capacity: 1, rate: "1/1s", queue: { maxWait: "1s" } }] satisfies RuleSpec[];
  const request = () => requestSubject(new Request("http://x/", { headers: { "x-api-key": "k" } }));

  it("an allowed verdict carries the wait; beyond maxWait a refusal with the real wait; the deny cache does not refuse a request that may queue", async () => {
    let now = 1_000_000;
    const limiter = new Limiter({ backend: memoryBackend({ clock: () => now }), rules, clock: () => now });
    expect(await limiter.check(request())).toMatchObject({ kind: "allowed" });
    const second = await limiter.check(request());
    expect(second).toMatchObject({ kind: "allowed", waitMs: 1_000 });
    expect(await limiter.check(request())).toMatchObject({ kind: "refused", retryAfterMs: 2_000, cached: false });
    now += 1_000; // the debt is one token now: a request queues for a second (a cached refusal would say 1 s more)
    expect(await limiter.check(request())).toMatchObject({ kind: "allowed", waitMs: 1_000 });
  });

  it("giveBack returns a queued charge: the next request waits no longer than before", async () => {
    const now = 1_000_000;
    const limiter = new Limiter({ backend: memoryBackend({ clock: () => now }), rules, clock: () => now });
    await limiter.check(request());
    const queuedVerdict = await limiter.check(request());
    expect(queuedVerdict).toMatchObject({ kind: "allowed", waitMs: 1_000 });
    await limiter.giveBack(queuedVerdict);
    expect(await limiter.check(request())).toMatchObject({ kind: "allowed", waitMs: 1_000 });
  });

  it("a sliding-window rule queues through the limiter (memory backend): the wait until its oldest unit leaves the window, then a refusal with the real wait", async () => {
    let now = 1_000_000;
    const sliding = [{ name: "api", key: "header:x-api-key", algorithm: "sliding-window", limit: 1, window: "1s", queue: { maxWait: "1s" } }] satisfies RuleSpec[];
    const limiter = new Limiter({ backend: memoryBackend({ clock: () => now }), rules: sliding, clock: () => now });
    expect(await limiter.check(request())).toMatchObject({ kind: "allowed" });
    now += 400;
    expect(await limiter.check(request())).toMatchObject({ kind: "allowed", waitMs: 600 });
    expect(await limiter.check(request())).toMatchObject({ kind: "refused", retryAfterMs: 1_600, cached: false });
    now += 600; // the first unit left the window; the queued one proceeds now and holds the window until 2 s
    expect(await limiter.check(request())).toMatchObject({ kind: "allowed", waitMs: 1_000 });
  });

  it("a request another enforced rule also covers is never queued: refused with the wait, every charge given back (the other rule would count it early)", async () => {
    const now = 1_000_000;
    const both = [...rules, { name: "ip", key: "ip", capacity: 5, rate: "5/1s" }] satisfies RuleSpec[];
    const limiter = new Limiter({ backend: memoryBackend({ clock: () => now }), rules: both, clock: () => now });
    expect(await limiter.check(request())).toMatchObject({ kind: "allowed" }); // ip: 4 left
    const refused = await limiter.check(request());
    expect(refused).toMatchObject({ kind: "refused", retryAfterMs: 1_000, violated: [{ name: "api" }] });
    const ip = await limiter.check({ kind: "client", rule: "ip", client: { ip: "127.0.0.1" } }, { mode: "peek", cost: 0 });
    expect(ip).toMatchObject({ kind: "allowed", outcomes: [{ decision: { remaining: 4 } }] }); // the refusal took nothing
  });
});
