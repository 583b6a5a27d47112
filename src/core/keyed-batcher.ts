import { BackendConfigError } from "./backend";
import { SharedCallError } from "./store-guard";

/** How one request's part of a call ended. */
export type Settled<A> = { readonly ok: true; readonly value: A } | { readonly ok: false; readonly error: unknown };

/** What a {@link KeyedBatcher} calls: the store, for one key's queued requests at once. */
export interface BatchSender<R, A> {
  /**
   * One call for `batch` (requests in arrival order, decided in that order) under `signal`, the
   * deadline of the request that makes it; one result per request. `current()` says whether this
   * call is still the key's newest (a call that went stale must not leave state behind, e.g. a lease).
   */
  send(key: string, batch: readonly R[], signal: AbortSignal, current: () => boolean): Promise<readonly Settled<A>[]>;
  /**
   * After a call for `key` answered (`answered`: its requests and their results, in order): a
   * request that queued meanwhile, answered with no call (from a lease it brought, or a refusal it
   * shares), or undefined.
   */
  answerQueued?(key: string, request: R, answered: Answered<R, A>): A | undefined;
  /** Most requests one call carries (the rest wait for the next); default: all that queued. */
  readonly maxBatch?: number;
}

/** A call's requests and their results, in order. */
export interface Answered<R, A> {
  readonly batch: readonly R[];
  readonly results: readonly Settled<A>[];
}

/** A request waiting for its key's next call. */
interface Waiter<R, A> {
  readonly request: R;
  readonly signal: AbortSignal;
  sent: boolean;
  result?: Settled<A>;
  /** Wakes the waiting request (in its own request context) to look again. */
  wake?: () => void;
}

/** One key's queue and call in flight. */
interface Line<R, A> {
  readonly queue: Waiter<R, A>[];
  inFlight: boolean;
  /** Which call is in flight (a stale call's late answer must not clear a newer one's flag), since when, under whose deadline. */
  flight: number;
  startedMs: number;
  signal: AbortSignal | undefined;
}

/**
 * At most one store call per key in flight from this isolate: requests for a key arriving while
 * its call is out queue, and the next call carries them (all, or up to the sender's `maxBatch`):
 * the store decides each in order, exactly as that many separate calls would. A burst from one
 * client then costs the store one call at a time, however many requests it sends at once, and
 * cannot slow the store for everyone.
 *
 * - A call in flight longer than `staleAfterMs`, or whose request's deadline passed, no longer
 *   holds the queue back: its request may have been cancelled, and a cancelled request's I/O
 *   never settles. A call fails for its requests when the deadline of the request that made it passes.
 * - Each request waits on a promise of its own and is woken to look again, so every call is made
 *   from the context of a request that is part of it (a call made for a finished request could be
 *   cancelled with it); a request leaves on its own deadline.
 * - A failed call fails every request in it, but only the request that made it counts against
 *   the breaker; the others get a {@link SharedCallError} (a misconfigured store stays one).
 *
 * @example
 * const batcher = new KeyedBatcher<Charges, Answers>({ send: (key, batch, signal) => store.decideAll(key, batch, signal) }, 1000);
 * const answers = await batcher.run(clientKey, charges, signal);
 */
export class KeyedBatcher<R, A> {
  private readonly lines = new Map<string, Line<R, A>>();

  /**
   * @param sender makes the calls
   * @param staleAfterMs use the limiter's backend budget
   * @param clock the isolate's clock; injected by tests
   */
  constructor(
    private readonly sender: BatchSender<R, A>,
    private readonly staleAfterMs: number,
    private readonly clock: () => number = Date.now,
  ) {}

  /** Keys with a queue or a call in flight now (idle keys are forgotten at once). */
  get size(): number {
    return this.lines.size;
  }

