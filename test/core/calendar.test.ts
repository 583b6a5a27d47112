import fc from "fast-check";
import { afterEach, describe, expect, it, vi } from "vitest";
import { calendarPolicyArg } from "../../src/backends/upstash/algorithms/calendar.lua";
import { calendar, calendarPeriodSeconds, decidedPeriodSeconds, refundCalendar, takeCalendar, type CalendarPolicy } from "../../src/core/algorithms/calendar";
import { calendarBoundaries, calendarPeriodAt, type CalendarSpec } from "../../src/core/algorithms/calendar-periods";
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
const at = (iso: string) => Date.parse(iso);
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const span = (spec: CalendarSpec, iso: string) => {
  const { startMs, endMs } = calendarPeriodAt(spec, at(iso));
  return [new Date(startMs).toISOString(), new Date(endMs).toISOString(), (endMs - startMs) / HOUR];
};
const policyOf = (spec: Partial<CalendarPolicy> & Pick<CalendarPolicy, "period">, limit = 3): CalendarPolicy => ({
  algorithm: "calendar",
  capacity: limit,
  refillTokens: limit,
  refillPeriodMs: DAY,
  timeZone: "UTC",
  ...spec,
});

afterEach(() => {
  vi.useRealTimers();
});

describe("calendar rules", () => {
  it("compile to a policy of the limit per period in a zone, keeping the other rules unchanged", () => {
    const result = compileRules([
      { name: "monthly", key: "header:x-api-key", algorithm: "calendar", limit: 10000, period: "month", timeZone: "Europe/Berlin" },
      { name: "weekly", algorithm: "calendar", limit: 7, period: "week", cost: 2, blockFor: "1h", count: ["2xx"] },
      { name: "daily", algorithm: "calendar", limit: 5, period: "day", timeZone: "america/new_york", weekStart: undefined },
      { name: "bucket", capacity: 5, rate: "5/1m" },
    ]);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.rules[0]!.policy).toEqual({ name: "monthly", algorithm: "calendar", capacity: 10000, refillTokens: 1, refillPeriodMs: 259_200, cost: 1, period: "month", timeZone: "Europe/Berlin" });
    expect(result.rules[0]!.spec).toMatchObject({ algorithm: "calendar", limit: 10000, period: "month", timeZone: "Europe/Berlin" });
    expect(result.rules[1]!.policy).toMatchObject({ algorithm: "calendar", capacity: 7, period: "week", timeZone: "UTC", weekStart: "monday", blockForMs: HOUR, cost: 2 });
    // The zone is kept in its canonical spelling.
    expect(result.rules[2]!.policy).toMatchObject({ period: "day", timeZone: "America/New_York" });
    expect(result.rules[3]!.policy).toEqual({ name: "bucket", capacity: 5, refillTokens: 1, refillPeriodMs: 12_000, cost: 1 });
  });

  it("are refused with errors naming the rule and the field (an unknown zone too)", () => {
    expect(errorsOf([{ name: "z", algorithm: "calendar", limit: 10, period: "month", timeZone: "Mars/Olympus" }])).toEqual([
      '"z" (#1) timeZone: "Mars/Olympus" is not an IANA time zone (e.g. "UTC", "Europe/Berlin", "America/New_York")',
    ]);
    expect(errorsOf([{ name: "o", algorithm: "calendar", limit: 10, period: "day", timeZone: "+01:00" }])).toHaveLength(1);
    expect(errorsOf([{ name: "p", algorithm: "calendar", limit: 10, period: "year" }])).toEqual(['"p" (#1) period: must be day, week or month']);
    expect(errorsOf([{ name: "m", algorithm: "calendar" }])).toEqual([
      '"m" (#1) limit: is missing (a calendar rule needs limit and period)',
      '"m" (#1) period: is missing (a calendar rule needs limit and period)',
    ]);
    expect(errorsOf([{ name: "w", algorithm: "calendar", limit: 10, period: "day", weekStart: "monday" }])).toEqual(['"w" (#1) weekStart: is only for "period": "week"']);
    expect(errorsOf([{ name: "w", algorithm: "calendar", limit: 10, period: "week", weekStart: "friday" }])).toEqual(['"w" (#1) weekStart: must be monday or sunday']);
    expect(errorsOf([{ name: "c", algorithm: "calendar", limit: 10, period: "day", window: "1d", capacity: 3 }])).toEqual([
      '"c" (#1) capacity: is not used by a calendar rule (it has limit and period: "day", "week" or "month")',
      '"c" (#1) window: is not used by a calendar rule (it has limit and period: "day", "week" or "month")',
    ]);
    expect(errorsOf([{ name: "t", capacity: 10, rate: 1, period: "day", timeZone: "UTC" }])).toEqual([
      '"t" (#1) period: is only for calendar rules (set "algorithm": "calendar")',
      '"t" (#1) timeZone: is only for calendar rules (set "algorithm": "calendar")',
    ]);
    expect(errorsOf([{ name: "f", algorithm: "fixed-window", limit: 1, window: "1m", period: "day" }])).toEqual(['"f" (#1) period: is only for calendar rules (set "algorithm": "calendar")']);
    expect(errorsOf([{ name: "x", concurrency: 2, period: "day" }])).toEqual(['"x" (#1) period: is not used by a concurrency rule (it has concurrency instead of a bucket)']);
    expect(errorsOf([{ name: "k", algorithm: "calendar", limit: 3, period: "day", cost: 4 }])).toEqual(['"k" (#1) cost: 4 exceeds limit 3: no request could ever pass']);
  });
});

