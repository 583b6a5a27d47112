import { isWindow, limitOf, localShare, queuedRoute, routeMaxWait, ROUTES, RULES, windowOf, type BucketRuleModel, type BucketRuleName, type ModelPolicy, type RouteName } from "./rules";

/**
 * The reference model: what sluice promises, as a conservative envelope over what was observed.
 * It never predicts a decision; it bounds what any correct gateway may have done, from the
 * times (Node's clock, the store's machine) at which requests were sent and answers arrived:
 *
 * - bucket: in every interval (s, t] not crossing a reset, a client's admitted cost under a rule
 *   is at most C + ρ·(t − s) + the refunds that may have landed in it, with C and ρ the most
 *   permissive of the policies that may be in force then (an override applies from the moment
 *   its admin request is sent; the old policy may still apply until its answer, plus 10 s for a
 *   prefix override and a lease's second for an exact one on Durable Objects). An admission
 *   happened between its request's sending and its answer; a refund of a `count` rule at most
 *   gives back the cost, after the charge, within the limiter's deadline of the answer, and never
 *   across a reset (it belongs to the bucket the reset replaced);
 * - sliding window: a client's admitted units under a rule in any W are at most L (the most
 *   permissive limit possibly in force, plus the refunds of its `count` rule's uncounted answers
 *   among them). An admission's store time lies in [send, recv] (± slack), so only a set of
 *   admissions whose [send, recv] all fit in less than W certainly shares a trailing window:
 *   only such a set above L is a violation;
 * - fixed window: per window aligned to the Unix epoch (on the wall clock: the store's), the
 *   admissions certainly in it (send and recv in the same window) are at most L (plus refunds);
 *   and any set that certainly fits in less than W at most 2L (L at the end of one window, L at
 *   the start of the next). Both window checks skip a stretch a reset may fall in;
 * - block: after a 429 naming a `blockFor` rule, every request of that client under the rule
 *   SENT after the 429 arrived is refused until (refusal sent + blockFor − slack), unless a reset
 *   came between; a 429 during a known block announces (Retry-After) at least the block's rest;
 * - concurrency: checked at the origin (its own books: see origin.ts);
 * - degraded (`failMode: "local"`, X-Sluice-Degraded): per isolate, at most its local share
 *   (a window's: a fraction of L, at least the cost, per the same W, by the same checks);
 * - fail open (no decision, no headers) is excused only while the store is frozen (until the
 *   breaker's cool-down after the thaw) or for a client whose own bucket is broken;
 * - headers agree with the status;
 * - queue (issue 18): on a route a queued rule covers, an admission counts when the request
 *   REACHES THE ORIGIN (origin.ts notes each arrival): its time lies in [max(sent, arrival −
 *   ARRIVAL_SLACK_MS), arrival] (the store's proceed time, then the gateway's timer and the proxy), and every bound
 *   above (bucket: C + ρ·T; sliding window: L in every trailing W) is checked on those times; the
 *   policies and resets that matter reach back to the request's sending (it was decided then,
 *   up to maxWait before it arrived). A request reaches the origin within its route's maxWait
 *   (0 where another enforced rule covers it: never queued) plus QUEUE_WAIT_TOLERANCE_MS of its
 *   sending; a queued request whose client left is counted if it arrives all the same, and must
 *   not arrive where the runtime tells the gateway that a client left (`disconnectsDelivered`).
 */

/** Clock granularity and store/Node clock offsets, ms. */
export const SLACK_MS = 25;

/**
 * How much later than the store's proceed time a request may reach the origin: the answer's
 * transit, the gateway's timer, the proxy. On loopback a few ms, but on a busy shared machine
 * an admitted request was seen reaching the origin 260 ms after its decision (with requests
 * queued behind it on time: arrivals closer together than the store's proceed times).
 */
export const ARRIVAL_SLACK_MS = 200;

/** How much longer than its maxWait a request may take to reach the origin: the decision's round trip and the proxy, on a busy machine. */
export const QUEUE_WAIT_TOLERANCE_MS = 500;

export interface Answer {
  readonly id: number;
  readonly step: number;
  readonly client: string;
  readonly route: RouteName | "work";
  readonly isolate: number;
  readonly send: number;
  readonly recv: number;
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  /** The status asked of the origin (count route). */
  readonly asked?: number;
  /** The `x-model-id` the request carried: the origin notes its arrival under it. */
  readonly modelId?: string;
  /** The client went away (aborted) at this time, before any answer: status 0, no headers. */
  readonly left?: number;
  /** A queued route's admission as counted (see `Envelope.view`): when the request was sent; `send`/`recv` then bound its arrival. */
  readonly decided?: number;
}

