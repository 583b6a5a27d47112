import { parseItem } from "structured-headers";
import { describe, expect, it } from "vitest";
import { gatewayWith, randomIp } from "../support/gateway";
import { rateLimitItems } from "../support/helpers";

describe("rate-limit headers", () => {
  it("an allowed response carries draft -10 and legacy headers", async () => {
    const gateway = gatewayWith({ LIMITER_CAPACITY: "10", LIMITER_REFILL_RATE: "0.5" });
    const response = await gateway("/", { ip: randomIp() });
    expect(response.status).toBe(200);
    expect(rateLimitItems(response.headers.get("RateLimit-Policy"))).toEqual([["default", { q: 10, w: 20 }]]);
    // One token spent: it is back in 2 s, and the bucket is full again then.
    expect(rateLimitItems(response.headers.get("RateLimit"))).toEqual([["default", { r: 9, t: 2 }]]);
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
    const [[name, params] = []] = rateLimitItems(response.headers.get("RateLimit"));
    expect(name).toBe("default");
    expect(params?.r).toBe(0);
    const retryAfter = Number(response.headers.get("Retry-After"));
    expect(Number.isInteger(retryAfter)).toBe(true);
    // One token at 0.3/s takes 3.33 s: rounded up to 4, never down.
    expect(retryAfter).toBe(4);
    expect(retryAfter).toBeGreaterThanOrEqual(params?.t as number);
    expect(parseItem(response.headers.get("Retry-After") ?? "")[0]).toBe(4);
    // The draft's registered problem type, naming the violated policy.
    expect(await response.json()).toEqual({
      type: "https://iana.org/assignments/http-problem-types#quota-exceeded",
      title: "Too Many Requests",
      status: 429,
      detail: 'Rate limit "default" exceeded: retry in 4 s.',
      "violated-policies": ["default"],
    });
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
});
