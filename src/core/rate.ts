import { DURATION_UNIT_PATTERN, DURATION_UNITS_MS, type DurationUnit } from "./units";
import type { BucketPolicy } from "./token-bucket";

/** A refill rate as an exact fraction, the form the token bucket computes with. */
export type RefillRate = Pick<BucketPolicy, "refillTokens" | "refillPeriodMs">;

const DECIMAL = /^(\d{1,9})(?:\.(\d{1,6}))?$/;

/**
 * Parses a tokens-per-second decimal ("10", "0.5", "2.75") into an exact fraction.
 * Returns `undefined` for anything else, including zero.
 *
 * @example
 * parseRatePerSecond("0.5"); // { refillTokens: 1, refillPeriodMs: 2000 }
 * parseRatePerSecond("0");   // undefined
 */
export function parseRatePerSecond(text: string): RefillRate | undefined {
  const match = DECIMAL.exec(text.trim());
  if (!match) return undefined;
  const fraction = match[2] ?? "";
  const numerator = Number(match[1] + fraction);
  if (numerator === 0) return undefined;
  // `numerator` tokens every 10^digits seconds.
  const periodMs = 1000 * 10 ** fraction.length;
  const divisor = gcd(numerator, periodMs);
  return { refillTokens: numerator / divisor, refillPeriodMs: periodMs / divisor };
}

/**
 * The greatest common divisor of two non-negative integers (rates and windows are kept as reduced fractions).
 *
 * @example
 * gcd(100, 60000); // 100
 */
export function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

const SHORTHAND = new RegExp(`^(\\d{1,9})\\s*\\/\\s*(\\d{1,6})?\\s*(${DURATION_UNIT_PATTERN})$`);

/**
 * Parses an "N per period" shorthand: `"100/1m"`, `"5/30s"`, `"10000/1d"`, `"20/s"`.
 * Periods: ms, s, m (minutes), h, d.
 *
 * @example
 * parseRateShorthand("100/1m"); // { refillTokens: 1, refillPeriodMs: 600 }
 */
export function parseRateShorthand(text: string): RefillRate | undefined {
  const match = SHORTHAND.exec(text.trim());
  if (!match) return undefined;
  const tokens = Number(match[1]);
  const periodMs = Number(match[2] ?? "1") * DURATION_UNITS_MS[match[3] as DurationUnit];
  if (tokens === 0 || periodMs === 0) return undefined;
  const divisor = gcd(tokens, periodMs);
  return { refillTokens: tokens / divisor, refillPeriodMs: periodMs / divisor };
}