export interface AdminChange {
  readonly kind: "exact" | "prefix";
  readonly rule: BucketRuleName;
  /** The client value (exact) or the pattern's prefix without `*` (prefix). */
  readonly subject: string;
  readonly policy: ModelPolicy | null;
  readonly send: number;
  readonly recv: number;
  /** The admin request failed: the change may or may not have been made. */
  readonly uncertain?: boolean;
}

export interface Reset {
  readonly rule: BucketRuleName;
  readonly client: string;
  readonly send: number;
  readonly recv: number;
  /** The admin request failed: the reset may or may not have been made (never an anchor, always a break). */
  readonly uncertain?: boolean;
}

export interface Violation {
  readonly kind: string;
  readonly message: string;
}

export interface EnvelopeOptions {
  /** Lag of an exact override after its answer (Durable Object leases: up to a second). */
  readonly exactLagMs: number;
  /** The limiter's deadline: refunds land within it of the answer. */
  readonly timeoutMs: number;
  /** After a thaw, fail-mode answers are excused this long (breaker cool-down and probe). */
  readonly thawGraceMs: number;
  readonly localFraction: number;
  /** Fail-mode answers are excused until then (left over from an earlier run's outage). */
  readonly degradedUntil: number;
  /** When the request with this `x-model-id` reached the origin (undefined: it has not). */
  readonly arrivalOf?: (modelId: string) => number | undefined;
  /** Whether the runtime aborts `request.signal` when a client disconnects (then a queued request whose client left must never reach the origin). */
  readonly disconnectsDelivered?: boolean;
}

const PREFIX_LAG_MS = 10_000 + 500;

export class Envelope {
  readonly answers: Answer[] = [];
  readonly changes: AdminChange[] = [];
  readonly resets: Reset[] = [];
  readonly freezes: { from: number; to: number | undefined }[] = [];
  readonly poisoned: { rule: BucketRuleName; client: string; at: number }[] = [];
  readonly violations: Violation[] = [];
  private checkedAnswers = 0;
  /** Wall-clock ms minus performance.now() (a fixed window is aligned to the Unix epoch on the store's wall clock). */
  private readonly wallOffset = Date.now() - performance.now();

  constructor(readonly options: EnvelopeOptions) {}

  /** Checks every promise for the answers recorded since the last call; returns the new violations. */
  verify(): Violation[] {
    const fresh = this.answers.slice(this.checkedAnswers);
    this.checkedAnswers = this.answers.length;
    const found: Violation[] = [];
    for (const answer of fresh) found.push(...this.checkHeaders(answer));
    for (const answer of fresh) found.push(...this.checkBuckets(answer));
    for (const answer of fresh) found.push(...this.checkBlocks(answer));
    for (const answer of fresh) found.push(...this.checkQueue(answer));
    found.push(...this.checkLeft());
    this.violations.push(...found);
    return found;
  }

  record(violation: Violation): void {
    this.violations.push(violation);
  }

  // ---- what answers mean ----

  static admitted(answer: Answer): boolean {
    return answer.headers["x-model-origin"] === "1";
  }

  static degraded(answer: Answer): boolean {
    return answer.headers["x-sluice-degraded"] === "local";
  }

  /** A decision by the fail mode `open`: admitted with no rate-limit headers at all. */
  static failedOpen(answer: Answer): boolean {
    return Envelope.admitted(answer) && answer.headers["ratelimit-policy"] === undefined;
  }

  rulesOf(answer: Answer): readonly BucketRuleModel[] {
    return answer.route === "work" ? [] : ROUTES[answer.route].rules.map((name) => RULES[name]);
  }

  /** Whether the store may have been unreachable for this answer (frozen, or the breaker still open after). */
  storeMayBeDown(answer: Pick<Answer, "send" | "recv">): boolean {
    if (answer.send < this.options.degradedUntil) return true;
    return this.freezes.some(({ from, to }) => answer.recv >= from && (to === undefined || answer.send <= to + this.options.thawGraceMs));
  }

  isPoisoned(rule: BucketRuleName, answer: Answer): boolean {
    return this.poisoned.some((p) => p.rule === rule && p.client === answer.client && answer.recv >= p.at);
  }

  // ---- policies in force ----

