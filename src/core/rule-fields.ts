import type { CalendarPeriod, WeekStart } from "./algorithms/calendar";
import { DEFAULTS } from "./defaults";
import { ianaTimeZone } from "./algorithms/calendar-periods";
import { MAX_SLIDING_LIMIT } from "./algorithms/sliding-window";
import { parseKeyPart, type KeyPart } from "./key-parts";
import { gcd, parseRatePerSecond, parseRateShorthand, type RefillRate } from "./rate";
import { MAX_SAFE_UNITS } from "./token-bucket";
import { DURATION_UNIT_PATTERN, DURATION_UNITS_MS, isObject, type DurationUnit } from "./units";

/**
 * The fields of a rule, one parser each (keys, counted statuses, durations, rates, a window's,
 * a calendar quota's, a queue's): what `compileRules` checks a rule with, every problem reported
 * on its field.
 */

/** A window from 1 s to 30 days. */
const MIN_WINDOW_MS = 1_000;
const DURATION = new RegExp(`^(\\d{1,9})\\s*(${DURATION_UNIT_PATTERN})$`);
/** The longest queue wait: 60 s. */
const MAX_QUEUE_MS = 60_000;
/** The longest block: 30 days. */
const MAX_BLOCK_MS = 30 * 86_400_000;

export function parseKeyParts(value: unknown): KeyPart[] | undefined {
  const texts: unknown[] | undefined = typeof value === "string" ? [value] : Array.isArray(value) && value.length > 0 ? value : undefined;
  if (texts === undefined) return undefined;
  const parts: KeyPart[] = [];
  for (const text of texts) {
    const part = typeof text === "string" ? parseKeyPart(text) : undefined;
    if (part === undefined) return undefined;
    parts.push(part);
  }
  return parts;
}

/**
 * Whether a rule charges a response with this status (`count`; every status when unset).
 *
 * @example
 * countsStatus(rule, 401); // true for count: [401, 403] or ["4xx"]
 */
export function countsStatus(rule: { readonly count: readonly string[] | undefined }, status: number): boolean {
  return rule.count === undefined || rule.count.some((entry) => entry === String(status) || entry === `${Math.floor(status / 100)}xx`);
}

export function parseCount(value: unknown): string[] | undefined {
  if (!Array.isArray(value) || value.length === 0) return undefined;
  const entries: string[] = [];
  for (const entry of value) {
    const text = typeof entry === "number" ? String(entry) : typeof entry === "string" ? entry.trim().toLowerCase() : "";
    if (!/^[1-5](\d\d|xx)$/.test(text)) return undefined;
    entries.push(text);
  }
  return entries;
}

/**
 * A window rule's limit, window, cost, block and count: every problem reported on its field. The
 * window becomes the rate limit/window (exact, reduced), the shape every policy has (`windowMs`
 * reads it back).
 */
export function parseWindowRule(raw: Record<string, unknown>, algorithm: "fixed-window" | "sliding-window", fail: (field: string, message: string) => undefined) {
  for (const field of ["capacity", "rate"] as const) if (raw[field] !== undefined) fail(field, `is not used by a ${algorithm} rule (it has limit and window instead of capacity and rate)`);
  const maxLimit = algorithm === "sliding-window" ? MAX_SLIDING_LIMIT : 1_000_000_000;
  const limit = isInteger(raw.limit, 1, maxLimit)
    ? raw.limit
    : fail(
        "limit",
        raw.limit === undefined
          ? `is missing (a ${algorithm} rule needs limit and window)`
          : algorithm === "sliding-window" && isInteger(raw.limit, 1, 1_000_000_000)
            ? `must be at most ${MAX_SLIDING_LIMIT} for a sliding-window rule (its exact log keeps one entry per admitted unit); use a fixed-window or token-bucket rule for larger limits`
            : `must be an integer from 1 to ${maxLimit}`,
      );
  const parsedWindow = raw.window === undefined ? undefined : parseDuration(raw.window);
  const windowMs =
    parsedWindow !== undefined && parsedWindow >= MIN_WINDOW_MS
      ? parsedWindow
      : fail("window", raw.window === undefined ? `is missing (a ${algorithm} rule needs limit and window)` : 'must be a duration from 1s to 30d, e.g. "1m", "1h", "1d"');
  const cost = parseCost(raw.cost, fail);
  if (limit !== undefined && cost !== undefined && cost > limit) fail("cost", `${cost} exceeds limit ${limit}: no request could ever pass`);
  const blockForMs = raw.blockFor === undefined ? 0 : (parseDuration(raw.blockFor) ?? fail("blockFor", 'must be a duration from 1 ms to 30 days, e.g. "10m", "30s", "1h"'));
  const count = raw.count === undefined ? null : (parseCount(raw.count) ?? fail("count", 'must be a non-empty list of statuses or classes, e.g. [401, 403] or ["4xx", "5xx"]'));
  if (limit === undefined || windowMs === undefined || cost === undefined || blockForMs === undefined || count === undefined) return undefined;
  const divisor = gcd(limit, windowMs);
  const rate: RefillRate = { refillTokens: limit / divisor, refillPeriodMs: windowMs / divisor };
  if (limit * rate.refillPeriodMs > MAX_SAFE_UNITS) return fail("window", "is too long for this limit to compute exactly (choose a limit that divides the window in ms more evenly)");
  return { limit, windowMs, rate, cost, blockForMs, count };
}

