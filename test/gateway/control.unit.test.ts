import { describe, expect, it } from "vitest";
import type { LimiterBackend } from "../../src/core/backend";
import { checkClient, deleteOverride, listOverrides, peekClient, putOverride, resetClient, StoreUnavailableError } from "../../src/gateway/control";
import { Limiter } from "../../src/core/limiter";
import { memoryBackend } from "../../src/core/memory-backend";
import type { RequestSubject } from "../../src/core/subject";

/** A memory store whose buckets can be switched off (the override registry still answers): decisions then fail as an unreachable store's would. */
function switchable(state: { down: boolean }): LimiterBackend {
  const inner = memoryBackend();
  const guard = <T>(call: () => Promise<T>) => (state.down ? Promise.reject(new Error("down")) : call());
  return {
    ...inner,
    take: (charges, signal) => guard(() => inner.take(charges, signal)),
    peek: (charges, signal) => guard(() => inner.peek(charges, signal)),
  };
}

describe("run-time control (found by the model-based test)", () => {
  it("an override on a rule whose cost is above 1 can be removed", async () => {
    const limiter = new Limiter({ backend: memoryBackend(), rules: [{ name: "heavy", key: "header:x-api-key", capacity: 4, rate: 1, cost: 2 }] });
    const override = { rule: "heavy", client: { "header:x-api-key": "abc" } };
    expect(await putOverride(limiter, { ...override, capacity: 10, rate: 2 })).toMatchObject({ ok: true });
    expect(await deleteOverride(limiter, override)).toEqual({ ok: true, removed: true });
  });

  it("a store that fails under an operation is 'unavailable' (503), whatever it threw; the admin API tells that from a bug (500)", async () => {
    const failing = new TypeError("fetch failed");
    const inner = memoryBackend();
    const backend: LimiterBackend = {
      ...inner,
      reset: () => Promise.reject(failing),
      overrides: { ...inner.overrides, list: () => Promise.reject(failing), put: () => Promise.reject(failing) },
    };
    const limiter = new Limiter({ backend, rules: [{ name: "api", key: "header:x-api-key", capacity: 4, rate: 1 }], log: () => {} });
    const client = { rule: "api", client: { "header:x-api-key": "abc" } };
    for (const operation of [() => listOverrides(limiter), () => peekClient(limiter, client), () => resetClient(limiter, client), () => putOverride(limiter, { ...client, capacity: 9, rate: 1 })]) {
      const error = await operation().then(
        () => undefined,
        (thrown: unknown) => thrown,
      );
      expect(error).toBeInstanceOf(StoreUnavailableError);
      expect((error as Error).cause).toBe(failing);
    }
  });

  it("a client value that is no string is named as such, one left out as missing", async () => {
    const limiter = new Limiter({ backend: memoryBackend(), rules: [{ name: "api", key: "header:x-api-key", capacity: 4, rate: 1 }] });
    expect(await peekClient(limiter, { rule: "api", client: { "header:x-api-key": 5 } })).toEqual({ ok: false, field: "client.header:x-api-key", message: "must be a string, not 5" });
    expect(await peekClient(limiter, { rule: "api", client: {} })).toMatchObject({ ok: false, field: "client.header:x-api-key", message: expect.stringMatching(/^is missing/) });
    expect(await checkClient(limiter, { rule: "api", client: { "header:x-api-key": "a" }, cost: "2" })).toEqual({ ok: false, field: "cost", message: "must be an integer from 1 to 1000000000" });
  });

  it("naming a concurrency rule, every operation says it is one (overrides too)", async () => {
    const limiter = new Limiter({
      backend: memoryBackend(),
      rules: [
        { name: "api", key: "header:x-api-key", capacity: 4, rate: 1 },
        { name: "inflight", key: "header:x-api-key", concurrency: 2 },
      ],
    });
    const client = { rule: "inflight", client: { "header:x-api-key": "abc" } };
    const said = { ok: false, field: "rule", message: '"inflight" is a concurrency rule: peek, reset, check and overrides address bucket rules' };
    expect(await peekClient(limiter, client)).toEqual(said);
    expect(await checkClient(limiter, client)).toEqual(said);
    expect(await putOverride(limiter, { ...client, capacity: 10, rate: 1 })).toEqual(said);
    expect(await deleteOverride(limiter, client)).toEqual(said);
  });

  it.each(["open", "closed", "local"] as const)("a peek while the store is down is 'unavailable' (503), never a guess (failMode %s)", async (failMode) => {
    const state = { down: false };
    const limiter = new Limiter({ backend: switchable(state), rules: [{ name: "api", key: "header:x-api-key", capacity: 4, rate: 1, failMode }], log: () => {} });
    const client = { rule: "api", client: { "header:x-api-key": "abc" } };
    expect(await peekClient(limiter, client)).toMatchObject({ ok: true, buckets: [{ remaining: 4, capacity: 4 }] });
    state.down = true;
    await expect(peekClient(limiter, client)).rejects.toBeInstanceOf(StoreUnavailableError);
  });

  it("a degraded peek reports the local share traffic gets, never a capacity of 0", async () => {
    const state = { down: true };
    const limiter = new Limiter({ backend: switchable(state), rules: [{ name: "api", key: "header:x-api-key", capacity: 4, rate: 1, failMode: "local" }], log: () => {} });
    const verdict = await limiter.check({ kind: "client", rule: "api", client: { "header:x-api-key": "abc" } }, { mode: "peek", cost: 0 });
    expect(verdict).toMatchObject({ kind: "allowed", degraded: true, outcomes: [{ policy: { capacity: 1 } }] });
    const request: RequestSubject = { kind: "request", method: "GET", path: "/", headers: new Headers({ "x-api-key": "abc" }) };
    expect(await limiter.check(request)).toMatchObject({ kind: "allowed", outcomes: [{ policy: { capacity: 1 } }] });
  });

  it("a check whose cost is more than the bucket holds names the cost", async () => {
    const limiter = new Limiter({ backend: memoryBackend(), rules: [{ name: "api", key: "header:x-api-key", capacity: 5, rate: 1 }] });
    expect(await checkClient(limiter, { rule: "api", client: { "header:x-api-key": "abc" }, cost: 50 })).toMatchObject({ ok: false, field: "cost" });
  });

  it("an override of a window or calendar rule is written as capacity and rate, and applies", async () => {
    const limiter = new Limiter({
      backend: memoryBackend(),
      rules: [
        { name: "fixed", key: "header:x-api-key", algorithm: "fixed-window", limit: 2, window: "1h" },
        { name: "monthly", key: "header:x-api-key", algorithm: "calendar", limit: 2, period: "month" },
      ],
    });
    for (const rule of ["fixed", "monthly"]) {
      expect(await putOverride(limiter, { rule, client: { "header:x-api-key": "vip" }, capacity: 5, rate: "5/1h" })).toMatchObject({ ok: true });
    }
    const request = { kind: "request", method: "GET", path: "/", headers: new Headers({ "x-api-key": "vip" }) } as const;
    let allowed = 0;
    for (let i = 0; i < 8; i++) if ((await limiter.check(request)).kind === "allowed") allowed += 1;
    expect(allowed).toBe(5);
  });
});
