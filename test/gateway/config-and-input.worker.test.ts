import { env } from "cloudflare:workers";
import { describe, expect, inject, it } from "vitest";
import worker from "../../src/index";
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
    ["LIMITER_BACKEND", "Memory"],
    ["LIMITER_KEY", "cookie"],
    ["LIMITER_KEY", "header:"],
    ["LIMITER_FAIL_MODE", "maybe"],
    ["LIMITER_TIMEOUT_MS", "0"],
    ["LIMITER_TIMEOUT_MS", "soon"],
    ["LIMITER_HEADERS", "some"],
    ["ORIGIN_URL", "not a url"],
    ["ORIGIN_URL", "ftp://example.com"],
    ["ORIGIN_URL", "https://example.com/v1?apikey=x"],
    ["ORIGIN_URL", "https://example.com/#part"],
    ["ORIGIN_TIMEOUT_MS", "-5"],
    ["LIMITER_RULES", "   "],
    ["LIMITER_MISSING_KEY", "ignore"],
    ["LIMITER_IPV6_PREFIX", "129"],
    ["LIMITER_IP_HEADER", "x forwarded"],
    ["LIMITER_DENY_CACHE_SIZE", "-1"],
    ["LIMITER_BREAKER_THRESHOLD", "0"],
    // Only the Upstash backend uses it, but a typo is named with any backend.
    ["LIMITER_KEY_PREFIX", "bad prefix"],
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

  it("the Upstash backend needs its URL and token", async () => {
    const gateway = gatewayWith({ LIMITER_BACKEND: "upstash", UPSTASH_REDIS_REST_URL: "nope", UPSTASH_REDIS_REST_TOKEN: "" });
    const text = await (await gateway("/", { ip: randomIp() })).text();
    expect(text).toContain("UPSTASH_REDIS_REST_URL");
    expect(text).toContain("UPSTASH_REDIS_REST_TOKEN");
  });

  it("names a token that is set but never echoes it, in the response or in health", async () => {
    const secret = `secret-${crypto.randomUUID()}`;
    // The token is fine; the URL beside it is not, so the configuration fails with the token set.
    const gateway = gatewayWith({ LIMITER_BACKEND: "upstash", UPSTASH_REDIS_REST_URL: "nope", UPSTASH_REDIS_REST_TOKEN: secret });
    const text = await (await gateway("/", { ip: randomIp() })).text();
    expect(text).toContain("UPSTASH_REDIS_REST_URL");
    const health = await (await gateway("/__limiter/health")).text();
    for (const body of [text, health]) expect(body).not.toContain(secret);

    const wrongToken = gatewayWith({ LIMITER_BACKEND: "upstash", UPSTASH_REDIS_REST_URL: inject("upstashUrl"), UPSTASH_REDIS_REST_TOKEN: secret });
    const refused = await wrongToken("/", { ip: randomIp() });
    expect(refused.status).toBe(500);
    const refusedText = await refused.text();
    expect(refusedText).toContain("UPSTASH_REDIS_REST_TOKEN");
    expect(refusedText).not.toContain(secret);
  });
});

describe("health", () => {
  it.each([
    ["durable-object", {}],
    ["memory", { LIMITER_BACKEND: "memory" }],
  ])("answers 200 with the %s backend's round-trip time", async (name, vars) => {
    const token = "health-token-0123456789";
    // The details (the store's name and round-trip time) are for the holder of a token.
    const response = await gatewayWith({ ...vars, LIMITER_METRICS_TOKEN: token })("/__limiter/health", { headers: { authorization: `Bearer ${token}` } });
    expect(response.status).toBe(200);
    const health = (await response.json()) as { status: string; backend: { name: string; ok: boolean; latencyMs: number } };
    expect(health).toMatchObject({ status: "ok", backend: { name, ok: true } });
    expect(health.backend.latencyMs).toBeGreaterThanOrEqual(0);
  });
});

