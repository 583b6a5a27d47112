import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startGatewayIsolates } from "../../dev/miniflare-isolates.mjs";
import { startOrigin } from "../../dev/origin.mjs";
import { sleep } from "../support/helpers";

/**
 * One hot client over three gateway isolates that share ONE Durable Object namespace (three
 * workers in one Miniflare instance, `ClientBuckets` bound across scripts): what the object is
 * asked, and that the limit holds exactly.
 */
const ISOLATES = 3;

let origin: Awaited<ReturnType<typeof startOrigin>>;
beforeAll(async () => {
  origin = await startOrigin({ port: 0 });
}, 30_000);
afterAll(async () => {
  await origin?.close();
});

/** Health shows `isolate.backendCalls` to the holder of the metrics (or admin) token. */
const METRICS_TOKEN = "hot-key-metrics-token-0123";

const varsFor = (capacity: number, rate: string) => ({
  ORIGIN_URL: origin.url,
  LIMITER_METRICS_TOKEN: METRICS_TOKEN,
  LIMITER_CAPACITY: String(capacity),
  LIMITER_REFILL_RATE: rate,
  LIMITER_KEY: "header:x-api-key",
  LIMITER_FAIL_MODE: "closed",
  LIMITER_TIMEOUT_MS: "10000",
});

/** Calls that reached a Durable Object, summed over the isolates (each counts its own). */
async function objectCalls(urls: readonly string[]): Promise<number> {
  let total = 0;
  for (const url of urls) {
    const health = (await (await fetch(`${url}/__limiter/health`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).json()) as { isolate: { backendCalls: number } };
    total += health.isolate.backendCalls;
  }
  return total;
}

/** `total` requests of one client, `concurrency` at a time, spread round-robin over the isolates; counts by status and isolate. */
async function hammer(urls: readonly string[], apiKey: string, total: number, concurrency: number) {
  const allowedBy = urls.map(() => 0);
  let refused = 0;
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        const index = next++ % urls.length;
        const response = await fetch(`${urls[index]}/echo`, { headers: { "x-api-key": apiKey } });
        await response.arrayBuffer();
        if (response.status === 200) allowedBy[index]! += 1;
        else if (response.status === 429) refused += 1;
        else throw new Error(`unexpected status ${response.status}: ${await response.text()}`);
      }
    }),
  );
  const elapsedS = (performance.now() - started) / 1000;
  return { allowed: allowedBy.reduce((a, b) => a + b, 0), allowedBy, refused, elapsedS };
}

