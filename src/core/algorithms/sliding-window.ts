/**
 * The exact sliding window, registered as `"sliding-window"`: at most L admitted units in EVERY
 * trailing window of W ms on the store's clock, whatever the timing. It keeps a log of admitted
 * units only (refusals are not logged): one entry per millisecond that admitted something, with
 * the units admitted then, pruned on every take and refund. An entry admitted at t counts in the
 * window until t + W. Memory is bounded by L entries, and L by {@link MAX_SLIDING_LIMIT} (rules
 * with a larger limit are refused; an override above it is decided at it: fewer, never more).
 * A queue (`queueMs`) logs a queued request at the time it proceeds (a later stamp, never before
 * the latest logged): it waits in line behind those queued before it, and the limit still holds
 * in every trailing window of the times requests proceed.
 * `src/backends/upstash/algorithms/sliding-window.lua.ts` is its Lua twin.
 */
import type { Algorithm, BucketDecision } from "./algorithm";
import { newGeneration, type BucketPolicy } from "./token-bucket";
import { windowMs } from "./window-policy";

/** The largest limit the exact log keeps (at most this many entries per client). */
export const MAX_SLIDING_LIMIT = 1_000;

/** One log entry: when (store clock, ms) and how many units were admitted then. */
export interface Admission {
  readonly atMs: number;
  readonly units: number;
}

/** What a sliding window stores between decisions. A missing state means "nothing admitted". */
export interface SlidingWindowState {
  readonly algorithm: "sliding-window";
  /** Admissions still in the window (or later: a clock that stepped back), oldest first, one per ms. */
  readonly log: readonly Admission[];
  /** Which life of the state this is (see `BucketState.generation`): a refund never crosses a reset. */
  readonly generation: number;
  /** Store clock (ms) until which a block (`blockForMs`) refuses every request; absent: none. */
  readonly blockedUntilMs?: number;
}

/** The limit decided: the policy's, at most {@link MAX_SLIDING_LIMIT}. */
const limitOf = (policy: BucketPolicy) => Math.min(policy.capacity, MAX_SLIDING_LIMIT);

/** The admissions that still count at `nowMs`: those after `nowMs − W`. */
function live(state: SlidingWindowState | undefined, w: number, nowMs: number): Admission[] {
  return state === undefined ? [] : state.log.filter(({ atMs }) => atMs + w > nowMs);
}

const sum = (log: readonly Admission[]) => log.reduce((total, { units }) => total + units, 0);

/**
 * Charges `cost` at `nowMs`. Allowed while the units admitted in the trailing W plus `cost` stay
 * within L. `resetMs` is the time until the oldest admission in the window frees (0 when none);
 * a refusal's `retryAfterMs` the time until enough have freed for `cost` (or the block's end).
 *
 * @example
 * const policy = { algorithm: "sliding-window", capacity: 2, refillTokens: 1, refillPeriodMs: 500 } as const; // 2 per 1s
 * let s = takeSlidingWindow(undefined, policy, 1, 0).next;
 * s = takeSlidingWindow(s, policy, 1, 400).next;
 * takeSlidingWindow(s, policy, 1, 900).decision; // { outcome: "denied", remaining: 0, resetMs: 100, retryAfterMs: 100 }
 */
export function takeSlidingWindow(
  state: SlidingWindowState | undefined,
  policy: BucketPolicy,
  cost: number,
  nowMs: number,
  generation?: number,
): { decision: BucketDecision; next: SlidingWindowState | undefined; expiresInMs: number } {
  const w = windowMs(policy);
  const limit = limitOf(policy);
  const log = live(state, w, nowMs);
  const used = sum(log);
  const remaining = Math.max(0, limit - used);
  const freesInMs = (entries: readonly Admission[]) => {
    const first = entries[0];
    return first === undefined ? 0 : first.atMs + w - nowMs;
  };
  const resetMs = freesInMs(log);
  const blockForMs = policy.blockForMs ?? 0;
  const blockedUntilMs = blockForMs > 0 ? (state?.blockedUntilMs ?? 0) : 0;
  // A queue never with a block (a blocked client is refused, not queued).
  const queueMs = blockForMs === 0 ? (policy.queueMs ?? 0) : 0;
  const unchanged = (decision: BucketDecision) => ({ decision, next: undefined, expiresInMs: 0 });
  if (cost > limit) return unchanged({ outcome: "cost_exceeds_capacity", remaining, resetMs });
  if (nowMs < blockedUntilMs) return unchanged({ outcome: "denied", remaining, resetMs, retryAfterMs: blockedUntilMs - nowMs });
  // A clock that stepped back (or requests queued ahead) stamps at the latest admission: stamps stay in order.
  const last = log.at(-1);
  const baseMs = Math.max(nowMs, last?.atMs ?? nowMs);
  // Queued: charged at the first time from the latest admission on when the window ending there has room.
  const fitsAtMs = queueMs > 0 ? earliestFitMs(log, w, limit, cost, baseMs) : used + cost <= limit ? baseMs : undefined;
  // Without a queue a later stamp is no wait (a clock that stepped back goes on at once, as before).
  const waitMs = queueMs > 0 && fitsAtMs !== undefined ? fitsAtMs - nowMs : 0;
  if (fitsAtMs === undefined || waitMs > queueMs) {
    const retryAfterMs = fitsAtMs === undefined ? earliestFitMs(log, w, limit, cost, nowMs) - nowMs : waitMs;
    if (blockForMs === 0 || state === undefined) return unchanged({ outcome: "denied", remaining, resetMs, retryAfterMs });
    // This refusal starts a block: the log stays (pruned), the block's end is written beside it.
    const blocked = { algorithm: "sliding-window" as const, log, generation: state.generation, blockedUntilMs: nowMs + blockForMs };
    return { decision: { outcome: "denied", remaining, resetMs, retryAfterMs: Math.max(retryAfterMs, blockForMs) }, next: blocked, expiresInMs: slidingWindowExpiresInMs(blocked, policy, nowMs) };
  }
  const stampMs = fitsAtMs;
  const after: Admission[] =
    cost === 0 ? log : last !== undefined && last.atMs === stampMs ? [...log.slice(0, -1), { atMs: stampMs, units: last.units + cost }] : [...log, { atMs: stampMs, units: cost }];
  const next = { algorithm: "sliding-window" as const, log: after, generation: state?.generation ?? generation ?? newGeneration() };
  return {
    decision: { outcome: "allowed", remaining: Math.max(0, limit - used - cost), resetMs: freesInMs(after), ...(waitMs > 0 && { waitMs }) },
    next,
    expiresInMs: slidingWindowExpiresInMs(next, policy, nowMs),
  };
}

