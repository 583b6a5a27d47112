import fc from "fast-check";
import { createClient } from "redis";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { startRedis } from "../../dev/redis-server.mjs";
import { decodeReply, overrideArgs, resetArgs, scriptArgs, scriptKeys, storedValues } from "../../src/backends/upstash/wire";
import { TOKEN_BUCKET_LUA, TOKEN_BUCKET_SHA1 } from "../../src/backends/upstash/token-bucket-script";
import { expiresInMs, refundTokens, take, takeBuckets, type RateState } from "../../src/core/algorithms/index";
import { CALENDAR_NOMINAL_MS, type CalendarPolicy, type CalendarState } from "../../src/core/algorithms/calendar";
import { calendarPeriodAt, type CalendarPeriod } from "../../src/core/algorithms/calendar-periods";
import type { BucketPolicy } from "../../src/core/token-bucket";

/**
 * The calendar quota's TypeScript module and its Lua twin agree step for step, through the
 * registry and the one script, on a real redis-server: charge, peek, refund, reset, override,
 * block, wrong hints, several buckets; every key expires when its period (or block) ends. The
 * TypeScript module computes the period from the store's now with Intl; the script picks it among
 * the boundaries the isolate computed around its own now (the isolate's clock here is `Date`,
 * faked, up to an hour off the store's).
 */

let redisServer: Awaited<ReturnType<typeof startRedis>>;
let redis: ReturnType<typeof createClient>;

beforeAll(async () => {
  redisServer = await startRedis();
  redis = createClient({ url: redisServer.url });
  await redis.connect();
  await redis.scriptLoad(TOKEN_BUCKET_LUA);
});
afterAll(async () => {
  await redis?.quit();
  await redisServer?.stop();
});
afterEach(() => {
  vi.useRealTimers();
});

/** The isolate's clock (what `policyArg` computes the boundaries around). */
function isolateAt(ms: number): void {
  vi.useFakeTimers({ toFake: ["Date"], now: ms });
}

const ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kolkata", "America/Santiago"] as const;
/** Instants near the 2026 DST transitions (and February, and a leap day), where boundaries move. */
const STARTS = [
  "2026-03-08T04:00:00Z",
  "2026-03-29T00:30:00Z",
  "2026-10-25T00:30:00Z",
  "2026-11-01T05:30:00Z",
  "2026-02-28T22:00:00Z",
  "2028-02-28T23:00:00Z",
  "2026-09-06T03:00:00Z",
  "2026-04-05T14:00:00Z",
].map(Date.parse);

/** A calendar policy as rules.ts compiles it (L per the period's nominal length, reduced). */
function calendarPolicy(limit: number, period: CalendarPeriod, timeZone: string, weekStart: "monday" | "sunday", blockForMs = 0): CalendarPolicy {
  let [a, b] = [limit, CALENDAR_NOMINAL_MS[period]];
  while (b !== 0) [a, b] = [b, a % b];
  return {
    algorithm: "calendar",
    capacity: limit,
    refillTokens: limit / a,
    refillPeriodMs: CALENDAR_NOMINAL_MS[period] / a,
    period,
    timeZone,
    ...(period === "week" && { weekStart }),
    ...(blockForMs > 0 && { blockForMs }),
  };
}

/** The state text the twin stores, then "|" and the override's text; null when neither. */
function stored(state: RateState | undefined, expiresAtMs: number | undefined, override?: BucketPolicy): string | null {
  let value = "";
  if (state?.algorithm === "calendar") {
    value = `cq:${state.periodStartMs}:${state.periodEndMs}:${state.used}:${state.generation}:${expiresAtMs}`;
    if (state.blockedUntilMs !== undefined) value += `:${state.blockedUntilMs}`;
  } else if (state !== undefined) {
    throw new Error("a calendar test stored another algorithm's state");
  }
  if (override !== undefined) value += `|${override.capacity}:${override.refillTokens}:${override.refillPeriodMs}`;
  return value === "" ? null : value;
}