  /** `request`'s answer, from the key's next call (or from what its current call brings: a lease, a shared refusal). */
  async run(key: string, request: R, signal: AbortSignal): Promise<A> {
    const line = this.line(key);
    const waiter: Waiter<R, A> = { request, signal, sent: false };
    line.queue.push(waiter);
    try {
      for (;;) {
        const result = waiter.result;
        if (result !== undefined) {
          if (result.ok) return result.value;
          throw result.error;
        }
        if (signal.aborted) {
          // Leaves on its own deadline, even behind (or in) a call that never settles.
          const at = line.queue.indexOf(waiter);
          if (at >= 0) line.queue.splice(at, 1);
          signal.throwIfAborted();
        }
        if (!waiter.sent && (!line.inFlight || this.stale(line))) {
          await this.call(key, line, waiter);
          continue;
        }
        await this.wait(waiter, line);
      }
    } finally {
      if (line.queue.length === 0 && (!line.inFlight || this.stale(line)) && this.lines.get(key) === line) this.lines.delete(key);
    }
  }

  private line(key: string): Line<R, A> {
    let line = this.lines.get(key);
    if (line === undefined) this.lines.set(key, (line = { queue: [], inFlight: false, flight: 0, startedMs: 0, signal: undefined }));
    return line;
  }

  /** The call in flight outlived its request's budget (or its request): the next may go. */
  private stale(line: Line<R, A>): boolean {
    return line.signal?.aborted === true || this.clock() - line.startedMs > this.staleAfterMs;
  }

  /** Until woken, this request's deadline, or (queued, not sent) the call in flight going stale. */
  private wait(waiter: Waiter<R, A>, line: Line<R, A>): Promise<void> {
    const { signal } = waiter;
    return new Promise<void>((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = () => {
        if (timer !== undefined) clearTimeout(timer);
        signal.removeEventListener("abort", done);
        waiter.wake = undefined;
        resolve();
      };
      waiter.wake = done;
      signal.addEventListener("abort", done);
      if (!waiter.sent && line.inFlight) timer = setTimeout(done, Math.max(0, line.startedMs + this.staleAfterMs + 1 - this.clock()));
    });
  }

  /** Sends the key's queue in one call, made by `sender` (one of it) under its deadline, and answers every request in it. */
  private async call(key: string, line: Line<R, A>, sender: Waiter<R, A>): Promise<void> {
    const live = line.queue.splice(0).filter((waiter) => !waiter.signal.aborted);
    const max = Math.max(1, this.sender.maxBatch ?? live.length);
    // The request that makes the call is always in it (its deadline is the call's); the rest wait, in order.
    const batch = live.length <= max ? live : [sender, ...live.filter((waiter) => waiter !== sender).slice(0, max - 1)];
    if (batch !== live) {
      const sent = new Set(batch);
      line.queue.push(...live.filter((waiter) => !sent.has(waiter)));
    }
    if (batch.length === 0) return;
    for (const waiter of batch) waiter.sent = true;
    const flight = ++line.flight;
    line.inFlight = true;
    line.startedMs = this.clock();
    line.signal = sender.signal;
    const current = () => this.lines.get(key) === line && line.flight === flight;
    try {
      const results = await untilAborted(
        this.sender.send(
          key,
          batch.map((waiter) => waiter.request),
          sender.signal,
          current,
        ),
        sender.signal,
      );
      batch.forEach((waiter, i) => {
        waiter.result = results[i] ?? { ok: false, error: new Error(`the store answered ${results.length} of ${batch.length} requests`) };
      });
    } catch (error) {
      const shared = error instanceof BackendConfigError ? error : new SharedCallError(error);
      for (const waiter of batch) waiter.result = { ok: false, error: waiter === sender ? error : shared };
    } finally {
      if (line.flight === flight) line.inFlight = false;
    }
    for (const waiter of batch) waiter.wake?.();
    // Requests that queued meanwhile: answered from what the call brought where they can, else woken so one of them calls.
    const answered: Answered<R, A> = { batch: batch.map((waiter) => waiter.request), results: batch.map((waiter): Settled<A> => waiter.result ?? { ok: false, error: undefined }) };
    for (const waiter of line.queue.splice(0)) {
      const local = this.sender.answerQueued?.(key, waiter.request, answered);
      if (local === undefined) line.queue.push(waiter);
      else waiter.result = { ok: true, value: local };
      waiter.wake?.();
    }
  }
}

/** `pending`, or the abort of `signal` (its reason) if that comes first. */
function untilAborted<T>(pending: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const abort = () => reject(signal.reason);
    signal.addEventListener("abort", abort, { once: true });
    pending.then(resolve, reject).finally(() => signal.removeEventListener("abort", abort));
  });
}
