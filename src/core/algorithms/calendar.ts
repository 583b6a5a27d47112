/**
 * The calendar quota, registered as `"calendar"`: at most L units per calendar day, week or month
 * in an IANA time zone (`./calendar-periods.ts`), resetting at the period's boundary; DST-safe (a
 * day of 23 or 25 hours is one day). The store's clock picks the period: the memory backend and
 * the Durable Object compute it here from their own now; Upstash's Lua twin
 * (`src/backends/upstash/algorithms/calendar.lua.ts`) picks it among boundaries the isolate
 * computed around its own now (Lua has no time zones). Worst case: L per period; 2L in a trailing
 * period's length across a boundary, as for a fixed window.
 */
import type { Algorithm, BucketDecision } from "./algorithm";
import { calendarPeriodAt, type CalendarPeriod, type CalendarSpan, type WeekStart } from "./calendar-periods";
import { newGeneration, type BucketPolicy } from "./token-bucket";

export type { CalendarPeriod, WeekStart } from "./calendar-periods";

/**
 * A calendar quota's policy: the limit L as `capacity`; the rate is L per the period's nominal
 * length (`CALENDAR_NOMINAL_MS`, the shape every policy has; the real periods come from the
 * calendar). An override sets a new limit; period, zone and week start stay the rule's.
 */
export interface CalendarPolicy extends BucketPolicy {
  readonly algorithm: "calendar";
  readonly period: CalendarPeriod;
  /** An IANA time zone (canonical, as `ianaTimeZone` gives it). */
  readonly timeZone: string;
  /** Weeks only; default `"monday"`. */
  readonly weekStart?: WeekStart;
}

/** What a calendar quota stores between decisions. A missing state means "nothing used". */
export interface CalendarState {
  readonly algorithm: "calendar";
  /** The period this state counts: its start and end (epoch ms, the store's clock). */
  readonly periodStartMs: number;
  readonly periodEndMs: number;
  /** Units admitted in that period. */
  readonly used: number;
  /** Which life of the state this is (see `BucketState.generation`): a refund never crosses a reset. */
  readonly generation: number;
  /** Store clock (ms) until which a block (`blockForMs`) refuses every request; absent: none. */
  readonly blockedUntilMs?: number;
}

/** Each period's nominal length (its policy's rate is L per this): a day, a week, 30 days. */
export const CALENDAR_NOMINAL_MS: Readonly<Record<CalendarPeriod, number>> = { day: 86_400_000, week: 604_800_000, month: 2_592_000_000 };

/**
 * The period in force and what it has used, given the period that holds the store's now: a
 * stored state counts if its period has not ended and starts no earlier (a later one: the clock
 * stepped back, so it counts, towards refusing); otherwise the period is fresh.
 */
export function calendarCurrent(state: CalendarState | undefined, period: CalendarSpan, nowMs: number): { startMs: number; endMs: number; used: number } {
  if (state !== undefined && state.periodStartMs >= period.startMs && state.periodEndMs > nowMs) {
    return { startMs: state.periodStartMs, endMs: state.periodEndMs, used: state.used };
  }
  return { startMs: period.startMs, endMs: period.endMs, used: 0 };
}

/**
 * Charges `cost` at `nowMs` in the period given (the one holding `nowMs`; the Lua twin's pick).
 * Allowed while the period's used units plus `cost` stay within L; `resetMs` and a refusal's
 * `retryAfterMs` point at the period's end (or the block's end).
 */
export function takeInPeriod(
  state: CalendarState | undefined,
  policy: CalendarPolicy,
  period: CalendarSpan,
  cost: number,
  nowMs: number,
  generation?: number,
): { decision: BucketDecision; next: CalendarState | undefined; expiresInMs: number } {
  const limit = policy.capacity;
  const { startMs, endMs, used } = calendarCurrent(state, period, nowMs);
  const resetMs = Math.max(1, endMs - nowMs);
  const remaining = Math.max(0, limit - used);
  const blockForMs = policy.blockForMs ?? 0;
  const blockedUntilMs = blockForMs > 0 ? (state?.blockedUntilMs ?? 0) : 0;
  const unchanged = (decision: BucketDecision) => ({ decision, next: undefined, expiresInMs: 0 });
  const span = { algorithm: "calendar" as const, periodStartMs: startMs, periodEndMs: endMs };
  if (cost > limit) return unchanged({ outcome: "cost_exceeds_capacity", remaining, resetMs });
  if (nowMs < blockedUntilMs) return unchanged({ outcome: "denied", remaining, resetMs, retryAfterMs: blockedUntilMs - nowMs });
  if (used + cost > limit) {
    if (blockForMs === 0 || state === undefined) return unchanged({ outcome: "denied", remaining, resetMs, retryAfterMs: resetMs });
    // This refusal starts a block: what the period used stays, the block's end is written beside it.
    const blocked = { ...span, used, generation: state.generation, blockedUntilMs: nowMs + blockForMs };
    return { decision: { outcome: "denied", remaining, resetMs, retryAfterMs: Math.max(resetMs, blockForMs) }, next: blocked, expiresInMs: calendarExpiresInMs(blocked, policy, nowMs) };
  }
  const next = { ...span, used: used + cost, generation: state?.generation ?? generation ?? newGeneration() };
  return { decision: { outcome: "allowed", remaining: limit - used - cost, resetMs }, next, expiresInMs: calendarExpiresInMs(next, policy, nowMs) };
}