/** What a reply's `charged` text carries of the state a charge wrote. */
function chargedOf(state: RateState | null): RateState | null {
  if (state?.algorithm !== "calendar") return state;
  const { periodStartMs, periodEndMs, used, generation } = state;
  return { algorithm: "calendar", periodStartMs, periodEndMs, used, generation };
}

/** A wrong hint close to `value`: one unit more used, or an override added or changed. */
function nearHint(value: string | null): string {
  if (value === null) return "|7:7:1000";
  const [state = "", override] = value.split("|");
  if (override !== undefined) return `${state}|${override.replace(/^\d+/, (c) => String(Number(c) + 1))}`;
  return state.replace(/^cq:(\d+):(\d+):(\d+)/, (_, s, e, u) => `cq:${s}:${e}:${Number(u) + 1}`);
}

const KEEP_ALIVE_MS = 10 ** 15;
const READ_AND_KEEP_ALIVE = `
local value = redis.call('GET', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if value and not string.find(value, '|', 1, true) then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return { value or '', ttl }`;

async function readKey(key: string): Promise<{ value: string | null; ttl: number }> {
  const [value, ttl] = (await redis.eval(READ_AND_KEEP_ALIVE, { keys: [key], arguments: [String(KEEP_ALIVE_MS)] })) as [string, number];
  return { value: value === "" ? null : value, ttl };
}

/** A key without override has a TTL ending when its period (or block) ends; one with an override none. */
function expectExpiry(value: string, ttl: number, expiresAtMs: number | undefined, nowMs: number, realMs: number): void {
  if (value.includes("|")) {
    expect(ttl).toBe(-1);
    return;
  }
  expect(ttl).toBeGreaterThanOrEqual(0);
  if (ttl >= KEEP_ALIVE_MS / 2) return;
  expect(expiresAtMs).toBeDefined();
  const leftMs = expiresAtMs! - nowMs;
  expect(ttl).toBeLessThanOrEqual(leftMs);
  expect(ttl).toBeGreaterThanOrEqual(leftMs - Math.ceil(realMs) - 1);
}

const HOUR = 3_600_000;

const step = (maxCost: number) =>
  fc.record({
    elapsedMs: fc.oneof(fc.integer({ min: 0, max: 20 }), fc.integer({ min: 0, max: 3 * HOUR }), fc.integer({ min: 0, max: 40 * 24 * HOUR }), fc.integer({ min: -3_000, max: 0 })),
    // Or: to the next boundary, a millisecond before it, on it or after it.
    toBoundary: fc.option(fc.constantFrom(-1, 0, 1), { freq: 4 }),
    skewMs: fc.oneof(fc.constant(0), fc.integer({ min: -HOUR, max: HOUR })),
    cost: fc.integer({ min: 1, max: maxCost }),
    peek: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
    refund: fc.integer({ min: 0, max: 3 }).map((n) => n === 0),
    refundOf: fc.oneof(fc.constant(0), fc.nat({ max: 30 })),
    admin: fc.option(
      fc.oneof(fc.record({ kind: fc.constant("override" as const), limit: fc.integer({ min: 1, max: 12 }) }), fc.constant({ kind: "clear" as const }), fc.constant({ kind: "reset" as const })),
      { freq: 6 },
    ),
    hint: fc.constantFrom("right" as const, "none" as const, "stale" as const, "near" as const),
  });

type Step = ReturnType<typeof step> extends fc.Arbitrary<infer T> ? T : never;