  /** Values a sequence of changes may have given one override during [s, t]: each is current from its change's sending until the next one's answer plus the lag. */
  private possibleValues(changes: readonly AdminChange[], s: number, t: number, lagMs: number): (ModelPolicy | null)[] {
    const values: (ModelPolicy | null)[] = [];
    const ordered = [...changes].sort((a, b) => a.send - b.send);
    for (let i = -1; i < ordered.length; i++) {
      const from = i < 0 ? -Infinity : ordered[i]!.send;
      // A value stays possible until a change that certainly happened replaced it.
      const next = ordered.slice(i + 1).find((c) => c.uncertain !== true);
      const until = next === undefined ? Infinity : next.recv + lagMs;
      if (from <= t && until >= s) values.push(i < 0 ? null : ordered[i]!.policy);
    }
    return values;
  }

  /** Every policy that may be in force for a client under a rule at some moment of [s, t]. */
  policies(rule: BucketRuleModel, client: string, s: number, t: number): ModelPolicy[] {
    const exact = this.changes.filter((c) => c.kind === "exact" && c.rule === rule.name && c.subject === client);
    const prefix = this.changes.filter((c) => c.kind === "prefix" && c.rule === rule.name && client.startsWith(c.subject));
    const out: ModelPolicy[] = [];
    for (const e of this.possibleValues(exact, s, t, this.options.exactLagMs + SLACK_MS)) {
      if (e !== null) out.push(e);
      else for (const p of this.possibleValues(prefix, s, t, PREFIX_LAG_MS)) out.push(p ?? rule.policy);
    }
    return out;
  }

  /** Every policy ever possible for the client (degraded decisions may use a cached one of any age). */
  allPolicies(rule: BucketRuleModel, client: string): ModelPolicy[] {
    return this.policies(rule, client, -Infinity, Infinity);
  }

  // ---- the bucket envelope ----

  private charges(rule: BucketRuleModel, client: string, kind: "store" | { isolate: number }): Answer[] {
    return this.answers
      .filter((a) => {
        if (a.client !== client || !this.rulesOf(a).includes(rule)) return false;
        // A request whose client left counts if it reached the origin all the same (a decision of the store's, unless it may have been down).
        if (a.left !== undefined) return kind === "store" && this.arrivalOf(a) !== undefined && !this.storeMayBeDown(a);
        if (!Envelope.admitted(a)) return false;
        if (kind !== "store") return Envelope.degraded(a) && a.isolate === kind.isolate;
        if (Envelope.degraded(a)) return false;
        // Fail-open answers are no decision while the store may be down, or for a broken bucket.
        if (Envelope.failedOpen(a) && (this.storeMayBeDown(a) || this.isPoisoned(rule.name, a))) return false;
        return true;
      })
      .map((a) => this.view(a));
  }

  // ---- queues ----

  /** When a request reached the origin, if it did. */
  arrivalOf(a: Answer): number | undefined {
    return a.modelId === undefined ? undefined : this.options.arrivalOf?.(a.modelId);
  }

  /**
   * An admission as the checks count it: on a queued route, at its arrival at the origin (the
   * store's proceed time lies in [max(sent, arrival − ARRIVAL_SLACK_MS), arrival]), `decided` keeping its
   * sending (the policies and resets that decided it reach back that far); elsewhere as answered.
   */
  view(a: Answer): Answer {
    if (!queuedRoute(a.route)) return a;
    const arrived = this.arrivalOf(a);
    return arrived === undefined ? a : { ...a, send: Math.max(a.send, arrived - ARRIVAL_SLACK_MS), recv: arrived, decided: a.send };
  }

  /** How long before its counted times an admission among these may have been decided (0 off queued routes). */
  private static lead(admissions: readonly Answer[]): number {
    return Math.max(0, ...admissions.map((a) => (a.decided === undefined ? 0 : a.recv - a.decided)));
  }

  /** A request on a queued route reaches the origin within its maxWait (0 where it must not queue) plus the tolerance. */
  private checkQueue(answer: Answer): Violation[] {
    if (!queuedRoute(answer.route) || answer.left !== undefined || !Envelope.admitted(answer)) return [];
    const arrived = this.arrivalOf(answer);
    if (arrived === undefined) return [{ kind: "queue-no-arrival", message: `answer #${answer.id} (${answer.route}, ${answer.client}) came from the origin, which never noted its arrival` }];
    if (this.storeMayBeDown(answer)) return []; // it may have waited for the store's deadline first
    const maxWait = routeMaxWait(answer.route);
    const waited = arrived - answer.send;
    if (waited <= maxWait + QUEUE_WAIT_TOLERANCE_MS) return [];
    return [
      {
        kind: "queue-wait-too-long",
        message: `answer #${answer.id} (${answer.route}, ${answer.client}, isolate ${answer.isolate}) reached the origin ${Math.round(waited)} ms after it was sent: the route's maxWait is ${maxWait} ms${maxWait === 0 ? " (two enforced rules: never queued)" : ""}, tolerance ${QUEUE_WAIT_TOLERANCE_MS} ms (step ${answer.step})`,
      },
    ];
  }

