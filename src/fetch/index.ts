/*
 * The limiter around a fetch handler, with the Fetch API only (no framework): the Hono
 * middleware wraps it, and the gateway's traffic path runs it around the proxy.
 */
import type { Limiter } from "../core/limiter";
import type { CheckOptions } from "../core/limiter-options";
import { requestSubject } from "../core/subject";
import type { RateLimitHeaders, Verdict } from "../core/verdict";
import { verdictResponse } from "../core/verdict-response";

/** Options of {@link limitRequest}: the limiter, and what the runtime tells about the request. */
export interface LimitRequestOptions {
  readonly limiter: Limiter;
  /**
   * The client, as earlier code established it (a user id from a verified JWT): replaces every
   * matched rule's key parts. Left out, the rules' keys read the request.
   */
  readonly clientId?: string;
  /** The connection's peer address, for `ip` keys when the address header is absent (plain Node). */
  readonly peerAddress?: string;
  /** An id the limiter's log events carry (Cloudflare's `cf-ray`): read only when one is logged. */
  readonly requestId?: () => string | undefined;
  /** Keeps work alive after the answer (a Worker's `ctx.waitUntil`); without it the work just runs. */
  readonly waitUntil?: (task: Promise<unknown>) => void;
}

/**
 * Rate-limits one request around `next`, with the Fetch API only (no framework): asks the
 * limiter, answers a refusal (429 problem+json with `Retry-After`), a missing key (400/401), a
 * closed failure (503) or a misconfiguration (500) itself, and otherwise calls `next` and adds
 * the rate-limit headers to its response. A queued request waits for its tokens first;
 * concurrency slots are held until the response's body has been sent; rules that count only some
 * responses settle after it. Requests no rule matches go to `next` untouched. The Hono middleware
 * and the gateway Worker are both this function.
 *
 * @example
 * export default {
 *   fetch: (request: Request, env: Env, ctx: ExecutionContext) =>
 *     limitRequest(request, () => fetch(new Request(ORIGIN + new URL(request.url).pathname, request)), {
 *       limiter,
 *       waitUntil: (task) => ctx.waitUntil(task),
 *     }),
 * };
 */
export async function limitRequest(request: Request, next: () => Promise<Response>, options: LimitRequestOptions): Promise<Response> {
  const { limiter, clientId, peerAddress, requestId, waitUntil = runOnItsOwn } = options;
  const subject =
    clientId === undefined && peerAddress === undefined
      ? requestSubject(request)
      : requestSubject(request, { ...(clientId !== undefined && { clientId }), ...(peerAddress !== undefined && { peerAddress }) });
  const checkOptions: CheckOptions = requestId === undefined ? { background: waitUntil } : { requestId, background: waitUntil };
  const verdict = await limiter.check(subject, checkOptions);
  const refusal = verdictResponse(verdict);
  if (refusal !== undefined) return refusal;
  // Concurrency slots are renewed from the moment they were taken, through a queue wait (which may
  // outlast a lease) and the origin's answer, until given back.
  const slots = holdSlots(request, limiter, verdict, waitUntil);
  // A queued request (a rule's `queue`) was charged ahead of its refill: it waits, on a timer,
  // until its tokens are there. A client that leaves meanwhile gives its charge back, and any
  // concurrency slot; its request never reaches `next` and nobody reads the answer.
  if (verdict.kind === "allowed" && verdict.waitMs !== undefined && !(await waitFor(verdict.waitMs, request.signal))) {
    // The abort stopped the slots' renewal (left to lapse, as for a request the origin may still
    // be working on); this one never reached the origin, so they go back now.
    slots?.release();
    waitUntil(Promise.all([limiter.giveBack(verdict), limiter.release(verdict)]));
    return new Response(null, { status: CLIENT_CLOSED_REQUEST });
  }
  let response: Response;
  try {
    response = await next();
  } catch (error) {
    slots?.release();
    throw error;
  }
  if (verdict.kind === "allowed" && verdict.headers.length > 0) response = withHeaders(response, verdict.headers);
  // Rules that count only some responses give the others back, off the request path.
  if (verdict.kind === "allowed") waitUntil(limiter.settle(verdict, response.status));
  return slots === undefined ? response : slots.untilSent(response);
}

/** Without a runtime to keep it alive, a background task just runs. */
function runOnItsOwn(task: Promise<unknown>): void {
  void task.catch(() => {});
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

/**
 * Keeps the concurrency slots an allowed verdict holds: renewed before their lease ends, and given
 * back once the response has settled: its body fully read, or, when the client stopped reading,
 * once the origin's body ends anyway (at most one lease later); or when `next` throws. A response
 * without a body to stream (HEAD, a WebSocket upgrade) gives them back at once. A client that
 * goes away (`request.signal`) never frees its slot early: the origin may still be working, so the
 * slot lapses with its lease (renewal stops). Undefined when the verdict holds none.
 */
function holdSlots(
  request: Request,
  limiter: Limiter,
  verdict: Verdict,
  waitUntil: (task: Promise<unknown>) => void,
): { release: () => void; untilSent: (response: Response) => Response } | undefined {
  const holding = limiter.holding(verdict);
  if (holding === undefined) return undefined;
  let finish: (() => void) | undefined;
  waitUntil(new Promise<void>((resolve) => (finish = resolve)));
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
  request.signal?.addEventListener("abort", lapse, { once: true });
  const untilSent = (response: Response): Response => {
    const body = response.body;
    if (body === null || response.status === 101 || request.method === "HEAD") {
      release();
      return response;
    }
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
    return new Response(tracked, response);
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

/** `response` with the rate-limit headers set: itself, or a copy when its headers are immutable. */
function withHeaders(response: Response, headers: RateLimitHeaders): Response {
  try {
    for (const [name, value] of headers) response.headers.set(name, value);
    return response;
  } catch {
    // A response straight from fetch() has immutable headers: copy it (the body still streams;
    // a WebSocket upgrade, in Workers, keeps its socket).
    const { webSocket } = response as Response & { webSocket?: unknown };
    const copy = webSocket ? new Response(null, { status: 101, webSocket, headers: response.headers } as ResponseInit) : new Response(response.body, response);
    for (const [name, value] of headers) copy.headers.set(name, value);
    return copy;
  }
}