async function checkSequence(policy: CalendarPolicy, steps: readonly Step[], startMs: number): Promise<void> {
  const ref = { clientKey: `calendar:${crypto.randomUUID()}`, rule: "q" };
  const [key = ""] = scriptKeys("p", [ref]);
  let override: BucketPolicy | undefined;
  let state: RateState | undefined;
  let expiresAtMs: number | undefined;
  let nowMs = startMs;
  const charges: { charged: RateState; cost: number }[] = [];
  let generation = 0;
  let previous: string | null = null;
  const wrote = (next: RateState) => {
    state = next;
    expiresAtMs = nowMs + expiresInMs(next, policy, nowMs);
  };
  const checkKey = async (sentAt: number, ttlSetMs: number | undefined) => {
    const { value, ttl } = await readKey(key);
    const realMs = performance.now() - sentAt;
    const expected = stored(state, expiresAtMs, override);
    if (value === null && expected !== null && override === undefined && expiresAtMs !== undefined && expiresAtMs <= nowMs) {
      state = undefined;
      expiresAtMs = undefined;
    } else if (value === null && expected !== null && override === undefined && ttlSetMs !== undefined && ttlSetMs <= realMs + 1) {
      await redis.set(key, expected, { PX: KEEP_ALIVE_MS });
    } else {
      expect(value).toBe(expected);
      if (value !== null) expectExpiry(value, ttl, expiresAtMs, nowMs, realMs);
    }
  };
  for (const { elapsedMs, toBoundary, skewMs, cost: stepCost, peek, admin, refund, refundOf, hint: hintKind } of steps) {
    nowMs = toBoundary === null ? nowMs + elapsedMs : calendarPeriodAt(policy, nowMs).endMs + toBoundary;
    isolateAt(nowMs + skewMs);
    if (admin !== null) {
      if (admin.kind === "reset") state = undefined;
      else if (admin.kind === "override") override = { capacity: admin.limit, refillTokens: admin.limit, refillPeriodMs: CALENDAR_NOMINAL_MS[policy.period] };
      else {
        override = undefined;
        if (expiresAtMs !== undefined && expiresAtMs <= nowMs) state = undefined;
      }
      if (state === undefined) expiresAtMs = undefined;
      const sentAt = performance.now();
      const reply = await redis.evalSha(TOKEN_BUCKET_SHA1, { keys: [key], arguments: admin.kind === "reset" ? resetArgs() : overrideArgs(override ?? null, nowMs) });
      expect(storedValues(reply, 1)).toEqual([stored(state, expiresAtMs, override) ?? ""]);
      // Removing the override gives the key its state's TTL, which may be a millisecond (a step to just before a boundary).
      await checkKey(sentAt, admin.kind === "clear" && expiresAtMs !== undefined ? expiresAtMs - nowMs : undefined);
    }
    const right = stored(state, expiresAtMs, override);
    const hint = { right, none: null, stale: previous, near: nearHint(right) }[hintKind] ?? "";
    previous = right;
    const inForce = override === undefined ? policy : { ...policy, capacity: override.capacity, refillTokens: override.refillTokens, refillPeriodMs: override.refillPeriodMs };
    if (refund && charges.length > 0) {
      const [last] = charges.splice(refundOf % charges.length, 1) as [(typeof charges)[number]];
      const refunded = refundTokens(state, inForce, last.cost, last.charged, nowMs);
      if (refunded !== state && refunded !== undefined) wrote(refunded);
      const sentAt = performance.now();
      const reply = await redis.evalSha(TOKEN_BUCKET_SHA1, { keys: [key], arguments: scriptArgs([{ ...ref, policy, cost: last.cost, enforced: true }], false, nowMs, [last.charged]) });
      expect(storedValues(reply, 1)).toEqual([stored(state, expiresAtMs, override) ?? ""]);
      await checkKey(sentAt, state === undefined ? undefined : expiresInMs(state, inForce, nowMs));
      continue;
    }
    const cost = peek && stepCost % 2 === 0 ? 0 : stepCost;
    generation += 1;
    const taken = take(state, inForce, cost, nowMs, generation);
    const expected = peek ? { decision: taken.decision, next: undefined, expiresInMs: 0 } : taken;
    if (expected.next !== undefined) wrote(expected.next);
    const sentAt = performance.now();
    const reply = await redis.evalSha(TOKEN_BUCKET_SHA1, { keys: [key], arguments: scriptArgs([{ ...ref, policy, cost, enforced: true }], !peek, nowMs, undefined, [hint], generation) });
    const { blockForMs: _block, ...inForceShape } = inForce;
    const charged = !peek && expected.decision.outcome === "allowed" ? (expected.next ?? null) : null;
    expect(decodeReply(reply)).toEqual([{ decision: expected.decision, policy: inForceShape, charged: chargedOf(charged) }]);
    // A refund of this charge, as each backend would send it: the whole state, or what the reply carried.
    if (charged !== null) charges.unshift({ charged: generation % 2 === 0 ? charged : chargedOf(charged)!, cost });
    expect(storedValues(reply)).toEqual([stored(state, expiresAtMs, override) ?? ""]);
    // Nothing written still rewrites the key when a wrong hint made the script put the value back,
    // with the expiry the value carries (a millisecond, just before a boundary).
    await checkKey(sentAt, expected.next !== undefined ? expected.expiresInMs : expiresAtMs === undefined ? undefined : expiresAtMs - nowMs);
  }
  await redis.del(key);
}

