import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startLocalStack, upstashVars } from "../../dev/local-stack.mjs";
import { startGateway } from "../../dev/miniflare-gateway.mjs";

const CAPACITY = 20;
const RATE_PER_SECOND = 10;

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
          await new Promise((resolve) => setTimeout(resolve, 60));
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
});
