import { describe, expect, inject, it } from "vitest";
import { gatewayWith, randomIp } from "../support/gateway";

/**
 * What crosses the proxy that must not (issue 16, finding 13): the gateway's own routes in
 * another spelling, with the admin token; client-written address headers; the origin's internal
 * address in a redirect. Through the real gateway to the real origin (dev/origin.mjs), whose
 * every other answer says `x-origin: fallback`.
 */
const TOKEN = "reserved-admin-token-0123456789";
const gateway = gatewayWith({ LIMITER_ADMIN_TOKEN: TOKEN, LIMITER_METRICS_TOKEN: "reserved-metrics-token-0123", LIMITER_CAPACITY: "1000", LIMITER_REFILL_RATE: "1000" });
const admin = { authorization: `Bearer ${TOKEN}` };

describe("reserved routes in any spelling", () => {
  it.each([
    "/__LIMITER/admin/overrides",
    "/__Limiter/ADMIN/Overrides",
    "//__limiter/admin/overrides",
    "///__limiter//admin/overrides/",
    "/%5F%5Flimiter/admin/overrides",
    "/%5f_LIMITER/admin/overrides",
    "/%255F%255Flimiter/admin/overrides",
    "/__limiter%2Fadmin%2Foverrides",
    "/__limiter;jsessionid=1/admin/overrides",
    "/__limiter./admin/overrides",
    "/%2e/__limiter/admin/overrides",
    "/echo/%2e%2e/__limiter/admin/overrides",
    "/echo/..%2F__limiter/admin/overrides",
    "/\\__limiter/admin/overrides",
  ])("%s is the admin API, never the origin", async (path) => {
    const response = await gateway(path, { ip: randomIp(), headers: admin });
    expect(response.headers.get("x-origin")).toBeNull();
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ overrides: expect.any(Array) });
  });

  it.each(["/__LIMITER/nothing-here", "/__limiter", "/%5F%5FLimiter/", "/__LiMiTeR/admin/%2e%2e/x"])("%s is a 404 of the gateway's, never the origin", async (path) => {
    const response = await gateway(path, { ip: randomIp(), headers: admin });
    expect(response.headers.get("x-origin")).toBeNull();
    expect(response.status).toBe(404);
    expect(response.headers.get("content-type")).toBe("application/problem+json");
  });

  it("other spellings of health and the dashboard answer as the gateway", async () => {
    const health = await gateway("/__LIMITER/HEALTH", { ip: randomIp() });
    expect(health.headers.get("x-origin")).toBeNull();
    expect(await health.json()).toMatchObject({ status: "ok" });
    const page = await gateway("/%5F%5Flimiter/Dashboard", { ip: randomIp() });
    expect(page.headers.get("x-origin")).toBeNull();
    expect(page.headers.get("x-frame-options")).toBe("DENY");
  });

  it("a path that merely contains the name still goes to the origin", async () => {
    const echoed = await gateway("/echo/__limiter/admin", { ip: randomIp() });
    expect(await echoed.json()).toMatchObject({ path: "/echo/__limiter/admin" });
    for (const path of ["/__limiterx/y", "/x__limiter"]) {
      expect((await gateway(path, { ip: randomIp() })).headers.get("x-origin")).toBe("fallback");
    }
  });
});

describe("what the origin may trust", () => {
  it("drops client-written address headers and sets X-Real-IP; X-Forwarded-For ends with the client's address", async () => {
    const ip = randomIp();
    const response = await gateway("/echo", {
      ip,
      headers: {
        "x-real-ip": "6.6.6.6",
        "true-client-ip": "6.6.6.6",
        forwarded: "for=6.6.6.6;proto=https",
        "x-client-ip": "6.6.6.6",
        "x-forwarded-for": "6.6.6.6",
      },
    });
    const seen = (await response.json()) as { headers: Record<string, string> };
    expect(seen.headers["x-real-ip"]).toBe(ip);
    expect(seen.headers["true-client-ip"]).toBeUndefined();
    expect(seen.headers.forwarded).toBeUndefined();
    expect(seen.headers["x-client-ip"]).toBeUndefined();
    expect(seen.headers["x-forwarded-for"]).toBe(`6.6.6.6, ${ip}`);
  });

  it("rewrites a Location into ORIGIN_URL to the gateway's own origin, and leaves others", async () => {
    const own = await gateway("/redirect?to=/echo/next%3Fa%3D1", { ip: randomIp() });
    expect(own.status).toBe(302);
    expect(own.headers.get("location")).toBe("https://gateway.test/echo/next?a=1");

    const elsewhere = await gateway(`/redirect?url=${encodeURIComponent("https://login.example.com/sso?r=1")}`, { ip: randomIp() });
    expect(elsewhere.headers.get("location")).toBe("https://login.example.com/sso?r=1");
    const relative = await gateway(`/redirect?url=${encodeURIComponent("/echo/relative")}`, { ip: randomIp() });
    expect(relative.headers.get("location")).toBe("/echo/relative");
  });

  it("with a path in ORIGIN_URL, a Location under it loses the path; one outside it stays", async () => {
    const prefixed = gatewayWith({ ORIGIN_URL: `${inject("originUrl")}/base` });
    const under = await prefixed("/redirect?to=/base/next", { ip: randomIp() });
    expect(under.headers.get("location")).toBe("https://gateway.test/next");
    const outside = await prefixed("/redirect?to=/other/next", { ip: randomIp() });
    expect(outside.headers.get("location")).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/other\/next$/);
  });
});
