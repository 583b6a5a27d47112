import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { memoryBackend } from "../../src/core/memory-backend";
import { rateLimiter } from "../../src/hono";

describe("rateLimiter (Hono, plain Node, memory backend)", () => {
  it("rules in the same form as LIMITER_RULES: five 200s with headers, then a 429 problem", async () => {
    const app = new Hono()
      .use(rateLimiter({ backend: memoryBackend(), rules: [{ name: "api", key: "header:x-api-key", capacity: 5, rate: "1/1m" }] }))
      .get("/", (c) => c.text("ok"));
    const statuses = [];
    for (let i = 0; i < 5; i++) {
      const response = await app.request("/", { headers: { "x-api-key": "k" } });
      statuses.push(response.status);
      expect(response.headers.get("RateLimit")).toBe(`"api";r=${4 - i};t=${(i + 1) * 60}`);
    }
    const refused = await app.request("/", { headers: { "x-api-key": "k" } });
    expect([...statuses, refused.status]).toEqual([200, 200, 200, 200, 200, 429]);
    expect(refused.headers.get("RateLimit-Policy")).toBe('"api";q=5;w=300');
    expect(await refused.json()).toMatchObject({ "violated-policies": ["api"] });
  });

  it("keyGenerator keys on what earlier middleware established", async () => {
    type AppEnv = { Variables: { user: string | undefined } };
    const app = new Hono<AppEnv>()
      .use(async (c, next) => {
        // Stands in for JWT verification: the user is whatever the token names.
        c.set("user", c.req.header("authorization")?.replace(/^Bearer user:/, ""));
        await next();
      })
      .use(
        rateLimiter<AppEnv>({
          backend: memoryBackend(),
          rules: [{ name: "per-user", capacity: 1, rate: "1/1h" }],
          keyGenerator: (c) => c.get("user"),
          missingKey: "reject",
        }),
      )
      .get("/", (c) => c.text(`hello ${c.get("user")}`));
    const as = (user: string, ip: string) => app.request("/", { headers: { authorization: `Bearer user:${user}`, "cf-connecting-ip": ip } });
    expect((await as("ann", "192.0.2.1")).status).toBe(200);
    expect((await as("ann", "192.0.2.2")).status).toBe(429); // the user, not the address
    expect(await (await as("bob", "192.0.2.1")).text()).toBe("hello bob");
    expect((await app.request("/")).status).toBe(400); // no user: a missing key, rejected
  });

  it("peerAddress supplies the client address where no proxy header says it", async () => {
    const app = new Hono()
      .use(rateLimiter({ backend: memoryBackend(), rules: [{ name: "ip", capacity: 1, rate: "1/1h" }], peerAddress: (c) => c.req.header("x-test-peer") }))
      .get("/", (c) => c.text("ok"));
    expect((await app.request("/", { headers: { "x-test-peer": "198.51.100.1" } })).status).toBe(200);
    expect((await app.request("/", { headers: { "x-test-peer": "198.51.100.1" } })).status).toBe(429);
    expect((await app.request("/", { headers: { "x-test-peer": "198.51.100.2" } })).status).toBe(200);
  });

  it("requests no rule covers pass untouched", async () => {
    const app = new Hono()
      .use(rateLimiter({ backend: memoryBackend(), rules: [{ name: "login", match: { path: "/login" }, capacity: 1, rate: 1 }] }))
      .get("*", (c) => c.text("ok"));
    const response = await app.request("/other");
    expect(response.status).toBe(200);
    expect(response.headers.get("RateLimit")).toBeNull();
  });
});