const calendarArb = (maxLimit: number) =>
  fc
    .record({
      limit: fc.integer({ min: 1, max: maxLimit }),
      period: fc.constantFrom("day", "week", "month") as fc.Arbitrary<CalendarPeriod>,
      timeZone: fc.constantFrom(...ZONES),
      weekStart: fc.constantFrom("monday", "sunday") as fc.Arbitrary<"monday" | "sunday">,
      blockForMs: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 5_000 }), fc.integer({ min: 1, max: 3 * 86_400_000 })),
    })
    .map(({ limit, period, timeZone, weekStart, blockForMs }) => calendarPolicy(limit, period, timeZone, weekStart, blockForMs));

describe("the calendar quota's Lua twin and TypeScript module agree (through the registry and the one script)", () => {
  it("on random sequences (time steps across boundaries and DST, cost, take, peek or refund, override, reset, block, hints, an isolate clock up to an hour off)", async () => {
    await fc.assert(
      fc.asyncProperty(calendarArb(12), fc.array(step(4), { minLength: 1, maxLength: 30 }), fc.constantFrom(...STARTS), fc.integer({ min: -2 * HOUR, max: 2 * HOUR }), (policy, steps, start, offset) =>
        checkSequence(policy, steps, start + offset),
      ),
      { numRuns: 250 },
    );
  }, 180_000);

  it("where refusals are common (small limits, costs up to the limit): the same", async () => {
    await fc.assert(
      fc.asyncProperty(calendarArb(5), fc.array(step(5), { minLength: 1, maxLength: 40 }), fc.constantFrom(...STARTS), (policy, steps, start) =>
        checkSequence(
          policy,
          steps.map((s) => ({ ...s, cost: Math.min(s.cost, policy.capacity + 1), elapsedMs: s.elapsedMs % (2 * HOUR) })),
          start,
        ),
      ),
      { numRuns: 150 },
    );
  }, 180_000);

  it("on several buckets at once, mixed with a token bucket: the same all-or-nothing decisions and writes", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ policy: calendarArb(6), enforced: fc.boolean() }), { minLength: 1, maxLength: 3 }),
        fc.array(fc.record({ elapsedMs: fc.integer({ min: 0, max: 6 * HOUR }), costs: fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 4, maxLength: 4 }), peek: fc.boolean() }), {
          minLength: 1,
          maxLength: 20,
        }),
        fc.constantFrom(...STARTS),
        async (buckets, steps, start) => {
          const policies: BucketPolicy[] = [...buckets.map((b) => b.policy), { capacity: 3, refillTokens: 1, refillPeriodMs: 1_000 }];
          const enforced = [...buckets.map((b) => b.enforced), true];
          const refs = policies.map(() => ({ clientKey: `multi:${crypto.randomUUID()}`, rule: "q" }));
          const keys = scriptKeys("p", refs);
          const states: (RateState | undefined)[] = policies.map(() => undefined);
          const expiries: (number | undefined)[] = policies.map(() => undefined);
          let nowMs = start;
          let generation = 0;
          for (const { elapsedMs, costs, peek } of steps) {
            nowMs += elapsedMs;
            isolateAt(nowMs);
            generation += 1;
            const entries = policies.map((policy, i) => ({ state: states[i], policy, cost: costs[i]!, enforced: enforced[i]! }));
            const { results, refused } = takeBuckets(entries, nowMs, generation);
            const hints = await Promise.all(keys.map(async (key) => (await redis.get(key)) ?? ""));
            const charges = entries.map((e, i) => ({ ...refs[i]!, policy: e.policy, cost: e.cost, enforced: e.enforced }));
            const reply = await redis.evalSha(TOKEN_BUCKET_SHA1, { keys, arguments: scriptArgs(charges, !peek, nowMs, undefined, hints, generation) });
            const answers = decodeReply(reply);
            expect(answers.map((a) => a.decision)).toEqual(results.map((r) => r.decision));
            for (const [i, r] of results.entries()) {
              const charged = !peek && !refused && r.decision.outcome === "allowed" ? (r.next ?? null) : null;
              expect(answers[i]!.charged).toEqual(chargedOf(charged));
              if (!peek && r.next !== undefined) {
                states[i] = r.next;
                expiries[i] = nowMs + r.expiresInMs;
              }
            }
            const values = storedValues(reply);
            for (let i = 0; i < buckets.length; i += 1) expect(values[i]).toBe(stored(states[i], expiries[i]) ?? "");
            for (const key of keys) await redis.pExpire(key, KEEP_ALIVE_MS);
          }
          await redis.del(keys);
        },
      ),
      { numRuns: 100 },
    );
  }, 180_000);
});

