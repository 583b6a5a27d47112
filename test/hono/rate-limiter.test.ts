import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import type { RuleSpec } from "../../src/core/rules";
import { memoryBackend } from "../../src/core/memory-backend";
import { rateLimiter } from "../../src/hono";

describe("rateLimiter (Hono, plain Node, memory backend)", () => {
  it("rules in the same form as LIMITER_RULES: five 200s with headers, then a 429 problem", async () => {
    const app = new Hono().use(rateLimiter({ backend: memoryBackend(), rules: [{ name: "api", key: "header:x-api-key", capacity: 5, rate: "1/1m" }] })).get("/", (c) => c.text("ok"));
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

  it("peerAddressOf supplies the client address where no proxy header says it", async () => {
    const app = new Hono()
      .use(rateLimiter({ backend: memoryBackend(), rules: [{ name: "ip", capacity: 1, rate: "1/1h" }], peerAddressOf: (c) => c.req.header("x-test-peer") }))
      .get("/", (c) => c.text("ok"));
    expect((await app.request("/", { headers: { "x-test-peer": "198.51.100.1" } })).status).toBe(200);
    expect((await app.request("/", { headers: { "x-test-peer": "198.51.100.1" } })).status).toBe(429);
    expect((await app.request("/", { headers: { "x-test-peer": "198.51.100.2" } })).status).toBe(200);
  });

  it("a proxied upstream's own rate-limit headers never replace the limiter's, and onResponse sees the final response", async () => {
    // An upstream that is rate limited itself; fetch() gives its response immutable headers.
    const upstream = createServer((_, res) => res.writeHead(200, { RateLimit: '"upstream";r=999;t=1', "x-upstream": "yes" }).end("from upstream"));
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    try {
      const seen: (string | null)[] = [];
      const app = new Hono()
        .use(
          rateLimiter({
            backend: memoryBackend(),
            rules: [{ name: "api", key: "header:x-api-key", capacity: 5, rate: "1/1m" }],
            onResponse: (c) => void seen.push(c.res.headers.get("RateLimit")),
          }),
        )
        .get("/", () => fetch(`http://127.0.0.1:${(upstream.address() as AddressInfo).port}/`));
      const response = await app.request("/", { headers: { "x-api-key": "k" } });
      expect(response.headers.get("RateLimit")).toBe('"api";r=4;t=60');
      expect(response.headers.get("x-upstream")).toBe("yes");
      expect(await response.text()).toBe("from upstream");
      expect(seen).toEqual(['"api";r=4;t=60']);
    } finally {
      upstream.close();
    }
  });

  it("requests no rule covers pass untouched", async () => {
    const app = new Hono().use(rateLimiter({ backend: memoryBackend(), rules: [{ name: "login", match: { path: "/login" }, capacity: 1, rate: 1 }] })).get("*", (c) => c.text("ok"));
    const response = await app.request("/other");
    expect(response.status).toBe(200);
    expect(response.headers.get("RateLimit")).toBeNull();
  });

  it("a concurrency rule holds a slot until the origin's body ends, whether the client reads it or cancels", async () => {
    let finish: (() => void) | undefined;
    const app = new Hono()
      .use(rateLimiter({ backend: memoryBackend(), rules: [{ name: "inflight", concurrency: 1 }] }))
      .get("/stream", () => {
        const body = new ReadableStream<Uint8Array>({
          start(controller) {
            controller.enqueue(new TextEncoder().encode("first;"));
            finish = () => {
              controller.enqueue(new TextEncoder().encode("last"));
              controller.close();
            };
          },
        });
        return new Response(body);
      })
      .get("/quick", (c) => c.text("quick"))
      .get("/boom", () => {
        throw new Error("handler failed");
      });
    const streaming = await app.request("/stream");
    expect(streaming.status).toBe(200);
    expect(streaming.headers.get("RateLimit-Policy")).toBe('"inflight";q=1;qu="concurrent-requests"');
    expect((await app.request("/quick")).status).toBe(429);
    finish?.();
    expect(await streaming.text()).toBe("first;last");
    await new Promise((resolve) => setTimeout(resolve, 10)); // the release runs after the last chunk
    const quick = await app.request("/quick");
    expect(await quick.text()).toBe("quick");
    await new Promise((resolve) => setTimeout(resolve, 10));

    // A client that stops reading does not free the slot while the origin still produces the body.
    const cancelled = await app.request("/stream");
    await cancelled.body?.cancel();
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect((await app.request("/quick")).status).toBe(429);
    finish?.(); // the origin's body ends: its answer has settled
    await new Promise((resolve) => setTimeout(resolve, 10));
    const afterCancel = await app.request("/quick");
    expect(afterCancel.status).toBe(200);
    await afterCancel.text(); // read to the end: the slot is given back
    await new Promise((resolve) => setTimeout(resolve, 10));
    // A handler that throws gives its slot back too (Hono answers 500).
    const failed = await app.request("/boom");
    expect(failed.status).toBe(500);
    await failed.text();
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect((await app.request("/quick")).status).toBe(200);
  });

  it("a slot's lease is renewed while the origin works, and a HEAD gives its slot back at once", async () => {
    const app = new Hono()
      .use(rateLimiter({ backend: memoryBackend(), rules: [{ name: "inflight", concurrency: 1, lease: "1s" }] }))
      .get("/slow", async (c) => {
        await new Promise((resolve) => setTimeout(resolve, 1_600));
        return c.text("done");
      })
      .get("/quick", (c) => c.text("quick"));
    const slow = app.request("/slow");
    await new Promise((resolve) => setTimeout(resolve, 1_200)); // past the lease: only a renewal keeps it
    expect((await app.request("/quick")).status).toBe(429);
    expect(await (await slow).text()).toBe("done");
    await new Promise((resolve) => setTimeout(resolve, 10));
    const head = await app.request("/quick", { method: "HEAD" });
    expect(head.status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 10));
    const after = await app.request("/quick");
    expect(after.status).toBe(200);
    await after.text();
  });

  it("a client that disconnects keeps its slot: it lapses with its lease, never sooner (issue 16: 3)", async () => {
    let originDone: (() => void) | undefined;
    const app = new Hono()
      .use(rateLimiter({ backend: memoryBackend(), rules: [{ name: "inflight", concurrency: 1, lease: "1s" }] }))
      .get("/slow", async (c) => {
        await new Promise<void>((resolve) => (originDone = resolve));
        return c.text("done");
      })
      .get("/quick", (c) => c.text("quick"));
    const client = new AbortController();
    const slow = app.request(new Request("http://gateway.test/slow", { signal: client.signal }));
    await new Promise((resolve) => setTimeout(resolve, 20));
    client.abort(); // the client leaves; the origin keeps working
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect((await app.request("/quick")).status).toBe(429); // repeating does not get another slot
    originDone?.();
    await (await slow).body?.cancel(); // the runtime cancels the answer nobody reads
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect((await app.request("/quick")).status).toBe(429); // nothing here saw the origin's work end
    await new Promise((resolve) => setTimeout(resolve, 1_100)); // the lease lapses
    const after = await app.request("/quick");
    expect(after.status).toBe(200);
    await after.text();
  });
});

describe("rateLimiter with a queue (rule option queue.maxWait)", () => {
  const rules = [{ name: "api", key: "header:x-api-key", capacity: 1, rate: 5, queue: { maxWait: "1s" } }] satisfies RuleSpec[];

  it("a request the bucket admits within maxWait waits (a timer) until its token has refilled, then passes with r=0; one beyond maxWait is refused at once", async () => {
    let handled = 0;
    const app = new Hono().use(rateLimiter({ backend: memoryBackend(), rules })).get("/", (c) => c.text(`ok ${++handled}`));
    const send = () => app.request("/", { headers: { "x-api-key": "k" } });
    expect((await send()).status).toBe(200);
    const started = performance.now();
    const queued = await send(); // one token every 200 ms: this one waits ~200 ms
    const waitedMs = performance.now() - started;
    expect(queued.status).toBe(200);
    expect(await queued.text()).toBe("ok 2");
    expect(queued.headers.get("RateLimit")).toMatch(/^"api";r=0;t=\d+$/);
    expect(waitedMs).toBeGreaterThanOrEqual(190);
    expect(waitedMs).toBeLessThan(600);
    // Five more queue (up to 1 s of debt); the sixth would wait longer: refused at once with the real wait.
    const five = Array.from({ length: 5 }, () => send());
    const refusedAt = performance.now();
    const refused = await send();
    expect(refused.status).toBe(429);
    expect(performance.now() - refusedAt).toBeLessThan(150);
    expect(Number(refused.headers.get("Retry-After"))).toBeGreaterThanOrEqual(1);
    expect((await Promise.all(five)).map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
  });

  it("a client that leaves while its request waits gets its token back, and the request never reaches the handler", async () => {
    let handled = 0;
    const app = new Hono().use(rateLimiter({ backend: memoryBackend(), rules })).get("/", (c) => c.text(`ok ${++handled}`));
    const send = (signal?: AbortSignal) => app.request(new Request("http://localhost/", { headers: { "x-api-key": "k" }, ...(signal && { signal }) }));
    expect((await send()).status).toBe(200);
    const client = new AbortController();
    const leaving = send(client.signal); // queued for ~200 ms
    await new Promise((resolve) => setTimeout(resolve, 50));
    client.abort();
    expect((await leaving).status).toBe(499);
    await new Promise((resolve) => setTimeout(resolve, 20)); // the refund runs off the request path
    // Given back: the next request waits for the rest of one token (~130 ms), not two (~330 ms).
    const started = performance.now();
    expect((await send()).status).toBe(200);
    expect(performance.now() - started).toBeLessThan(250);
    expect(handled).toBe(2);
  });
});
