import { parseList } from "structured-headers";
import { expect } from "vitest";
import type { LimiterBackend } from "../../src/core/backend";
import { parseRatePerSecond } from "../../src/core/rate";
import type { BucketPolicy } from "../../src/core/token-bucket";

/** A bucket policy from a capacity and a tokens-per-second decimal ("0.5"). */
export function policy(capacity: number, ratePerSecond: string): BucketPolicy {
  const rate = parseRatePerSecond(ratePerSecond);
  if (rate === undefined) throw new Error(`not a rate: ${ratePerSecond}`);
  return { capacity, ...rate };
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** `RateLimit` / `RateLimit-Policy` (draft -10: a list of string items with parameters) as [name, params] pairs. */
export function rateLimitItems(value: string | null): (readonly [unknown, Record<string, unknown>])[] {
  expect(value).not.toBeNull();
  return parseList(value ?? "").map(([name, params]) => [name, Object.fromEntries(params)] as const);
}

/** A real backend whose calls on the request path (take, peek, reading the override registry) are counted. */
export function countingBackend(backend: LimiterBackend): { backend: LimiterBackend; counter: { calls: number } } {
  const counter = { calls: 0 };
  return {
    counter,
    backend: {
      ...backend,
      take: (charges, signal) => {
        counter.calls += 1;
        return backend.take(charges, signal);
      },
      peek: (charges, signal) => {
        counter.calls += 1;
        return backend.peek(charges, signal);
      },
      overrides: {
        ...backend.overrides,
        list: (signal) => {
          counter.calls += 1;
          return backend.overrides.list(signal);
        },
      },
    },
  };
}
