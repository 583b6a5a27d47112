/**
 * Peer: hono-rate-limiter with its Redis store over the Upstash REST API, in front of the same
 * origin as sluice. It counts in fixed windows, so the token-bucket policy maps to
 * `limit = CAPACITY` per window of `CAPACITY / REFILL_RATE` seconds: the same burst and the
 * same long-run rate.
 */
import { Redis } from "@upstash/redis/cloudflare";
import { Hono, type MiddlewareHandler } from "hono";
import { rateLimiter, RedisStore } from "hono-rate-limiter";
import { clientId, proxyToOrigin, type PeerEnv } from "./origin-proxy";

// Built on the first request (vars only exist then) and kept for the isolate's life, so the
// store loads its scripts once, not per request.
let limiter: MiddlewareHandler | undefined;

function limiterFor(env: PeerEnv): MiddlewareHandler {
  const capacity = Number(env.CAPACITY);
  limiter ??= rateLimiter({
    windowMs: Math.round((capacity / Number(env.REFILL_RATE)) * 1000),
    limit: capacity,
    standardHeaders: "draft-6",
    keyGenerator: clientId,
    store: new RedisStore({
      client: new Redis({ url: env.UPSTASH_REDIS_REST_URL, token: env.UPSTASH_REDIS_REST_TOKEN, enableTelemetry: false }),
      prefix: "bench:hono-rate-limiter:",
    }),
  });
  return limiter;
}

const app = new Hono<{ Bindings: PeerEnv }>();

app.use("*", (c, next) => limiterFor(c.env)(c, next));
app.all("*", (c) => proxyToOrigin(c.req.raw, c.env));

export default app;