describe(`one hot client over ${ISOLATES} isolates sharing one Durable Object namespace`, () => {
  it("with a budget above the load, costs the object at most 0.2 calls per request, and admits every request", async () => {
    const isolates = await startGatewayIsolates({ scriptPath: inject("gatewayBundle"), vars: varsFor(1_000_000, "100000"), count: ISOLATES });
    try {
      const apiKey = `hot-${crypto.randomUUID()}`;
      const before = await objectCalls(isolates.urls);
      const total = 1_500;
      const { allowed, allowedBy, refused, elapsedS } = await hammer(isolates.urls, apiKey, total, 24);
      const calls = (await objectCalls(isolates.urls)) - before;
      console.log(JSON.stringify({ event: "hot key, budget above load", total, allowed, allowedBy, refused, calls, callsPerRequest: calls / total, elapsedS }));
      expect(allowed).toBe(total);
      for (const count of allowedBy) expect(count).toBeGreaterThan(0);
      expect(calls / total).toBeLessThanOrEqual(0.2);
    } finally {
      await isolates.dispose();
    }
  }, 60_000);

  it("never admits more than the bucket holds, and every token parked in a lease comes back", async () => {
    // Capacity 600, refill negligible (one token per 1000 s): the count is exact, with no timing slack.
    const capacity = 600;
    const isolates = await startGatewayIsolates({ scriptPath: inject("gatewayBundle"), vars: varsFor(capacity, "0.001"), count: ISOLATES });
    try {
      const apiKey = `lease-${crypto.randomUUID()}`;
      const before = await objectCalls(isolates.urls);
      // Half the budget: every request allowed, and the isolates end holding leased tokens.
      const first = await hammer(isolates.urls, apiKey, 300, 24);
      const calls = (await objectCalls(isolates.urls)) - before;
      console.log(JSON.stringify({ event: "hot key, half its budget", ...first, calls }));
      expect(first.allowed).toBe(300);
      expect(calls / 300).toBeLessThanOrEqual(0.2);
      // Leases are a second old: what they hold goes back with each isolate's next call. Then
      // twice what is left is asked for: exactly the rest is admitted, not one more, none lost.
      await sleep(1_200);
      const second = await hammer(isolates.urls, apiKey, 600, 24);
      await sleep(1_200);
      const third = await hammer(isolates.urls, apiKey, 60, 3);
      console.log(JSON.stringify({ event: "the rest of the budget", second, third }));
      expect(first.allowed + second.allowed).toBeLessThanOrEqual(capacity);
      expect(first.allowed + second.allowed + third.allowed).toBe(capacity);
    } finally {
      await isolates.dispose();
    }
  }, 60_000);

  it("a reset while the isolates hold leases admits at most one full bucket after it", async () => {
    const capacity = 600;
    const token = "hot-key-admin-token";
    const isolates = await startGatewayIsolates({ scriptPath: inject("gatewayBundle"), vars: { ...varsFor(capacity, "0.001"), LIMITER_ADMIN_TOKEN: token }, count: ISOLATES });
    try {
      const apiKey = `reset-${crypto.randomUUID()}`;
      // A third of the budget: the isolates end holding leases.
      const before = await hammer(isolates.urls, apiKey, 200, 24);
      expect(before.allowed).toBe(200);
      const reset = await fetch(`${isolates.urls[0]}/__limiter/admin/reset`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ rule: "default", client: { "header:x-api-key": apiKey } }),
      });
      expect(reset.status).toBe(200);
      const after = await hammer(isolates.urls, apiKey, 900, 24);
      await sleep(2_200); // leases and the object's record of them run out
      const rest = await hammer(isolates.urls, apiKey, 900, 24);
      console.log(JSON.stringify({ event: "reset with leases out", before, after, rest }));
      // Leased tokens spent after the reset came out of the full bucket the reset made.
      expect(after.allowed).toBeLessThanOrEqual(capacity);
      expect(after.allowed + rest.allowed).toBeLessThanOrEqual(capacity);
      expect(after.allowed).toBeGreaterThan(capacity / 2);
    } finally {
      await isolates.dispose();
    }
  }, 60_000);

  it(`one client at several times its rate over ${ISOLATES} isolates: allowed ≤ capacity + rate × elapsed`, async () => {
    const [capacity, rate] = [20, 10];
    const isolates = await startGatewayIsolates({ scriptPath: inject("gatewayBundle"), vars: varsFor(capacity, String(rate)), count: ISOLATES });
    try {
      const apiKey = `paced-${crypto.randomUUID()}`;
      const allowedBy = isolates.urls.map(() => 0);
      let refused = 0;
      const started = performance.now();
      // 12 streams, each a request about every 100 ms for 2 s or more: tens of requests a second against 10/s.
      await Promise.all(
        Array.from({ length: 12 }, async (_, stream) => {
          await sleep(stream * 8);
          for (let i = 0; i < 20; i++) {
            const index = (stream + i) % isolates.urls.length;
            const response = await fetch(`${isolates.urls[index]}/echo`, { headers: { "x-api-key": apiKey } });
            await response.arrayBuffer();
            if (response.status === 200) allowedBy[index]! += 1;
            else if (response.status === 429) refused += 1;
            else throw new Error(`unexpected status ${response.status}`);
            await sleep(100);
          }
        }),
      );
      const elapsedS = (performance.now() - started) / 1000;
      const allowed = allowedBy.reduce((a, b) => a + b, 0);
      const ceiling = capacity + Math.floor(rate * elapsedS);
      console.log(JSON.stringify({ event: "hot key, paced over its rate", allowed, allowedBy, refused, elapsedS, ceiling }));
      expect(allowed).toBeLessThanOrEqual(ceiling);
      expect(allowed).toBeGreaterThanOrEqual(capacity);
      expect(refused).toBeGreaterThan(0);
    } finally {
      await isolates.dispose();
    }
  }, 60_000);
});
