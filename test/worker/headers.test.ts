import { parseDictionary, parseItem, parseList } from "structured-headers";
import { describe, expect, it } from "vitest";
import { gatewayWith, randomIp } from "../support/gateway";

/** Parses `RateLimit` / `RateLimit-Policy` (draft -10: a list of string items with parameters). */
function parseRateLimitField(value: string | null) {
  expect(value).not.toBeNull();
  return parseList(value!).map(([item, params]) => ({ name: item, params: Object.fromEntries(params) }));
}

describe("rate-limit headers", () => {
  it("an allowed response carries draft -10 and legacy headers", async () => {
    const gateway = gatewayWith({ LIMITER_CAPACITY: "10", LIMITER_REFILL_RATE: "0.5" });
    const response = await gateway("/", { ip: randomIp() });
    expect(response.status).toBe(200);
    expect(parseRateLimitField(response.headers.get("RateLimit-Policy"))).toEqual([{ name: "default", params: { q: 10, w: 20 } }]);
    // One token spent: it is back in 2 s, and the bucket is full again then.
    expect(parseRateLimitField(response.headers.get("RateLimit"))).toEqual([{ name: "default", params: { r: 9, t: 2 } }]);
    expect(response.headers.get("X-RateLimit-Limit")).toBe("10");
    expect(response.headers.get("X-RateLimit-Remaining")).toBe("9");
    expect(response.headers.get("X-RateLimit-Reset")).toBe("2");
  });

  it("a refusal is 429 problem+json with Retry-After no earlier than t", async () => {
    const gateway = gatewayWith({ LIMITER_CAPACITY: "2", LIMITER_REFILL_RATE: "0.3" });
    const ip = randomIp();
    await gateway("/", { ip });
    await gateway("/", { ip });
    const response = await gateway("/", { ip });
    expect(response.status).toBe(429);
    expect(response.headers.get("content-type")).toBe("application/problem+json");
    const [rateLimit] = parseRateLimitField(response.headers.get("RateLimit"));
    expect(rateLimit!.params.r).toBe(0);
    const retryAfter = Number(response.headers.get("Retry-After"));
    expect(Number.isInteger(retryAfter)).toBe(true);
    // One token at 0.3/s takes 3.33 s: rounded up to 4, never down.
    expect(retryAfter).toBe(4);
    expect(retryAfter).toBeGreaterThanOrEqual(rateLimit!.params.t as number);
    expect(parseItem(response.headers.get("Retry-After")!)[0]).toBe(4);
    const problem = await response.json();
    expect(problem).toMatchObject({ type: "/problems/rate-limited", status: 429, title: "Too Many Requests", retryAfter: 4 });
  });

  it.each([
    ["ietf", ["ratelimit", "ratelimit-policy"]],
    ["legacy", ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"]],
    ["none", []],
  ])("LIMITER_HEADERS=%s sends only those headers", async (mode, expected) => {
    const gateway = gatewayWith({ LIMITER_HEADERS: mode });
    const response = await gateway("/", { ip: randomIp() });
    const present = [...response.headers.keys()].filter((name) => name.includes("ratelimit")).sort();
    expect(present).toEqual([...expected].sort());
  });

  it("structured-field dictionaries are not what draft -10 sends (a list with parameters is)", () => {
    expect(() => parseDictionary('"default";q=10')).toThrow();
  });
});
