import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { takeFixedWindow } from "../../src/core/algorithms/fixed-window";
import { takeSlidingWindow } from "../../src/core/algorithms/sliding-window";
import { localPolicy } from "../../src/core/degraded";
import { Limiter } from "../../src/core/limiter";
import { memoryBackend } from "../../src/core/memory-backend";
import { compileRules, type RuleSpec } from "../../src/core/rules";
import type { RequestSubject } from "../../src/core/subject";
import { rateLimitItems } from "../support/helpers";

const request = (key: string): RequestSubject => ({ kind: "request", method: "GET", path: "/", headers: new Headers({ "x-api-key": key }) });
const headersOf = (verdict: Awaited<ReturnType<Limiter["check"]>>) => new Headers("headers" in verdict ? verdict.headers : []);
const errorsOf = (rules: unknown[]) => {
  const result = compileRules(rules);
  return result.ok ? [] : result.errors.map((e) => `${e.rule} ${e.field}: ${e.message}`);
};

describe("window rules", () => {
  it("compile to a policy of the limit per window (the rate limit/window), keeping token-bucket rules unchanged", () => {
    const result = compileRules([
      { name: "legacy", key: "ip", algorithm: "fixed-window", limit: 100, window: "1m" },
      { name: "api", key: "header:x-api-key", algorithm: "sliding-window", limit: 10, window: "10s", cost: 2, blockFor: "1m", count: ["2xx"], failMode: "local" },
      { name: "bucket", capacity: 5, rate: "5/1m" },
    ]);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.rules[0]!.policy).toEqual({ name: "legacy", algorithm: "fixed-window", capacity: 100, refillTokens: 1, refillPeriodMs: 600, cost: 1 });
    expect(result.rules[0]!.spec).toMatchObject({ algorithm: "fixed-window", limit: 100, window: "1m" });
    expect(result.rules[1]!.policy).toEqual({ name: "api", algorithm: "sliding-window", capacity: 10, refillTokens: 1, refillPeriodMs: 1000, cost: 2, blockForMs: 60_000 });
    expect(result.rules[2]!.policy).toEqual({ name: "bucket", capacity: 5, refillTokens: 1, refillPeriodMs: 12_000, cost: 1 });
  });

  it("are refused with errors naming the rule and the field", () => {
    expect(errorsOf([{ name: "w", algorithm: "fixed-window", limit: 10, window: "1m", capacity: 10, rate: 1 }])).toEqual([
      '"w" (#1) capacity: is not used by a fixed-window rule (it has limit and window instead of capacity and rate)',
      '"w" (#1) rate: is not used by a fixed-window rule (it has limit and window instead of capacity and rate)',
    ]);
    expect(errorsOf([{ name: "t", capacity: 10, rate: 1, limit: 10, window: "1m" }])).toEqual([
      '"t" (#1) limit: is only for window rules (set "algorithm": "fixed-window" or "sliding-window"; a token bucket has capacity and rate)',
      '"t" (#1) window: is only for window rules (set "algorithm": "fixed-window" or "sliding-window"; a token bucket has capacity and rate)',
    ]);
    expect(errorsOf([{ name: "a", algorithm: "leaky", capacity: 1, rate: 1 }])).toEqual(['"a" (#1) algorithm: must be token-bucket, fixed-window, sliding-window, calendar']);
    expect(errorsOf([{ name: "m", algorithm: "fixed-window" }])).toEqual([
      '"m" (#1) limit: is missing (a fixed-window rule needs limit and window)',
      '"m" (#1) window: is missing (a fixed-window rule needs limit and window)',
    ]);
    expect(errorsOf([{ name: "s", algorithm: "fixed-window", limit: 10, window: "500ms" }])).toEqual(['"s" (#1) window: must be a duration from 1s to 30d, e.g. "1m", "1h", "1d"']);
    expect(errorsOf([{ name: "s", algorithm: "fixed-window", limit: 10, window: "31d" }])).toHaveLength(1);
    expect(errorsOf([{ name: "l", algorithm: "fixed-window", limit: 0, window: "1m" }])).toEqual(['"l" (#1) limit: must be an integer from 1 to 1000000000']);
    expect(errorsOf([{ name: "big", algorithm: "sliding-window", limit: 1001, window: "1m" }])).toEqual([
      '"big" (#1) limit: must be at most 1000 for a sliding-window rule (its exact log keeps one entry per admitted unit); use a fixed-window or token-bucket rule for larger limits',
    ]);
    expect(errorsOf([{ name: "c", algorithm: "sliding-window", limit: 3, window: "1m", cost: 4 }])).toEqual(['"c" (#1) cost: 4 exceeds limit 3: no request could ever pass']);
    expect(errorsOf([{ name: "x", concurrency: 2, algorithm: "fixed-window" }])).toEqual(['"x" (#1) algorithm: is not used by a concurrency rule (it has concurrency instead of a bucket)']);
  });
});