  private reportedLeft = new Set<number>();

  /** Where the runtime tells the gateway that a client left, its queued request never reaches the origin. */
  private checkLeft(): Violation[] {
    if (this.options.disconnectsDelivered !== true) return [];
    const out: Violation[] = [];
    for (const a of this.answers) {
      const arrived = a.left === undefined || this.reportedLeft.has(a.id) ? undefined : this.arrivalOf(a);
      if (a.left === undefined || arrived === undefined || arrived <= a.left + SLACK_MS) continue;
      this.reportedLeft.add(a.id);
      out.push({
        kind: "queue-left-reached-origin",
        message: `request #${a.id} (${a.route}, ${a.client}, isolate ${a.isolate}): its client left ${Math.round(a.left - a.send)} ms after sending it, yet it reached the origin ${Math.round(arrived - a.left)} ms later (step ${a.step})`,
      });
    }
    return out;
  }

  private resetsOf(rule: BucketRuleModel, client: string): Reset[] {
    return this.resets.filter((r) => r.rule === rule.name && r.client === client);
  }

  /**
   * The least upper bound the envelope gives on `rule`'s tokens for `client` at time t, after the
   * admissions `counted` selects (store decisions only), or the local share's for an isolate.
   */
  headroom(rule: BucketRuleModel, client: string, t: number, counted: (a: Answer) => boolean, isolate?: number): { bound: number; used: number; from: number } {
    const local = isolate !== undefined;
    const charges = this.charges(rule, client, local ? { isolate } : "store").filter(counted);
    const resets = this.resetsOf(rule, client);
    const starts = new Set<number>([-Infinity, ...charges.map((a) => a.send), ...resets.filter((r) => r.uncertain !== true).map((r) => r.recv)]);
    let best = { bound: Infinity, used: 0, from: -Infinity };
    // Queued admissions count at their arrival; they were decided (policy, bucket life) up to `lead` before.
    const lead = Envelope.lead(charges);
    for (const s of starts) {
      if (s > t) continue;
      // A window may not contain a reset (it refills the bucket).
      if (resets.some((r) => r.recv > s - lead && r.send < t)) continue;
      const policies = local ? this.allPolicies(rule, client).map((p) => localShare(p, this.options.localFraction, rule.cost)) : this.policies(rule, client, s - lead, t);
      const capacity = Math.max(...policies.map((p) => p.capacity));
      const rate = Math.max(...policies.map((p) => p.rate));
      const span = s === -Infinity ? Infinity : t - s + SLACK_MS;
      let refunds = 0;
      if (!local && rule.count !== undefined) {
        for (const a of charges) {
          if (rule.count.includes(a.status) || a.send >= t || a.recv + this.options.timeoutMs + 250 <= s) continue;
          // A refund never crosses a reset: the charge it gives back belongs to the bucket the reset replaced.
          if (resets.some((r) => r.uncertain !== true && r.send >= a.recv && r.recv <= s)) continue;
          refunds += rule.cost;
        }
      }
      const used = charges.filter((a) => a.send >= s && a.recv <= t).length * rule.cost;
      const bound = Math.min(capacity + (span === Infinity ? Infinity : (rate * span) / 1000), Infinity) + refunds;
      if (bound - used < best.bound - best.used) best = { bound, used, from: s };
    }
    return best;
  }

  /** The most a bucket may hold for a client at t after the admissions `counted` selects (store decisions). */
  bucketLeft(rule: BucketRuleModel, client: string, t: number, counted: (a: Answer) => boolean): number {
    const { bound, used } = this.headroom(rule, client, t, counted);
    return bound - used;
  }

