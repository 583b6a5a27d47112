import type { Context, Env, MiddlewareHandler } from "hono";
import { Limiter, type LimiterOptions } from "../core/limiter";
import { limitRequest } from "../fetch";

/** Where the middleware's limiter comes from: options to build one, or one built elsewhere. */
type LimiterSource<E extends Env> = LimiterOptions | { readonly limiter: Limiter | ((c: Context<E>) => Limiter) };

/**
 * Options of {@link rateLimiter}: the core's {@link LimiterOptions} (the middleware builds one
 * limiter and keeps it), or `limiter` for one you built (per `c.env`, say), plus how to read the
 * client from the context.
 */
export type RateLimiterOptions<E extends Env = Env> = LimiterSource<E> & {
  /**
   * The client, from anything earlier middleware established (a user id from a verified JWT):
   * replaces every matched rule's key parts. `undefined` counts as a missing key.
   */
  readonly keyGenerator?: (c: Context<E>) => string | undefined | Promise<string | undefined>;
  /** The connection's peer address, for `ip` keys when the address header is absent (plain Node). */
  readonly peerAddressOf?: (c: Context<E>) => string | undefined;
  /** An id the limiter's log events carry (a trace id, Cloudflare's `cf-ray`): read only when one is logged. */
  readonly requestId?: (c: Context<E>) => string | undefined;
  /** Called after the next handler answered (or the limiter refused): metrics flushing, say. */
  readonly onResponse?: (c: Context<E>) => void;
};

/**
 * Hono middleware: asks the limiter about each request, answers a refusal (429 problem+json
 * with `Retry-After`), a missing key (400/401), a closed failure (503) or a misconfiguration
 * (500) itself, and otherwise calls the next handler and adds the rate-limit headers to its
 * response. Requests no rule matches pass untouched.
 *
 * @example
 * import { Hono } from "hono";
 * import { memoryBackend } from "sluice";
 * import { rateLimiter } from "sluice/hono";
 *
 * const app = new Hono();
 * app.use("/api/*", rateLimiter({
 *   backend: memoryBackend(),
 *   rules: [{ name: "api", key: "header:x-api-key", capacity: 5, rate: "1/1m" }],
 * }));
 */
export function rateLimiter<E extends Env = Env>(options: RateLimiterOptions<E>): MiddlewareHandler<E> {
  const limiterFor = "limiter" in options ? options.limiter : new Limiter(options);
  const { keyGenerator, peerAddressOf, requestId, onResponse } = options;

  return async (c, next) => {
    const limiter = typeof limiterFor === "function" ? limiterFor(c) : limiterFor;
    const clientId = keyGenerator === undefined ? undefined : ((await keyGenerator(c)) ?? "");
    const peerAddress = peerAddressOf?.(c);
    let nextRan = false;
    const response = await limitRequest(
      c.req.raw,
      async () => {
        nextRan = true;
        await next();
        return c.res;
      },
      {
        limiter,
        ...(clientId !== undefined && { clientId }),
        ...(peerAddress !== undefined && { peerAddress }),
        ...(requestId !== undefined && { requestId: () => requestId(c) }),
        waitUntil: (task) => runInBackground(c, task),
      },
    );
    // The limiter's own answer (a refusal, a queued client that left) stops here.
    if (!nextRan) {
      onResponse?.(c);
      return response;
    }
    // After the next handler, its response with the rate-limit headers is the context's. A copy
    // (immutable headers, a body held for a concurrency slot) already carries every header of
    // the one it copies: clearing first keeps Hono's setter from setting the old headers over it
    // (an upstream's own `RateLimit` would replace the limiter's).
    if (response !== c.res) {
      c.res = undefined;
      c.res = response;
    }
    onResponse?.(c);
  };
}

/** `ctx.waitUntil` where the runtime has one (Workers); elsewhere the task just runs. */
function runInBackground(c: Context, task: Promise<unknown>): void {
  try {
    c.executionCtx.waitUntil(task);
  } catch {
    // No execution context (plain Node): the promise runs on its own.
    void task.catch(() => {});
  }
}
