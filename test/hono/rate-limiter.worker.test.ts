import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { upstashBackend } from "../../src/backends/upstash";
import type { LimiterBackend } from "../../src/core/backend";
import { Limiter, type LimiterOptions } from "../../src/core/limiter";
import type { RuleSpec } from "../../src/core/rules";
import { rateLimiter } from "../../src/hono";
import { BACKENDS } from "../support/backends";
import { randomIp } from "../support/gateway";
import { countingBackend, sleep } from "../support/helpers";

/** A Hono app behind the middleware, with a limiter the test can inspect. */
function limitedApp(backend: LimiterBackend, rules: RuleSpec[], extra: Partial<LimiterOptions> = {}) {
  const limiter = new Limiter({ backend, rules, ...extra });
  const app = new Hono().use(rateLimiter({ limiter })).all("*", (c) => c.text("ok"));
  return { app, limiter };
}

describe.each(BACKENDS)("the middleware's deny cache on the $name backend", ({ create }) => {
  it("under a flood from one client the backend sees almost none of it", async () => {
    const { backend, counter } = countingBackend(create());
    const { app } = limitedApp(backend, [{ name: "flood", key: "ip", capacity: 5, rate: 0.01 }], { denyCacheSize: 100 });
    const ip = randomIp();
    const requests = 1000;
    const statuses = new Map<number, number>();
    for (let i = 0; i < requests; i++) {
      const response = await app.request("/", { headers: { "cf-connecting-ip": ip } });
      statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
      if (response.status === 429) {
        // Cached refusals carry correct headers too.
        expect(response.headers.get("Retry-After")).toMatch(/^\d+$/);
        expect(response.headers.get("RateLimit")).toMatch(/^"flood";r=0;t=\d+$/);
      }
    }
    const callsPerRequest = counter.calls / requests;
    console.log(JSON.stringify({ event: "deny-cache flood", backend: backend.name, requests, backendCalls: counter.calls, callsPerRequest }));
    expect(statuses.get(200)).toBe(5);
    expect(statuses.get(429)).toBe(requests - 5);
    // One read of the override registry, then the 5 allowed ones; the fifth left the bucket
    // empty, so the cache refuses the rest.
    expect(counter.calls).toBe(6);
    expect(callsPerRequest).toBeLessThanOrEqual(0.05);
  });

  it("concurrent requests at each retry time do not stampede the backend", async () => {
    const { backend, counter } = countingBackend(create());
    const { app } = limitedApp(backend, [{ name: "herd", key: "ip", capacity: 1, rate: 10 }], { denyCacheSize: 100 });
    const ip = randomIp();
    let allowed = 0;
    // The herd's refusals come from the deny cache with no I/O, so its 16 loops run on microtasks
    // and hold back the store's answers (measured: the first 16 calls answered 100 ms apart, the
    // last after ~1 s). One past the limiter's deadline fails open, the default: a 200 without
    // rate-limit headers, let through by that setting, not by the bucket. Deployed, each request
    // arrives as I/O and the store's answers queue with them.
    let failedOpen = 0;
    let total = 0;
    const started = Date.now();
    const until = started + 1_000;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (Date.now() < until) {
          const response = await app.request("/", { headers: { "cf-connecting-ip": ip } });
          total += 1;
          if (response.status === 200 && response.headers.has("RateLimit")) allowed += 1;
          else if (response.status === 200) failedOpen += 1;
        }
      }),
    );
    console.log(JSON.stringify({ event: "deny-cache herd", backend: backend.name, total, allowed, failedOpen, backendCalls: counter.calls }));
    expect(allowed).toBeGreaterThan(0);
    // Capacity + rate × the time the herd ran (requests in flight at `until` end later on a busy machine).
    expect(allowed).toBeLessThanOrEqual(1 + Math.ceil((10 * (Date.now() - started)) / 1_000));
    // The first 16 arrive together with nothing cached; after that a few calls per token, not
    // one per waiting request (measured here: ~26 calls; 170-190 before waiting was added).
    expect(counter.calls).toBeLessThan(60);
    expect(counter.calls / total).toBeLessThan(0.02);
  });
});

describe("the middleware's circuit breaker", () => {
  it("opens after consecutive failures, skips the backend during the cool-down, then probes and closes", async () => {
    // A real Upstash backend whose endpoint can be switched between a dead port and the live bridge.
    const dead = upstashBackend({ url: "http://127.0.0.1:9", token: "t", keyPrefix: "breaker" });
    const live = BACKENDS.find((b) => b.name === "upstash")?.create() ?? dead;
    let target = dead;
    const { backend, counter } = countingBackend({
      ...dead,
      name: "switchable",
      take: (c, s) => target.take(c, s),
      peek: (c, s) => target.peek(c, s),
      overrides: { ...dead.overrides, list: (s) => target.overrides.list(s) },
      ping: (s) => target.ping(s),
    });
    const { app, limiter } = limitedApp(backend, [{ name: "api", key: "ip", capacity: 100, rate: 1, failMode: "open" }], {
      breaker: { failureThreshold: 3, cooldownMs: 300 },
    });
    const request = () => app.request("/", { headers: { "cf-connecting-ip": "198.51.100.9" } });

    for (let i = 0; i < 10; i++) expect((await request()).status).toBe(200); // fail open
    expect(counter.calls).toBe(3); // then the circuit opened
    expect(limiter.isolateState().breaker).toBe("open");

    await sleep(350);
    expect((await request()).status).toBe(200);
    expect(counter.calls).toBe(4); // one probe; it failed, so open again
    expect((await request()).status).toBe(200);
    expect(counter.calls).toBe(4);

    target = live;
    await sleep(350);
    const probe = await request();
    expect(probe.headers.get("RateLimit")).toMatch(/^"api";r=99/); // a real decision again
    expect(limiter.isolateState().breaker).toBe("closed");
    expect(counter.calls).toBe(6); // the probe read the override registry, then decided
    for (let i = 0; i < 3; i++) await request();
    expect(counter.calls).toBe(9); // one call each: the registry is cached for seconds
  });

  it("applies each rule's fail mode: one closed enforced rule refuses with 503", async () => {
    const dead = upstashBackend({ url: "http://127.0.0.1:9", token: "t", keyPrefix: "failmode" });
    const { app } = limitedApp(dead, [
      { name: "everything", key: "ip", capacity: 100, rate: 1, failMode: "open" },
      { name: "payments", match: { path: "/pay/*" }, key: "ip", capacity: 10, rate: 1, failMode: "closed" },
      { name: "audit", match: { path: "/pay/*" }, key: "ip", capacity: 10, rate: 1, failMode: "closed", mode: "shadow" },
    ]);
    const browse = await app.request("/browse");
    expect(browse.status).toBe(200);
    expect(browse.headers.get("RateLimit")).toBeNull(); // no decision, so no headers
    const payment = await app.request("/pay/now");
    expect(payment.status).toBe(503);
    expect(await payment.json()).toMatchObject({ type: "tag:sluice.dev,2026:limiter-unavailable", detail: expect.stringContaining('"payments"') });
  });
});
