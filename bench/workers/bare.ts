/** The ceiling: a Hono worker that proxies to the origin with no limiter at all. */
import { Hono } from "hono";
import { proxyToOrigin, type BenchEnv } from "./origin-proxy";

const app = new Hono<{ Bindings: BenchEnv }>();
app.all("*", (c) => proxyToOrigin(c.req.raw, c.env));

export default app;
