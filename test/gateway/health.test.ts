import { createClient } from "redis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startLocalStack, upstashVars } from "../../dev/local-stack.mjs";
import { startGateway } from "../../dev/miniflare-gateway.mjs";
import { sleep } from "../support/helpers";

/**
 * `/__limiter/health` is open to anyone: it must not cost the store an operation per call, nor
 * show the store's error text and the rule names (issue 16, finding 5). A real gateway (workerd)
 * on the Upstash backend, through the bridge to a real redis-server, whose own command counts
 * say how often the store was asked.
 */
const ADMIN_TOKEN = "health-admin-token-0123456789";
const METRICS_TOKEN = "health-metrics-token-0123456789";

let stack: Awaited<ReturnType<typeof startLocalStack>>;
let gateway: Awaited<ReturnType<typeof startGateway>>;
let redis: ReturnType<typeof createClient>;

beforeAll(async () => {
  stack = await startLocalStack();
  gateway = await startGateway({
    scriptPath: inject("gatewayBundle"),
    vars: {
      ...upstashVars(stack),
      LIMITER_ADMIN_TOKEN: ADMIN_TOKEN,
      LIMITER_METRICS_TOKEN: METRICS_TOKEN,
      LIMITER_RULES: JSON.stringify([{ name: "secret-rule-name", key: "ip", capacity: 5, rate: "5/1m" }]),
    },
  });
  redis = createClient({ url: stack.redis.url });
  redis.on("error", () => undefined); // the outage test stops redis-server under it
  await redis.connect();
}, 60_000);

afterAll(async () => {
  redis?.destroy();
  await gateway?.dispose();
  await stack?.stop();
});

/** How many PING commands redis-server has run (the Upstash backend's probe is one PING). */
async function pings(): Promise<number> {
  const stats = await redis.info("commandstats");
  return Number(/cmdstat_ping:calls=(\d+)/.exec(stats)?.[1] ?? "0");
}

const health = (token?: string) => fetch(`${gateway.url}/__limiter/health`, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });

describe("health", () => {
  it("costs the store at most one probe per isolate every few seconds, however often it is asked", async () => {
    const before = await pings();
    // 50 at once (sharing the probe out), then 30 one after the other (answered from it).
    const together = await Promise.all(Array.from({ length: 50 }, () => health()));
    expect(together.map((r) => r.status)).toEqual(Array(50).fill(200));
    for (let i = 0; i < 30; i++) expect((await health(i % 2 === 0 ? ADMIN_TOKEN : undefined)).status).toBe(200);
    expect((await pings()) - before).toBeLessThanOrEqual(1);

    // Once the answer is older than the cache's lifetime, the next call probes again: once.
    await sleep(2_100);
    const after = await pings();
    await Promise.all(Array.from({ length: 20 }, () => health()));
    expect((await pings()) - after).toBe(1);
  });

  it("shows only the status without a token; the details with the admin or the metrics token", async () => {
    const open = await health();
    expect(open.status).toBe(200);
    const body = (await open.json()) as Record<string, unknown>;
    expect(Object.keys(body).sort()).toEqual(["details", "status"]);
    expect(body.status).toBe("ok");
    expect(JSON.stringify(body)).not.toMatch(/secret-rule-name|upstash|latency|isolate|closed/);
    expect((await (await health("not-the-right-token-0123")).json()) as object).not.toHaveProperty("backend");

    for (const token of [ADMIN_TOKEN, METRICS_TOKEN]) {
      const detailed = (await (await health(token)).json()) as Record<string, unknown>;
      expect(detailed).toMatchObject({ status: "ok", config: { ok: true }, backend: { name: "upstash", ok: true }, isolate: { breaker: "closed", rules: ["secret-rule-name"] } });
    }
  });

  it("says error (503) without the store's error text while the store is down", async () => {
    await stack.redis.stop();
    try {
      // The answer cached while the store was up may still be served: within its lifetime.
      await sleep(2_100);
      const open = await health();
      expect(open.status).toBe(503);
      const body = (await open.json()) as Record<string, unknown>;
      expect(body.status).toBe("error");
      expect(Object.keys(body).sort()).toEqual(["details", "status"]);
      const detailed = (await (await health(ADMIN_TOKEN)).json()) as { backend: { ok: boolean; error: string } };
      expect(detailed.backend).toMatchObject({ ok: false, error: expect.any(String) });
    } finally {
      await stack.redis.start();
    }
  });
});
