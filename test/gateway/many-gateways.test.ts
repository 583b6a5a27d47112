import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startLocalStack, upstashVars } from "../../dev/local-stack.mjs";
import { startGateway } from "../../dev/miniflare-gateway.mjs";
import { sleep } from "../support/helpers";

const CAPACITY = 20;
const RATE_PER_SECOND = 10;
const ADMIN_TOKEN = "many-gateways-admin-token";

let stack: Awaited<ReturnType<typeof startLocalStack>>;
let gateways: Awaited<ReturnType<typeof startGateway>>[] = [];

beforeAll(async () => {
  stack = await startLocalStack();
  const vars = {
    ...upstashVars(stack),
    LIMITER_CAPACITY: String(CAPACITY),
    LIMITER_REFILL_RATE: String(RATE_PER_SECOND),
    LIMITER_KEY: "header:x-api-key",
    LIMITER_TIMEOUT_MS: "5000",
    LIMITER_ADMIN_TOKEN: ADMIN_TOKEN,
  };
  // Three separate workerd processes: three "servers" sharing one Redis through the bridge.
  gateways = await Promise.all([1, 2, 3].map(() => startGateway({ scriptPath: inject("gatewayBundle"), vars })));
}, 60_000);

afterAll(async () => {
  await Promise.all(gateways.map((gateway) => gateway.dispose()));
  await stack?.stop();
});

describe("several gateway instances sharing one Redis", () => {
  it("never allow one client more than one bucket allows, however its requests are spread", async () => {
    const apiKey = `client-${crypto.randomUUID()}`;
    const total = 240;
    const concurrency = 24;
    const allowedBy = gateways.map(() => 0);
    let refused = 0;
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < total) {
          const index = next++ % gateways.length;
          const response = await fetch(`${gateways[index]!.url}/echo`, { headers: { "x-api-key": apiKey } });
          await response.arrayBuffer();
          if (response.status === 200) allowedBy[index]! += 1;
          else if (response.status === 429) refused += 1;
          else throw new Error(`unexpected status ${response.status}`);
          // Spread the load over time so that refill matters.
          await sleep(60);
        }
      }),
    );
    const elapsedSeconds = (performance.now() - started) / 1000;
    const allowed = allowedBy.reduce((a, b) => a + b, 0);
    const ceiling = CAPACITY + Math.floor(RATE_PER_SECOND * elapsedSeconds);
    console.log(JSON.stringify({ allowed, refused, allowedBy, elapsedSeconds, ceiling }));

    expect(allowed + refused).toBe(total);
    expect(allowed).toBeLessThanOrEqual(ceiling);
    // The burst alone is allowed, and refill adds to it: the limit is shared, not broken.
    expect(allowed).toBeGreaterThanOrEqual(CAPACITY);
    expect(refused).toBeGreaterThan(0);
    // Every server really took part.
    for (const count of allowedBy) expect(count).toBeGreaterThan(0);
  });

  it("200 concurrent requests for one key against capacity 50, across three servers: exactly 50", async () => {
    const apiKey = `burst-${crypto.randomUUID()}`;
    const vars = {
      ...upstashVars(stack),
      LIMITER_CAPACITY: "50",
      LIMITER_REFILL_RATE: "0.001",
      LIMITER_KEY: "header:x-api-key",
      LIMITER_TIMEOUT_MS: "10000",
    };
    const burstGateways = await Promise.all([1, 2, 3].map(() => startGateway({ scriptPath: inject("gatewayBundle"), vars })));
    try {
      const responses = await Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          fetch(`${burstGateways[i % 3]!.url}/`, { headers: { "x-api-key": apiKey } }).then(async (r) => {
            await r.arrayBuffer();
            return r.status;
          }),
        ),
      );
      expect(responses.filter((s) => s === 200)).toHaveLength(50);
      expect(responses.filter((s) => s === 429)).toHaveLength(150);
    } finally {
      await Promise.all(burstGateways.map((gateway) => gateway.dispose()));
    }
  });

  it("an override set through one server: exact at once on the others, prefix within 10 s", async () => {
    const [first, second, third] = gateways;
    if (!first || !second || !third) throw new Error("three gateways");
    const limitOf = async (url: string, apiKey: string) => {
      const response = await fetch(`${url}/`, { headers: { "x-api-key": apiKey } });
      await response.arrayBuffer();
      return response.headers.get("X-RateLimit-Limit");
    };
    const override = (client: string, capacity: number) =>
      fetch(`${first.url}/__limiter/admin/overrides`, {
        method: "PUT",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ rule: "default", client: { "header:x-api-key": client }, capacity, rate: 10 }),
      });
    const tag = crypto.randomUUID().slice(0, 8);
    // The other servers have read the (empty) override registry already.
    expect(await limitOf(second.url, `${tag}-vip`)).toBe(String(CAPACITY));
    expect((await override(`${tag}-vip`, 500)).status).toBe(200);
    expect(await limitOf(second.url, `${tag}-vip`)).toBe("500");
    expect(await limitOf(third.url, `${tag}-vip`)).toBe("500");

    expect((await override(`${tag}-team-*`, 300)).status).toBe(200);
    const started = Date.now();
    const seenAfter: number[] = [];
    for (const server of [second, third]) {
      for (let i = 0; Date.now() - started < 12_000; i++) {
        if ((await limitOf(server.url, `${tag}-team-${i}`)) === "300") {
          seenAfter.push(Date.now() - started);
          break;
        }
        await sleep(200);
      }
    }
    console.log(JSON.stringify({ event: "prefix override reached other servers", afterMs: seenAfter }));
    expect(seenAfter).toHaveLength(2);
    for (const ms of seenAfter) expect(ms).toBeLessThanOrEqual(10_000);
  }, 20_000);
});