describe("the window algorithms", () => {
  const fixed = { algorithm: "fixed-window", capacity: 3, refillTokens: 1, refillPeriodMs: 20_000 } as const; // 3 per 1m
  const sliding = { ...fixed, algorithm: "sliding-window" } as const;

  it("fixed: windows aligned to the Unix epoch; the window's end is both reset and retry", () => {
    let state = takeFixedWindow(undefined, fixed, 3, 119_000).next; // in [60000, 120000)
    expect(takeFixedWindow(state, fixed, 1, 119_999).decision).toEqual({ outcome: "denied", remaining: 0, resetMs: 1, retryAfterMs: 1 });
    const next = takeFixedWindow(state, fixed, 3, 120_000);
    expect(next.decision).toEqual({ outcome: "allowed", remaining: 0, resetMs: 60_000 });
    state = next.next;
    expect(state).toMatchObject({ windowStartMs: 120_000, used: 3 });
  });

  it("sliding: a unit frees exactly W after it was admitted; a refused cost waits until enough have freed", () => {
    let state = takeSlidingWindow(undefined, sliding, 1, 0).next;
    state = takeSlidingWindow(state, sliding, 2, 30_000).next;
    expect(takeSlidingWindow(state, sliding, 1, 59_999).decision).toEqual({ outcome: "denied", remaining: 0, resetMs: 1, retryAfterMs: 1 });
    // Cost 3 needs both admissions gone: the second frees at 90000.
    expect(takeSlidingWindow(state, sliding, 3, 59_999).decision).toEqual({ outcome: "denied", remaining: 0, resetMs: 1, retryAfterMs: 30_001 });
    expect(takeSlidingWindow(state, sliding, 1, 60_000).decision).toEqual({ outcome: "allowed", remaining: 0, resetMs: 30_000 });
  });

  it("degraded mode: a window keeps its window and gets a fraction of its limit (at least the cost)", () => {
    expect(localPolicy({ ...fixed, capacity: 100, refillTokens: 5, refillPeriodMs: 3_000 }, 0.1)).toEqual({ ...fixed, capacity: 10, refillTokens: 10, refillPeriodMs: 60_000 });
    expect(localPolicy(sliding, 0.1, 2)).toEqual({ ...sliding, capacity: 2, refillTokens: 2, refillPeriodMs: 60_000 });
  });
});

describe("window headers (the one field writer)", () => {
  it("fixed: q=L;w=W and t to the window's end; Retry-After (the refusal's wait) no earlier than t", async () => {
    const time = { now: 1_800_000_030_000 }; // 30 s into a minute
    const limiter = new Limiter({
      rules: [{ name: "legacy", key: "header:x-api-key", algorithm: "fixed-window", limit: 2, window: "1m" }],
      backend: memoryBackend({ clock: () => time.now }),
      clock: () => time.now,
      log: () => {},
    });
    const first = await limiter.check(request("a"));
    expect(rateLimitItems(headersOf(first).get("RateLimit-Policy"))).toEqual([["legacy", { q: 2, w: 60 }]]);
    expect(rateLimitItems(headersOf(first).get("RateLimit"))).toEqual([["legacy", { r: 1, t: 30 }]]);
    await limiter.check(request("a"));
    time.now += 10_000;
    const refused = await limiter.check(request("a"));
    expect(refused.kind).toBe("refused");
    if (refused.kind !== "refused") return;
    expect(refused.retryAfterMs).toBe(20_000);
    expect(rateLimitItems(headersOf(refused).get("RateLimit"))).toEqual([["legacy", { r: 0, t: 20 }]]);
  });

  it("sliding: q=L;w=W and t to when the next unit frees", async () => {
    const time = { now: 1_800_000_000_000 };
    const limiter = new Limiter({
      rules: [{ name: "api", key: "header:x-api-key", algorithm: "sliding-window", limit: 2, window: "10s" }],
      backend: memoryBackend({ clock: () => time.now }),
      clock: () => time.now,
      log: () => {},
    });
    await limiter.check(request("a"));
    time.now += 4_000;
    const second = await limiter.check(request("a"));
    expect(rateLimitItems(headersOf(second).get("RateLimit-Policy"))).toEqual([["api", { q: 2, w: 10 }]]);
    expect(rateLimitItems(headersOf(second).get("RateLimit"))).toEqual([["api", { r: 0, t: 6 }]]);
    const refused = await limiter.check(request("a"));
    expect(refused).toMatchObject({ kind: "refused", retryAfterMs: 6_000 });
  });
});

describe("the deny cache and windows", () => {
  it("never predicts a window empty from an allowed answer (a sliding window with 9 of 10 left still admits at once)", async () => {
    const time = { now: 1_800_000_000_000 };
    const limiter = new Limiter({
      rules: [{ name: "api", key: "header:x-api-key", algorithm: "sliding-window", limit: 10, window: "10s" }],
      backend: memoryBackend({ clock: () => time.now }),
      clock: () => time.now,
      log: () => {},
    });
    for (let i = 0; i < 10; i++) expect((await limiter.check(request("a"))).kind).toBe("allowed");
    // The store's refusal (an exact wait) is remembered like any other.
    expect(await limiter.check(request("a"))).toMatchObject({ kind: "refused", retryAfterMs: 10_000 });
    expect(await limiter.check(request("a"))).toMatchObject({ kind: "refused", cached: true });
  });
});

