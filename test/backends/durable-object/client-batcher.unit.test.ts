import { describe, expect, it } from "vitest";
import { answerBatch } from "../../../src/backends/durable-object/answer-batch";
import { ClientBatcher } from "../../../src/backends/durable-object/client-batcher";
import type { BatchRequest, ObjectCharge } from "../../../src/backends/durable-object/wire";
import { BucketTable } from "../../../src/core/bucket-table";
import { policy as perSecond } from "../../support/helpers";

/**
 * The isolate side of the Durable Object backend in Node, with an injected clock: one client's
 * object is a real {@link BucketTable} answering through the same `answerBatch` the object runs,
 * so batching, leases and give-backs are exercised without workerd (the worker tests cover the
 * object's storage and RPC).
 */
function objectWithClock() {
  let nowMs = 1_000_000;
  const table = new BucketTable();
  const requests: BatchRequest[] = [];
  const stub = {
    chargeBatch: async (request: BatchRequest) => {
      requests.push(request);
      return answerBatch(table, request, nowMs);
    },
  };
  const batcher = new ClientBatcher(
    () => stub as never,
    {},
    () => nowMs,
  );
  return { batcher, table, requests, advance: (ms: number) => (nowMs += ms) };
}

const charge = (capacity: number, rate: string): ObjectCharge => ({ rule: "api", policy: perSecond(capacity, rate), cost: 1, enforced: true });
const signal = () => new AbortController().signal;

describe("ClientBatcher (Node, injected clock)", () => {
  it("a busy client's requests are answered from leases of 4, 16, 64 with few calls, and never beyond the bucket", async () => {
    const { batcher, requests, advance } = objectWithClock();
    const api = charge(10_000, "0.001");
    let allowed = 0;
    for (let i = 0; i < 400; i++) {
      const [answer] = await batcher.take("client", [api], signal());
      if (answer?.decision.outcome === "allowed") allowed += 1;
      advance(1);
    }
    expect(allowed).toBe(400);
    expect(requests.map((r) => r.lease?.want ?? 0).slice(0, 4)).toEqual([0, 4, 16, 64]);
    expect(requests.length).toBeLessThan(12);
  });

  it("a call for a part of a several-object request ends the isolate's lease: its rest goes back in that call, and no request is answered from it after", async () => {
    const { batcher, table, requests, advance } = objectWithClock();
    const api = charge(1_000, "0.001");
    // A busy client: its second call brings a lease (4).
    for (let i = 0; i < 3; i++) {
      await batcher.take("client", [api], signal());
      advance(1);
    }
    expect(batcher.takeHeld("client", [api])).toBeDefined();
    const other: ObjectCharge = { rule: "other", policy: perSecond(1_000, "0.001"), cost: 1, enforced: true };
    await batcher.take("client", [other], signal(), { leased: false });
    const unleased = requests.at(-1);
    expect(unleased?.lease).toBeUndefined();
    expect(unleased?.giveBack?.length).toBe(1);
    expect(batcher.takeHeld("client", [api])).toBeUndefined();
    // Admitted on this bucket: two calls and two charges from the lease (one by the takeHeld above). The
    // rest (2) came back with the unleased call (994 if it were lost); never more than 996.
    const [peeked] = table.peek([{ rule: "api", policy: api.policy, cost: 1, enforced: true }], 1_000_000 + 3);
    expect(peeked?.decision.remaining).toBeGreaterThanOrEqual(995);
    expect(peeked?.decision.remaining).toBeLessThanOrEqual(1_000 - 4);
  });

  it("concurrent requests of one client share one call in flight; the rest go together in the next", async () => {
    const { batcher, requests } = objectWithClock();
    const api = charge(50, "0.001");
    const answers = await Promise.all(Array.from({ length: 200 }, () => batcher.take("client", [api], signal())));
    expect(answers.filter(([a]) => a?.decision.outcome === "allowed")).toHaveLength(50);
    expect(requests.length).toBeLessThanOrEqual(3);
  });

  it("takeHeld answers from a live lease only, and not once the lease's second has passed (its rest goes back with the next call)", async () => {
    const { batcher, requests, advance } = objectWithClock();
    const api = charge(10_000, "0.001");
    await batcher.take("client", [api], signal());
    advance(10);
    await batcher.take("client", [api], signal()); // busy: asks for a lease of 4, takes one charge
    expect(batcher.takeHeld("client", [api])?.decision.outcome).toBe("allowed");
    expect(batcher.takeHeld("other", [api])).toBeUndefined();
    advance(1_000);
    expect(batcher.takeHeld("client", [api])).toBeUndefined();
    await batcher.take("client", [api], signal());
    const last = requests.at(-1);
    expect(last?.giveBack?.[0]?.cost).toBe(3);
  });

  it("requests queued behind a call refused for the same charge share its refusal, with no call of their own", async () => {
    const { batcher, requests } = objectWithClock();
    const api = charge(1, "0.001");
    expect((await batcher.take("client", [api], signal()))[0]?.decision.outcome).toBe("allowed");
    const calls = requests.length;
    // The first is sent alone (and refused); the other 50 queue behind it.
    const answers = await Promise.all(Array.from({ length: 51 }, () => batcher.take("client", [api], signal())));
    expect(answers.every(([a]) => a?.decision.outcome === "denied")).toBe(true);
    expect(requests.length - calls).toBe(1);
  });

  it("a refusal is shared only for the very same charge: another cost asks the object", async () => {
    const { batcher, requests } = objectWithClock();
    const one = charge(2, "0.001");
    const two = { ...one, cost: 2 };
    await batcher.take("client", [one], signal());
    const calls = requests.length;
    const [first, second] = await Promise.all([batcher.take("client", [two], signal()), batcher.take("client", [one], signal())]);
    expect(first[0]?.decision.outcome).toBe("denied");
    expect(second[0]?.decision.outcome).toBe("allowed");
    expect(requests.length - calls).toBe(2);
  });
});
