import { LocalTable } from "./local-table";
import { bucketId, type SlotClaim } from "./backend";
import { ISOLATE_BOUNDS } from "./defaults";
import type { LimiterEvent } from "./events";
import { DEGRADED_HEADER, withConcurrencyHeaders, type HeaderMode, type SlotHeader } from "./headers";
import type { ConcurrencyRule } from "./rules";
import { acquireSlots, releaseSlot, renewSlot, type SlotDecision, type SlotState } from "./slots";
import type { CallTrace, StoreGuard } from "./store-guard";
import type { Verdict } from "./verdict";

/** One concurrency rule's claim in a check. */
export interface RuleClaim {
  readonly rule: ConcurrencyRule;
  readonly claim: SlotClaim;
}

/** Slots an allowed request holds until its response ends: in the store, or (degraded) in this isolate. */
export interface HeldSlots {
  readonly claims: readonly SlotClaim[];
  readonly local: boolean;
}

/** Slots taken for a request (none when every rule failed open: `failedOpen` says why), with what headers show of them. */
export type SlotAnswer = { readonly kind: "held"; readonly held: HeldSlots; readonly decisions: readonly SlotHeader[]; readonly failedOpen?: string };

/** What a {@link SlotKeeper} needs of its limiter. */
export interface SlotKeeperOptions {
  /** Where releases and renewals go (under the deadline, counted). */
  readonly store: StoreGuard;
  readonly clock: () => number;
  /** Share of a concurrency rule's limit one isolate keeps while the store is unreachable. */
  readonly localFraction: number;
  readonly headerMode: HeaderMode;
  readonly log: (event: LimiterEvent, requestId: string | undefined) => void;
}

/**
 * The concurrency slots of one limiter: turns the store's (or, degraded, this isolate's) answers
 * into a refusal or slots held, remembers which verdict holds which slots, and renews and gives
 * them back. The limiter asks the store (under its breaker) and composes the verdict.
 *
 * @example
 * const answer = keeper.answer(claims, decisions, false, requestId);
 * if (answer.kind === "held") keeper.hold(verdict, answer.held);
 * // once the response has been sent:
 * await keeper.release(verdict);
 */
export class SlotKeeper {
  /** Concurrency slots an allowed verdict holds, until {@link SlotKeeper.release}. */
  private readonly held = new WeakMap<Verdict, HeldSlots>();
  /** Degraded-mode slots, this isolate's only. */
  private readonly localSlots = new LocalTable<SlotState>(ISOLATE_BOUNDS.localEntries);

  constructor(private readonly options: SlotKeeperOptions) {}

  /**
   * The decisions for a request's claims as a refusal (the first enforced rule refused) or the
   * slots it now holds. Degraded (`local`), only `local` rules hold a slot; the others pass without one.
   */
  private answer(claims: readonly RuleClaim[], decisions: readonly SlotDecision[], local: boolean, requestId: string | undefined): SlotAnswer | { kind: "verdict"; verdict: Verdict } {
    const paired = claims.map(({ rule }, i) => ({ rule, limit: local ? this.localLimit(rule) : rule.limit, decision: decisions[i] ?? { granted: false, inFlight: rule.limit } }));
    for (const { rule, decision } of paired) {
      if (rule.mode === "shadow" && !decision.granted) this.options.log({ event: "limiter.shadow_refusal", rule: rule.name, outcome: "denied" }, requestId);
    }
    const refused = paired.find(({ rule, decision }) => rule.mode === "enforce" && !decision.granted);
    if (refused !== undefined) {
      const headers = withConcurrencyHeaders([], [refused], this.options.headerMode, local ? [DEGRADED_HEADER] : []);
      return { kind: "verdict", verdict: { kind: "concurrency-refused", rule: refused.rule, inFlight: refused.decision.inFlight, headers, degraded: local } };
    }
    const held = { claims: claims.filter(({ rule }, i) => decisions[i]?.granted && (!local || rule.failMode === "local")).map(({ claim }) => claim), local };
    return { kind: "held", held, decisions: paired };
  }

  /**
   * Takes one slot per claim from the store, under the breaker and the deadline. A refusal of an
   * enforced rule becomes `concurrency-refused`; an unreachable store, each rule's fail mode
   * (`closed`: 503; `local`: slots in this isolate's memory, `localFraction` of the limit, at
   * least one; else the request goes on without slots, `failedOpen`).
   */
  async take(claims: readonly RuleClaim[], trace: CallTrace): Promise<SlotAnswer | { kind: "verdict"; verdict: Verdict }> {
    const { store, log } = this.options;
    const asked = claims.map(({ claim }) => claim);
    const result = await store.decide(
      (reached) => {
        reached();
        return store.send((signal) => store.backend.acquire(asked, signal));
      },
      trace,
      store.scope(asked),
    );
    if (result.kind === "misconfigured") return { kind: "verdict", verdict: { kind: "backend-misconfigured", variable: result.variable, message: result.message } };
    if (result.kind === "answered") return this.answer(claims, result.value, false, trace.requestId);
    if (trace.backendCall?.result !== "breaker_open") {
      // The store may have taken the slots after all (an RPC cannot be recalled): give them back.
      const giveBack = this.giveBack({ claims: asked, local: false }, trace.requestId);
      if (trace.background !== undefined) trace.background(giveBack);
      else void giveBack;
    }
    const reason = result.reason;
    const closed = claims.find(({ rule }) => rule.mode === "enforce" && rule.failMode === "closed");
    const local = claims.some(({ rule }) => rule.failMode === "local");
    log({ event: "limiter.backend_failure", backend: store.backend.name, failMode: closed ? "closed" : local ? "local" : "open", reason }, trace.requestId);
    if (closed !== undefined) return { kind: "verdict", verdict: { kind: "fail-closed", rule: closed.rule, backend: store.backend.name, reason } };
    if (!local) return { kind: "held", held: { claims: [], local: false }, decisions: [], failedOpen: reason };
    return this.answer(claims, this.acquireLocally(claims), true, trace.requestId);
  }