describe("reserved paths", () => {
  it("an unknown /__limiter/ path is a 404 problem, never proxied", async () => {
    const response = await gatewayWith()("/__limiter/nothing-here");
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ type: "about:blank", title: "Not Found", status: 404 });
  });

  it("an endpoint asked with a method it does not take is a 405 problem with Allow", async () => {
    const token = "admin-token-0123456789abcdef";
    const gateway = gatewayWith({ LIMITER_ADMIN_TOKEN: token });
    const cases: [string, string, string][] = [
      ["POST", "/__limiter/health", "GET, HEAD"],
      ["GET", "/__limiter/admin/peek", "POST"],
      ["POST", "/__limiter/admin/overrides", "PUT, DELETE, GET, HEAD"],
    ];
    for (const [method, path, allow] of cases) {
      const response = await gateway(path, { method, headers: { authorization: `Bearer ${token}` } });
      expect(response.status).toBe(405);
      expect(response.headers.get("Allow")).toBe(allow);
      expect(await response.json()).toMatchObject({ type: "about:blank", title: "Method Not Allowed", status: 405 });
    }
    // Without the token the admin API does not say which methods it takes; metrics that are off are 404 whatever the method.
    expect((await gateway("/__limiter/admin/peek")).status).toBe(401);
    expect((await gatewayWith({ LIMITER_METRICS: "off", LIMITER_ADMIN_TOKEN: token })("/__limiter/metrics", { method: "POST" })).status).toBe(404);
    expect((await gateway("/__limiter/metrics", { method: "POST" })).status).toBe(405);
  });
});

describe("absurd client input never crashes the worker", () => {
  it.each([
    ["a very long API key", "k".repeat(60_000)],
    ["a non-ASCII API key", "ключ-🔑-clé"],
    ["an API key of control-ish bytes", "\u00ff\u00fe\u0080 \t key"],
  ])("%s is hashed into a bounded key", async (_, value) => {
    const gateway = gatewayWith({ LIMITER_KEY: "header:x-api-key", LIMITER_CAPACITY: "1", LIMITER_REFILL_RATE: "0.001" });
    // Header values are bytes: characters past U+00FF reach the Worker as their UTF-8 bytes.
    const headers = new Headers({ "x-api-key": String.fromCharCode(...new TextEncoder().encode(value)) });
    const first = await gateway("/", { headers });
    // Allowed by the limiter (the origin itself may refuse a 60 kB header with 431).
    expect([200, 431]).toContain(first.status);
    expect(first.headers.get("X-RateLimit-Remaining")).toBe("0");
    expect((await gateway("/", { headers })).status).toBe(429);
  });

  it("requests without the key share one anonymous bucket, whoever sends them", async () => {
    // A backend of its own (memory), so the anonymous bucket starts full in this test.
    const gateway = gatewayWith({ LIMITER_BACKEND: "memory", LIMITER_KEY: "header:x-api-key", LIMITER_CAPACITY: "3", LIMITER_REFILL_RATE: "0.001" });
    const remaining = [];
    for (let i = 0; i < 3; i++) remaining.push((await gateway("/", { ip: randomIp() })).headers.get("X-RateLimit-Remaining"));
    expect(remaining).toEqual(["2", "1", "0"]);
    expect((await gateway("/", { ip: randomIp() })).status).toBe(429);
    // A client with a key has a bucket of its own.
    expect((await gateway("/", { headers: { "x-api-key": "someone" } })).status).toBe(200);
  });

  it("a malformed bearer header falls into the anonymous bucket instead of failing", async () => {
    const gateway = gatewayWith({ LIMITER_BACKEND: "memory", LIMITER_KEY: "bearer", LIMITER_CAPACITY: "2", LIMITER_REFILL_RATE: "0.001" });
    const bare = await gateway("/", { headers: { authorization: "Bearer" } });
    expect(bare.status).toBe(200);
    expect(bare.headers.get("X-RateLimit-Remaining")).toBe("1");
    const basic = await gateway("/", { headers: { authorization: "Basic Zm9vOmJhcg==" } });
    expect(basic.headers.get("X-RateLimit-Remaining")).toBe("0");
    expect((await gateway("/", { headers: { authorization: "Bearer  two words" } })).status).toBe(429);
  });
});

