import { createClient } from "redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LOCAL_UPSTASH_TOKEN, startLocalStack } from "../../dev/local-stack.mjs";
import { upstashBackend } from "../../src/backends/upstash";
import { bucketKey } from "../../src/backends/upstash/wire";
import { Limiter } from "../../src/core/limiter";
import type { RequestSubject } from "../../src/core/subject";
import { policy as perSecond, sleep } from "../support/helpers";

let stack: Awaited<ReturnType<typeof startLocalStack>>;
let redis: ReturnType<typeof createClient>;
let backend: ReturnType<typeof upstashBackend>;

beforeAll(async () => {
  stack = await startLocalStack();
  redis = createClient({ url: stack.redis.url });
  await redis.connect();
  backend = upstashBackend({ url: stack.bridge.url, token: LOCAL_UPSTASH_TOKEN, keyPrefix: "sluice-test" });
});
afterAll(async () => {
  await redis?.quit();
  await stack?.stop();
});

const policy = perSecond(2, "1");
const take = async (clientKey: string) => (await backend.take([{ clientKey, rule: "default", policy, cost: 1, enforced: true }], new AbortController().signal))[0]!.decision;

/** Calls per command since the last CONFIG RESETSTAT, from INFO commandstats. */
async function commandCalls(): Promise<Record<string, number>> {
  const info = await redis.info("commandstats");
  const calls: Record<string, number> = {};
  for (const match of info.matchAll(/^cmdstat_(\w+(?:\|\w+)?):calls=(\d+)/gm)) {
    // Redis counts the CONFIG RESETSTAT that started the measurement too.
    if (match[1] !== "config|resetstat") calls[match[1]!] = Number(match[2]);
  }
  return calls;
}

