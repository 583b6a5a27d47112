import { describe, expect, it } from "vitest";
import { BackendConfigError } from "../../src/core/backend";
import { KeyedBatcher, type Settled } from "../../src/core/keyed-batcher";
import { SharedCallError } from "../../src/core/store-guard";

/** A sender whose calls the test answers (or never answers) by hand. */
function manualStore() {
  const calls: { key: string; batch: readonly number[]; settle: (results: Settled<string>[] | Error) => void }[] = [];
  const sender = {
    send: (key: string, batch: readonly number[]) =>
      new Promise<readonly Settled<string>[]>((resolve, reject) => {
        calls.push({ key, batch, settle: (results) => (results instanceof Error ? reject(results) : resolve(results)) });
      }),
  };
  const answerAll = (i: number) => {
    const call = calls[i];
    if (call === undefined) throw new Error(`no call ${i}`);
    call.settle(call.batch.map((n) => ({ ok: true, value: `${call.key}:${n}` })));
  };
  return { calls, sender, answerAll };
}

const open = () => new AbortController().signal;
const flush = () => new Promise((resolve) => setTimeout(resolve, 0));

describe("KeyedBatcher", () => {
  it("one call per key in flight: requests arriving meanwhile go together, in order, in the next call", async () => {
    const { calls, sender, answerAll } = manualStore();
    const batcher = new KeyedBatcher(sender, 1_000);
    const answers = [1, 2, 3, 4].map((n) => batcher.run("a", n, open()));
    const other = batcher.run("b", 9, open());
    await flush();
    expect(calls.map((c) => [c.key, c.batch])).toEqual([
      ["a", [1]],
      ["b", [9]],
    ]);
    answerAll(0);
    await flush();
    expect(calls[2]?.batch).toEqual([2, 3, 4]);
    answerAll(2);
    answerAll(1);
    expect(await Promise.all(answers)).toEqual(["a:1", "a:2", "a:3", "a:4"]);
    expect(await other).toBe("b:9");
    expect(batcher.size).toBe(0);
  });

  it("a failed call fails every request in it, but only the request that made it sees the failure as its own", async () => {
    const { calls, sender } = manualStore();
    const batcher = new KeyedBatcher(sender, 1_000);
    const first = batcher.run("a", 1, open());
    const queued = [2, 3].map((n) => batcher.run("a", n, open()));
    await flush();
    calls[0]?.settle(calls[0].batch.map(() => ({ ok: true, value: "ok" })));
    await flush();
    const down = new Error("connection refused");
    calls[1]?.settle(down);
    await expect(first).resolves.toBe("ok");
    await expect(queued[0]).rejects.toBe(down);
    const shared = await queued[1]?.catch((error: unknown) => error);
    expect(shared).toBeInstanceOf(SharedCallError);
    expect((shared as SharedCallError).original).toBe(down);
  });

  it("a misconfigured store is reported as such to every request in the call", async () => {
    const { calls, sender } = manualStore();
    const batcher = new KeyedBatcher(sender, 1_000);
    const first = batcher.run("a", 1, open());
    const second = batcher.run("a", 2, open());
    await flush();
    calls[0]?.settle(calls[0].batch.map(() => ({ ok: true, value: "ok" })));
    await flush();
    const wrong = new BackendConfigError("UPSTASH_REDIS_REST_TOKEN", "refused");
    calls[1]?.settle(wrong);
    await first;
    await expect(second).rejects.toBe(wrong);
  });

  it("a call that never settles holds its key's queue only until it is stale, and its request leaves on its deadline: the key is forgotten", async () => {
    let nowMs = 0;
    const { calls, sender, answerAll } = manualStore();
    const batcher = new KeyedBatcher(sender, 100, () => nowMs);
    const lost = new AbortController();
    const hung = batcher.run("a", 1, lost.signal).catch((error: unknown) => error);
    const next = batcher.run("a", 2, open());
    await flush();
    expect(calls).toHaveLength(1);
    nowMs = 101;
    await new Promise((resolve) => setTimeout(resolve, 120));
    expect(calls.map((c) => c.batch)).toEqual([[1], [2]]);
    answerAll(1);
    expect(await next).toBe("a:2");
    lost.abort(new Error("client left"));
    expect(await hung).toEqual(new Error("client left"));
    expect(batcher.size).toBe(0);
  });

  it("a request leaves the queue on its own deadline and is not sent", async () => {
    const { calls, sender, answerAll } = manualStore();
    const batcher = new KeyedBatcher(sender, 1_000);
    const first = batcher.run("a", 1, open());
    const leaving = new AbortController();
    const gone = batcher.run("a", 2, leaving.signal).catch((error: unknown) => error);
    const stays = batcher.run("a", 3, open());
    await flush();
    leaving.abort(new Error("deadline"));
    expect(await gone).toEqual(new Error("deadline"));
    answerAll(0);
    await flush();
    expect(calls[1]?.batch).toEqual([3]);
    answerAll(1);
    expect([await first, await stays]).toEqual(["a:1", "a:3"]);
  });

  it("requests queued behind a call are answered from what it brought (a lease) without another call", async () => {
    const { calls, sender, answerAll } = manualStore();
    let leased = 0;
    const batcher = new KeyedBatcher({ ...sender, answerQueued: (key: string, n: number) => (leased-- > 0 ? `${key}:${n}:leased` : undefined) }, 1_000);
    const first = batcher.run("a", 1, open());
    const queued = [2, 3, 4].map((n) => batcher.run("a", n, open()));
    await flush();
    leased = 2;
    answerAll(0);
    expect(await first).toBe("a:1");
    await flush();
    expect(calls[1]?.batch).toEqual([4]);
    answerAll(1);
    expect(await Promise.all(queued)).toEqual(["a:2:leased", "a:3:leased", "a:4"]);
  });

  it("a call carries at most maxBatch requests, the one making it among them; the rest go next, in order", async () => {
    const { calls, sender, answerAll } = manualStore();
    const batcher = new KeyedBatcher({ ...sender, maxBatch: 2 }, 1_000);
    const answers = [1, 2, 3, 4, 5].map((n) => batcher.run("a", n, open()));
    await flush();
    answerAll(0);
    await flush();
    answerAll(1);
    await flush();
    answerAll(2);
    expect(await Promise.all(answers)).toEqual(["a:1", "a:2", "a:3", "a:4", "a:5"]);
    expect(calls.map((c) => c.batch)).toEqual([[1], [2, 3], [4, 5]]);
  });
});
