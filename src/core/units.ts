/** Milliseconds in each duration unit rules and rates accept: ms, s, m (minutes), h, d. */
export const DURATION_UNITS_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** A duration unit's name. */
export type DurationUnit = keyof typeof DURATION_UNITS_MS;

/** The unit names as a regular-expression alternation (longest first, so `ms` wins over `m`). */
export const DURATION_UNIT_PATTERN = "ms|s|m|h|d";

/**
 * A plain JSON object (not null, not an array): what a rule, an override or a request body must be.
 *
 * @example
 * isObject({ name: "api" }); // true
 * isObject([1]); // false
 */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