describe("Upstash backend on a real Redis through the REST bridge", () => {
  it("after SCRIPT FLUSH the next call still succeeds, with one extra round trip only", async () => {
    await take(`warm-${crypto.randomUUID()}`);
    await redis.scriptFlush();
    await redis.configResetStat();
    expect((await take(`flushed-${crypto.randomUUID()}`)).outcome).toBe("allowed");
    const afterFlush = await commandCalls();
    expect(afterFlush.evalsha).toBe(1); // answered NOSCRIPT
    expect(afterFlush.eval).toBe(1); // loads and runs the script in the same call
    expect(afterFlush.script).toBeUndefined(); // never a separate SCRIPT LOAD

    await redis.configResetStat();
    await take(`cached-${crypto.randomUUID()}`);
    const cached = await commandCalls();
    expect(cached.evalsha).toBe(1);
    expect(cached.eval).toBeUndefined();
  });

  it("costs EVALSHA + TIME + SET … GET (3 commands) per allowed decision, and 3 per refusal or peek", async () => {
    const client = `count-${crypto.randomUUID()}`;
    await redis.configResetStat();
    expect((await take(client)).outcome).toBe("allowed"); // a new bucket: the hint "none" is right
    expect(await commandCalls()).toEqual({ evalsha: 1, time: 1, set: 1 });

    await redis.configResetStat();
    expect((await take(client)).outcome).toBe("allowed"); // the hint is the value the last charge wrote
    expect(await commandCalls()).toEqual({ evalsha: 1, time: 1, set: 1 });

    await redis.configResetStat();
    expect((await take(client)).outcome).toBe("denied");
    expect(await commandCalls()).toEqual({ evalsha: 1, time: 1, mget: 1 });

    await redis.configResetStat();
    expect((await backend.peek([{ clientKey: client, rule: "default", policy, cost: 1, enforced: true }], new AbortController().signal))[0]!.decision.outcome).toBe("denied");
    expect(await commandCalls()).toEqual({ evalsha: 1, time: 1, mget: 1 });
  });

  it("a wrong hint (another isolate charged the bucket) costs one SET more, and the decision is the store's", async () => {
    const client = `other-isolate-${crypto.randomUUID()}`;
    const other = upstashBackend({ url: stack.bridge.url, token: LOCAL_UPSTASH_TOKEN, keyPrefix: "sluice-test" });
    const charge = { clientKey: client, rule: "default", policy, cost: 1, enforced: true };
    expect((await take(client)).outcome).toBe("allowed");
    expect((await other.take([charge], new AbortController().signal))[0]!.decision).toMatchObject({ outcome: "allowed", remaining: 0 });

    const key = bucketKey("sluice-test", { rule: "default", clientKey: client });
    const ttlBefore = await redis.pTTL(key);
    await redis.configResetStat();
    // This isolate's hint still says 1 token left: the script finds 0, refuses, and puts the value back.
    expect((await take(client)).outcome).toBe("denied");
    expect(await commandCalls()).toEqual({ evalsha: 1, time: 1, set: 2 });
    // Put back with the expiry it had (the value carries it): the key still ends when the bucket is full.
    const ttlAfter = await redis.pTTL(key);
    expect(ttlAfter).toBeGreaterThan(0);
    expect(ttlAfter).toBeLessThanOrEqual(ttlBefore);
    expect(ttlAfter).toBeGreaterThan(ttlBefore - 500);
  });

  it("a key put back after a wrong hint keeps its writer's expiry: never none, never shorter under another policy", async () => {
    // Another isolate charged under a slow policy (a prefix override it already knows of): full again in 100 s.
    const client = `put-back-${crypto.randomUUID()}`;
    const key = bucketKey("sluice-test", { rule: "default", clientKey: client });
    const other = upstashBackend({ url: stack.bridge.url, token: LOCAL_UPSTASH_TOKEN, keyPrefix: "sluice-test" });
    const slow = perSecond(1, "0.01");
    expect((await other.take([{ clientKey: client, rule: "default", policy: slow, cost: 1, enforced: true }], new AbortController().signal))[0]!.decision.outcome).toBe("allowed");
    const ttlBefore = await redis.pTTL(key);
    expect(ttlBefore).toBeGreaterThan(99_000);
    // This isolate (hint "none": it has never seen the key) asks for more than the bucket holds
    // under its own policy, so the script writes, finds the real value, refuses and puts it back.
    const fast = perSecond(1, "1");
    expect((await backend.take([{ clientKey: client, rule: "default", policy: fast, cost: 1, enforced: true }], new AbortController().signal))[0]!.decision.outcome).toBe("denied");
    const ttlAfter = await redis.pTTL(key);
    expect(ttlAfter).toBeGreaterThan(ttlBefore - 1_000); // not this call's 1 s, and not none (-1)
    expect(ttlAfter).toBeLessThanOrEqual(ttlBefore);
  });

  it("stores an exact override in the bucket's key, without expiry, and keeps the tokens", async () => {
    const client = `override-${crypto.randomUUID()}`;
    const ref = { rule: "default", clientKey: client };
    const key = bucketKey("sluice-test", ref);
    expect((await take(client)).remaining).toBe(1);
    await backend.setOverride(ref, { capacity: 5, refillTokens: 1, refillPeriodMs: 60_000 }, new AbortController().signal);
    expect(await redis.get(key)).toMatch(/^1000:1000:\d+:\d+:\d+\|5:1:60000$/);
    expect(await redis.pTTL(key)).toBe(-1);

    await redis.configResetStat();
    const [answer] = await backend.take([{ clientKey: client, rule: "default", policy, cost: 1, enforced: true }], new AbortController().signal);
    expect(answer!.policy).toEqual({ capacity: 5, refillTokens: 1, refillPeriodMs: 60_000 });
    expect(answer!.decision.outcome).toBe("allowed");
    expect(await commandCalls()).toEqual({ evalsha: 1, time: 1, set: 1 });

    // Removed: the state expires when it stops mattering under the rule's policy (the last charge's:
    // capacity 2 at 1/s), not never: the last take left it empty (in the override's units), full in 2 s.
    await backend.setOverride(ref, null, new AbortController().signal);
    expect(await redis.get(key)).toMatch(/^\d+:60000:\d+:\d+:\d+$/);
    const ttl = await redis.pTTL(key);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeGreaterThan(1_500);
    expect(ttl).toBeLessThanOrEqual(2_000);

    await backend.setOverride(ref, { capacity: 5, refillTokens: 1, refillPeriodMs: 60_000 }, new AbortController().signal);
    await backend.reset([ref], new AbortController().signal);
    expect(await redis.get(key)).toBe("|5:1:60000"); // the state is forgotten, the override stays
    await backend.setOverride(ref, null, new AbortController().signal);
    expect(await redis.exists(key)).toBe(0);
  });

  it("a set of concurrency slots expires with its last lease: a release or a stranger's renewal never keeps it longer", async () => {
    const client = `slots-${crypto.randomUUID()}`;
    const key = bucketKey("sluice-test", { rule: "inflight", clientKey: client });
    const claim = (id: string, leaseMs: number) => ({ clientKey: client, rule: "inflight", id, limit: 2, leaseMs, enforced: true });
    const signal = () => new AbortController().signal;
    await backend.acquire([claim("short", 1_000)], signal());
    await backend.acquire([claim("long", 60_000)], signal());
    expect(await redis.pTTL(key)).toBeGreaterThan(59_000);
    await backend.release([claim("long", 60_000)], signal());
    const afterRelease = await redis.pTTL(key);
    expect(afterRelease).toBeGreaterThan(0);
    expect(afterRelease).toBeLessThanOrEqual(1_000); // the short lease's end, not the released one's
    await backend.renew([claim("stranger", 60_000)], signal()); // holds none: changes nothing
    expect(await redis.pTTL(key)).toBeLessThanOrEqual(1_000);
    await backend.renew([claim("short", 5_000)], signal());
    expect(await redis.pTTL(key)).toBeGreaterThan(4_000);
    await backend.release([claim("short", 5_000)], signal());
    expect(await redis.exists(key)).toBe(0);
  });

  it("reads the registry back exactly with plain-text responses (no base64), non-ASCII values included", async () => {
    const signal = new AbortController().signal;
    const record = { id: `api {"header:x-api-key":"clé-🔑-${crypto.randomUUID()}"}`, rule: "api", client: { "header:x-api-key": 'clé-🔑\u2028"quoted"' }, capacity: 5, rate: "5/1m" };
    await backend.overrides.put(record, signal);
    expect((await backend.overrides.list(signal)).find((r) => r.id === record.id)).toEqual(record);
    expect(await backend.overrides.remove(record.id, signal)).toBe(true);
  });

  it("namespaces keys by prefix, bucket and client, and expires them when the bucket is full", async () => {
    const client = `ns-${crypto.randomUUID()}`;
    await take(client);
    const key = bucketKey("sluice-test", { rule: "default", clientKey: client });
    expect(key).toBe(`sluice-test:default:${client}`);
    const ttl = await redis.pTTL(key);
    expect(ttl).toBeGreaterThan(900);
    expect(ttl).toBeLessThanOrEqual(1000); // one token at 1/s: full again in 1 s
  });

  it("an aborted call rejects instead of yielding a decision", async () => {
    stack.bridge.setLatency(500);
    try {
      const controller = new AbortController();
      const started = performance.now();
      const pending = backend.take([{ clientKey: `abort-${crypto.randomUUID()}`, rule: "default", policy, cost: 1, enforced: true }], controller.signal);
      setTimeout(() => controller.abort(new Error("deadline")), 50);
      await expect(pending).rejects.toThrow("deadline");
      // The HTTP request itself was cancelled (the shared client got this call's signal): no waiting for the 500 ms answer.
      expect(performance.now() - started).toBeLessThan(400);
      // Calls after it, on the same client, are not affected by that signal.
      stack.bridge.setLatency(0);
      expect((await take(`after-abort-${crypto.randomUUID()}`)).outcome).toBe("allowed");
    } finally {
      stack.bridge.setLatency(0);
    }
  });
});

