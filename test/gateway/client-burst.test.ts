import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startLocalStack, upstashVars } from "../../dev/local-stack.mjs";
import { startGateway } from "../../dev/miniflare-gateway.mjs";

/**
 * One client's burst of concurrent requests to one isolate, on Upstash with the default settings
 * (fail mode open, 1 s budget, deny cache, leases): the burst reaches the store one REST request
 * at a time (a pipeline of the requests that queued), so it cannot slow the store for everyone,
 * time its own calls out, and pass under the fail mode (dev/overload-probe.mjs found 68 admitted
 * against a bound of 16 before). Every answer is the store's decision: none fails open.
 */
const CAPACITY = 10;
const BURST = 200;

let stack: Awaited<ReturnType<typeof startLocalStack>>;
let gateway: Awaited<ReturnType<typeof startGateway>>;

beforeAll(async () => {
  stack = await startLocalStack();
  const vars = { ...upstashVars(stack), LIMITER_CAPACITY: String(CAPACITY), LIMITER_REFILL_RATE: "1", LIMITER_KEY: "header:x-api-key" };
  gateway = await startGateway({ scriptPath: inject("gatewayBundle"), vars });
}, 60_000);

afterAll(async () => {
  await gateway?.dispose();
  await stack?.stop();
});

describe("one client's burst on Upstash (default settings)", () => {
  it(`${BURST} concurrent requests: one REST request in flight at a time, every answer the store's, none beyond the bucket`, async () => {
    // A store a little slow, so the burst is all in flight together.
    stack.bridge.setLatency(40);
    try {
      const apiKey = `burst-${crypto.randomUUID()}`;
      await (await fetch(`${gateway.url}/__limiter/health`)).arrayBuffer(); // the isolate is up
      stack.bridge.resetStats();
      const started = performance.now();
      const responses = await Promise.all(
        Array.from({ length: BURST }, async () => {
          const response = await fetch(`${gateway.url}/echo`, { headers: { "x-api-key": apiKey } });
          await response.arrayBuffer();
          return { status: response.status, decided: response.headers.has("ratelimit") };
        }),
      );
      const elapsedS = (performance.now() - started) / 1000;
      const { requests, peakInFlight } = stack.bridge.stats();
      const allowed = responses.filter((r) => r.status === 200).length;
      const bound = CAPACITY + Math.ceil(elapsedS);
      console.log(JSON.stringify({ event: "client burst", burst: BURST, allowed, bound, restRequests: requests, peakInFlight, elapsedS }));
      expect(responses.every((r) => r.status === 200 || r.status === 429)).toBe(true);
      expect(responses.filter((r) => !r.decided)).toEqual([]); // no fail-open pass
      expect(allowed).toBeGreaterThanOrEqual(1);
      expect(allowed).toBeLessThanOrEqual(bound);
      // The registry read and the client's one call; then its queue, as one pipeline.
      expect(peakInFlight).toBeLessThanOrEqual(2);
      expect(requests).toBeLessThanOrEqual(10);
    } finally {
      stack.bridge.setLatency(0);
    }
  });
});