describe("the script with an isolate's clock a period or more off the store's", () => {
  const DAY = 24 * HOUR;
  const policy = calendarPolicy(2, "day", "Europe/Berlin", "monday");
  const charge = async (key: string, storeMs: number) => {
    const reply = await redis.evalSha(TOKEN_BUCKET_SHA1, { keys: [key], arguments: scriptArgs([{ clientKey: key, rule: "q", policy, cost: 1, enforced: true }], true, storeMs) });
    return decodeReply(reply)[0]!.decision;
  };

  it("behind: the store's now past every boundary counts in the last known period, never a fresh one", async () => {
    const key = `calendar:behind:${crypto.randomUUID()}`;
    const store = Date.parse("2026-05-10T10:00:00Z");
    isolateAt(store - 3 * DAY);
    expect(await charge(key, store)).toMatchObject({ outcome: "allowed", remaining: 1 });
    expect(await charge(key, store + 1)).toMatchObject({ outcome: "allowed", remaining: 0 });
    // Refused, and kept a day's length: the stale boundaries never start a fresh period.
    expect(await charge(key, store + HOUR)).toMatchObject({ outcome: "denied" });
    expect(await redis.pTTL(key)).toBeGreaterThan(DAY - HOUR - 1000);
    await redis.del(key);
  });

  it("ahead: the store's now before every boundary counts in the first known period, and waits for its end", async () => {
    const key = `calendar:ahead:${crypto.randomUUID()}`;
    const store = Date.parse("2026-05-10T10:00:00Z");
    isolateAt(store + 3 * DAY);
    await charge(key, store);
    await charge(key, store);
    const refused = await charge(key, store + 1);
    expect(refused.outcome).toBe("denied");
    // The first known period (the isolate's yesterday, May 12 in Berlin) ends at midnight starting May 13.
    if (refused.outcome === "denied") expect(refused.retryAfterMs).toBe(Date.parse("2026-05-12T22:00:00Z") - store - 1);
    // A correct isolate then still counts that state (a later period: towards refusing).
    isolateAt(store + 2);
    expect(await charge(key, store + 2)).toMatchObject({ outcome: "denied" });
    await redis.del(key);
  });
});