describe("one call per client in flight (a burst of one client's requests)", () => {
  it("concurrent requests go to the store as one pipeline, decided in order, exactly as separate calls", async () => {
    const clientKey = `burst-${crypto.randomUUID()}`;
    const burst = perSecond(50, "0.001");
    stack.bridge.resetStats();
    const answers = await Promise.all(Array.from({ length: 200 }, () => backend.take([{ clientKey, rule: "default", policy: burst, cost: 1, enforced: true }], new AbortController().signal)));
    expect(answers.filter(([a]) => a?.decision.outcome === "allowed")).toHaveLength(50);
    // The first alone, the 199 that queued behind it in one pipeline.
    expect(stack.bridge.stats()).toEqual({ requests: 2, peakInFlight: 1 });
  });

  it("requests queued behind a refused call share its refusal: no call of their own", async () => {
    const clientKey = `refused-${crypto.randomUUID()}`;
    const tiny = perSecond(1, "0.001");
    const charge = { clientKey, rule: "default", policy: tiny, cost: 1, enforced: true };
    await backend.take([charge], new AbortController().signal);
    stack.bridge.resetStats();
    const answers = await Promise.all(Array.from({ length: 50 }, () => backend.take([charge], new AbortController().signal)));
    expect(answers.every(([a]) => a?.decision.outcome === "denied")).toBe(true);
    expect(stack.bridge.stats().requests).toBe(1);
  });
});

