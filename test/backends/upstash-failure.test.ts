import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { startLocalStack, upstashVars } from "../../dev/local-stack.mjs";
import { startGateway } from "../../dev/miniflare-gateway.mjs";
import { sleep } from "../support/helpers";

const TIMEOUT_MS = 300;
/** Health's details (the store's error, the breaker) are for the holder of a token. */
const ADMIN_TOKEN = "upstash-failure-admin-token";
const detailed = { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } };

let stack: Awaited<ReturnType<typeof startLocalStack>>;
let failOpen: Awaited<ReturnType<typeof startGateway>>;
let failClosed: Awaited<ReturnType<typeof startGateway>>;

beforeAll(async () => {
  stack = await startLocalStack();
  // A high breaker threshold: these gateways test single failures, the breaker has its own test.
  const vars = { ...upstashVars(stack), LIMITER_ADMIN_TOKEN: ADMIN_TOKEN, LIMITER_TIMEOUT_MS: String(TIMEOUT_MS), LIMITER_CAPACITY: "1000", LIMITER_BREAKER_THRESHOLD: "100" };
  [failOpen, failClosed] = await Promise.all([
    startGateway({ scriptPath: inject("gatewayBundle"), vars: { ...vars, LIMITER_FAIL_MODE: "open" } }),
    startGateway({ scriptPath: inject("gatewayBundle"), vars: { ...vars, LIMITER_FAIL_MODE: "closed" } }),
  ]);
}, 60_000);

afterAll(async () => {
  await failOpen?.dispose();
  await failClosed?.dispose();
  await stack?.stop();
});

afterEach(async () => {
  stack.bridge.setHang(false);
  stack.bridge.setLatency(0);
  await stack.redis.start();
});

async function timed(url: string) {
  const started = performance.now();
  const response = await fetch(url);
  const body = await response.text();
  return { response, body, ms: performance.now() - started };
}

async function waitForHealthy(url: string) {
  for (let attempt = 0; attempt < 50; attempt++) {
    if ((await fetch(`${url}/__limiter/health`)).status === 200) return;
    await sleep(100);
  }
  throw new Error("backend did not recover within 5 s");
}

