import { describe, expect, it } from "vitest";
import { gatewayWith, randomIp } from "../support/gateway";

describe("bad configuration is named on every request", () => {
  it.each([
    ["LIMITER_CAPACITY", "abc"],
    ["LIMITER_CAPACITY", "0"],
    ["LIMITER_CAPACITY", "1.5"],
    ["LIMITER_REFILL_RATE", "0"],
    ["LIMITER_REFILL_RATE", "-1"],
    ["LIMITER_REFILL_RATE", "fast"],
    ["LIMITER_REFILL_RATE", "0.0000001"],
    ["LIMITER_BACKEND", "memcached"],
    ["LIMITER_KEY", "cookie"],
    ["LIMITER_KEY", "header:"],
    ["LIMITER_FAIL_MODE", "maybe"],
    ["LIMITER_TIMEOUT_MS", "0"],
    ["LIMITER_TIMEOUT_MS", "soon"],
    ["LIMITER_HEADERS", "some"],
    ["ORIGIN_URL", "not a url"],
    ["ORIGIN_URL", "ftp://example.com"],
    ["ORIGIN_TIMEOUT_MS", "-5"],
    ["LIMITER_RULES", "   "],
    ["LIMITER_MISSING_KEY", "ignore"],
    ["LIMITER_IPV6_PREFIX", "129"],
    ["LIMITER_IP_HEADER", "x forwarded"],
    ["LIMITER_DENY_CACHE_SIZE", "-1"],
    ["LIMITER_BREAKER_THRESHOLD", "0"],
  ])("%s=%s gives a 500 that names it, and health reports it", async (variable, value) => {
    const gateway = gatewayWith({ [variable]: value });
    const response = await gateway("/anything", { ip: randomIp() });
    expect(response.status).toBe(500);
    expect(response.headers.get("content-type")).toBe("application/problem+json");
    const problem = (await response.json()) as { detail: string; errors: { variable: string; value: string }[] };
    expect(problem.detail).toContain(`${variable}=${JSON.stringify(value)}`);
    expect(problem.errors).toEqual([expect.objectContaining({ variable, value })]);

    const health = await gateway("/__limiter/health");
    expect(health.status).toBe(503);
    expect(JSON.stringify(await health.json())).toContain(variable);
  });

  it("an unset ORIGIN_URL is an error, not a silent default", async () => {
    const gateway = gatewayWith({ ORIGIN_URL: undefined });
    const response = await gateway("/", { ip: randomIp() });
    expect(response.status).toBe(500);
    expect(((await response.json()) as { detail: string }).detail).toContain("ORIGIN_URL (unset)");
  });

  it("reports every bad variable at once", async () => {
    const gateway = gatewayWith({ LIMITER_CAPACITY: "abc", LIMITER_REFILL_RATE: "0" });
    const problem = (await (await gateway("/", { ip: randomIp() })).json()) as { errors: { variable: string }[] };
    expect(problem.errors.map((e) => e.variable)).toEqual(["LIMITER_CAPACITY", "LIMITER_REFILL_RATE"]);
  });

  it("the Upstash backend needs its URL and token, and never echoes the token", async () => {
    const gateway = gatewayWith({ LIMITER_BACKEND: "upstash", UPSTASH_REDIS_REST_URL: "nope", UPSTASH_REDIS_REST_TOKEN: "" });
    const text = await (await gateway("/", { ip: randomIp() })).text();
    expect(text).toContain("UPSTASH_REDIS_REST_URL");
    expect(text).toContain("UPSTASH_REDIS_REST_TOKEN");
  });
});

describe("health", () => {
  it("answers 200 with the backend's round-trip time", async () => {
    const response = await gatewayWith()("/__limiter/health");
    expect(response.status).toBe(200);
    const health = (await response.json()) as { status: string; backend: { name: string; ok: boolean; latencyMs: number } };
    expect(health).toMatchObject({ status: "ok", backend: { name: "durable-object", ok: true } });
    expect(health.backend.latencyMs).toBeGreaterThanOrEqual(0);
  });
});

describe("absurd client input never crashes the worker", () => {
  it.each([
    ["a very long API key", "k".repeat(60_000)],
    ["a non-ASCII API key", "ключ-🔑-clé"],
    ["an API key of control-ish bytes", "\u00ff\u00fe\u0080 \t key"],
  ])("%s is hashed into a bounded key", async (_, value) => {
    const gateway = gatewayWith({ LIMITER_KEY: "header:x-api-key", LIMITER_CAPACITY: "1", LIMITER_REFILL_RATE: "0.001" });
    const headers = new Headers();
    try {
      headers.set("x-api-key", value);
    } catch {
      // The runtime itself refuses some header values; then there is nothing to forward.
      return;
    }
    const first = await gateway("/", { headers });
    // Allowed by the limiter (the origin itself may refuse a 60 kB header with 431).
    expect([200, 431]).toContain(first.status);
    expect(first.headers.get("X-RateLimit-Remaining")).toBe("0");
    expect((await gateway("/", { headers })).status).toBe(429);
  });

  it("requests without the key share one anonymous bucket", async () => {
    const gateway = gatewayWith({ LIMITER_KEY: "header:x-api-key", LIMITER_CAPACITY: "3", LIMITER_REFILL_RATE: "1000" });
    expect((await gateway("/", { ip: randomIp() })).status).toBe(200);
  });

  it("a malformed bearer header falls into the anonymous bucket instead of failing", async () => {
    const gateway = gatewayWith({ LIMITER_KEY: "bearer", LIMITER_CAPACITY: "1000", LIMITER_REFILL_RATE: "1000" });
    expect((await gateway("/", { headers: { authorization: "Bearer" } })).status).toBe(200);
    expect((await gateway("/", { headers: { authorization: "Basic Zm9vOmJhcg==" } })).status).toBe(200);
  });
});