  private checkBuckets(answer: Answer): Violation[] {
    if (answer.route === "work" || answer.left !== undefined || !Envelope.admitted(answer)) return [];
    const counted = this.view(answer);
    const out: Violation[] = [];
    for (const rule of this.rulesOf(answer)) {
      if (rule.mode === "shadow") continue; // charged, never refuses: no bound on what passes
      const degraded = Envelope.degraded(answer);
      const isolate = degraded ? answer.isolate : undefined;
      if (isWindow(rule)) {
        out.push(...this.checkWindow(rule, counted, isolate));
        continue;
      }
      const { bound, used, from } = this.headroom(rule, answer.client, counted.recv, () => true, isolate);
      if (used > bound + 1e-9) {
        out.push({
          kind: degraded ? "local-share-exceeded" : "over-admission",
          message: `${rule.name}/${answer.client}${degraded ? ` on isolate ${answer.isolate} (degraded)` : ""}: ${used} tokens admitted in (${fmt(from)}, ${fmt(counted.recv)}] ms${counted.decided === undefined ? "" : " (counted at their arrivals at the origin)"}, the envelope allows ${bound.toFixed(2)} (answer #${answer.id}, step ${answer.step})`,
        });
      }
    }
    return out;
  }

  // ---- the window envelopes ----

  /** Whether an admission may have been given back (a `count` rule's uncounted status): its units then free early. */
  private refundable(rule: BucketRuleModel, a: Answer): boolean {
    return rule.count !== undefined && !rule.count.includes(a.status);
  }

  /** Whether a reset of the client's rule (even one whose admin request failed) may have happened in [from, to]. */
  private resetMayFall(rule: BucketRuleModel, client: string, from: number, to: number): boolean {
    return this.resetsOf(rule, client).some((r) => r.recv >= from && r.send <= to);
  }

  /** Of the window policies possibly in force in [s, t] (a degraded isolate's: local shares of any ever possible), the largest limit, the shortest window, and every window. */
  private windowPolicies(rule: BucketRuleModel, client: string, s: number, t: number, local: boolean): { limit: number; window: number; windows: Set<number> } {
    const policies = local ? this.allPolicies(rule, client).map((p) => localShare(p, this.options.localFraction, rule.cost, rule.algorithm)) : this.policies(rule, client, s, t);
    const windows = new Set(policies.map(windowOf));
    return { limit: Math.max(...policies.map((p) => limitOf(rule, p))), window: Math.min(...windows), windows };
  }

  /** The epoch-aligned window of length w (its index) an answer's store time certainly falls in, or undefined when it may fall in two. */
  private certainWindow(a: Pick<Answer, "send" | "recv">, w: number): number | undefined {
    const first = Math.floor((a.send - SLACK_MS + this.wallOffset) / w);
    return first === Math.floor((a.recv + SLACK_MS + this.wallOffset) / w) ? first : undefined;
  }

  /**
   * The window promises for an admission (store decisions, or one isolate's degraded ones): every
   * set of admissions that certainly fits in less than W holds at most L units (fixed: 2L); a
   * fixed window's admissions certainly in one aligned window at most L. Refunds of uncounted
   * answers in a set raise its bound by their cost; a set a reset may fall in is not checked.
   * With overrides of several windows possible, the sliding check uses the shortest W and the
   * largest L (sound: every decision's own window covers the set), and the fixed checks are
   * skipped (windows of other lengths are aligned otherwise).
   */
  private checkWindow(rule: BucketRuleModel, answer: Answer, isolate: number | undefined): Violation[] {
    const local = isolate !== undefined;
    const client = answer.client;
    const admissions = this.charges(rule, client, local ? { isolate } : "store");
    const units = (set: readonly Answer[]) => set.length * rule.cost;
    const refunds = (set: readonly Answer[]) => set.filter((a) => this.refundable(rule, a)).length * rule.cost;
    const violation = (message: string): Violation[] => [
      {
        kind: local ? "local-share-exceeded" : "over-admission",
        message: `${rule.name}/${client}${local ? ` on isolate ${isolate} (degraded)` : ""} (${rule.algorithm}): ${message} (answer #${answer.id}, step ${answer.step})`,
      },
    ];
    const all = this.windowPolicies(rule, client, -Infinity, Infinity, local);
    const fixed = rule.algorithm === "fixed-window";
    if (fixed && all.windows.size !== 1) return [];
    const longest = Math.max(...all.windows);
    const lead = Envelope.lead(admissions);
    // Sets holding this answer, each anchored at its earliest-sent admission.
    for (const anchor of admissions) {
      if (anchor.send > answer.send) continue;
      const from = anchor.send - SLACK_MS;
      const { limit, window } = this.windowPolicies(rule, client, from - lead, from + longest + 2 * SLACK_MS, local);
      const fits = (a: Answer) => a.send >= anchor.send && a.recv + SLACK_MS < from + window;
      if (!fits(answer)) continue;
      const set = admissions.filter(fits);
      const to = Math.max(...set.map((a) => a.recv)) + SLACK_MS;
      if (this.resetMayFall(rule, client, from - lead, to)) continue;
      const bound = (fixed ? 2 * limit : limit) + refunds(set);
      if (units(set) > bound) {
        return violation(
          `${units(set)} units admitted within ${Math.round(to - from)} ms (< W ${window} ms)${lead > 0 ? " at the origin's arrivals" : ""}: answers #${set.map((a) => a.id).join(", #")} ${lead > 0 ? "arriving" : "sent"} ${fmt(anchor.send)}…, the envelope allows ${bound} in a trailing W`,
        );
      }
    }
    if (fixed) {
      const w = all.window;
      const k = this.certainWindow(answer, w);
      if (k === undefined) return [];
      const start = k * w - this.wallOffset;
      if (this.resetMayFall(rule, client, start - SLACK_MS, start + w + SLACK_MS)) return [];
      const set = admissions.filter((a) => this.certainWindow(a, w) === k);
      const bound = this.windowPolicies(rule, client, start - SLACK_MS, start + w + SLACK_MS, local).limit + refunds(set);
      if (units(set) > bound)
        return violation(
          `${units(set)} units admitted certainly in the aligned window [${k * w}, ${(k + 1) * w}) (epoch ms): answers #${set.map((a) => a.id).join(", #")}, the envelope allows ${bound}`,
        );
    }
    return [];
  }

