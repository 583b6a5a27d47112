import { describe, expect, it } from "vitest";
import { CircuitBreaker } from "../../src/core/circuit-breaker";

describe("CircuitBreaker", () => {
  it("opens after the threshold, lets one probe through after the cool-down, and forgets a lost probe", () => {
    const breaker = new CircuitBreaker({ failureThreshold: 2, cooldownMs: 100 });
    breaker.recordFailure(0);
    expect(breaker.allowCall(1)).toBe(true);
    breaker.recordFailure(1);
    expect(breaker.state(50)).toBe("open");
    expect(breaker.allowCall(50)).toBe(false);
    expect(breaker.allowCall(101)).toBe(true); // the probe
    expect(breaker.allowCall(102)).toBe(false); // only one at a time
    // The probe's request was cancelled and never reported: after a cool-down another may go.
    expect(breaker.allowCall(202)).toBe(true);
    breaker.recordSuccess();
    expect(breaker.state(203)).toBe("closed");
  });
});

describe("CircuitBreaker openings", () => {
  it("reports the failure that opens the circuit, and a failed probe that opens it again", () => {
    const breaker = new CircuitBreaker({ failureThreshold: 2, cooldownMs: 100 });
    expect(breaker.recordFailure(0)).toBe(false);
    expect(breaker.recordFailure(1)).toBe(true);
    expect(breaker.allowCall(50)).toBe(false);
    expect(breaker.allowCall(101)).toBe(true); // the probe
    expect(breaker.recordFailure(102)).toBe(true); // it failed: open again
    breaker.recordSuccess();
    expect(breaker.recordFailure(300)).toBe(false);
  });
});