describe("keyed hashing of client keys (LIMITER_HASH_KEY)", () => {
  it("keys buckets by a hash only the secret can reproduce; a short secret is a config error that never echoes it", async () => {
    const ip = randomIp();
    const vars = { LIMITER_BACKEND: "memory", LIMITER_CAPACITY: "1", LIMITER_REFILL_RATE: "0.001" };
    const plain = gatewayWith(vars);
    const keyed = gatewayWith({ ...vars, LIMITER_HASH_KEY: "a-long-enough-secret-1234" });
    expect((await plain("/", { ip })).status).toBe(200);
    expect((await keyed("/", { ip })).status).toBe(200);
    expect((await keyed("/", { ip })).status).toBe(429); // the keyed gateway counts the client too

    const health = await (await keyed("/__limiter/health", { ip })).json();
    expect(JSON.stringify(health)).not.toContain("a-long-enough-secret-1234");

    const short = await gatewayWith({ ...vars, LIMITER_HASH_KEY: "short-secret" })("/", { ip });
    expect(short.status).toBe(500);
    const text = await short.text();
    expect(text).toContain("LIMITER_HASH_KEY");
    expect(text).not.toContain("short-secret");
  });
});

describe("a failure inside the gateway", () => {
  it("is answered with a 500 problem naming the request id, and logged under it, never left to the runtime", async () => {
    // A runtime whose waitUntil throws: the allowed request's settling step fails after the origin answered.
    const ctx = {
      waitUntil: () => {
        throw new Error("waitUntil refused");
      },
      passThroughOnException() {},
      props: {},
    } as unknown as ExecutionContext;
    const logged: string[] = [];
    const original = console.error;
    console.error = (line: unknown) => void logged.push(String(line));
    try {
      const response = await worker.fetch(new Request("https://gateway.test/echo", { headers: { "cf-connecting-ip": randomIp(), "cf-ray": "ray-internal-1" } }), env, ctx);
      expect(response.status).toBe(500);
      expect(response.headers.get("Content-Type")).toBe("application/problem+json");
      const problem = (await response.json()) as { type: string; detail: string };
      expect(problem.type).toBe("about:blank");
      expect(problem.detail).toContain("ray-internal-1");
    } finally {
      console.error = original;
    }
    const line = logged.map((text) => JSON.parse(text) as Record<string, unknown>).find((entry) => entry.event === "gateway.internal_error");
    expect(line).toMatchObject({ level: "error", requestId: "ray-internal-1", reason: "waitUntil refused" });
  });

  it("on a reserved route (the metrics store fails to read) is answered with the same 500 problem and log line", async () => {
    // The metrics Durable Object's read throws (a store that fails mid-call); everything else is the test runtime's.
    const failing = {
      idFromName: (name: string) => env.LIMITER_METRICS_STORE?.idFromName(name),
      get: () => ({
        add: async () => {},
        snapshot: async () => {
          throw new Error("metrics store unreadable");
        },
      }),
    };
    const failingEnv = { ...env, LIMITER_METRICS_TOKEN: "metrics-token-0123456789", LIMITER_METRICS_STORE: failing } as unknown as typeof env;
    const logged: string[] = [];
    const original = console.error;
    console.error = (line: unknown) => void logged.push(String(line));
    try {
      for (const path of ["/__limiter/metrics", "/__limiter/dashboard/data"]) {
        const request = new Request(`https://gateway.test${path}`, { headers: { authorization: "Bearer metrics-token-0123456789", "cf-ray": `ray-reserved-${path.length}` } });
        const response = await worker.fetch(request, failingEnv, { waitUntil() {}, passThroughOnException() {}, props: {} } as unknown as ExecutionContext);
        expect(response.status).toBe(500);
        expect(response.headers.get("Content-Type")).toBe("application/problem+json");
        expect(((await response.json()) as { detail: string }).detail).toContain(`ray-reserved-${path.length}`);
      }
    } finally {
      console.error = original;
    }
    const lines = logged.map((text) => JSON.parse(text) as Record<string, unknown>).filter((entry) => entry.event === "gateway.internal_error");
    expect(lines).toEqual([
      expect.objectContaining({ level: "error", requestId: "ray-reserved-18", reason: "metrics store unreadable" }),
      expect.objectContaining({ level: "error", requestId: "ray-reserved-25", reason: "metrics store unreadable" }),
    ]);
  });
});