/**
 * Charges `cost` at `nowMs` (the store's clock) in the calendar period that holds it.
 *
 * @example
 * const policy = { algorithm: "calendar", capacity: 10000, refillTokens: 1, refillPeriodMs: 259_200, period: "month", timeZone: "Europe/Berlin" } as const;
 * takeCalendar(undefined, policy, 1, Date.parse("2026-02-28T22:00:00Z")).decision;
 * // { outcome: "allowed", remaining: 9999, resetMs: 3600000 } (March starts at midnight in Berlin, 23:00 UTC)
 */
export function takeCalendar(state: CalendarState | undefined, policy: CalendarPolicy, cost: number, nowMs: number, generation?: number) {
  return takeInPeriod(state, policy, calendarPeriodAt(policy, nowMs), cost, nowMs, generation);
}

/**
 * How long a state matters: until its period ends and any block is over (≥ 1 ms).
 *
 * @example
 * calendarExpiresInMs({ algorithm: "calendar", periodStartMs: 0, periodEndMs: 86_400_000, used: 3, generation: 1 }, policy, 86_000_000); // 400000
 */
export function calendarExpiresInMs(state: CalendarState, _policy: CalendarPolicy, nowMs: number): number {
  return Math.max(1, state.periodEndMs - nowMs, (state.blockedUntilMs ?? 0) - nowMs);
}

/**
 * Undoes a charge: while the period it was made in still runs (and the state was not reset since:
 * same generation), its cost comes back; after, it withholds nothing, and nothing comes back.
 *
 * @example
 * const { next } = takeCalendar(undefined, policy, 2, now);
 * refundCalendar(next, policy, 2, next!, now + 1000)?.used; // 0
 */
export function refundCalendar(state: CalendarState | undefined, _policy: CalendarPolicy, cost: number, charged: CalendarState, nowMs: number): CalendarState | undefined {
  if (state === undefined || state.generation !== charged.generation) return state;
  if (state.periodStartMs !== charged.periodStartMs || nowMs >= state.periodEndMs) return state;
  const used = Math.max(0, state.used - cost);
  return used === state.used ? state : { ...state, used };
}

/**
 * The calendar quota on the algorithm seam (registered as `"calendar"`).
 *
 * @example
 * calendar.take(undefined, { algorithm: "calendar", capacity: 5, refillTokens: 1, refillPeriodMs: 17_280_000, period: "day", timeZone: "UTC" }, 1, 0).decision;
 * // { outcome: "allowed", remaining: 4, resetMs: 86400000 }
 */
export const calendar: Algorithm<CalendarState, CalendarPolicy> = {
  take: takeCalendar,
  refund: refundCalendar,
  expiresInMs: calendarExpiresInMs,
  drained(policy, nowMs) {
    const { startMs, endMs } = calendarPeriodAt(policy, nowMs);
    return { algorithm: "calendar", periodStartMs: startMs, periodEndMs: endMs, used: policy.capacity, generation: 0 };
  },
};

/**
 * Whether a policy is a calendar quota's (with its calendar).
 *
 * @example
 * if (isCalendarPolicy(rule.policy)) calendarPeriodSeconds(rule.policy, Date.now());
 */
export function isCalendarPolicy(policy: BucketPolicy): policy is CalendarPolicy {
  return policy.algorithm === "calendar" && typeof (policy as Partial<CalendarPolicy>).timeZone === "string";
}

/**
 * Seconds in the period that holds `nowMs` (the `w` of `RateLimit-Policy`: 82800 on a day
 * of 23 hours, 2419200 in a February of 28 days).
 *
 * @example
 * calendarPeriodSeconds({ period: "day", timeZone: "America/New_York" }, Date.parse("2026-11-01T12:00:00Z")); // 90000
 */
export function calendarPeriodSeconds(policy: Pick<CalendarPolicy, "period" | "timeZone" | "weekStart">, nowMs: number): number {
  const { startMs, endMs } = calendarPeriodAt(policy, nowMs);
  return Math.ceil((endMs - startMs) / 1000);
}

/**
 * Seconds in the period a decision was made in: the one the store picked, which ends `resetMs`
 * after the store's now (every calendar decision's `resetMs` points at its period's end). The
 * isolate's `nowMs` only places that end in time: the period is found a quarter of a nominal
 * period before it (well inside the shortest period of its kind), so a clock that differs from
 * the store's by up to 6 hours still finds the store's period, even across a boundary.
 *
 * @example
 * // The store is past midnight in New York (Nov 2, 24 h), the isolate still on Nov 1 (25 h): 86400.
 * decidedPeriodSeconds({ period: "day", timeZone: "America/New_York" }, 86_370_000, Date.parse("2026-11-02T04:59:50Z")); // 86400
 */
export function decidedPeriodSeconds(policy: Pick<CalendarPolicy, "period" | "timeZone" | "weekStart">, resetMs: number, nowMs: number): number {
  return calendarPeriodSeconds(policy, nowMs + resetMs - CALENDAR_NOMINAL_MS[policy.period] / 4);
}