/**
 * The adversarial boundary test on the memory backend: three isolates (limiters) share the store,
 * whose clock the test moves; requests come in bursts at window edges (±1 ms, exactly on them),
 * with costs above 1 and responses a `count` rule gives back. It reports the worst trailing-window
 * count of kept units and asserts the stated bound: sliding ≤ L in every trailing W, fixed ≤ L per
 * aligned window (so ≤ 2L in any trailing W).
 */
describe("adversarial boundary schedules (memory backend, 3 isolates, injected store clock)", () => {
  const W = 60_000;
  const L = 5;
  const burst = fc.record({
    edge: fc.integer({ min: 0, max: 6 }),
    offsetMs: fc.oneof(fc.constantFrom(-1, 0, 1, -W / 2, W / 2 - 1), fc.integer({ min: -W, max: W })),
    requests: fc.array(fc.record({ isolate: fc.integer({ min: 0, max: 2 }), cost: fc.integer({ min: 1, max: 3 }), status: fc.constantFrom(200, 200, 200, 500) }), { minLength: 1, maxLength: 8 }),
  });

  /** Runs a schedule; returns the kept admissions (time, units). */
  async function run(algorithm: "fixed-window" | "sliding-window", bursts: { edge: number; offsetMs: number; requests: { isolate: number; cost: number; status: number }[] }[]) {
    const start = 1_800_000_000_000 - (1_800_000_000_000 % W);
    const time = { now: start };
    const backend = memoryBackend({ clock: () => time.now });
    const rules: RuleSpec[] = [{ name: "w", key: "header:x-api-key", algorithm, limit: L, window: "1m", count: ["2xx"] }];
    const isolates = [0, 1, 2].map(() => new Limiter({ rules, backend, clock: () => time.now, log: () => {} }));
    const kept: { atMs: number; units: number }[] = [];
    const times = bursts
      .map((b) => start + b.edge * W + b.offsetMs)
      .map((t, i) => ({ t: Math.max(start, t), i }))
      .sort((a, b) => a.t - b.t);
    for (const { t, i } of times) {
      time.now = t;
      for (const { isolate, cost, status } of bursts[i]!.requests) {
        const verdict = await isolates[isolate]!.check(request("adversary"), { cost });
        if (verdict.kind !== "allowed") continue;
        await isolates[isolate]!.settle(verdict, status);
        if (status < 300) kept.push({ atMs: t, units: cost });
      }
    }
    return kept;
  }

  /** The most units kept in any trailing window of W (ending at an admission). */
  const worstTrailing = (kept: { atMs: number; units: number }[]) =>
    Math.max(0, ...kept.map(({ atMs }) => kept.filter((k) => k.atMs > atMs - W && k.atMs <= atMs).reduce((sum, k) => sum + k.units, 0)));

  it("sliding window: never more than L in any trailing W", async () => {
    let worst = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(burst, { minLength: 1, maxLength: 12 }), async (bursts) => {
        const count = worstTrailing(await run("sliding-window", bursts));
        worst = Math.max(worst, count);
        expect(count).toBeLessThanOrEqual(L);
      }),
      { numRuns: 150 },
    );
    console.log(`sliding window: worst trailing-window count ${worst} (L = ${L})`);
    expect(worst).toBe(L);
  });

  it("fixed window: never more than L per aligned window, so at most 2L in a trailing W (and the schedule reaches 2L)", async () => {
    let worst = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(burst, { minLength: 1, maxLength: 12 }), async (bursts) => {
        const kept = await run("fixed-window", bursts);
        for (const { atMs } of kept) {
          const start = atMs - (atMs % W);
          expect(kept.filter((k) => k.atMs >= start && k.atMs < start + W).reduce((sum, k) => sum + k.units, 0)).toBeLessThanOrEqual(L);
        }
        const count = worstTrailing(kept);
        worst = Math.max(worst, count);
        expect(count).toBeLessThanOrEqual(2 * L);
      }),
      { numRuns: 150 },
    );
    // The classic schedule: L just before an edge, L on it.
    const edge = await run("fixed-window", [
      {
        edge: 1,
        offsetMs: -1,
        requests: [
          { isolate: 0, cost: 3, status: 200 },
          { isolate: 1, cost: 2, status: 200 },
        ],
      },
      {
        edge: 1,
        offsetMs: 0,
        requests: [
          { isolate: 2, cost: 3, status: 200 },
          { isolate: 0, cost: 2, status: 200 },
        ],
      },
    ]);
    worst = Math.max(worst, worstTrailing(edge));
    console.log(`fixed window: worst trailing-window count ${worst} (L = ${L}, bound 2L = ${2 * L})`);
    expect(worstTrailing(edge)).toBe(2 * L);
  });
});