/**
 * The first time from `fromMs` on at which `cost` more units fit in the trailing window ending
 * there: the log's units after that time − W, plus `cost`, within L. Stamps never precede the
 * latest admission, so that window is the fullest one holding the new stamp, and a limit kept
 * there is kept in every trailing window.
 */
function earliestFitMs(log: readonly Admission[], w: number, limit: number, cost: number, fromMs: number): number {
  let inWindow = sum(log.filter(({ atMs }) => atMs > fromMs - w));
  if (inWindow + cost <= limit) return fromMs;
  for (const { atMs, units } of log) {
    if (atMs <= fromMs - w) continue;
    inWindow -= units;
    if (inWindow + cost <= limit) return atMs + w;
  }
  return fromMs; // unreachable: cost ≤ L fits in an empty window
}

/**
 * How long a state matters under `policy`: until its latest admission frees and any block is
 * over (≥ 1 ms).
 *
 * @example
 * slidingWindowExpiresInMs({ algorithm: "sliding-window", log: [{ atMs: 0, units: 1 }, { atMs: 400, units: 1 }], generation: 1 }, policy, 900); // 500 for a 1s window
 */
export function slidingWindowExpiresInMs(state: SlidingWindowState, policy: BucketPolicy, nowMs: number): number {
  const lastMs = state.log.at(-1)?.atMs;
  return Math.max(1, lastMs === undefined ? 0 : lastMs + windowMs(policy) - nowMs, (state.blockedUntilMs ?? 0) - nowMs);
}

/**
 * Undoes a charge: the units it logged (at its stamp, the last entry of the state it wrote) come
 * off the log while they are still in the window, at most what that entry holds; once they have
 * freed, or after a reset (another generation), nothing comes back.
 *
 * @example
 * const { next } = takeSlidingWindow(undefined, policy, 2, 1000);
 * refundSlidingWindow(next, policy, 2, next!, 1500)?.log; // []
 */
export function refundSlidingWindow(state: SlidingWindowState | undefined, policy: BucketPolicy, cost: number, charged: SlidingWindowState, nowMs: number): SlidingWindowState | undefined {
  const stampMs = charged.log.at(-1)?.atMs;
  if (state === undefined || stampMs === undefined || state.generation !== charged.generation) return state;
  const log = live(state, windowMs(policy), nowMs);
  const index = log.findIndex(({ atMs }) => atMs === stampMs);
  const entry = log[index];
  if (entry === undefined) return state;
  const { units } = entry;
  const left = units - Math.min(cost, units);
  if (left === units) return state;
  const given = left === 0 ? [...log.slice(0, index), ...log.slice(index + 1)] : log.map((entry, i) => (i === index ? { atMs: stampMs, units: left } : entry));
  return { ...state, log: given };
}

/**
 * A charge's receipt: the one admission it logged (its stamp, its cost) and the generation, all a
 * refund reads; a few dozen bytes whatever the log holds (the log itself: up to L entries).
 *
 * @example
 * slidingWindowReceipt({ algorithm: "sliding-window", log: [{ atMs: 0, units: 3 }, { atMs: 400, units: 2 }], generation: 7 }, 1);
 * // { algorithm: "sliding-window", log: [{ atMs: 400, units: 1 }], generation: 7 }
 */
export function slidingWindowReceipt(charged: SlidingWindowState, cost: number): SlidingWindowState {
  const last = charged.log.at(-1);
  return { algorithm: "sliding-window", log: last === undefined ? [] : [{ atMs: last.atMs, units: cost }], generation: charged.generation };
}

/**
 * The exact sliding window on the algorithm seam (registered as `"sliding-window"`).
 *
 * @example
 * slidingWindow.take(undefined, { algorithm: "sliding-window", capacity: 10, refillTokens: 1, refillPeriodMs: 1000 }, 1, 0).decision;
 * // { outcome: "allowed", remaining: 9, resetMs: 10000 }
 */
export const slidingWindow: Algorithm<SlidingWindowState, BucketPolicy> = {
  take: takeSlidingWindow,
  refund: refundSlidingWindow,
  expiresInMs: slidingWindowExpiresInMs,
  drained: (policy, nowMs) => ({ algorithm: "sliding-window", log: [{ atMs: nowMs, units: limitOf(policy) }], generation: 0 }),
  receipt: slidingWindowReceipt,
};