  /**
   * The most a window rule may say is left for a client (store decisions) at a decision made in
   * [send, recv], charging `cost`: the largest limit possibly in force, minus the cost, minus the
   * units of the admissions decided before (answered by `send`) that certainly still count then
   * (in the trailing W; in the same aligned window) and can have been neither refunded nor reset.
   */
  windowRemaining(rule: BucketRuleModel, client: string, send: number, recv: number, cost: number): number {
    const { limit } = this.windowPolicies(rule, client, send - SLACK_MS, recv + SLACK_MS, false);
    const all = this.windowPolicies(rule, client, -Infinity, Infinity, false);
    const earlier = this.charges(rule, client, "store").filter(
      (a) => a.recv <= send && !this.refundable(rule, a) && !this.resetMayFall(rule, client, (a.decided ?? a.send) - SLACK_MS, recv + SLACK_MS),
    );
    let counting: Answer[] = [];
    if (rule.algorithm === "sliding-window") counting = earlier.filter((a) => a.send - SLACK_MS + all.window > recv + SLACK_MS);
    else if (all.windows.size === 1) {
      const k = this.certainWindow({ send, recv }, all.window);
      if (k !== undefined) counting = earlier.filter((a) => this.certainWindow(a, all.window) === k);
    }
    return limit - cost - counting.length * rule.cost;
  }

  // ---- blocks ----

  private checkBlocks(answer: Answer): Violation[] {
    if (answer.route === "work" || answer.left !== undefined) return [];
    const out: Violation[] = [];
    for (const rule of this.rulesOf(answer)) {
      if (rule.blockForMs === 0) continue;
      const resets = this.resetsOf(rule, answer.client);
      const resetBetween = (from: number, to: number) => resets.some((reset) => reset.recv > from && reset.send <= to);
      const refusals = this.answers.filter((r) => r !== answer && r.client === answer.client && r.status === 429 && violated(r).includes(rule.name));
      // A refusal an earlier block may explain (it came while that block may still have held) did
      // not necessarily start a block of its own: a store refuses during a block without restarting it.
      const explained = (r: Answer) => refusals.some((e) => e !== r && e.send < r.recv && e.recv + rule.blockForMs + SLACK_MS > r.send && !resetBetween(e.send, r.send));
      // Refusals that started a block, certainly before this request was sent, whose block certainly still held when it was.
      const known = refusals.filter((r) => r.recv <= answer.send && answer.send < r.send + rule.blockForMs - SLACK_MS && !resetBetween(r.send, answer.send) && !explained(r));
      const retryAfter = Number(answer.headers["retry-after"]);
      for (const r of known) {
        if (Envelope.admitted(answer)) {
          out.push({
            kind: "block-broken",
            message: `${rule.name}/${answer.client}: refused (answer #${r.id}, isolate ${r.isolate}, Retry-After ${r.headers["retry-after"]}), blockFor ${rule.blockForMs} ms, yet answer #${answer.id} sent ${fmt(answer.send - r.send)} ms after that refusal was sent was admitted (isolate ${answer.isolate}, status ${answer.status})`,
          });
          break;
        }
        const blockLeft = r.send + rule.blockForMs - answer.recv - SLACK_MS;
        if (answer.status === 429 && retryAfter * 1000 < blockLeft) {
          out.push({
            kind: "block-retry-after",
            message: `${rule.name}/${answer.client}: answer #${answer.id} refused during a block that lasts ≥ ${Math.round(blockLeft)} ms more (from answer #${r.id}), but says Retry-After ${retryAfter}`,
          });
          break;
        }
      }
      // A refusal that no earlier block can explain starts one: it says when that block ends.
      if (answer.status === 429 && violated(answer).includes(rule.name)) {
        const earlier = refusals.some((r) => r.send < answer.recv && r.recv + rule.blockForMs + SLACK_MS > answer.send && !resetBetween(r.send, answer.send));
        const blockLeft = answer.send + rule.blockForMs - answer.recv - SLACK_MS;
        if (!earlier && retryAfter * 1000 < blockLeft) {
          out.push({
            kind: "block-retry-after",
            message: `${rule.name}/${answer.client}: answer #${answer.id} is the refusal that starts a ${rule.blockForMs} ms block, but says Retry-After ${retryAfter}`,
          });
        }
      }
    }
    return out;
  }