describe("commands per allowed decision", () => {
  it("three (EVALSHA, TIME, SET … GET) even when the bucket refilled and its key expired between calls", async () => {
    // 1e6 tokens a second: one token refills in a microsecond, so each call's state expires before the next.
    const charge = { clientKey: `fast-${crypto.randomUUID()}`, rule: "api", policy: { capacity: 1_000_000_000, refillTokens: 1_000_000, refillPeriodMs: 1_000 }, cost: 1, enforced: true };
    await backend.take([charge], AbortSignal.timeout(5_000));
    await redis.sendCommand(["CONFIG", "RESETSTAT"]);
    for (let i = 0; i < 10; i++) {
      await backend.take([charge], AbortSignal.timeout(5_000));
      await sleep(5);
    }
    const stats = String(await redis.sendCommand(["INFO", "commandstats"]));
    const calls = (name: string) => Number(new RegExp(`cmdstat_${name}:calls=(\\d+)`).exec(stats)?.[1] ?? 0);
    // Per script call; a busy client's calls are fewer than its requests (leases answer the rest).
    const evalsha = calls("evalsha");
    expect({ time: calls("time"), set: calls("set"), mget: calls("mget") }).toEqual({ time: evalsha, set: evalsha, mget: 0 });
    expect(evalsha).toBeGreaterThan(0);
    expect(evalsha).toBeLessThan(10);
  });
});