/**
 * A calendar rule's limit, period, zone, week start, cost, block and count: every problem
 * reported on its field. An unknown time zone is refused (Intl decides what is known).
 */
export function parseCalendarRule(raw: Record<string, unknown>, fail: (field: string, message: string) => undefined) {
  for (const field of ["capacity", "rate", "window"] as const) if (raw[field] !== undefined) fail(field, 'is not used by a calendar rule (it has limit and period: "day", "week" or "month")');
  const limit = isInteger(raw.limit, 1, 1_000_000_000)
    ? raw.limit
    : fail("limit", raw.limit === undefined ? "is missing (a calendar rule needs limit and period)" : "must be an integer from 1 to 1000000000");
  const period: CalendarPeriod | undefined =
    raw.period === "day" || raw.period === "week" || raw.period === "month"
      ? raw.period
      : fail("period", raw.period === undefined ? "is missing (a calendar rule needs limit and period)" : "must be day, week or month");
  const timeZone =
    raw.timeZone === undefined
      ? DEFAULTS.calendar.timeZone
      : ((typeof raw.timeZone === "string" ? ianaTimeZone(raw.timeZone) : undefined) ??
        fail("timeZone", `${JSON.stringify(raw.timeZone)} is not an IANA time zone (e.g. "UTC", "Europe/Berlin", "America/New_York")`));
  let weekStart: WeekStart | undefined;
  if (period === "week") {
    const given = raw.weekStart ?? DEFAULTS.calendar.weekStart;
    weekStart = given === "monday" || given === "sunday" ? given : fail("weekStart", "must be monday or sunday");
  } else if (raw.weekStart !== undefined) {
    fail("weekStart", 'is only for "period": "week"');
  }
  const cost = parseCost(raw.cost, fail);
  if (limit !== undefined && cost !== undefined && cost > limit) fail("cost", `${cost} exceeds limit ${limit}: no request could ever pass`);
  const blockForMs = raw.blockFor === undefined ? 0 : (parseDuration(raw.blockFor) ?? fail("blockFor", 'must be a duration from 1 ms to 30 days, e.g. "10m", "30s", "1h"'));
  const count = raw.count === undefined ? null : (parseCount(raw.count) ?? fail("count", 'must be a non-empty list of statuses or classes, e.g. [401, 403] or ["4xx", "5xx"]'));
  if (limit === undefined || period === undefined || timeZone === undefined || (period === "week" && weekStart === undefined)) return undefined;
  if (cost === undefined || blockForMs === undefined || count === undefined) return undefined;
  return { limit, period, timeZone, weekStart, cost, blockForMs, count };
}

/** A rule's `queue`: `{ "maxWait": "2s" }`, 1 ms to 60 s; the wait in ms, or undefined after reporting. */
export function parseQueue(value: unknown, fail: (field: string, message: string) => undefined): number | undefined {
  if (!isObject(value)) return fail("queue", 'must be an object like { "maxWait": "2s" }');
  for (const field of Object.keys(value)) if (field !== "maxWait") return fail("queue", `has an unknown field ${field} (known: maxWait)`);
  const ms = parseDuration(value.maxWait);
  return ms !== undefined && ms <= MAX_QUEUE_MS ? ms : fail("queue", `maxWait must be a duration from 1ms to 60s, e.g. "2s" (got ${JSON.stringify(value.maxWait)})`);
}

export function parseDuration(value: unknown): number | undefined {
  const match = typeof value === "string" ? DURATION.exec(value.trim()) : null;
  if (match === null) return undefined;
  const ms = Number(match[1]) * DURATION_UNITS_MS[match[2] as DurationUnit];
  return ms >= 1 && ms <= MAX_BLOCK_MS ? ms : undefined;
}

export function parseRuleRate(value: unknown): RefillRate | undefined {
  if (typeof value === "number") return Number.isFinite(value) ? parseRatePerSecond(String(value)) : undefined;
  if (typeof value !== "string") return undefined;
  return value.includes("/") ? parseRateShorthand(value) : parseRatePerSecond(value);
}

/**
 * A rule's `cost`: the default when absent, else an integer from 1 to 1,000,000,000.
 *
 * @example
 * parseCost(undefined, fail); // 1
 * parseCost(0, fail); // undefined, fail("cost", "must be an integer from 1 to 1000000000")
 */
export function parseCost(value: unknown, fail: (field: string, message: string) => undefined): number | undefined {
  if (value === undefined) return DEFAULTS.rule.cost;
  return isInteger(value, 1, 1_000_000_000) ? value : fail("cost", "must be an integer from 1 to 1000000000");
}

export function isInteger(value: unknown, min: number, max: number): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= min && value <= max;
}
