import { describe, expect, it } from "vitest";
import { DenyCache } from "../../src/core/deny-cache";

const policy = { capacity: 1, refillTokens: 1, refillPeriodMs: 1000 };
const refusal = { retryAtMs: 1000, resetAtMs: 1000, remaining: 0, policy };

describe("DenyCache", () => {
  it("is bounded in size: the least recently used entry goes first", () => {
    const cache = new DenyCache(2);
    cache.remember("a", refusal);
    cache.remember("b", refusal);
    cache.remember("a", refusal); // a is now the newest
    cache.remember("c", refusal);
    expect(cache.size).toBe(2);
    expect(cache.lookup("b", 0).kind).toBe("miss");
    expect(cache.lookup("a", 0).kind).toBe("refused");
  });

  it.each(["lookup", "peek"] as const)("a hit (%s) makes an entry the most recently used", (how) => {
    const cache = new DenyCache(2);
    cache.remember("a", refusal);
    cache.remember("b", refusal);
    expect(how === "lookup" ? cache.lookup("a", 0).kind : cache.peek("a", 0) && "refused").toBe("refused"); // a still floods
    cache.remember("c", refusal);
    expect(cache.peek("a", 0)).toBeDefined();
    expect(cache.peek("b", 0)).toBeUndefined();
  });

  it("after the retry time one request asks the backend while the others wait for its answer", () => {
    const cache = new DenyCache(10);
    cache.remember("k", { retryAtMs: 1000, resetAtMs: 5000, remaining: 0, policy });
    expect(cache.peek("k", 1000)).toBeUndefined(); // a peek never starts a probe
    const first = cache.lookup("k", 1000);
    expect(first.kind).toBe("probe");
    expect(cache.lookup("k", 1001).kind).toBe("wait");
    if (first.kind === "probe") first.release(); // the backend allowed it: the entry goes
    expect(cache.lookup("k", 1002).kind).toBe("miss");
  });

  it("answers arriving out of order keep the latest retry time", () => {
    const cache = new DenyCache(10);
    cache.remember("k", { retryAtMs: 3000, resetAtMs: 5000, remaining: 0, policy });
    cache.remember("k", { retryAtMs: 2000, resetAtMs: 5000, remaining: 0, policy });
    expect(cache.peek("k", 2500)).toMatchObject({ retryAtMs: 3000 });
  });

  it("size 0 remembers nothing", () => {
    const cache = new DenyCache(0);
    cache.remember("k", refusal);
    expect(cache.lookup("k", 0).kind).toBe("miss");
  });
});