/**
 * The calendar boundary schedule on the Upstash script, 3 isolates. A real calendar boundary
 * cannot be waited for in a test (the nearest local midnight of any zone can be half an hour
 * away), so the store's time is injected (the script's test argument; production passes "" and
 * the script reads Redis `TIME`); everything else is the real script on a real redis-server.
 * Three isolates whose clocks straddle New York's midnight ending the 25-hour day (one 45 min
 * behind, one 2 s ahead, one 45 min ahead) send bursts of costs 1–2 just before and just after
 * the store's boundary; each isolate computes the boundaries around its own clock.
 */
describe("a calendar boundary on the script, 3 isolates whose clocks straddle it (store time injected)", () => {
  it("every admission counts in the period holding the store's now, whatever the isolate's clock: ≤ L per period, 2L across the boundary, each decision the TypeScript module's", async () => {
    const L = 3;
    const policy = calendarPolicy(L, "day", "America/New_York", "monday");
    const boundaryMs = Date.parse("2026-11-02T05:00:00Z"); // midnight after the 25-hour Nov 1
    const isolateOffsetsMs = [-45 * 60_000, 2_000, 45 * 60_000];
    const ref = { clientKey: `boundary:${crypto.randomUUID()}`, rule: "c" };
    const [key = ""] = scriptKeys("p", [ref]);
    let state: RateState | undefined;
    let generation = 0;
    const admitted: { storeMs: number; units: number }[] = [];
    for (const burstAtMs of [boundaryMs - 150, boundaryMs - 40, boundaryMs + 2, boundaryMs + 90]) {
      for (let i = 0; i < 6; i++) {
        const storeMs = burstAtMs + i;
        const cost = 1 + (i % 2);
        const isolateMs = storeMs + (isolateOffsetsMs[i % 3] ?? 0);
        generation += 1;
        isolateAt(isolateMs);
        const reply = await redis.evalSha(TOKEN_BUCKET_SHA1, { keys: [key], arguments: scriptArgs([{ ...ref, policy, cost, enforced: true }], true, storeMs, undefined, [""], generation) });
        vi.useRealTimers();
        const expected = take(state, policy, cost, storeMs, generation);
        const [answer] = decodeReply(reply);
        expect(answer?.decision).toEqual(expected.decision);
        if (expected.next !== undefined) state = expected.next;
        // The reset points at the end of the store's period, not the isolate's.
        expect(storeMs + (answer?.decision.resetMs ?? 0)).toBe(calendarPeriodAt(policy, storeMs).endMs);
        if (answer?.decision.outcome === "allowed") admitted.push({ storeMs, units: cost });
      }
    }
    const inPeriod = (before: boolean) => admitted.filter(({ storeMs }) => storeMs < boundaryMs === before).reduce((sum, { units }) => sum + units, 0);
    console.log(`calendar boundary (script, 3 isolates): ${inPeriod(true)} units before the boundary, ${inPeriod(false)} after (L = ${L}, 2L = ${2 * L} across it)`);
    expect(inPeriod(true)).toBe(L);
    expect(inPeriod(false)).toBe(L);
    await redis.del(key);
  });
});

describe("calendar states", () => {
  it("never parse as another algorithm's (the script reads a state by whichever twin recognises it)", () => {
    const state: CalendarState = { algorithm: "calendar", periodStartMs: 0, periodEndMs: 86_400_000, used: 3, generation: 7 };
    expect(stored(state, 86_400_000)).toMatch(/^cq:/);
    expect(TOKEN_BUCKET_LUA).toContain("'^cq:(%d+)");
  });
});
