import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { Env } from "../../src/gateway/env";
import worker from "../../src/index";
import { BACKENDS, SHARED_BACKENDS } from "../support/backends";
import { rateLimitItems } from "../support/helpers";

/**
 * A gateway whose responses are handed over while their bodies still stream: `done` waits for
 * the request's background work (a slot's release) once the origin's body has ended.
 */
function streamingGateway(vars: Record<string, string>) {
  const gatewayEnv: Env = { ...env, ...vars };
  return async (path: string, apiKey: string) => {
    const ctx = createExecutionContext();
    const response = await worker.fetch(new Request(`https://gateway.test${path}`, { headers: { "x-api-key": apiKey } }), gatewayEnv, ctx);
    return { response, done: () => waitOnExecutionContext(ctx) };
  };
}

const RULES = JSON.stringify([
  { name: "inflight", key: "header:x-api-key", concurrency: 2 },
  { name: "api", key: "header:x-api-key", capacity: 100, rate: "100/1m" },
]);

describe.each(SHARED_BACKENDS)("concurrency limits across isolates on the $name backend", ({ vars }) => {
  it("N slow responses hold the slots, the N+1th is refused, and a slot frees as soon as one origin answer ends", async () => {
    // Two gateways stand for two isolates: the slots live in the store, not in either.
    const [a, b] = [streamingGateway({ ...vars, LIMITER_RULES: RULES }), streamingGateway({ ...vars, LIMITER_RULES: RULES })];
    const key = `key-${crypto.randomUUID()}`;
    const first = await a("/stream?ms=1500", key);
    const second = await b("/stream?ms=4000", key);
    expect([first.response.status, second.response.status]).toEqual([200, 200]);
    expect(rateLimitItems(second.response.headers.get("RateLimit-Policy"))).toEqual([
      ["api", { q: 100, w: 60 }],
      ["inflight", { q: 2, qu: "concurrent-requests" }],
    ]);

    const third = await a("/echo", key);
    expect(third.response.status).toBe(429);
    expect(third.response.headers.get("Retry-After")).toBe("1");
    expect(rateLimitItems(third.response.headers.get("RateLimit-Policy"))).toEqual([["inflight", { q: 2, qu: "concurrent-requests" }]]);
    expect(rateLimitItems(third.response.headers.get("RateLimit"))).toEqual([["inflight", { r: 0 }]]);
    expect(await third.response.json()).toMatchObject({ status: 429, "violated-policies": ["inflight"] });
    await third.done();
    // Another client has its own slots.
    const other = await b("/echo", `key-${crypto.randomUUID()}`);
    expect(other.response.status).toBe(200);
    await other.response.text();
    await other.done();

    // The client goes away: the origin still produces the body, so the slot stays held until the
    // origin's answer ends (not when the client leaves).
    await first.response.body!.cancel();
    const meanwhile = await b("/echo", key);
    expect(meanwhile.response.status).toBe(429);
    await meanwhile.done();
    await first.done(); // the origin's body ended: released
    const fourth = await b("/echo", key);
    expect(fourth.response.status).toBe(200);
    expect(await fourth.response.json()).toMatchObject({ path: "/echo" }); // body fully read: released
    await fourth.done();

    // A short response ends: its slot frees at once, every time.
    for (let i = 0; i < 3; i++) {
      const quick = await a("/echo", key);
      expect(quick.response.status).toBe(200);
      await quick.response.text();
      await quick.done();
    }
    // Still one slot held by the second (streaming) response, so two more cannot both pass.
    const held = await a("/stream?ms=2000", key);
    expect(held.response.status).toBe(200);
    expect((await b("/echo", key)).response.status).toBe(429);
    await Promise.all([second.response.body!.cancel(), held.response.body!.cancel()]);
    await Promise.all([second.done(), held.done()]);
    expect((await a("/echo", key)).response.status).toBe(200);
  });
});

describe.each(BACKENDS)("concurrency limits with bucket rules on the $name backend", ({ vars }) => {
  it("a refusal by a bucket rule gives the slot back at once", async () => {
    const gateway = streamingGateway({
      ...vars,
      LIMITER_RULES: JSON.stringify([
        { name: "inflight", key: "header:x-api-key", concurrency: 1 },
        { name: "tiny", key: "header:x-api-key", capacity: 1, rate: "1/1h" },
      ]),
    });
    const key = `key-${crypto.randomUUID()}`;
    const first = await gateway("/echo", key);
    expect(first.response.status).toBe(200);
    await first.response.text();
    await first.done();
    for (let i = 0; i < 3; i++) {
      const refused = await gateway("/echo", key);
      expect(refused.response.status).toBe(429);
      expect(await refused.response.json()).toMatchObject({ "violated-policies": ["tiny"] }); // never "inflight": no slot leaked
      await refused.done();
    }
  });
});
