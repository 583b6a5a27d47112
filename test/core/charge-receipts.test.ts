import { describe, expect, it } from "vitest";
import type { BucketCharge, LimiterBackend } from "../../src/core/backend";
import { ChargeReceipts, chargesMade, queuedAsRefused, queuedPastOtherRules, refundable } from "../../src/core/charge-receipts";
import { DEFAULTS } from "../../src/core/defaults";
import type { LimiterEvent } from "../../src/core/events";
import { memoryBackend } from "../../src/core/memory-backend";
import { compileRules, type Rule } from "../../src/core/rules";
import { StoreGuard } from "../../src/core/store-guard";
import type { RuleCharge } from "../../src/core/subject-resolver";
import type { RuleOutcome, Verdict } from "../../src/core/verdict";

function rulesOf(specs: unknown[]): Rule[] {
  const compiled = compileRules(specs);
  if (!compiled.ok) throw new Error(JSON.stringify(compiled.errors));
  return [...compiled.rules];
}

const [plain, counting, queued] = rulesOf([
  { name: "plain", capacity: 3, rate: "1/1m" },
  { name: "counting", capacity: 3, rate: "1/1m", count: ["5xx"] },
  { name: "queued", capacity: 3, rate: "1/1m", queue: { maxWait: "2s" } },
]) as [Rule, Rule, Rule];

const chargeOf = (rule: Rule): RuleCharge => ({ rule, charge: { clientKey: "ip:a", rule: rule.name, policy: rule.policy, cost: 1, enforced: rule.mode === "enforce" }, values: undefined });

/** A store of real memory buckets under the limiter's guard, on a clock that stands still. */
function guardedStore(backend: LimiterBackend = memoryBackend({ clock: () => 0 })) {
  const events: LimiterEvent[] = [];
  const store = new StoreGuard({ backend, breaker: DEFAULTS.breaker, timeoutMs: 1_000, clock: () => 0, log: (event) => events.push(event) });
  return { store, events, receipts: new ChargeReceipts({ store, log: (event) => events.push(event) }) };
}

const allowed = (): Verdict => ({ kind: "allowed", outcomes: [], headers: [], degraded: false });

/** Takes one token of each rule's bucket and returns the receipts of what the store charged. */
async function take(store: StoreGuard, rules: readonly Rule[]) {
  const charges = rules.map(chargeOf);
  const asked = charges.map(({ charge }) => charge);
  const answers = await store.backend.take(asked, new AbortController().signal);
  return chargesMade(charges, asked, answers);
}

/** Tokens left in the rule's bucket (a peek of cost 0). */
async function remaining(store: StoreGuard, rule: Rule): Promise<number> {
  const charge: BucketCharge = { ...chargeOf(rule).charge, cost: 0 };
  const [answer] = await store.backend.peek([charge], new AbortController().signal);
  return answer?.decision.remaining ?? Number.NaN;
}

describe("charge receipts: what an allowed verdict may give back", () => {
  it("keeps only count and queue rules' charges, and only those the store charged", async () => {
    const { store } = guardedStore();
    const charged = await take(store, [plain, counting, queued]);
    expect(charged.map(({ rule }) => rule.name)).toEqual(["plain", "counting", "queued"]);
    expect(refundable(charged).map(({ rule }) => rule.name)).toEqual(["counting", "queued"]);
    // A peek writes nothing: nothing to give back.
    const charges = [chargeOf(counting)];
    const asked = charges.map(({ charge }) => charge);
    expect(chargesMade(charges, asked, await store.backend.peek(asked, new AbortController().signal))).toEqual([]);
  });

  it("settle gives back a count rule's charge for a status it does not count, once", async () => {
    const { store, receipts } = guardedStore();
    const verdict = allowed();
    receipts.keep(verdict, refundable(await take(store, [counting])));
    expect(await remaining(store, counting)).toBe(2);
    await receipts.settle(verdict, 200);
    expect(await remaining(store, counting)).toBe(3);
    // The receipt is spent: a second settle gives nothing more.
    await take(store, [counting]);
    await receipts.settle(verdict, 200);
    expect(await remaining(store, counting)).toBe(2);
  });

  it("settle keeps the charge for a status the rule counts", async () => {
    const { store, receipts } = guardedStore();
    const verdict = allowed();
    receipts.keep(verdict, refundable(await take(store, [counting])));
    await receipts.settle(verdict, 503);
    expect(await remaining(store, counting)).toBe(2);
  });

  it("giveBack returns every kept charge, also through a verdict it was carried to", async () => {
    const { store, receipts } = guardedStore();
    const verdict = allowed();
    const withHeaders = allowed();
    receipts.keep(verdict, refundable(await take(store, [counting, queued])));
    receipts.carry(verdict, withHeaders);
    await receipts.giveBack(withHeaders);
    expect(await remaining(store, counting)).toBe(3);
    expect(await remaining(store, queued)).toBe(3);
  });

  it("a refund the store fails is logged, never thrown", async () => {
    const failing: LimiterBackend = { ...memoryBackend({ clock: () => 0 }), refund: async () => Promise.reject(new Error("store down")) };
    const { store, events, receipts } = guardedStore(failing);
    const verdict = allowed();
    receipts.keep(verdict, refundable(await take(store, [counting])));
    await expect(receipts.giveBack(verdict)).resolves.toBeUndefined();
    expect(events).toEqual([{ event: "limiter.refund_failure", backend: "memory", reason: "store down" }]);
  });
});

describe("a queued request more than one enforced rule covers", () => {
  const waiting: Verdict = { kind: "allowed", outcomes: [], headers: [], degraded: false, waitMs: 400 };

  it("is refused only when it waits and another enforced rule covers it", () => {
    expect(queuedPastOtherRules(waiting, [chargeOf(queued), chargeOf(plain)])).toBe(true);
    expect(queuedPastOtherRules(waiting, [chargeOf(queued)])).toBe(false);
    expect(queuedPastOtherRules(allowed(), [chargeOf(queued), chargeOf(plain)])).toBe(false);
  });

  it("refuses with each queuing rule's wait; other outcomes stay", () => {
    const outcomes: RuleOutcome[] = [
      { rule: queued, policy: queued.policy, decision: { outcome: "allowed", remaining: 0, resetMs: 900, waitMs: 400 } },
      { rule: plain, policy: plain.policy, decision: { outcome: "allowed", remaining: 2, resetMs: 60_000 } },
    ];
    expect(queuedAsRefused(outcomes)).toEqual([{ ...outcomes[0], decision: { outcome: "denied", remaining: 0, resetMs: 900, retryAfterMs: 400 } }, outcomes[1]]);
  });
});
