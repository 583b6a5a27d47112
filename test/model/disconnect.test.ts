// The model-based test's find, kept as a fixed case: a client that hangs up after the headers must not free
// its concurrency slot while the origin still works (the runtime cancels the gateway's fetch of the body).
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import { startModelStack, type ModelStack } from "./stack";

for (const backend of ["durable-object", "memory", "upstash"] as const) {
  let stack: ModelStack;
  beforeAll(async () => {
    stack = await startModelStack(backend, inject("gatewayBundle"), {}, backend === "memory" ? 1 : 2);
  }, 60_000);
  afterAll(async () => stack?.dispose());
  it(`a client that hangs up keeps its concurrency slot (${backend})`, async () => {
    const key = `r${Date.now()}`;
    const slow = async (isolate: number, disconnect: boolean) => {
      const c = new AbortController();
      const res = await fetch(`${stack.urls[isolate % stack.urls.length]}/work/x/work?ms=300`, { headers: { "x-api-key": key }, signal: c.signal });
      if (disconnect) c.abort();
      else void res.text().catch(() => {});
      return `${res.status} ${res.headers.get("ratelimit")}`;
    };
    const out = [await slow(0, true), await slow(0, false), await slow(1, false)];
    expect(out.every((answer) => answer.startsWith("200") || answer.startsWith("429"))).toBe(true);
    await new Promise((r) => setTimeout(r, 400));
    expect(stack.origin.inFlight.get(key)!.peak).toBeLessThanOrEqual(2);
  });
}