  /** Degraded concurrency: `local` rules' slots in this isolate's memory ({@link SlotKeeper.localLimit}); other rules pass. */
  private acquireLocally(claims: readonly RuleClaim[]): SlotDecision[] {
    const nowMs = this.options.clock();
    const entries = claims.map(({ rule, claim }) => {
      const key = slotKey(claim);
      const limit = this.localLimit(rule);
      // A client the isolate has no room to track is treated as having every slot taken.
      const full: SlotState = Array.from({ length: limit }, (_, i) => ({ id: `untracked-${i}`, expiresAtMs: nowMs + 1 }));
      const tracked = this.localSlots.tracks(key, nowMs);
      return { rule, key, enforced: claim.enforced, claim: { ...claim, limit }, state: tracked ? this.localSlots.get(key, nowMs) : full };
    });
    const local = entries.filter(({ rule }) => rule.failMode === "local");
    const { decisions, writes } = acquireSlots(local, nowMs);
    for (const { entry, next } of writes) this.remember(entry.key, next);
    return entries.map((entry) => (entry.rule.failMode === "local" ? (decisions[local.indexOf(entry)] ?? { granted: false, inFlight: 0 }) : { granted: true, inFlight: 0 }));
  }

  /** Notes that `verdict` holds these slots. */
  hold(verdict: Verdict, held: HeldSlots): void {
    this.held.set(verdict, held);
  }

  /** Whether `verdict` holds slots, and how often they must be renewed: a third of the shortest lease. */
  holding(verdict: Verdict): { readonly renewEveryMs: number } | undefined {
    const held = this.held.get(verdict);
    if (held === undefined || held.claims.length === 0) return undefined;
    return { renewEveryMs: Math.min(...held.claims.map((claim) => claim.leaseMs)) / 3 };
  }

  /** Extends the leases `verdict` still holds; never takes a slot, never throws. */
  async renew(verdict: Verdict): Promise<void> {
    const held = this.held.get(verdict);
    if (held === undefined || held.claims.length === 0) return;
    if (held.local) {
      const nowMs = this.options.clock();
      for (const claim of held.claims) {
        const current = this.localSlots.get(slotKey(claim), nowMs);
        if (current !== undefined) this.remember(slotKey(claim), renewSlot(current, claim, nowMs));
      }
      return;
    }
    try {
      await this.options.store.send((signal) => this.options.store.backend.renew(held.claims, signal));
    } catch {
      // The next renewal tries again (each comes a third of the lease before it would lapse).
    }
  }

  /** Gives back the slots `verdict` holds; idempotent, never throws. */
  async release(verdict: Verdict): Promise<void> {
    const held = this.held.get(verdict);
    if (held === undefined) return;
    this.held.delete(verdict);
    await this.giveBack(held, undefined);
  }

  /** Gives slots back to where they were taken; a failed release is logged (the lease's expiry frees the slot). */
  async giveBack(held: HeldSlots, requestId: string | undefined): Promise<void> {
    if (held.claims.length === 0) return;
    if (held.local) {
      const nowMs = this.options.clock();
      for (const claim of held.claims) this.remember(slotKey(claim), releaseSlot(this.localSlots.get(slotKey(claim), nowMs), claim.id, nowMs));
      return;
    }
    const { store } = this.options;
    const { backend } = store;
    try {
      await store.send((signal) => backend.release(held.claims, signal));
    } catch (error) {
      this.options.log({ event: "limiter.slot_release_failure", backend: backend.name, reason: error instanceof Error ? error.message : String(error) }, requestId);
    }
  }

  /** A concurrency rule's limit in one isolate while the store is unreachable: `localFraction` of it, at least 1. */
  private localLimit(rule: ConcurrencyRule): number {
    return Math.max(1, Math.floor(rule.limit * this.options.localFraction));
  }

  /** Local slot sets are kept until their last lease lapses (an empty set goes at once), whatever other clients do. */
  private remember(key: string, leases: SlotState): void {
    const nowMs = this.options.clock();
    this.localSlots.set(key, leases, Math.max(nowMs, ...leases.map(({ expiresAtMs }) => expiresAtMs)), nowMs);
  }
}

/** Where a client's slots under one concurrency rule are kept in this isolate (degraded mode). */
function slotKey(claim: SlotClaim): string {
  return bucketId(claim);
}