describe("Upstash backend failures", () => {
  it("healthy: decisions come from Redis", async () => {
    const { response } = await timed(`${failOpen.url}/echo`);
    expect(response.status).toBe(200);
    expect(response.headers.get("RateLimit")).toMatch(/r=999/);
  });

  it("a hanging backend costs at most the timeout; open allows, closed answers 503; health says down", async () => {
    stack.bridge.setHang(true);
    const open = await timed(`${failOpen.url}/echo`);
    expect(open.response.status).toBe(200);
    expect(open.response.headers.get("RateLimit")).toBeNull(); // no decision was made
    expect(open.ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 5);
    expect(open.ms).toBeLessThan(TIMEOUT_MS + 1_000);

    const closed = await timed(`${failClosed.url}/echo`);
    expect(closed.response.status).toBe(503);
    expect(closed.response.headers.get("content-type")).toBe("application/problem+json");
    expect(JSON.parse(closed.body)).toMatchObject({ status: 503, type: "tag:sluice.dev,2026:limiter-unavailable" });
    expect(closed.ms).toBeLessThan(TIMEOUT_MS + 1_000);

    const health = await fetch(`${failOpen.url}/__limiter/health`, detailed);
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({ backend: { name: "upstash", ok: false } });

    stack.bridge.setHang(false);
    await waitForHealthy(failOpen.url);
    expect((await timed(`${failClosed.url}/echo`)).response.status).toBe(200);
  });

  it("a slow answer past the timeout is abandoned, not waited for", async () => {
    stack.bridge.setLatency(2_000);
    const closed = await timed(`${failClosed.url}/echo`);
    expect(closed.response.status).toBe(503);
    expect(closed.ms).toBeLessThan(1_500);
  });

  it("redis-server down: both fail modes apply fast, and the gateway recovers when it is back", async () => {
    await stack.redis.stop();
    const open = await timed(`${failOpen.url}/echo`);
    expect(open.response.status).toBe(200);
    expect(open.ms).toBeLessThan(TIMEOUT_MS + 1_000);
    const closed = await timed(`${failClosed.url}/echo`);
    expect(closed.response.status).toBe(503);
    expect((await fetch(`${failClosed.url}/__limiter/health`)).status).toBe(503);

    await stack.redis.start();
    await waitForHealthy(failClosed.url);
    const recovered = await timed(`${failClosed.url}/echo`);
    expect(recovered.response.status).toBe(200);
    expect(recovered.response.headers.get("RateLimit")).toMatch(/r=999/);
  });

  it("a wrong token is a configuration error naming the variable, not an outage", async () => {
    const wrong = await startGateway({
      scriptPath: inject("gatewayBundle"),
      vars: { ...upstashVars(stack), UPSTASH_REDIS_REST_TOKEN: "wrong-token", LIMITER_FAIL_MODE: "open" },
    });
    try {
      const { response, body } = await timed(`${wrong.url}/echo`);
      expect(response.status).toBe(500);
      expect(body).toContain("UPSTASH_REDIS_REST_TOKEN");
      expect(body).not.toContain("wrong-token");
      const health = await fetch(`${wrong.url}/__limiter/health`);
      expect(health.status).toBe(503);
      expect(await health.text()).toContain("UPSTASH_REDIS_REST_TOKEN");
    } finally {
      await wrong.dispose();
    }
  });

  it("with the circuit open, an outage stops adding the timeout to every request", async () => {
    const gateway = await startGateway({
      scriptPath: inject("gatewayBundle"),
      vars: { ...upstashVars(stack), LIMITER_ADMIN_TOKEN: ADMIN_TOKEN, LIMITER_TIMEOUT_MS: String(TIMEOUT_MS), LIMITER_BREAKER_THRESHOLD: "3", LIMITER_BREAKER_COOLDOWN_MS: "60000" },
    });
    try {
      expect((await timed(`${gateway.url}/echo`)).response.headers.get("RateLimit")).not.toBeNull();
      stack.bridge.setHang(true);
      const latencies: number[] = [];
      for (let i = 0; i < 8; i++) latencies.push((await timed(`${gateway.url}/echo`)).ms);
      // The first three wait for the timeout; then the breaker is open and answers at once.
      for (const ms of latencies.slice(0, 3)) expect(ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 5);
      for (const ms of latencies.slice(3)) expect(ms).toBeLessThan(TIMEOUT_MS / 2);
      const health = (await (await fetch(`${gateway.url}/__limiter/health`, detailed)).json()) as { isolate: { breaker: string } };
      expect(health.isolate.breaker).toBe("open");
    } finally {
      await gateway.dispose();
    }
  });

  it("after an outage, decisions come from the store again within 1 s of it answering, though the cool-down is a minute", async () => {
    const gateway = await startGateway({
      scriptPath: inject("gatewayBundle"),
      vars: { ...upstashVars(stack), LIMITER_ADMIN_TOKEN: ADMIN_TOKEN, LIMITER_TIMEOUT_MS: String(TIMEOUT_MS), LIMITER_BREAKER_THRESHOLD: "2", LIMITER_BREAKER_COOLDOWN_MS: "60000" },
    });
    try {
      await stack.redis.stop();
      for (let i = 0; i < 4; i++) await timed(`${gateway.url}/echo`); // fails open; the breaker opens
      const health = (await (await fetch(`${gateway.url}/__limiter/health`, detailed)).json()) as { isolate: { breaker: string } };
      expect(health.isolate.breaker).toBe("open");

      await stack.redis.start(); // resolves once redis-server answers
      const answering = performance.now();
      let recoveredAfterMs = -1;
      while (performance.now() - answering < 5_000) {
        const { response, ms } = await timed(`${gateway.url}/echo`);
        expect(ms).toBeLessThan(TIMEOUT_MS / 2 + 100); // no request waits for a probe
        if (response.headers.get("RateLimit") !== null) {
          recoveredAfterMs = performance.now() - answering;
          break;
        }
        await sleep(50);
      }
      console.log(JSON.stringify({ event: "recovery after the store answers", ms: Math.round(recoveredAfterMs) }));
      expect(recoveredAfterMs).toBeGreaterThanOrEqual(0);
      expect(recoveredAfterMs).toBeLessThan(1_000);
    } finally {
      await gateway.dispose();
    }
  });

  it("failMode local: with the store frozen, each gateway enforces its fraction of the limit and says so", async () => {
    const gateway = await startGateway({
      scriptPath: inject("gatewayBundle"),
      vars: {
        ...upstashVars(stack),
        LIMITER_TIMEOUT_MS: String(TIMEOUT_MS),
        LIMITER_LOCAL_FRACTION: "0.3",
        LIMITER_RULES: JSON.stringify([{ name: "api", key: "header:x-api-key", capacity: 10, rate: "10/1h", failMode: "local" }]),
      },
    });
    try {
      stack.bridge.setHang(true);
      const responses = [];
      for (let i = 0; i < 5; i++) {
        const response = await fetch(`${gateway.url}/echo`, { headers: { "x-api-key": "frozen" } });
        await response.arrayBuffer();
        responses.push(response);
      }
      expect(responses.map((r) => r.status)).toEqual([200, 200, 200, 429, 429]);
      for (const response of responses) expect(response.headers.get("X-Sluice-Degraded")).toBe("local");
      expect(responses[0]?.headers.get("RateLimit-Policy")).toBe('"api";q=3;w=3600'); // 3 tokens at 3 an hour;
    } finally {
      await gateway.dispose();
    }
  });

  it("failMode local for a concurrency rule: with the store frozen, each gateway keeps its own share of the slots, freed when a response ends", async () => {
    const gateway = await startGateway({
      scriptPath: inject("gatewayBundle"),
      vars: {
        ...upstashVars(stack),
        LIMITER_TIMEOUT_MS: String(TIMEOUT_MS),
        LIMITER_LOCAL_FRACTION: "0.5",
        LIMITER_RULES: JSON.stringify([{ name: "inflight", key: "header:x-api-key", concurrency: 4, failMode: "local" }]),
      },
    });
    const open = (path: string) => fetch(`${gateway.url}${path}`, { headers: { "x-api-key": "frozen" } });
    try {
      stack.bridge.setHang(true);
      const long = await open("/stream?ms=60000");
      const short = await open("/stream?ms=1500");
      expect([long.status, short.status]).toEqual([200, 200]);
      expect(long.headers.get("X-Sluice-Degraded")).toBe("local");
      const refused = await open("/echo");
      await refused.arrayBuffer();
      expect(refused.status).toBe(429); // 2 of 4 slots in this isolate
      expect(refused.headers.get("X-Sluice-Degraded")).toBe("local");
      // The short response ends: its slot is free again.
      expect(await short.text()).toBe("first;last");
      let status = 0;
      for (let attempt = 0; attempt < 40 && status !== 200; attempt++) {
        const next = await open("/echo");
        await next.arrayBuffer();
        status = next.status;
        if (status !== 200) await sleep(50);
      }
      expect(status).toBe(200);
      await long.body?.cancel();
    } finally {
      await gateway.dispose();
    }
  });
});
