/**
 * Concurrency slots: the one TypeScript implementation of the leases a `concurrency` rule keeps
 * per client. The Durable Object and memory backends run it; `src/backends/upstash/slots-script.ts`
 * is its Lua twin (a property test proves they agree step for step).
 *
 * A slot is a lease: an id (one per request) and the store-clock time it expires. Taking a slot
 * first forgets expired leases; an id that already holds one keeps it (and its lease is extended).
 * A long response renews its lease with `renewSlot`, which never takes a slot. A lease held by an isolate that died
 * frees itself when it expires: that is the bound on a lost release.
 */

/** One lease: who holds the slot and until when (store clock, ms). */
export interface SlotLease {
  readonly id: string;
  readonly expiresAtMs: number;
}

/** A client's leases under one concurrency rule; absent or empty: no request in flight. */
export type SlotState = readonly SlotLease[];

/** What one acquisition asks for: a lease `id`, the rule's `limit` and how long a lease lasts. */
export interface SlotClaimPolicy {
  readonly id: string;
  readonly limit: number;
  readonly leaseMs: number;
}

/** The answer to one acquisition: whether the slot is held, and how many are in flight after it. */
export interface SlotDecision {
  readonly granted: boolean;
  readonly inFlight: number;
}

/**
 * Takes (or renews) a slot at `nowMs`: granted while fewer than `limit` unexpired leases are
 * held, or when `id` already holds one. Returns the decision and the leases to keep.
 *
 * @example
 * const first = acquireSlot(undefined, { id: "a", limit: 1, leaseMs: 30_000 }, 0); // granted, inFlight 1
 * acquireSlot(first.next, { id: "b", limit: 1, leaseMs: 30_000 }, 10).decision; // { granted: false, inFlight: 1 }
 */
export function acquireSlot(state: SlotState | undefined, claim: SlotClaimPolicy, nowMs: number): { decision: SlotDecision; next: SlotState } {
  const live = (state ?? []).filter((lease) => lease.expiresAtMs > nowMs);
  const mine = live.some((lease) => lease.id === claim.id);
  if (!mine && live.length >= claim.limit) return { decision: { granted: false, inFlight: live.length }, next: live };
  const next = [...live.filter((lease) => lease.id !== claim.id), { id: claim.id, expiresAtMs: nowMs + claim.leaseMs }];
  return { decision: { granted: true, inFlight: next.length }, next };
}

/**
 * Extends the lease `id` holds, if it still holds one; never takes a slot (a renewal that comes
 * after the release, or after the lease lapsed, changes nothing).
 *
 * @example
 * renewSlot([{ id: "a", expiresAtMs: 30_000 }], { id: "a", limit: 1, leaseMs: 30_000 }, 20_000); // [{ id: "a", expiresAtMs: 50_000 }]
 */
export function renewSlot(state: SlotState | undefined, claim: SlotClaimPolicy, nowMs: number): SlotState {
  const live = (state ?? []).filter((lease) => lease.expiresAtMs > nowMs);
  return live.map((lease) => (lease.id === claim.id ? { id: lease.id, expiresAtMs: Math.max(lease.expiresAtMs, nowMs + claim.leaseMs) } : lease));
}

/**
 * Gives a slot back (the response ended, or another rule refused the request): forgets `id`'s
 * lease and every expired one.
 *
 * @example
 * releaseSlot([{ id: "a", expiresAtMs: 30_000 }], "a", 10); // []
 */
export function releaseSlot(state: SlotState | undefined, id: string, nowMs: number): SlotState {
  return (state ?? []).filter((lease) => lease.id !== id && lease.expiresAtMs > nowMs);
}

/** How long a client's leases matter: until the last one expires (a store may forget them after). */
export function slotsExpireInMs(state: SlotState, nowMs: number): number {
  return Math.max(0, ...state.map((lease) => lease.expiresAtMs - nowMs));
}

/**
 * One request's claims on several slot sets, all or nothing: when an enforced claim is refused,
 * no set is written (no claim keeps a slot). Returns each claim's decision and, where a slot was
 * taken, the leases to store.
 *
 * @example
 * const { decisions, writes } = acquireSlots([{ state: undefined, claim: { id: "a", limit: 2, leaseMs: 30_000 }, enforced: true }], nowMs);
 */
export function acquireSlots<T extends { readonly state: SlotState | undefined; readonly claim: SlotClaimPolicy; readonly enforced: boolean }>(
  entries: readonly T[],
  nowMs: number,
): { decisions: SlotDecision[]; writes: { entry: T; next: SlotState }[] } {
  const results = entries.map((entry) => ({ entry, ...acquireSlot(entry.state, entry.claim, nowMs) }));
  const refused = results.some(({ entry, decision }) => entry.enforced && !decision.granted);
  return {
    decisions: results.map(({ decision }) => decision),
    writes: refused ? [] : results.filter(({ decision }) => decision.granted).map(({ entry, next }) => ({ entry, next })),
  };
}
