/**
 * Calendar periods in an IANA time zone, computed with `Intl` (no time-zone data of our own): the
 * day, week or month that holds an instant, as epoch ms. A period starts at the first instant of
 * its first local date (midnight, or the end of a DST gap that swallows midnight) and ends where
 * the next one starts, so a day of 23 or 25 hours is one day. The calendar quota
 * (`./calendar.ts`) and its Lua twin's boundaries (Lua has no time zones) are computed here.
 */

/** A calendar quota's period. */
export type CalendarPeriod = "day" | "week" | "month";

/** The first day of a week period. */
export type WeekStart = "monday" | "sunday";

/** Which calendar: the period, its zone and (weeks) the day a week starts on. */
export interface CalendarSpec {
  readonly period: CalendarPeriod;
  /** An IANA time zone (`"Europe/Berlin"`, `"UTC"`). */
  readonly timeZone: string;
  /** Weeks only; default `"monday"`. */
  readonly weekStart?: WeekStart;
}

/** One period: `[startMs, endMs)` in epoch ms. */
export interface CalendarSpan {
  readonly startMs: number;
  readonly endMs: number;
}

const DAY_MS = 86_400_000;

const formatters = new Map<string, Intl.DateTimeFormat>();

/** One formatter per zone (building one is the expensive part); the zones are the rules'. */
function formatter(timeZone: string): Intl.DateTimeFormat {
  let format = formatters.get(timeZone);
  if (format === undefined) {
    format = new Intl.DateTimeFormat("en-US", { timeZone, hourCycle: "h23", year: "numeric", month: "numeric", day: "numeric", hour: "numeric", minute: "numeric", second: "numeric" });
    formatters.set(timeZone, format);
  }
  return format;
}

/**
 * The zone's canonical name if `Intl` knows it as an IANA zone, else undefined (offsets such as
 * `"+01:00"` are refused: a rule names a zone, whose offset changes with DST).
 *
 * @example
 * ianaTimeZone("europe/berlin"); // "Europe/Berlin"
 * ianaTimeZone("Mars/Olympus"); // undefined
 */
export function ianaTimeZone(name: string): string | undefined {
  if (!/^[A-Za-z][A-Za-z0-9_+\-/]*$/.test(name)) return undefined;
  try {
    return formatter(name).resolvedOptions().timeZone;
  } catch {
    return undefined;
  }
}

/** The local wall clock at `ms`, as the epoch ms it would be in UTC. */
function wallClock(ms: number, timeZone: string): number {
  const parts: Record<string, number> = {};
  for (const { type, value } of formatter(timeZone).formatToParts(ms)) parts[type] = Number(value);
  const { year = 1970, month = 1, day = 1, hour = 0, minute = 0, second = 0 } = parts;
  return Date.UTC(year, month - 1, day, hour, minute, second) + (((ms % 1000) + 1000) % 1000);
}

/**
 * The first instant whose local wall clock is `wall` (a local time written as UTC ms): the earlier
 * one in a fold; in a gap (a DST jump over it), the instant the gap ends.
 */
function firstInstantAt(wall: number, timeZone: string): number {
  const before = wallClock(wall - DAY_MS, timeZone) - (wall - DAY_MS);
  const after = wallClock(wall + DAY_MS, timeZone) - (wall + DAY_MS);
  const fits = [wall - before, wall - after].filter((t) => wallClock(t, timeZone) === wall);
  if (fits.length > 0) return Math.min(...fits);
  // In a gap: the smallest instant whose wall clock has passed `wall` (the clock is monotone there).
  let lo = Math.min(wall - before, wall - after);
  let hi = Math.max(wall - before, wall - after);
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (wallClock(mid, timeZone) >= wall) hi = mid;
    else lo = mid;
  }
  return hi;
}

/** The local date (as UTC midnight ms) a period starting on or before `date` begins on. */
function firstDate(spec: CalendarSpec, date: number): number {
  const d = new Date(date);
  if (spec.period === "month") return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
  if (spec.period === "day") return date;
  const start = spec.weekStart === "sunday" ? 0 : 1;
  return date - ((d.getUTCDay() - start + 7) % 7) * DAY_MS;
}

/** The first local date of the period after the one starting on `first`. */
function nextFirstDate(spec: CalendarSpec, first: number): number {
  const d = new Date(first);
  if (spec.period === "month") return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
  return first + (spec.period === "day" ? DAY_MS : 7 * DAY_MS);
}

/**
 * The period that holds `ms`: its first local date's first instant to the next period's.
 *
 * @example
 * calendarPeriodAt({ period: "day", timeZone: "Europe/Berlin" }, Date.parse("2026-03-29T12:00:00Z"));
 * // { startMs: Date.parse("2026-03-28T23:00:00Z"), endMs: Date.parse("2026-03-29T22:00:00Z") } (23 hours)
 */
export function calendarPeriodAt(spec: CalendarSpec, ms: number): CalendarSpan {
  const key = `${spec.timeZone} ${spec.period} ${spec.weekStart ?? "monday"}`;
  const cached = lastSpans.get(key);
  if (cached !== undefined && cached.startMs <= ms && ms < cached.endMs) return cached;
  const span = computePeriodAt(spec, ms);
  lastSpans.set(key, span);
  return span;
}

/** The last period computed per calendar: most decisions fall in it, and need no `Intl` call. */
const lastSpans = new Map<string, CalendarSpan>();

function computePeriodAt(spec: CalendarSpec, ms: number): CalendarSpan {
  const wall = wallClock(ms, spec.timeZone);
  let first = firstDate(spec, wall - (((wall % DAY_MS) + DAY_MS) % DAY_MS));
  let startMs = firstInstantAt(first, spec.timeZone);
  let next = nextFirstDate(spec, first);
  let endMs = firstInstantAt(next, spec.timeZone);
  // A fold back across midnight can show an instant of the next period an earlier date: it is in the next one.
  while (endMs <= ms) {
    first = next;
    startMs = endMs;
    next = nextFirstDate(spec, first);
    endMs = firstInstantAt(next, spec.timeZone);
  }
  return { startMs, endMs };
}

/**
 * The boundaries around `ms` that the Lua twin picks the store's period among: the starts of the
 * previous, the current and the next period, and the end of the next.
 *
 * @example
 * calendarBoundaries({ period: "month", timeZone: "UTC" }, Date.parse("2026-02-10T00:00:00Z"));
 * // [Jan 1, Feb 1, Mar 1, Apr 1] (UTC midnights, epoch ms)
 */
export function calendarBoundaries(spec: CalendarSpec, ms: number): readonly [number, number, number, number] {
  const key = `${spec.timeZone} ${spec.period} ${spec.weekStart ?? "monday"}`;
  const cached = lastBoundaries.get(key);
  if (cached !== undefined && cached[1] <= ms && ms < cached[2]) return cached;
  const current = computePeriodAt(spec, ms);
  const previous = computePeriodAt(spec, current.startMs - 1);
  const next = computePeriodAt(spec, current.endMs);
  const boundaries = [previous.startMs, current.startMs, current.endMs, next.endMs] as const;
  lastBoundaries.set(key, boundaries);
  return boundaries;
}

const lastBoundaries = new Map<string, readonly [number, number, number, number]>();