describe("calendar periods (DST and month lengths, Intl's zone data)", () => {
  it("a day of 23 or 25 hours is one day: the 2026 transitions in America/New_York and Europe/Berlin", () => {
    const ny = { period: "day", timeZone: "America/New_York" } as const;
    expect(span(ny, "2026-03-08T12:00:00Z")).toEqual(["2026-03-08T05:00:00.000Z", "2026-03-09T04:00:00.000Z", 23]);
    expect(span(ny, "2026-11-01T12:00:00Z")).toEqual(["2026-11-01T04:00:00.000Z", "2026-11-02T05:00:00.000Z", 25]);
    expect(span(ny, "2026-03-07T12:00:00Z")[2]).toBe(24);
    const berlin = { period: "day", timeZone: "Europe/Berlin" } as const;
    expect(span(berlin, "2026-03-29T12:00:00Z")).toEqual(["2026-03-28T23:00:00.000Z", "2026-03-29T22:00:00.000Z", 23]);
    expect(span(berlin, "2026-10-25T12:00:00Z")).toEqual(["2026-10-24T22:00:00.000Z", "2026-10-25T23:00:00.000Z", 25]);
    // Inside the repeated hour (01:00–02:00 twice in New York, 02:00–03:00 twice in Berlin): still that one day.
    expect(span(ny, "2026-11-01T05:30:00Z")[0]).toBe("2026-11-01T04:00:00.000Z");
    expect(span(ny, "2026-11-01T06:30:00Z")[0]).toBe("2026-11-01T04:00:00.000Z");
    expect(span(berlin, "2026-10-25T00:30:00Z")[0]).toBe("2026-10-24T22:00:00.000Z");
    expect(span(berlin, "2026-10-25T01:30:00Z")[0]).toBe("2026-10-24T22:00:00.000Z");
    // A zone whose DST gap swallows midnight (Santiago, 2026-09-06): the day starts when the gap ends.
    expect(span({ period: "day", timeZone: "America/Santiago" }, "2026-09-06T12:00:00Z")).toEqual(["2026-09-06T04:00:00.000Z", "2026-09-07T03:00:00.000Z", 23]);
  });

  it("months of 28, 29, 30 and 31 days, weeks from Monday or Sunday, in the rule's zone", () => {
    const utcMonth = { period: "month", timeZone: "UTC" } as const;
    expect(span(utcMonth, "2026-02-14T00:00:00Z")).toEqual(["2026-02-01T00:00:00.000Z", "2026-03-01T00:00:00.000Z", 28 * 24]);
    expect(span(utcMonth, "2028-02-29T23:59:59Z")).toEqual(["2028-02-01T00:00:00.000Z", "2028-03-01T00:00:00.000Z", 29 * 24]);
    expect(span(utcMonth, "2026-04-30T12:00:00Z")[2]).toBe(30 * 24);
    // Berlin's March 2026 holds the spring transition: 31 days less an hour.
    expect(span({ period: "month", timeZone: "Europe/Berlin" }, "2026-03-15T00:00:00Z")).toEqual(["2026-02-28T23:00:00.000Z", "2026-03-31T22:00:00.000Z", 31 * 24 - 1]);
    // 2026-02-10 is a Tuesday.
    expect(span({ period: "week", timeZone: "UTC" }, "2026-02-10T00:00:00Z")).toEqual(["2026-02-09T00:00:00.000Z", "2026-02-16T00:00:00.000Z", 168]);
    expect(span({ period: "week", timeZone: "UTC", weekStart: "sunday" }, "2026-02-10T00:00:00Z")).toEqual(["2026-02-08T00:00:00.000Z", "2026-02-15T00:00:00.000Z", 168]);
    // A Sunday belongs to the week starting that day (sunday) or six days before (monday).
    expect(span({ period: "week", timeZone: "UTC", weekStart: "sunday" }, "2026-02-15T00:00:00Z")[0]).toBe("2026-02-15T00:00:00.000Z");
    expect(span({ period: "week", timeZone: "UTC" }, "2026-02-15T23:59:59Z")[0]).toBe("2026-02-09T00:00:00.000Z");
    // The week of New York's spring transition: 167 hours.
    expect(span({ period: "week", timeZone: "America/New_York", weekStart: "sunday" }, "2026-03-10T00:00:00Z")[2]).toBe(167);
  });

  it("periods tile time: each one ends where the next starts, and holds every instant in it", () => {
    fc.assert(
      fc.property(
        fc.constantFrom("UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kolkata", "America/Santiago", "Pacific/Chatham"),
        fc.constantFrom("day", "week", "month") as fc.Arbitrary<CalendarSpec["period"]>,
        fc.constantFrom("monday", "sunday") as fc.Arbitrary<"monday" | "sunday">,
        fc.integer({ min: at("2025-01-01T00:00:00Z"), max: at("2029-01-01T00:00:00Z") }),
        (timeZone, period, weekStart, ms) => {
          const spec = { period, timeZone, weekStart };
          const here = calendarPeriodAt(spec, ms);
          expect(here.startMs).toBeLessThanOrEqual(ms);
          expect(here.endMs).toBeGreaterThan(ms);
          expect(calendarPeriodAt(spec, here.endMs).startMs).toBe(here.endMs);
          expect(calendarPeriodAt(spec, here.startMs - 1).endMs).toBe(here.startMs);
          expect(calendarPeriodAt(spec, here.endMs - 1)).toEqual(here);
          const [b0, b1, b2, b3] = calendarBoundaries(spec, ms);
          expect([b1, b2]).toEqual([here.startMs, here.endMs]);
          expect(b0).toBeLessThan(b1);
          expect(b3).toBeGreaterThan(b2);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe("the calendar quota (injected clock)", () => {
  it("counts L per day, and t and Retry-After point at the next local midnight on a 23-hour day", () => {
    const policy = policyOf({ period: "day", timeZone: "America/New_York" }, 3);
    const now = at("2026-03-08T12:00:00Z"); // 08:00 EDT; the day ends at 04:00Z on the 9th
    const first = takeCalendar(undefined, policy, 3, now, 1);
    expect(first.decision).toEqual({ outcome: "allowed", remaining: 0, resetMs: at("2026-03-09T04:00:00Z") - now });
    expect(first.expiresInMs).toBe(at("2026-03-09T04:00:00Z") - now);
    const refused = takeCalendar(first.next, policy, 1, now + HOUR);
    expect(refused.decision).toEqual({ outcome: "denied", remaining: 0, resetMs: at("2026-03-09T04:00:00Z") - now - HOUR, retryAfterMs: at("2026-03-09T04:00:00Z") - now - HOUR });
    expect(takeCalendar(first.next, policy, 1, at("2026-03-09T03:59:59.999Z")).decision.outcome).toBe("denied");
    const next = takeCalendar(first.next, policy, 3, at("2026-03-09T04:00:00Z"));
    expect(next.decision).toEqual({ outcome: "allowed", remaining: 0, resetMs: DAY });
  });

  it("on a 25-hour day the quota lasts all 25 hours (the repeated hour is not a new day)", () => {
    const policy = policyOf({ period: "day", timeZone: "Europe/Berlin" }, 2);
    const state = takeCalendar(undefined, policy, 2, at("2026-10-24T22:00:00Z")).next; // 00:00 CEST
    expect(takeCalendar(state, policy, 1, at("2026-10-25T01:30:00Z")).decision.outcome).toBe("denied"); // 02:30 the second time
    expect(takeCalendar(state, policy, 1, at("2026-10-25T22:59:59.999Z")).decision).toMatchObject({ outcome: "denied", retryAfterMs: 1 });
    expect(takeCalendar(state, policy, 1, at("2026-10-25T23:00:00Z")).decision).toMatchObject({ outcome: "allowed", remaining: 1 });
    expect(calendarPeriodSeconds(policy, at("2026-10-25T12:00:00Z"))).toBe(25 * 3600);
  });

  it("a month resets at local midnight on the 1st (February 2026: 28 days; 2028: 29)", () => {
    const policy = policyOf({ period: "month", timeZone: "Europe/Berlin" }, 10);
    const state = takeCalendar(undefined, policy, 10, at("2026-02-01T00:00:00Z")).next;
    expect(takeCalendar(state, policy, 1, at("2026-02-28T22:59:59.999Z")).decision).toMatchObject({ outcome: "denied", retryAfterMs: 1 });
    expect(takeCalendar(state, policy, 1, at("2026-02-28T23:00:00Z")).decision).toMatchObject({ outcome: "allowed", remaining: 9 });
    expect(calendarPeriodSeconds(policy, at("2026-02-10T00:00:00Z"))).toBe(28 * 86_400);
    const leap = takeCalendar(undefined, policy, 10, at("2028-02-28T23:30:00Z")).next; // Feb 29, 00:30 in Berlin
    expect(takeCalendar(leap, policy, 1, at("2028-02-29T12:00:00Z")).decision).toMatchObject({ outcome: "denied", retryAfterMs: at("2028-02-29T23:00:00Z") - at("2028-02-29T12:00:00Z") });
    expect(calendarPeriodSeconds(policy, at("2028-02-10T00:00:00Z"))).toBe(29 * 86_400);
  });

  it("a week starts on its weekStart at midnight in the zone", () => {
    const monday = policyOf({ period: "week", timeZone: "UTC", weekStart: "monday" }, 1);
    const sunday = policyOf({ period: "week", timeZone: "UTC", weekStart: "sunday" }, 1);
    const saturday = at("2026-02-14T12:00:00Z");
    const m = takeCalendar(undefined, monday, 1, saturday).next;
    const s = takeCalendar(undefined, sunday, 1, saturday).next;
    expect(takeCalendar(s, sunday, 1, at("2026-02-15T00:00:00Z")).decision.outcome).toBe("allowed");
    expect(takeCalendar(m, monday, 1, at("2026-02-15T00:00:00Z")).decision.outcome).toBe("denied");
    expect(takeCalendar(m, monday, 1, at("2026-02-16T00:00:00Z")).decision.outcome).toBe("allowed");
  });

  it("a refund gives back within the period and generation only; a block outlasts the period", () => {
    const policy = { ...policyOf({ period: "day" }, 2), blockForMs: 2 * DAY };
    const now = at("2026-05-05T10:00:00Z");
    const charged = takeCalendar(undefined, policy, 2, now, 7).next!;
    expect(refundCalendar(charged, policy, 1, charged, now + 1)?.used).toBe(1);
    expect(refundCalendar(charged, policy, 1, charged, at("2026-05-06T00:00:00Z"))).toBe(charged);
    expect(refundCalendar({ ...charged, generation: 8 }, policy, 1, charged, now + 1)?.used).toBe(2);
    const blocked = takeCalendar(charged, policy, 1, now + 1);
    expect(blocked.decision).toMatchObject({ outcome: "denied", retryAfterMs: 2 * DAY });
    expect(blocked.expiresInMs).toBe(2 * DAY);
    expect(takeCalendar(blocked.next, policy, 1, at("2026-05-06T12:00:00Z")).decision).toMatchObject({ outcome: "denied", retryAfterMs: now + 1 + 2 * DAY - at("2026-05-06T12:00:00Z") });
  });

  it("a state from a later period (the store's clock stepped back) still counts, towards refusing", () => {
    const policy = policyOf({ period: "day" }, 1);
    const tomorrow = takeCalendar(undefined, policy, 1, at("2026-05-06T00:00:01Z")).next;
    expect(takeCalendar(tomorrow, policy, 1, at("2026-05-05T23:59:59Z")).decision).toMatchObject({ outcome: "denied", retryAfterMs: DAY + 1000 });
  });

  it("degraded mode: a fraction of L in the same calendar; drained admits nothing until the boundary", () => {
    const policy = policyOf({ period: "month", timeZone: "Europe/Berlin" }, 1000);
    expect(localPolicy(policy, 0.1)).toMatchObject({ algorithm: "calendar", capacity: 100, period: "month", timeZone: "Europe/Berlin" });
    const now = at("2026-02-10T00:00:00Z");
    expect(calendar.take(calendar.drained(policy, now), policy, 1, now).decision).toMatchObject({ outcome: "denied", retryAfterMs: at("2026-02-28T23:00:00Z") - now });
  });

  it("the isolate's boundaries travel in the Upstash policy text", () => {
    const policy = policyOf({ period: "day" }, 5);
    expect(calendarPolicyArg({ ...policy, refillTokens: 1, refillPeriodMs: 17_280_000 }, at("2026-03-08T12:00:00Z"))).toBe(
      `5:1:17280000:0:${at("2026-03-07T00:00:00Z")}:${at("2026-03-08T00:00:00Z")}:${at("2026-03-09T00:00:00Z")}:${at("2026-03-10T00:00:00Z")}:day:monday:UTC`,
    );
  });
});

describe("calendar headers", () => {
  it("q=L, w the current period's length (a 23-hour day), t and Retry-After to the next local midnight", async () => {
    const time = { now: at("2026-03-29T10:00:00Z") }; // noon in Berlin, on the day that lost an hour
    vi.useFakeTimers({ toFake: ["Date"], now: time.now });
    const limiter = new Limiter({
      rules: [{ name: "daily", key: "header:x-api-key", algorithm: "calendar", limit: 2, period: "day", timeZone: "Europe/Berlin" }],
      backend: memoryBackend({ clock: () => time.now }),
      clock: () => time.now,
      log: () => {},
    });
    const untilMidnight = (at("2026-03-29T22:00:00Z") - time.now) / 1000;
    const first = await limiter.check(request("a"));
    expect(rateLimitItems(headersOf(first).get("RateLimit-Policy"))).toEqual([["daily", { q: 2, w: 23 * 3600 }]]);
    expect(rateLimitItems(headersOf(first).get("RateLimit"))).toEqual([["daily", { r: 1, t: untilMidnight }]]);
    await limiter.check(request("a"));
    const refused = await limiter.check(request("a"));
    expect(refused).toMatchObject({ kind: "refused", retryAfterMs: untilMidnight * 1000 });
    expect(rateLimitItems(headersOf(refused).get("RateLimit"))).toEqual([["daily", { r: 0, t: untilMidnight }]]);
  });
});

describe("calendar headers: the store's period", () => {
  it("w is the length of the period the store decided in, not the one the isolate's clock is in (a boundary between them)", async () => {
    // The store is 40 s ahead: already on Nov 2 in New York (24 h), while the isolate is still on Nov 1 (25 h, DST ends).
    const store = { now: at("2026-11-02T05:00:30Z") };
    vi.useFakeTimers({ toFake: ["Date"], now: at("2026-11-02T04:59:50Z") });
    const limiter = new Limiter({
      rules: [{ name: "daily", key: "header:x-api-key", algorithm: "calendar", limit: 2, period: "day", timeZone: "America/New_York" }],
      backend: memoryBackend({ clock: () => store.now }),
      clock: () => Date.now(),
      log: () => {},
    });
    const first = await limiter.check(request("a"));
    expect(rateLimitItems(headersOf(first).get("RateLimit-Policy"))).toEqual([["daily", { q: 2, w: 24 * 3600 }]]);
    // The other way round: the store still on Nov 1 (25 h), the isolate past midnight.
    store.now = at("2026-11-02T04:59:50Z");
    vi.setSystemTime(at("2026-11-02T05:00:30Z"));
    const second = await limiter.check(request("b"));
    expect(rateLimitItems(headersOf(second).get("RateLimit-Policy"))).toEqual([["daily", { q: 2, w: 25 * 3600 }]]);
  });

  it("decidedPeriodSeconds finds the store's period from a decision's reset, for a clock up to hours off, on days, weeks and months", () => {
    const cases: [Partial<CalendarPolicy> & Pick<CalendarPolicy, "period">, string][] = [
      [{ period: "day", timeZone: "Europe/Berlin" }, "2026-03-29T10:00:00Z"],
      [{ period: "week", timeZone: "America/New_York", weekStart: "sunday" }, "2026-03-08T06:00:00Z"],
      [{ period: "month", timeZone: "UTC" }, "2028-02-29T23:59:59Z"],
    ];
    for (const [spec, storeIso] of cases) {
      const policy = policyOf(spec);
      const storeNow = at(storeIso);
      const { startMs, endMs } = calendarPeriodAt(policy, storeNow);
      for (const skewMs of [-5 * HOUR, -1_000, 0, 1_000, 5 * HOUR]) {
        expect(decidedPeriodSeconds(policy, endMs - storeNow, storeNow + skewMs)).toBe((endMs - startMs) / 1000);
      }
    }
  });
});

describe("the deny cache and calendar quotas", () => {
  it("never predicts a quota empty from an allowed answer; remembers a refusal until the boundary", async () => {
    const time = { now: at("2026-05-05T10:00:00Z") };
    const limiter = new Limiter({
      rules: [{ name: "daily", key: "header:x-api-key", algorithm: "calendar", limit: 10, period: "day" }],
      backend: memoryBackend({ clock: () => time.now }),
      clock: () => time.now,
      log: () => {},
    });
    for (let i = 0; i < 10; i++) expect((await limiter.check(request("a"))).kind).toBe("allowed");
    expect(await limiter.check(request("a"))).toMatchObject({ kind: "refused", cached: false, retryAfterMs: 14 * HOUR });
    expect(await limiter.check(request("a"))).toMatchObject({ kind: "refused", cached: true });
    time.now = at("2026-05-06T00:00:00Z");
    expect((await limiter.check(request("a"))).kind).toBe("allowed");
  });
});

/**
 * The boundary test on the memory backend: three isolates share the store, whose clock the test
 * moves; bursts land at ±1 ms of local midnights (a 23-hour and a 25-hour day among them), with
 * costs above 1 and responses a `count` rule gives back. Bound: at most L kept per calendar
 * period, so never 2L within one period (2L is reached only across a boundary).
 */
describe("calendar boundary schedules (memory backend, 3 isolates, injected store clock)", () => {
  const L = 5;
  const spec = { period: "day", timeZone: "Europe/Berlin" } as const;
  // Local midnights around both 2026 transitions: 2026-03-28 … 2026-03-31 and 2026-10-24 … 2026-10-27.
  const edges = [
    ...[0, 1, 2, 3].map((d) => calendarPeriodAt(spec, at("2026-03-28T12:00:00Z") + d * DAY).startMs),
    ...[0, 1, 2, 3].map((d) => calendarPeriodAt(spec, at("2026-10-24T12:00:00Z") + d * DAY).startMs),
  ];
  const burst = fc.record({
    edge: fc.integer({ min: 0, max: edges.length - 1 }),
    offsetMs: fc.oneof(fc.constantFrom(-1, 0, 1, -HOUR, HOUR), fc.integer({ min: -DAY, max: DAY })),
    requests: fc.array(fc.record({ isolate: fc.integer({ min: 0, max: 2 }), cost: fc.integer({ min: 1, max: 3 }), status: fc.constantFrom(200, 200, 200, 500) }), { minLength: 1, maxLength: 8 }),
  });

  async function run(bursts: { edge: number; offsetMs: number; requests: { isolate: number; cost: number; status: number }[] }[]) {
    const time = { now: 0 };
    const backend = memoryBackend({ clock: () => time.now });
    const rules: RuleSpec[] = [{ name: "q", key: "header:x-api-key", algorithm: "calendar", limit: L, period: "day", timeZone: "Europe/Berlin", count: ["2xx"] }];
    const isolates = [0, 1, 2].map(() => new Limiter({ rules, backend, clock: () => time.now, log: () => {} }));
    const kept: { atMs: number; units: number }[] = [];
    const times = bursts.map((b, i) => ({ t: edges[b.edge]! + b.offsetMs, i })).sort((a, b) => a.t - b.t);
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

  const perPeriod = (kept: { atMs: number; units: number }[]) => {
    const sums = new Map<number, number>();
    for (const { atMs, units } of kept) {
      const start = calendarPeriodAt(spec, atMs).startMs;
      sums.set(start, (sums.get(start) ?? 0) + units);
    }
    return Math.max(0, ...sums.values());
  };

  it("never more than L per calendar day, whatever the bursts at ±1 ms of midnight (23- and 25-hour days included)", async () => {
    let worst = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(burst, { minLength: 1, maxLength: 12 }), async (bursts) => {
        const count = perPeriod(await run(bursts));
        worst = Math.max(worst, count);
        expect(count).toBeLessThanOrEqual(L);
      }),
      { numRuns: 150 },
    );
    // L a millisecond before midnight, L at it: 2L in 2 ms, but in two days, never one.
    const edge = await run([
      {
        edge: 1,
        offsetMs: -1,
        requests: [
          { isolate: 0, cost: 3, status: 200 },
          { isolate: 1, cost: 2, status: 200 },
          { isolate: 2, cost: 1, status: 200 },
        ],
      },
      {
        edge: 1,
        offsetMs: 0,
        requests: [
          { isolate: 2, cost: 3, status: 200 },
          { isolate: 0, cost: 2, status: 200 },
          { isolate: 1, cost: 1, status: 200 },
        ],
      },
    ]);
    expect(edge.reduce((sum, k) => sum + k.units, 0)).toBe(2 * L);
    expect(perPeriod(edge)).toBe(L);
    console.log(`calendar: worst count per period ${Math.max(worst, perPeriod(edge))} (L = ${L}); 2L within 2 ms across midnight`);
  });
});
