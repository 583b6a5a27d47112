/**
 * Edge-native peer: the Workers Rate Limiting binding (`[[ratelimits]]` in wrangler, the
 * `ratelimits` option in Miniflare), in front of the same origin as sluice, charging the same
 * client header. Its only policy is `simple = { limit, period }` with a period of 10 or 60 s:
 * the benchmark maps each token-bucket policy onto it (`bench/limiters.mjs`).
 *
 * Cloudflare documents it as per-location, permissive and eventually consistent; Miniflare runs it
 * as a fixed-window counter in one local object, so what the benchmark measures is Miniflare's.
 */
import { Hono } from "hono";
import { clientId, proxyToOrigin, type BenchEnv } from "./origin-proxy";

interface RateLimitBindingEnv extends BenchEnv {
  LIMITER: RateLimit;
}

const app = new Hono<{ Bindings: RateLimitBindingEnv }>();

app.all("*", async (c) => {
  const { success } = await c.env.LIMITER.limit({ key: clientId(c) });
  if (!success) return c.json({ title: "Too Many Requests", status: 429 }, 429);
  return proxyToOrigin(c.req.raw, c.env);
});

export default app;