  // ---- headers ----

  private checkHeaders(answer: Answer): Violation[] {
    const out: Violation[] = [];
    const bad = (message: string, kind = "headers") =>
      out.push({ kind, message: `answer #${answer.id} (${answer.route}, ${answer.client}, isolate ${answer.isolate}, status ${answer.status}): ${message}` });
    const h = answer.headers;
    const admitted = Envelope.admitted(answer);
    if (answer.left !== undefined) return out; // no answer: the client left
    if (answer.route === "work") {
      if (answer.status === 429 || (admitted && answer.status === 200)) {
        if (!/"inflight";q=2;qu="concurrent-requests"/.test(h["ratelimit-policy"] ?? "")) bad(`RateLimit-Policy ${h["ratelimit-policy"]} lacks the concurrency rule`);
      }
      if (answer.status === 429 && h["retry-after"] !== "1") bad(`Retry-After ${h["retry-after"]} on a concurrency refusal`);
      if (!admitted && answer.status !== 429 && answer.status !== 503) bad("unexpected status", "unexpected-status");
      return out;
    }
    const rules = this.rulesOf(answer);
    const enforced = rules.filter((r) => r.mode === "enforce");
    const policyItems = parseItems(h["ratelimit-policy"]);
    const limit = parseItems(h.ratelimit)[0];
    const degraded = Envelope.degraded(answer);
    const capacitiesOf = (rule: BucketRuleModel) => {
      const policies = degraded
        ? this.allPolicies(rule, answer.client).map((p) => localShare(p, this.options.localFraction, rule.cost, rule.algorithm))
        : this.policies(rule, answer.client, answer.send, answer.recv);
      return new Set(policies.map((p) => p.capacity));
    };
    const checkPolicyHeaders = () => {
      const names = policyItems.map((i) => i.name);
      if (names.join(",") !== rules.map((r) => r.name).join(",")) bad(`RateLimit-Policy names [${names}], the route's rules are [${rules.map((r) => r.name)}]`);
      for (const item of policyItems) {
        const rule = rules.find((r) => r.name === item.name);
        if (rule !== undefined && !capacitiesOf(rule).has(Number(item.params.q)))
          bad(`RateLimit-Policy q=${item.params.q} for ${rule.name}, the capacities possibly in force are [${[...capacitiesOf(rule)]}]`);
      }
      if (limit === undefined) return bad("no RateLimit header");
      const rule = rules.find((r) => r.name === limit.name);
      if (rule === undefined || (rule.mode === "shadow" && enforced.length > 0)) bad(`RateLimit names ${limit.name}, not an enforced rule of the route`);
      const r = Number(limit.params.r);
      const q = Number(policyItems.find((i) => i.name === limit.name)?.params.q);
      if (!(r >= 0 && r <= q)) bad(`RateLimit r=${limit.params.r} outside [0, q=${q}]`);
      if (h["x-ratelimit-remaining"] !== String(limit.params.r)) bad(`X-RateLimit-Remaining ${h["x-ratelimit-remaining"]} ≠ RateLimit r=${limit.params.r}`);
      if (h["x-ratelimit-limit"] !== String(q)) bad(`X-RateLimit-Limit ${h["x-ratelimit-limit"]} ≠ q=${q}`);
      if (h["x-ratelimit-reset"] !== String(limit.params.t)) bad(`X-RateLimit-Reset ${h["x-ratelimit-reset"]} ≠ RateLimit t=${limit.params.t}`);
      return undefined;
    };
    if (degraded && !rules.some((r) => r.failMode === "local")) bad("X-Sluice-Degraded on a route without a failMode-local rule");

    if (answer.status === 429) {
      const names = violated(answer);
      if (h["content-type"] !== "application/problem+json") bad(`429 with content-type ${h["content-type"]}`);
      if (names.length === 0 || names.some((n) => !enforced.some((r) => r.name === n))) bad(`violated-policies [${names}] are not enforced rules of the route [${enforced.map((r) => r.name)}]`);
      const retryAfter = Number(h["retry-after"]);
      if (!(Number.isInteger(retryAfter) && retryAfter >= 1)) bad(`Retry-After ${h["retry-after"]} on a 429`);
      checkPolicyHeaders();
      if (limit !== undefined && !names.includes(limit.name)) bad(`RateLimit names ${limit.name}, which did not refuse`);
      if (limit !== undefined && Math.max(1, Number(limit.params.t)) !== retryAfter) bad(`Retry-After ${retryAfter} ≠ max(1, RateLimit t=${limit.params.t})`);
      return out;
    }
    if (answer.status === 503) {
      if (!enforced.some((r) => r.failMode === "closed")) bad("503 on a route whose rules fail open or local", "unexpected-status");
      else if (!this.storeMayBeDown(answer) && !rules.some((r) => this.isPoisoned(r.name, answer))) bad("503 (fail closed) while the store answered", "fail-mode-while-healthy");
      return out;
    }
    if (!admitted) {
      bad(`unexpected status from the gateway: ${answer.body.slice(0, 200)}`, "unexpected-status");
      return out;
    }
    if (h["retry-after"] !== undefined) bad(`Retry-After on an admitted request`);
    if (Envelope.failedOpen(answer)) {
      if (enforced.some((r) => r.failMode !== "open")) bad("admitted with no rate-limit headers on a route whose rules fail closed or local");
      else if (!this.storeMayBeDown(answer) && !rules.some((r) => this.isPoisoned(r.name, answer)))
        bad("admitted by the fail mode (no decision, no headers) while the store answered for this client", "fail-mode-while-healthy");
      return out;
    }
    if (degraded && !this.storeMayBeDown(answer) && !rules.some((r) => this.isPoisoned(r.name, answer)))
      bad("decided locally (degraded) while the store answered for this client", "fail-mode-while-healthy");
    checkPolicyHeaders();
    // What the headers say is left never exceeds what the envelope allows after this admission.
    const rule = rules.find((r) => r.name === limit?.name);
    if (rule !== undefined && limit !== undefined && !degraded) {
      const left = isWindow(rule)
        ? this.windowRemaining(rule, answer.client, answer.send, answer.recv, rule.cost)
        : this.bucketLeft(rule, answer.client, answer.recv, (a) => a.id === answer.id || a.recv <= answer.send);
      if (Number(limit.params.r) > left + 1e-9) bad(`RateLimit r=${limit.params.r} for ${rule.name}, the envelope allows at most ${left.toFixed(2)} left`, "remaining-too-high");
    }
    return out;
  }
}

function fmt(ms: number): string {
  return ms === -Infinity ? "-∞" : String(Math.round(ms));
}

/** The rules a 429's problem body names (`violated-policies`). */
export function violated(answer: Answer): string[] {
  try {
    const body = JSON.parse(answer.body) as { "violated-policies"?: unknown };
    return Array.isArray(body["violated-policies"]) ? body["violated-policies"].map(String) : [];
  } catch {
    return [];
  }
}

/** A draft -10 list header (`"name";k=v;k2="v2", …`) as items; lenient, for checking only. */
export function parseItems(value: string | undefined): { name: string; params: Record<string, string> }[] {
  if (value === undefined || value === "") return [];
  return value.split(/,\s*/).map((item) => {
    const [name = "", ...params] = item.split(";");
    return {
      name: name.trim().replace(/^"|"$/g, ""),
      params: Object.fromEntries(
        params.map((p) => {
          const [k = "", v = ""] = p.split("=");
          return [k.trim(), v.trim().replace(/^"|"$/g, "")];
        }),
      ),
    };
  });
}