describe("leases (on by default)", () => {
  const isolates = () => Array.from({ length: 3 }, () => upstashBackend({ url: stack.bridge.url, token: LOCAL_UPSTASH_TOKEN, keyPrefix: "sluice-test" }));
  const evalshaCalls = async () => (await commandCalls()).evalsha ?? 0;
  /** Tokens a key records as leased out (the "#id:tokens:untilMs" entries after the state). */
  const leasedOut = (value: string | null) => [...(value ?? "").matchAll(/#[\w.]+:(\d+):\d+/g)].reduce((sum, m) => sum + Number(m[1]), 0);

  it("a busy client's isolate makes far fewer script calls than requests, and a leased answer's remaining never claims more than the client could spend", async () => {
    const solo = upstashBackend({ url: stack.bridge.url, token: LOCAL_UPSTASH_TOKEN, keyPrefix: "sluice-test" });
    const capacity = 1_000;
    const ratePerS = 100;
    const charge = { clientKey: `busy-${crypto.randomUUID()}`, rule: "api", policy: perSecond(capacity, String(ratePerS)), cost: 1, enforced: true };
    await redis.configResetStat();
    const started = performance.now();
    let admitted = 0;
    for (let i = 0; i < 400; i++) {
      const [answer] = await solo.take([charge], AbortSignal.timeout(5_000));
      expect(answer!.decision.outcome).toBe("allowed");
      admitted += 1;
      // What the client could still spend: at most the capacity plus the refill since the first request, less what it spent.
      const couldSpend = capacity + (ratePerS * (performance.now() - started)) / 1_000 - admitted;
      expect(answer!.decision.remaining).toBeLessThanOrEqual(couldSpend + 1e-9);
    }
    const calls = await evalshaCalls();
    console.log(`upstash leases: ${calls} script calls for 400 requests of one busy client (${(calls / 400).toFixed(3)} per request)`);
    expect(calls / 400).toBeLessThan(0.1);
  });

  it("through the limiter, a request answered from a lease makes no store call (no deadline, no breaker, not counted)", async () => {
    const limiter = new Limiter({
      rules: [{ name: "api", key: "header:x-api-key", capacity: 1_000, rate: "100/1s" }],
      backend: upstashBackend({ url: stack.bridge.url, token: LOCAL_UPSTASH_TOKEN, keyPrefix: "sluice-test" }),
      log: () => {},
    });
    const request: RequestSubject = { kind: "request", method: "GET", path: "/", headers: new Headers({ "x-api-key": `held-${crypto.randomUUID()}` }) };
    for (let i = 0; i < 200; i++) expect((await limiter.check(request)).kind).toBe("allowed");
    // Store calls: the override registry's read and the calls that took leases (4, 16, 64, 64, …).
    expect(limiter.stats.backendCalls).toBeLessThan(20);
  });

  it("three isolates on one client within its budget (the hot key): far fewer script calls than requests, all admitted within the bound", async () => {
    const backends = isolates();
    const capacity = 100_000;
    const ratePerS = 10_000;
    const charge = { clientKey: `hot-${crypto.randomUUID()}`, rule: "api", policy: perSecond(capacity, String(ratePerS)), cost: 1, enforced: true };
    await redis.configResetStat();
    let requests = 0;
    let admitted = 0;
    await Promise.all(
      backends.map(async (backend) => {
        for (let i = 0; i < 300; i++) {
          requests += 1;
          const [answer] = await backend.take([charge], AbortSignal.timeout(5_000));
          if (answer!.decision.outcome === "allowed") admitted += 1;
        }
      }),
    );
    const calls = await evalshaCalls();
    console.log(`upstash leases, hot key over 3 isolates: ${calls} script calls for ${requests} requests (${(calls / requests).toFixed(3)} per request)`);
    expect(admitted).toBe(requests);
    expect(calls / requests).toBeLessThan(0.2);
  });

  it("a lease held while the bucket refills: bucket plus leases never exceed the capacity, so a burst from another isolate and the lease together stay within the bound", async () => {
    const [a, b] = isolates() as [ReturnType<typeof upstashBackend>, ReturnType<typeof upstashBackend>];
    const capacity = 80;
    const ratePerS = 20;
    const charge = { clientKey: `refill-${crypto.randomUUID()}`, rule: "api", policy: perSecond(capacity, String(ratePerS)), cost: 1, enforced: true };
    const key = bucketKey("sluice-test", charge);
    // Isolate A gets busy and holds a lease of 4 (1/8 of what is left allows more; 4 is the first size).
    await a.take([charge], AbortSignal.timeout(5_000));
    await a.take([charge], AbortSignal.timeout(5_000));
    expect(leasedOut(await redis.get(key))).toBe(4);
    // The bucket refills what A took (without the cap it would be full again, with A's 4 still to spend).
    await sleep(300);
    const from = performance.now();
    let admitted = 0;
    // Isolate B bursts until refused, then A spends its lease.
    for (;;) {
      const [answer] = await b.take([charge], AbortSignal.timeout(5_000));
      if (answer!.decision.outcome !== "allowed") break;
      admitted += 1;
    }
    for (let i = 0; i < 4; i++) if ((await a.take([charge], AbortSignal.timeout(5_000)))[0]!.decision.outcome === "allowed") admitted += 1;
    const bound = capacity + (ratePerS * (performance.now() - from)) / 1_000;
    console.log(`upstash leases, refill while leased: ${admitted} admitted, bound ${bound.toFixed(1)}`);
    expect(admitted).toBeLessThanOrEqual(bound);
  });

  it("three isolates on one client over its budget: 0 over-admission, and the leases still cut the calls", async () => {
    const backends = isolates();
    const capacity = 200;
    const ratePerS = 20;
    const charge = { clientKey: `three-${crypto.randomUUID()}`, rule: "api", policy: perSecond(capacity, String(ratePerS)), cost: 1, enforced: true };
    await redis.configResetStat();
    const started = performance.now();
    let admitted = 0;
    let requests = 0;
    await Promise.all(
      backends.map(async (backend) => {
        while (performance.now() - started < 1_500) {
          requests += 1;
          const [answer] = await backend.take([charge], AbortSignal.timeout(5_000));
          if (answer!.decision.outcome === "allowed") admitted += 1;
        }
      }),
    );
    const elapsedS = (performance.now() - started) / 1_000;
    const calls = await evalshaCalls();
    console.log(
      `upstash leases, 3 isolates: ${admitted} admitted of ${requests} requests in ${elapsedS.toFixed(2)} s (bound ${(capacity + ratePerS * elapsedS).toFixed(1)}), ${calls} script calls (${(calls / requests).toFixed(3)} per request)`,
    );
    expect(admitted).toBeLessThanOrEqual(capacity + ratePerS * elapsedS);
    expect(admitted).toBeGreaterThan(capacity * 0.8); // leases lose little to refusing
    expect(calls).toBeLessThan(requests);
  });

  it("a reset or an override during leases: what is admitted after it stays within a full bucket (the new limit) plus the leases recorded out, refill included", async () => {
    for (const change of ["reset", "override"] as const) {
      const backends = isolates();
      const capacity = 400;
      const ratePerS = 10;
      const lowered = 20;
      const ref = { clientKey: `${change}-${crypto.randomUUID()}`, rule: "api" };
      const charge = { ...ref, policy: perSecond(capacity, String(ratePerS)), cost: 1, enforced: true };
      const key = bucketKey("sluice-test", ref);
      // Each isolate gets busy and holds a lease.
      for (let i = 0; i < 30; i++) for (const backend of backends) await backend.take([charge], AbortSignal.timeout(5_000));
      expect(leasedOut(await redis.get(key))).toBeGreaterThan(0);
      const [first] = backends as [ReturnType<typeof upstashBackend>];
      if (change === "reset") await first.reset([ref], AbortSignal.timeout(5_000));
      else await first.setOverride(ref, { capacity: lowered, refillTokens: ratePerS, refillPeriodMs: 1_000 }, AbortSignal.timeout(5_000));
      const changedAt = performance.now();
      const out = leasedOut(await redis.get(key));
      let admitted = 0;
      await Promise.all(
        backends.map(async (backend) => {
          for (let i = 0; i < (change === "reset" ? 200 : 40); i++) {
            const [answer] = await backend.take([charge], AbortSignal.timeout(5_000));
            if (answer!.decision.outcome === "allowed") admitted += 1;
          }
        }),
      );
      const limit = change === "reset" ? capacity : lowered;
      const bound = Math.max(limit, out) + (ratePerS * (performance.now() - changedAt)) / 1_000;
      console.log(`upstash leases, ${change} during leases: ${admitted} admitted after it (leases out ${out}, bound ${bound.toFixed(1)})`);
      expect(admitted).toBeLessThanOrEqual(bound);
      await redis.del(key);
    }
  });
});
