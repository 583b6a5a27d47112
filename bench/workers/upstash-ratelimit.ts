/**
 * Peer: @upstash/ratelimit's token bucket (the version users install today: its scripts start with
 * `#!lua flags=allow-key-locking`, which the local bridge accepts as Upstash does) over the Upstash
 * REST API, as its README shows it
 * for Cloudflare Workers, in front of the same origin as sluice.
 */
import { Ratelimit } from "@upstash/ratelimit";
import { Redis } from "@upstash/redis/cloudflare";
import { Hono } from "hono";
import { clientId, proxyToOrigin, type PeerEnv } from "./origin-proxy";

// One instance per isolate, as its docs ask: that keeps its in-memory cache of blocked clients
// (the "ephemeral cache", on by default) alive between requests.
let limiter: Ratelimit | undefined;

function limiterFor(env: PeerEnv): Ratelimit {
  limiter ??= new Ratelimit({
    redis: new Redis({ url: env.UPSTASH_REDIS_REST_URL, token: env.UPSTASH_REDIS_REST_TOKEN, enableTelemetry: false }),
    limiter: Ratelimit.tokenBucket(Number(env.REFILL_RATE), "1 s", Number(env.CAPACITY)),
    prefix: "bench:upstash-ratelimit",
  });
  return limiter;
}

const app = new Hono<{ Bindings: PeerEnv }>();

app.all("*", async (c) => {
  const { success, limit, remaining, reset, pending } = await limiterFor(c.env).limit(clientId(c));
  c.executionCtx.waitUntil(pending);
  const headers = { "X-RateLimit-Limit": String(limit), "X-RateLimit-Remaining": String(remaining) };
  if (!success) {
    const retryAfter = Math.max(1, Math.ceil((reset - Date.now()) / 1000));
    return c.json({ title: "Too Many Requests", status: 429 }, 429, { ...headers, "Retry-After": String(retryAfter) });
  }
  const response = await proxyToOrigin(c.req.raw, c.env);
  const answer = new Response(response.body, response);
  for (const [name, value] of Object.entries(headers)) answer.headers.set(name, value);
  return answer;
});

export default app;
