import { afterEach, describe, expect, it, vi } from "vitest";
import { Limiter } from "../../src/core/limiter";
import { memoryBackend } from "../../src/core/memory-backend";
import { limitRequest } from "../../src/fetch";

const limiter = () => new Limiter({ backend: memoryBackend(), rules: [{ name: "api", key: "header:x-api-key", capacity: 2, rate: "1/1m" }] });
const request = (key = "k") => new Request("https://gateway.test/items", { headers: { "x-api-key": key } });

describe("limitRequest (the Fetch API guard the Hono middleware and the gateway share)", () => {
  it("calls next while the bucket holds, adds the headers to its response, then refuses without calling it", async () => {
    const guarded = limiter();
    let calls = 0;
    const next = async () => {
      calls++;
      return new Response("ok", { headers: { "x-origin": "1" } });
    };
    const first = await limitRequest(request(), next, { limiter: guarded });
    const second = await limitRequest(request(), next, { limiter: guarded });
    const refused = await limitRequest(request(), next, { limiter: guarded });
    expect([first.status, second.status, refused.status, calls]).toEqual([200, 200, 429, 2]);
    expect(first.headers.get("x-origin")).toBe("1");
    expect(second.headers.get("RateLimit")).toBe('"api";r=0;t=120');
    expect(refused.headers.get("Content-Type")).toBe("application/problem+json");
    expect(await refused.json()).toMatchObject({ "violated-policies": ["api"] });
  });

  it("copies a response whose headers are immutable (one straight from fetch) and keeps its body", async () => {
    const immutable = Response.redirect("https://origin.test/elsewhere", 302);
    expect(() => immutable.headers.set("x", "y")).toThrow();
    const response = await limitRequest(request(), async () => immutable, { limiter: limiter() });
    expect(response).not.toBe(immutable);
    expect(response.status).toBe(302);
    expect(response.headers.get("Location")).toBe("https://origin.test/elsewhere");
    expect(response.headers.get("RateLimit")).toBe('"api";r=1;t=60');
  });

  it("a client id replaces the rules' key parts; requests no rule covers pass untouched", async () => {
    const guarded = limiter();
    const next = async () => new Response("ok");
    for (const key of ["a", "b"]) expect((await limitRequest(request(key), next, { limiter: guarded, clientId: "same-user" })).status).toBe(200);
    expect((await limitRequest(request("c"), next, { limiter: guarded, clientId: "same-user" })).status).toBe(429);
    const unmatched = new Limiter({ backend: memoryBackend(), rules: [{ name: "login", match: { path: "/login" }, capacity: 1, rate: 1 }] });
    const passed = await limitRequest(request(), next, { limiter: unmatched });
    expect(passed.headers.get("RateLimit")).toBeNull();
  });

  describe("a queued request's concurrency slot", () => {
    afterEach(() => {
      vi.useRealTimers();
    });

    it("is renewed while the request waits in the queue, so a wait longer than the lease lends it to nobody", async () => {
      vi.useFakeTimers();
      const guarded = new Limiter({
        backend: memoryBackend(),
        rules: [
          { name: "inflight", key: "header:x-api-key", concurrency: 1, lease: "1s" },
          { name: "slow", match: { path: "/slow" }, key: "header:x-api-key", capacity: 1, rate: "1/3s", queue: { maxWait: "5s" } },
        ],
      });
      let inFlight = 0;
      let mostInFlight = 0;
      const origin = (ms: number) => async () => {
        mostInFlight = Math.max(mostInFlight, ++inFlight);
        await new Promise((resolve) => setTimeout(resolve, ms));
        inFlight--;
        return new Response("ok");
      };
      const at = (path: string) => new Request(`https://gateway.test${path}`, { headers: { "x-api-key": "k" } });
      const finished = async (pending: Promise<Response>) => {
        const response = await pending;
        await response.text();
        return response.status;
      };
      // The bucket's one token, then a request queued ~3 s for the next: it holds the one slot while it waits.
      const first = finished(limitRequest(at("/slow"), origin(10), { limiter: guarded }));
      await vi.advanceTimersByTimeAsync(20);
      expect(await first).toBe(200);
      const queued = finished(limitRequest(at("/slow"), origin(1_000), { limiter: guarded }));
      await vi.advanceTimersByTimeAsync(2_000); // twice the lease
      const other = finished(limitRequest(at("/other"), origin(2_000), { limiter: guarded }));
      await vi.advanceTimersByTimeAsync(6_000);
      expect(await other).toBe(429);
      expect(await queued).toBe(200);
      expect(mostInFlight).toBe(1);
    });
  });
});
