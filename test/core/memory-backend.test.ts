import { describe, expect, it } from "vitest";
import type { BucketCharge } from "../../src/core/backend";
import { memoryBackend } from "../../src/core/memory-backend";
import type { BucketPolicy } from "../../src/core/token-bucket";

const signal = new AbortController().signal;
const slow: BucketPolicy = { capacity: 3, refillTokens: 1, refillPeriodMs: 60_000 }; // time barely matters
const charge = (clientKey: string, policy: BucketPolicy, cost = 1, enforced = true): BucketCharge => ({ clientKey, rule: "api", policy, cost, enforced });

describe("the memory backend: every client's buckets in one bucket table", () => {
  it("a take across several clients is all or nothing: one client's refusal charges no other client's bucket", async () => {
    const backend = memoryBackend({ clock: () => 0 });
    await backend.take([charge("ip:b", slow, 3)], signal); // b is empty now
    const answers = await backend.take([charge("ip:a", slow), charge("ip:b", slow)], signal);
    expect(answers.map(({ decision }) => decision.outcome)).toEqual(["allowed", "denied"]);
    expect(answers.map(({ charged }) => charged)).toEqual([null, null]);
    // a was not charged: its whole capacity is still there.
    const [a] = await backend.peek([charge("ip:a", slow, 0)], signal);
    expect(a?.decision.remaining).toBe(3);
    // A shadow refusal refuses nothing: every allowed bucket is charged.
    const shadowed = await backend.take([charge("ip:a", slow), charge("ip:b", slow, 1, false)], signal);
    expect(shadowed.map(({ charged }) => charged !== null)).toEqual([true, false]);
  });

  it("an exact override is one client's: another client of the same rule keeps the rule's capacity", async () => {
    const backend = memoryBackend({ clock: () => 0 });
    await backend.setOverride({ clientKey: "ip:a", rule: "api" }, { ...slow, capacity: 1 }, signal);
    const [a] = await backend.peek([charge("ip:a", slow, 0)], signal);
    const [b] = await backend.peek([charge("ip:b", slow, 0)], signal);
    expect([a?.decision.remaining, b?.decision.remaining]).toEqual([1, 3]);
    expect(a?.policy.capacity).toBe(1);
  });

  it("a refund under an exact override keeps the rule's algorithm: a window charge comes back", async () => {
    const window: BucketPolicy = { algorithm: "fixed-window", capacity: 5, refillTokens: 5, refillPeriodMs: 60_000 };
    const backend = memoryBackend({ clock: () => 1_000 });
    await backend.setOverride({ clientKey: "ip:a", rule: "api" }, { ...window, capacity: 2, refillTokens: 2 }, signal);
    const [taken] = await backend.take([charge("ip:a", window, 2)], signal);
    expect(taken?.decision).toMatchObject({ outcome: "allowed", remaining: 0 });
    await backend.refund([{ charge: charge("ip:a", window, 2), charged: taken?.charged ?? expect.fail("nothing charged") }], signal);
    const [after] = await backend.peek([charge("ip:a", window, 0)], signal);
    expect(after?.decision.remaining).toBe(2);
  });
});
