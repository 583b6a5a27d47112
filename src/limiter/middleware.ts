import type { Context, MiddlewareHandler } from "hono";
import { BackendConfigError, withDeadline, type LimiterBackend } from "../backends/backend";
import { problemResponse } from "../http/problem";
import { rateLimitHeaders, retryAfterSeconds, type HeaderMode } from "./headers";
import { clientKey, type KeySource } from "./identity";
import type { NamedPolicy } from "./policy";
import type { BucketDecision } from "./token-bucket";

/** Options of {@link rateLimiter}. */
export interface RateLimiterOptions {
  /** Where buckets live, e.g. `durableObjectBackend(env.LIMITER_BUCKETS)`. */
  readonly backend: LimiterBackend;
  readonly policy: NamedPolicy;
  /** How a request's client is identified. */
  readonly key: KeySource;
  /** `open` lets requests through when the backend fails; `closed` answers 503. */
  readonly failMode: "open" | "closed";
  /** Budget of one backend call, in ms. */
  readonly timeoutMs: number;
  /** Which rate-limit headers to send. Default `all`. */
  readonly headers?: HeaderMode;
}

/**
 * Hono middleware that charges each request to its client's token bucket, refuses with 429
 * problem+json when the bucket is empty, and adds rate-limit headers to every response.
 * Options may be a function of the context, for configuration read from `c.env`.
 *
 * @example
 * const app = new Hono<{ Bindings: Env }>();
 * app.use("/api/*", rateLimiter((c) => ({
 *   backend: durableObjectBackend(c.env.LIMITER_BUCKETS),
 *   policy: { name: "api", capacity: 100, refillTokens: 10, refillPeriodMs: 1000, cost: 1 },
 *   key: { kind: "header", name: "x-api-key" },
 *   failMode: "open",
 *   timeoutMs: 1000,
 * })));
 */
export function rateLimiter<C = Context>(options: RateLimiterOptions | ((c: C) => RateLimiterOptions)): MiddlewareHandler {
  return async (c, next) => {
    const opts = typeof options === "function" ? options(c as C) : options;
    const { backend, policy } = opts;
    const key = await clientKey(c.req.raw.headers, opts.key);

    let decision: BucketDecision;
    try {
      decision = await withDeadline(
        (signal) => backend.take({ clientKey: key, bucket: policy.name, policy, cost: policy.cost }, signal),
        opts.timeoutMs,
      );
    } catch (error) {
      if (error instanceof BackendConfigError) return backendConfigErrorResponse(error);
      console.error(
        JSON.stringify({
          event: "limiter.backend_failure",
          backend: backend.name,
          failMode: opts.failMode,
          reason: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
        }),
      );
      if (opts.failMode === "open") return next();
      return problemResponse({
        type: "/problems/limiter-unavailable",
        title: "Rate limiter unavailable",
        status: 503,
        detail: `The rate-limit store (${backend.name}) did not answer, and the gateway fails closed.`,
      });
    }

    const headers = rateLimitHeaders(policy, decision, opts.headers ?? "all");
    if (decision.outcome === "cost_exceeds_capacity") {
      return problemResponse({
        type: "/problems/cost-exceeds-capacity",
        title: "Request cost exceeds the bucket",
        status: 500,
        detail: `Policy "${policy.name}" charges ${policy.cost} tokens but holds only ${policy.capacity}: no request can pass. Fix the configuration.`,
      });
    }
    if (decision.outcome === "denied") {
      const retryAfter = retryAfterSeconds(decision.retryAfterMs);
      return problemResponse(
        {
          type: "/problems/rate-limited",
          title: "Too Many Requests",
          status: 429,
          detail: `Rate limit "${policy.name}" exceeded: retry in ${retryAfter} s.`,
          policy: policy.name,
          retryAfter,
        },
        [["Retry-After", String(retryAfter)], ...headers],
      );
    }

    await next();
    if (headers.length > 0) setHeaders(c, headers);
  };
}

function setHeaders(c: Context, headers: [string, string][]): void {
  try {
    for (const [name, value] of headers) c.res.headers.set(name, value);
  } catch {
    // A response straight from fetch() has immutable headers: copy it (the body still streams).
    c.res = new Response(c.res.body, c.res);
    for (const [name, value] of headers) c.res.headers.set(name, value);
  }
}

function backendConfigErrorResponse(error: BackendConfigError): Response {
  console.error(JSON.stringify({ event: "limiter.backend_config_error", variable: error.variable, reason: error.message }));
  return problemResponse({
    type: "/problems/invalid-configuration",
    title: "Invalid gateway configuration",
    status: 500,
    detail: `${error.variable}: ${error.message}`,
  });
}
