import { describe, expect, it } from "vitest";
import type { BucketAnswer } from "../../src/core/backend";
import { sharedRefusal } from "../../src/core/shared-refusal";
import { policy as perSecond } from "../support/helpers";

const policy = perSecond(10, "1");
const charge = { rule: "api", policy, cost: 1, enforced: true };
const denied: BucketAnswer = { decision: { outcome: "denied", remaining: 0, resetMs: 1000, retryAfterMs: 1000 }, policy, charged: null };
const allowed: BucketAnswer = { decision: { outcome: "allowed", remaining: 0, resetMs: 1000 }, policy, charged: null };
const answered = (...results: BucketAnswer[]) => ({ batch: results.map(() => [charge]), results: results.map((a) => ({ ok: true as const, value: [a] })) });
const same = (request: readonly (typeof charge)[]) => request;

describe("sharedRefusal", () => {
  it("shares the latest answer for the same charge when it refused", () => {
    expect(sharedRefusal([charge], answered(allowed, denied), same)).toEqual([denied]);
  });

  it("shares nothing when the latest answer for the charge admitted", () => {
    expect(sharedRefusal([charge], answered(denied, allowed), same)).toBeUndefined();
  });

  it("shares nothing for another cost, policy, mode or rule, nor for several charges", () => {
    const refused = answered(denied);
    expect(sharedRefusal([{ ...charge, cost: 2 }], refused, same)).toBeUndefined();
    expect(sharedRefusal([{ ...charge, policy: perSecond(10, "1") }], refused, same)).toBeUndefined();
    expect(sharedRefusal([{ ...charge, enforced: false }], refused, same)).toBeUndefined();
    expect(sharedRefusal([{ ...charge, rule: "other" }], refused, same)).toBeUndefined();
    expect(sharedRefusal([charge, charge], refused, same)).toBeUndefined();
  });

  it("a failed call shares nothing", () => {
    expect(sharedRefusal([charge], { batch: [[charge]], results: [{ ok: false, error: new Error("down") }] }, same)).toBeUndefined();
  });
});
