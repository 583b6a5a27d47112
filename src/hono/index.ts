import type { Context, Env, MiddlewareHandler } from "hono";
import { Limiter, type LimiterOptions } from "../core/limiter";
import { requestSubject } from "../core/subject";
import type { RateLimitHeaders, Verdict } from "../core/verdict";
import { verdictResponse } from "../core/verdict-response";

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
    const verdict = await limiter.check(
      clientId === undefined && peerAddressOf === undefined
        ? requestSubject(c.req.raw)
        : requestSubject(c.req.raw, {
            ...(clientId !== undefined && { clientId }),
            ...(peerAddressOf !== undefined && { peerAddress: peerAddressOf(c) }),
          }),
      { ...(requestId !== undefined && { requestId: () => requestId(c) }), background: (task) => runInBackground(c, task) },
    );
    const refusal = verdictResponse(verdict);
    if (refusal !== undefined) {
      onResponse?.(c);
      return refusal;
    }
    // A queued request (a rule's `queue`) was charged ahead of its refill: it waits, on a timer,
    // until its tokens are there. A client that leaves meanwhile gives its charge back, and any
    // concurrency slot; its request never reaches the next handler and nobody reads the answer.
    if (verdict.kind === "allowed" && verdict.waitMs !== undefined && !(await waitFor(verdict.waitMs, c.req.raw.signal))) {
      runInBackground(c, Promise.all([limiter.giveBack(verdict), limiter.release(verdict)]));
      onResponse?.(c);
      return new Response(null, { status: CLIENT_CLOSED_REQUEST });
    }
    // Concurrency slots are renewed from now on (the origin may take long to answer) until given back.
    const slots = holdSlots(c, limiter, verdict);
    try {
      await next();
    } catch (error) {
      slots?.release();
      throw error;
    }
    if (verdict.kind === "allowed" && verdict.headers.length > 0) setHeaders(c, verdict.headers);
    // Rules that count only some responses give the others back, off the request path.
    if (verdict.kind === "allowed") runInBackground(c, limiter.settle(verdict, c.res.status));
    slots?.untilSent();
    onResponse?.(c);
  };
}

/**
 * Keeps the concurrency slots an allowed verdict holds: renewed before their lease ends, and given
 * back once the origin's answer has settled: its body fully read, or, when the client stopped
 * reading, once the origin's body ends anyway (at most one lease later); or when the next handler
 * throws. A response without a body to stream (HEAD, a WebSocket upgrade) gives them back at once.
 * A client that goes away (`request.signal`) never frees its slot early: the origin may still be
 * working, so the slot lapses with its lease (renewal stops). Undefined when the verdict holds none.
 */
function holdSlots(c: Context, limiter: Limiter, verdict: Verdict): { release: () => void; untilSent: () => void } | undefined {
  const holding = limiter.holding(verdict);
  if (holding === undefined) return undefined;
  let finish: (() => void) | undefined;
  runInBackground(c, new Promise<void>((resolve) => (finish = resolve)));
  const timer = setInterval(() => void limiter.renew(verdict), holding.renewEveryMs);
  const leaseMs = holding.renewEveryMs * 3;
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    clearInterval(timer);
    void limiter.release(verdict).finally(finish);
  };
  // The client went away (Workers abort the request's signal, flag `enable_request_signal`): the
  // runtime may cancel the origin's fetch, but not the origin's work, and nothing here can see
  // when that work ends. So the slot is not given back: renewal stops and it lapses with its
  // lease. Otherwise a client could hang up and repeat at will, each time starting more work.
  const lapse = () => {
    if (released) return;
    released = true;
    clearInterval(timer);
    finish?.();
  };
  c.req.raw.signal?.addEventListener("abort", lapse, { once: true });
  const untilSent = () => {
    const body = c.res.body;
    if (body === null || c.res.status === 101 || c.req.method === "HEAD") return release();
    const reader = body.getReader();
    const tracked = new ReadableStream<Uint8Array>({
      async pull(controller) {
        try {
          const { done, value } = await reader.read();
          if (done) {
            controller.close();
            release();
          } else controller.enqueue(value);
        } catch (error) {
          release();
          controller.error(error);
        }
      },
      cancel(reason) {
        // Nobody reads the answer any more, but the origin may still be producing it: the slot
        // is held until the origin's body ends (read and dropped here), at most one lease long,
        // then the origin's stream is cancelled too.
        clearInterval(timer);
        if (released) return reader.cancel(reason).catch(() => {}); // lapsing with its lease already
        const giveUp = setTimeout(() => void reader.cancel(reason).catch(() => {}), leaseMs);
        void drain(reader).then((ended) => {
          clearTimeout(giveUp);
          // Read to its end: the origin's answer settled. Cut off (the runtime cancelled the
          // origin's fetch when the client left): its work may go on unseen, so the slot lapses.
          if (ended) release();
          else lapse();
        });
      },
    });
    c.res = new Response(tracked, c.res);
  };
  return { release, untilSent };
}

/** Reads a stream to its end, dropping what it reads: true when it ended, false when it failed or was cancelled. */
async function drain(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<boolean> {
  try {
    while (!(await reader.read()).done);
    return true;
  } catch {
    return false;
  }
}

/** The status logged for a request whose client left while it was queued (nginx's 499: nobody receives it). */
const CLIENT_CLOSED_REQUEST = 499;

/**
 * Waits `ms` on a timer (no CPU): true when the time has passed, false as soon as `signal`
 * aborts (the client left), or at once if it already has.
 */
function waitFor(ms: number, signal: AbortSignal | undefined): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const abort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", abort);
      resolve(true);
    }, ms);
    signal?.addEventListener("abort", abort, { once: true });
  });
}

/** `ctx.waitUntil` where the runtime has one (Workers); elsewhere the task just runs. */
function runInBackground(c: Context, task: Promise<unknown>): void {
  try {
    c.executionCtx.waitUntil(task);
  } catch {
    // No execution context (plain Node): the promise runs on its own.
  }
}

function setHeaders(c: Context, headers: RateLimitHeaders): void {
  try {
    for (const [name, value] of headers) c.res.headers.set(name, value);
  } catch {
    // A response straight from fetch() has immutable headers: copy it (the body still streams;
    // a WebSocket upgrade, in Workers, keeps its socket).
    const { webSocket } = c.res as Response & { webSocket?: unknown };
    c.res = webSocket ? new Response(null, { status: 101, webSocket, headers: c.res.headers } as ResponseInit) : new Response(c.res.body, c.res);
    for (const [name, value] of headers) c.res.headers.set(name, value);
  }
}
