import { describe, expect, it } from "vitest";
import { CALENDAR_NOMINAL_MS, type CalendarPolicy } from "../../src/core/algorithms/calendar";
import { calendarPeriodAt, type CalendarPeriod } from "../../src/core/algorithms/calendar-periods";
import type { RateState } from "../../src/core/algorithms/index";
import type { BucketPolicy, BucketState } from "../../src/core/token-bucket";
import { BACKENDS } from "../support/backends";
import { gatewayWith, randomIp } from "../support/gateway";
import { policy, sleep } from "../support/helpers";

describe.each(BACKENDS)("$name backend conformance", ({ name, create, vars }) => {
  const backend = create();
  const client = () => `client-${crypto.randomUUID()}`;
  const charge = (clientKey: string, bucketPolicy: BucketPolicy, cost: number) => [{ clientKey, rule: "default", policy: bucketPolicy, cost, enforced: true }];
  const take = async (clientKey: string, bucketPolicy: BucketPolicy, cost = 1) => (await backend.take(charge(clientKey, bucketPolicy, cost), new AbortController().signal))[0]!.decision;
  const peek = async (clientKey: string, bucketPolicy: BucketPolicy, cost = 1) => (await backend.peek(charge(clientKey, bucketPolicy, cost), new AbortController().signal))[0]!.decision;

  it("a new bucket allows exactly its capacity", async () => {
    const key = client();
    const slow = policy(3, "0.001");
    const outcomes = [];
    for (let i = 0; i < 4; i++) outcomes.push((await take(key, slow)).outcome);
    expect(outcomes).toEqual(["allowed", "allowed", "allowed", "denied"]);
  });

  it("reports remaining, reset and retry-after exactly", async () => {
    const key = client();
    const perSecond = policy(10, "1");
    expect(await take(key, perSecond, 3)).toEqual({ outcome: "allowed", remaining: 7, resetMs: 3000 });
    const denied = await take(key, perSecond, 10);
    expect(denied.outcome).toBe("denied");
    if (denied.outcome !== "denied") return;
    expect(denied.remaining).toBe(7);
    // 3 tokens short at 1/s, less the few ms since the first call.
    expect(denied.retryAfterMs).toBeLessThanOrEqual(3000);
    expect(denied.retryAfterMs).toBeGreaterThan(2500);
    expect(denied.resetMs).toBe(denied.retryAfterMs);
  });

  it("refills after real elapsed time", async () => {
    const key = client();
    const twentyPerSecond = policy(5, "20"); // one token every 50 ms
    expect((await take(key, twentyPerSecond, 5)).remaining).toBe(0);
    await sleep(130);
    const after = await take(key, twentyPerSecond, 2);
    expect(after.outcome).toBe("allowed");
  });

  it("refills at a fractional rate (2.5/s: one token per 400 ms)", async () => {
    const key = client();
    const fractional = policy(1, "2.5");
    await take(key, fractional);
    const denied = await take(key, fractional);
    expect(denied.outcome).toBe("denied");
    if (denied.outcome === "denied") expect(denied.retryAfterMs).toBeGreaterThan(300);
    await sleep(420);
    expect((await take(key, fractional)).outcome).toBe("allowed");
  });

  it("a cost larger than the capacity is refused with its own reason and changes nothing", async () => {
    const key = client();
    const small = policy(5, "1");
    expect(await take(key, small, 6)).toEqual({ outcome: "cost_exceeds_capacity", remaining: 5, resetMs: 0 });
    expect(await take(key, small, 5)).toMatchObject({ outcome: "allowed", remaining: 0 });
  });

  it("a denied request consumes nothing", async () => {
    const key = client();
    const slow = policy(5, "0.001");
    await take(key, slow, 4);
    expect((await take(key, slow, 3)).outcome).toBe("denied");
    expect((await take(key, slow, 2)).outcome).toBe("denied");
    expect(await take(key, slow, 1)).toMatchObject({ outcome: "allowed", remaining: 0 });
  });

  it("a peek decides like a take but changes nothing", async () => {
    const key = client();
    const slow = policy(3, "0.001");
    expect(await peek(key, slow)).toEqual({ outcome: "allowed", remaining: 2, resetMs: 1_000_000 });
    expect(await take(key, slow, 2)).toMatchObject({ outcome: "allowed", remaining: 1 });
    for (let i = 0; i < 3; i++) expect(await peek(key, slow)).toMatchObject({ outcome: "allowed", remaining: 0 });
    expect(await peek(key, slow, 2)).toMatchObject({ outcome: "denied", remaining: 1 });
    expect(await take(key, slow)).toMatchObject({ outcome: "allowed", remaining: 0 });
    expect(await peek(key, slow)).toMatchObject({ outcome: "denied", remaining: 0 });
  });

  it("a queue (queueMs): a take the refill covers within queueMs is allowed with its wait, charged now (the level below zero by at most queueMs × rate); beyond it, refused with the real wait; a refund gives a queued charge back", async () => {
    const key = client();
    // One token every 100 s, a queue of 250 s: the third and fourth takes queue, the fifth is refused.
    const queued: BucketPolicy = { ...policy(2, "0.01"), queueMs: 250_000 };
    const signal = new AbortController().signal;
    const takeCharged = async () => (await backend.take(charge(key, queued, 1), signal))[0]!;
    expect((await takeCharged()).decision).toMatchObject({ outcome: "allowed", remaining: 1 });
    const second = (await takeCharged()).decision;
    expect(second).toMatchObject({ outcome: "allowed", remaining: 0 });
    expect(second).not.toHaveProperty("waitMs");
    const waits: number[] = [];
    let lastCharged: RateState | null = null;
    for (let i = 0; i < 2; i++) {
      const { decision, charged } = await takeCharged();
      lastCharged = charged;
      expect(decision).toMatchObject({ outcome: "allowed", remaining: 0 });
      const waitMs = decision.outcome === "allowed" ? (decision.waitMs ?? 0) : 0;
      waits.push(waitMs);
      // The debt is the wait's refill, never more than the queue's budget.
      const level = (charged as BucketState | null)?.level;
      expect(level).toBe(-waitMs * queued.refillTokens);
      expect(level).toBeGreaterThanOrEqual(-250_000 * queued.refillTokens);
    }
    expect(waits[0]).toBeGreaterThan(95_000);
    expect(waits[0]).toBeLessThanOrEqual(100_000);
    expect(waits[1]).toBeGreaterThan(195_000);
    expect(waits[1]).toBeLessThanOrEqual(200_000);
    const refused = await takeCharged();
    expect(refused.decision.outcome).toBe("denied");
    expect(refused.charged).toBeNull();
    if (refused.decision.outcome === "denied") expect(refused.decision.retryAfterMs).toBeGreaterThan(295_000);
    // The last queued charge given back (its client left): the next take queues again, for the same wait.
    await backend.refund([{ charge: charge(key, queued, 1)[0]!, charged: lastCharged! }], signal);
    const afterRefund = await peek(key, queued);
    expect(afterRefund.outcome).toBe("allowed");
    if (afterRefund.outcome === "allowed") expect(afterRefund.waitMs).toBeGreaterThan(195_000);
  });

  it("a refund gives back what a charge still withholds, never more", async () => {
    const key = client();
    const slow = policy(3, "0.001");
    const signal = new AbortController().signal;
    const charges = charge(key, slow, 2);
    const [answer] = await backend.take(charges, signal);
    expect(answer?.charged).not.toBeNull();
    expect(await peek(key, slow, 0)).toMatchObject({ remaining: 1 });
    await backend.refund([{ charge: charges[0]!, charged: answer!.charged! }], signal);
    expect(await peek(key, slow, 0)).toMatchObject({ remaining: 3 });
    // The same refund again would over-admit: the bucket is full, so nothing more comes back.
    await backend.refund([{ charge: charges[0]!, charged: answer!.charged! }], signal);
    expect(await peek(key, slow, 0)).toMatchObject({ remaining: 3 });
    // A refusal charged nothing: nothing to refund.
    expect((await backend.take(charge(key, slow, 4), signal))[0]?.charged).toBeNull();
  });

  it("a refund of a charge made before a reset gives nothing to the new bucket (`count` rules: 5 per bucket, not 10)", async () => {
    const key = client();
    const five = policy(5, "0.001");
    const signal = new AbortController().signal;
    const before = [];
    for (let i = 0; i < 5; i++) {
      const [answer] = await backend.take(charge(key, five, 1), signal);
      expect(answer?.decision.outcome).toBe("allowed");
      before.push(answer!.charged!);
    }
    await backend.reset([{ clientKey: key, rule: "default" }], signal);
    const after = [];
    for (let i = 0; i < 5; i++) {
      const [answer] = await backend.take(charge(key, five, 1), signal);
      expect(answer?.decision.outcome).toBe("allowed");
      after.push(answer!.charged!);
    }
    // The first five responses turn out not to count: their charges were made from the old bucket.
    await backend.refund(
      before.map((charged) => ({ charge: charge(key, five, 1)[0]!, charged })),
      signal,
    );
    expect(await take(key, five)).toMatchObject({ outcome: "denied", remaining: 0 });
    // A charge made from the new bucket is given back as before.
    await backend.refund([{ charge: charge(key, five, 1)[0]!, charged: after[4]! }], signal);
    expect(await take(key, five)).toMatchObject({ outcome: "allowed", remaining: 0 });
  });

  it("an exact override changes capacity and rate, never the rule's block: a refusal still starts the block", async () => {
    const key = client();
    const ref = { clientKey: key, rule: "default" };
    const signal = new AbortController().signal;
    const blocking = { ...policy(1, "0.001"), blockForMs: 60_000 };
    // An override that names a block of its own (0) changes capacity and rate only.
    await backend.setOverride(ref, { ...policy(2, "2"), blockForMs: 0 }, signal);
    expect((await take(key, blocking)).outcome).toBe("allowed");
    expect((await take(key, blocking)).outcome).toBe("allowed");
    const refused = await take(key, blocking);
    expect(refused).toMatchObject({ outcome: "denied" });
    if (refused.outcome === "denied") expect(refused.retryAfterMs).toBeGreaterThan(59_000);
    // The override's 2 tokens a second have refilled the bucket: only the block refuses now.
    await sleep(1_100);
    const blocked = await take(key, blocking);
    expect(blocked).toMatchObject({ outcome: "denied" });
    if (blocked.outcome === "denied") expect(blocked.retryAfterMs).toBeGreaterThan(58_000);
    // The override as the admin API builds it (capacity and rate): the same.
    await backend.setOverride(ref, policy(2, "2"), signal);
    expect(await take(key, blocking)).toMatchObject({ outcome: "denied" });
  });

  it("200 concurrent requests against capacity 50 allow exactly 50", async () => {
    const key = client();
    const fifty = policy(50, "0.001");
    const decisions = await Promise.all(Array.from({ length: 200 }, () => take(key, fifty)));
    expect(decisions.filter((d) => d.outcome === "allowed")).toHaveLength(50);
    expect(decisions.filter((d) => d.outcome === "denied")).toHaveLength(150);
  });

  it("through the gateway: the same headers and refusals", async () => {
    const token = "conformance-admin-token";
    const gateway = gatewayWith({ ...vars, LIMITER_CAPACITY: "2", LIMITER_REFILL_RATE: "0.5", LIMITER_ADMIN_TOKEN: token });
    const ip = randomIp();
    const first = await gateway("/", { ip });
    expect(first.status).toBe(200);
    expect(first.headers.get("RateLimit")).toBe('"default";r=1;t=2');
    await gateway("/", { ip });
    const refused = await gateway("/", { ip });
    expect(refused.status).toBe(429);
    expect(refused.headers.get("Retry-After")).toBe("2");
    // The store's name is among health's details, for the holder of a token.
    const health = await gateway("/__limiter/health", { headers: { authorization: `Bearer ${token}` } });
    expect(await health.json()).toMatchObject({ status: "ok", backend: { name } });
  });
});

describe.each(BACKENDS)("$name backend: concurrency slots", ({ create }) => {
  const backend = create();
  const signal = () => new AbortController().signal;
  const claim = (clientKey: string, id: string, limit = 2, leaseMs = 30_000, enforced = true) => ({ clientKey, rule: "inflight", id, limit, leaseMs, enforced });
  const acquire = async (...claims: ReturnType<typeof claim>[]) => backend.acquire(claims, signal());

  it("grants up to the limit, renews a held lease, and frees a slot on release", async () => {
    const key = `client-${crypto.randomUUID()}`;
    expect(await acquire(claim(key, "a"))).toEqual([{ granted: true, inFlight: 1 }]);
    expect(await acquire(claim(key, "b"))).toEqual([{ granted: true, inFlight: 2 }]);
    expect(await acquire(claim(key, "c"))).toEqual([{ granted: false, inFlight: 2 }]);
    expect(await acquire(claim(key, "a"))).toEqual([{ granted: true, inFlight: 2 }]); // a renewal is never refused
    await backend.release([claim(key, "a")], signal());
    expect(await acquire(claim(key, "c"))).toEqual([{ granted: true, inFlight: 2 }]);
    await backend.release([claim(key, "unknown")], signal()); // ignored
    expect(await acquire(claim(key, "d"))).toEqual([{ granted: false, inFlight: 2 }]);
  });

  it("all or nothing: a refused enforced claim leaves no slot taken by the request's other claims", async () => {
    const [full, free] = [`client-${crypto.randomUUID()}`, `client-${crypto.randomUUID()}`];
    await acquire(claim(full, "x", 1));
    const both = await acquire(claim(free, "r", 1), claim(full, "r", 1));
    expect(both.map((d) => d.granted)).toEqual([true, false]);
    expect(await acquire(claim(free, "other", 1))).toEqual([{ granted: true, inFlight: 1 }]); // "r" took nothing
    // A shadow claim that is refused does not refuse the others.
    const shadow = await acquire(claim(`client-${crypto.randomUUID()}`, "s", 1), claim(full, "s", 1, 30_000, false));
    expect(shadow.map((d) => d.granted)).toEqual([true, false]);
  });

  it("a lease nobody releases (its isolate died) frees its slot when it expires", async () => {
    const key = `client-${crypto.randomUUID()}`;
    await acquire(claim(key, "lost", 1, 1_000));
    expect(await acquire(claim(key, "next", 1, 1_000))).toEqual([{ granted: false, inFlight: 1 }]);
    await sleep(1_100);
    expect(await acquire(claim(key, "next", 1, 1_000))).toEqual([{ granted: true, inFlight: 1 }]);
  });
});

describe.each(BACKENDS)("$name backend: renewing slots", ({ create }) => {
  const backend = create();
  const signal = () => new AbortController().signal;
  const claim = (clientKey: string, id: string, leaseMs = 1_000) => ({ clientKey, rule: "inflight", id, limit: 1, leaseMs, enforced: true });

  it("a renewal extends a held lease, and never takes a slot: not after the release, not after the lease lapsed", async () => {
    const key = `client-${crypto.randomUUID()}`;
    await backend.acquire([claim(key, "a")], signal());
    await sleep(600);
    await backend.renew([claim(key, "a")], signal()); // now lasts until ~1.6 s
    await sleep(600);
    expect(await backend.acquire([claim(key, "b")], signal())).toEqual([{ granted: false, inFlight: 1 }]); // "a" would have lapsed at 1 s
    await backend.release([claim(key, "a")], signal());
    await backend.renew([claim(key, "a")], signal()); // late: changes nothing
    expect(await backend.acquire([claim(key, "b")], signal())).toEqual([{ granted: true, inFlight: 1 }]);
    await backend.renew([claim(key, "stranger")], signal()); // holds none: takes none
    expect(await backend.acquire([claim(key, "c")], signal())).toEqual([{ granted: false, inFlight: 1 }]);
  });
});

/** A window policy of `limit` per `windowMs`, as rules.ts compiles `"limit"` and `"window"` (the rate limit/window, reduced). */
function windowPolicy(algorithm: "fixed-window" | "sliding-window", limit: number, windowMs: number): BucketPolicy {
  let [a, b] = [limit, windowMs];
  while (b !== 0) [a, b] = [b, a % b];
  return { algorithm, capacity: limit, refillTokens: limit / a, refillPeriodMs: windowMs / a };
}

describe.each(BACKENDS)("$name backend: windows", ({ create, vars }) => {
  const backend = create();
  const signal = new AbortController().signal;
  const client = () => `window-${crypto.randomUUID()}`;
  const charge = (clientKey: string, bucketPolicy: BucketPolicy, cost = 1) => [{ clientKey, rule: "default", policy: bucketPolicy, cost, enforced: true }];
  const take = async (clientKey: string, bucketPolicy: BucketPolicy, cost = 1) => (await backend.take(charge(clientKey, bucketPolicy, cost), signal))[0]!;
  const peek = async (clientKey: string, bucketPolicy: BucketPolicy, cost = 0) => (await backend.peek(charge(clientKey, bucketPolicy, cost), signal))[0]!.decision;
  const DAY = 86_400_000;

  it.each(["fixed-window", "sliding-window"] as const)("%s: allows exactly the limit (costs included), and a refusal waits until the window frees enough", async (algorithm) => {
    const key = client();
    const five = windowPolicy(algorithm, 5, DAY);
    expect((await take(key, five, 3)).decision).toMatchObject({ outcome: "allowed", remaining: 2 });
    expect((await take(key, five, 3)).decision).toMatchObject({ outcome: "denied", remaining: 2 });
    expect((await take(key, five, 2)).decision).toMatchObject({ outcome: "allowed", remaining: 0 });
    const refused = (await take(key, five)).decision;
    expect(refused.outcome).toBe("denied");
    if (refused.outcome !== "denied") return;
    // Fixed: the window's end (aligned to the epoch: at most a day away); sliding: a day after the first admission.
    expect(refused.retryAfterMs).toBeLessThanOrEqual(DAY);
    if (algorithm === "sliding-window") expect(refused.retryAfterMs).toBeGreaterThan(DAY - 60_000);
    expect(refused.resetMs).toBe(refused.retryAfterMs);
    expect((await take(key, five, 6)).decision).toMatchObject({ outcome: "cost_exceeds_capacity" });
  });

  it.each(["fixed-window", "sliding-window"] as const)("%s: 200 concurrent requests against a limit of 50 allow exactly 50 (no lease, no estimate)", async (algorithm) => {
    const key = client();
    const fifty = windowPolicy(algorithm, 50, DAY);
    const decisions = await Promise.all(Array.from({ length: 200 }, () => take(key, fifty)));
    expect(decisions.filter((d) => d.decision.outcome === "allowed")).toHaveLength(50);
    expect(await peek(key, fifty)).toMatchObject({ outcome: "allowed", remaining: 0 });
  });

  it.each(["fixed-window", "sliding-window"] as const)("%s: a refund gives back a charge's units once, and nothing across a reset", async (algorithm) => {
    const key = client();
    const three = windowPolicy(algorithm, 3, DAY);
    const first = await take(key, three, 2);
    expect(first.charged).not.toBeNull();
    await backend.refund([{ charge: charge(key, three, 2)[0]!, charged: first.charged! }], signal);
    expect(await peek(key, three)).toMatchObject({ remaining: 3 });
    await backend.refund([{ charge: charge(key, three, 2)[0]!, charged: first.charged! }], signal);
    expect(await peek(key, three)).toMatchObject({ remaining: 3 });
    const before = await take(key, three, 3);
    await backend.reset([{ clientKey: key, rule: "default" }], signal);
    expect((await take(key, three, 3)).decision.outcome).toBe("allowed");
    await backend.refund([{ charge: charge(key, three, 3)[0]!, charged: before.charged! }], signal);
    expect(await peek(key, three)).toMatchObject({ outcome: "allowed", remaining: 0 });
  });

  it.each(["fixed-window", "sliding-window"] as const)("%s: an exact override sets a new limit without forgetting what was used", async (algorithm) => {
    const key = client();
    const ref = { clientKey: key, rule: "default" };
    const four = windowPolicy(algorithm, 4, DAY);
    await take(key, four, 3);
    await backend.setOverride(ref, windowPolicy(algorithm, 10, DAY), signal);
    expect((await take(key, four, 7)).decision).toMatchObject({ outcome: "allowed", remaining: 0 });
    await backend.setOverride(ref, windowPolicy(algorithm, 2, DAY), signal);
    expect((await take(key, four)).decision).toMatchObject({ outcome: "denied", remaining: 0 });
    await backend.setOverride(ref, null, signal);
    expect((await take(key, four)).decision).toMatchObject({ outcome: "denied", remaining: 0 });
  });

  it("through the gateway (default settings): a queued request waits about its wait, then reaches the origin; beyond maxWait a 429 at once", async () => {
    // One token every 200 ms, up to 300 ms of queue.
    const rules = [{ name: "api", key: "ip", capacity: 1, rate: 5, queue: { maxWait: "300ms" } }];
    const gateway = gatewayWith({ ...vars, LIMITER_RULES: JSON.stringify(rules) });
    const ip = randomIp();
    // Timed from before the first request: the next token comes 200 ms after it was charged, however long its answer took.
    const started = Date.now();
    expect((await gateway("/", { ip })).status).toBe(200);
    // Two at once: one queues until its token (200 ms after the first charge), the other would wait ~400 ms, beyond 300 ms: refused at once.
    const timed = async () => ({ response: await gateway("/", { ip }), ms: Date.now() - started });
    const [a, b] = await Promise.all([timed(), timed()]);
    const [queued, refused] = a.response.status === 200 ? [a, b] : [b, a];
    expect(queued.response.status).toBe(200);
    expect(await queued.response.text()).not.toBe("");
    expect(queued.response.headers.get("RateLimit")).toMatch(/^"api";r=0;/);
    expect(queued.ms).toBeGreaterThanOrEqual(190);
    expect(refused.response.status).toBe(429);
    expect(refused.ms).toBeLessThan(queued.ms);
  });

  it("sliding-window: a charge's receipt is the one admission it logged, whatever the log holds (bounded bytes per charge), and a refund by it still gives the charge back", async () => {
    const key = client();
    const hundred = windowPolicy("sliding-window", 100, DAY);
    let last: Awaited<ReturnType<typeof take>> | undefined;
    for (let i = 0; i < 40; i++) {
      last = await take(key, hundred, 2);
      await sleep(1); // one log entry per millisecond that admitted something
    }
    expect(last?.charged).toMatchObject({ algorithm: "sliding-window", log: [{ units: 2 }] });
    expect(JSON.stringify(last?.charged).length).toBeLessThan(160); // the whole log: over 1 kB here
    await backend.refund([{ charge: charge(key, hundred, 2)[0]!, charged: last!.charged! }], signal);
    expect(await peek(key, hundred)).toMatchObject({ remaining: 22 });
  });

  it("sliding-window with a queue (queueMs): a full window queues a take until its oldest units leave (logged then, in line); beyond queueMs, refused with the real wait; a refund frees a queued place", async () => {
    const key = client();
    // Two per day, a queue of a day: the third and fourth takes queue about a day, the fifth would wait two.
    const queued: BucketPolicy = { ...windowPolicy("sliding-window", 2, DAY), queueMs: DAY };
    expect((await take(key, queued, 2)).decision).toMatchObject({ outcome: "allowed", remaining: 0 });
    const third = await take(key, queued);
    expect(third.decision.outcome).toBe("allowed");
    const wait = third.decision.outcome === "allowed" ? (third.decision.waitMs ?? 0) : 0;
    expect(wait).toBeGreaterThan(DAY - 60_000);
    expect(wait).toBeLessThanOrEqual(DAY);
    const fourth = await take(key, queued);
    expect(fourth.decision).toMatchObject({ outcome: "allowed", waitMs: expect.any(Number) });
    const refused = (await take(key, queued)).decision;
    expect(refused.outcome).toBe("denied");
    if (refused.outcome === "denied") expect(refused.retryAfterMs).toBeGreaterThan(2 * DAY - 60_000);
    // The fourth's client left: its place is free again, and the next take queues instead of being refused.
    await backend.refund([{ charge: charge(key, queued)[0]!, charged: fourth.charged! }], signal);
    expect((await take(key, queued)).decision).toMatchObject({ outcome: "allowed", waitMs: expect.any(Number) });
    expect((await take(key, queued)).decision.outcome).toBe("denied");
  });

  it("through the gateway (default settings): a sliding-window rule's queued request waits until its window has room, then reaches the origin; beyond maxWait a 429 at once", async () => {
    const rules = [{ name: "api", key: "ip", algorithm: "sliding-window", limit: 1, window: "1s", queue: { maxWait: "1500ms" } }];
    const gateway = gatewayWith({ ...vars, LIMITER_RULES: JSON.stringify(rules) });
    const ip = randomIp();
    const started = Date.now();
    expect((await gateway("/", { ip })).status).toBe(200);
    // Two at once: one queues until the first leaves the window (~1 s), the other would wait ~2 s, beyond 1.5 s: refused at once.
    const timed = async () => ({ response: await gateway("/", { ip }), ms: Date.now() - started });
    const [a, b] = await Promise.all([timed(), timed()]);
    const [queued, refused] = a.response.status === 200 ? [a, b] : [b, a];
    expect(queued.response.status).toBe(200);
    expect(await queued.response.text()).not.toBe("");
    expect(queued.ms).toBeGreaterThanOrEqual(900);
    expect(refused.response.status).toBe(429);
    expect(Number(refused.response.headers.get("Retry-After"))).toBeGreaterThanOrEqual(1);
    expect(refused.ms).toBeLessThan(queued.ms);
  });

  it("through the gateway: window rules give q=L;w=W, t and Retry-After to the window's end", async () => {
    const rules = [{ name: "legacy", key: "ip", algorithm: "fixed-window", limit: 2, window: "1d" }];
    const gateway = gatewayWith({ ...vars, LIMITER_RULES: JSON.stringify(rules) });
    const ip = randomIp();
    const first = await gateway("/", { ip });
    expect(first.status).toBe(200);
    expect(first.headers.get("RateLimit-Policy")).toBe('"legacy";q=2;w=86400');
    const untilMidnight = Math.ceil((DAY - (Date.now() % DAY)) / 1000);
    const t = Number(/t=(\d+)/.exec(first.headers.get("RateLimit") ?? "")?.[1]);
    expect(Math.abs(t - untilMidnight)).toBeLessThanOrEqual(2);
    await gateway("/", { ip });
    const refused = await gateway("/", { ip });
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("Retry-After"))).toBeGreaterThanOrEqual(Number(/t=(\d+)/.exec(refused.headers.get("RateLimit") ?? "")?.[1]));
  });
});

/** A calendar policy of `limit` per `period` in `timeZone`, as rules.ts compiles it (L per the period's nominal length, reduced). */
function calendarPolicy(limit: number, period: CalendarPeriod, timeZone: string): CalendarPolicy {
  let [a, b] = [limit, CALENDAR_NOMINAL_MS[period]];
  while (b !== 0) [a, b] = [b, a % b];
  return { algorithm: "calendar", capacity: limit, refillTokens: limit / a, refillPeriodMs: CALENDAR_NOMINAL_MS[period] / a, period, timeZone, ...(period === "week" && { weekStart: "monday" }) };
}

describe.each(BACKENDS)("$name backend: calendar quotas", ({ create, vars }) => {
  const backend = create();
  const signal = new AbortController().signal;
  const client = () => `calendar-${crypto.randomUUID()}`;
  const charge = (clientKey: string, bucketPolicy: BucketPolicy, cost = 1) => [{ clientKey, rule: "default", policy: bucketPolicy, cost, enforced: true }];
  const take = async (clientKey: string, bucketPolicy: BucketPolicy, cost = 1) => (await backend.take(charge(clientKey, bucketPolicy, cost), signal))[0]!;
  const peek = async (clientKey: string, bucketPolicy: BucketPolicy, cost = 0) => (await backend.peek(charge(clientKey, bucketPolicy, cost), signal))[0]!.decision;
  const month = calendarPolicy(5, "month", "Europe/Berlin");

  it("allows exactly the limit per period (costs included); a refusal waits until the next boundary in the rule's zone", async () => {
    const key = client();
    expect((await take(key, month, 3)).decision).toMatchObject({ outcome: "allowed", remaining: 2 });
    expect((await take(key, month, 3)).decision).toMatchObject({ outcome: "denied", remaining: 2 });
    const last = await take(key, month, 2);
    expect(last.decision).toMatchObject({ outcome: "allowed", remaining: 0 });
    expect(last.charged).toMatchObject({ algorithm: "calendar", used: 5 });
    const refused = (await take(key, month)).decision;
    expect(refused.outcome).toBe("denied");
    if (refused.outcome !== "denied") return;
    const untilBoundary = calendarPeriodAt(month, Date.now()).endMs - Date.now();
    expect(Math.abs(refused.retryAfterMs - untilBoundary)).toBeLessThanOrEqual(2_000);
    expect(refused.resetMs).toBe(refused.retryAfterMs);
    expect((await take(key, month, 6)).decision).toMatchObject({ outcome: "cost_exceeds_capacity" });
  });

  it("200 concurrent requests against a limit of 50 allow exactly 50 (no lease, no estimate)", async () => {
    const key = client();
    const fifty = calendarPolicy(50, "week", "America/New_York");
    const decisions = await Promise.all(Array.from({ length: 200 }, () => take(key, fifty)));
    expect(decisions.filter((d) => d.decision.outcome === "allowed")).toHaveLength(50);
    expect(await peek(key, fifty)).toMatchObject({ outcome: "allowed", remaining: 0 });
  });

  it("a refund gives back a charge's units once, and nothing across a reset", async () => {
    const key = client();
    const three = calendarPolicy(3, "day", "Asia/Kolkata");
    const first = await take(key, three, 2);
    expect(first.charged).not.toBeNull();
    await backend.refund([{ charge: charge(key, three, 2)[0]!, charged: first.charged! }], signal);
    expect(await peek(key, three)).toMatchObject({ remaining: 3 });
    await backend.refund([{ charge: charge(key, three, 2)[0]!, charged: first.charged! }], signal);
    expect(await peek(key, three)).toMatchObject({ remaining: 3 });
    const before = await take(key, three, 3);
    await backend.reset([{ clientKey: key, rule: "default" }], signal);
    expect((await take(key, three, 3)).decision.outcome).toBe("allowed");
    await backend.refund([{ charge: charge(key, three, 3)[0]!, charged: before.charged! }], signal);
    expect(await peek(key, three)).toMatchObject({ outcome: "allowed", remaining: 0 });
  });

  it("an exact override sets a new limit without forgetting what was used", async () => {
    const key = client();
    const ref = { clientKey: key, rule: "default" };
    const four = calendarPolicy(4, "month", "UTC");
    await take(key, four, 3);
    await backend.setOverride(ref, calendarPolicy(10, "month", "UTC"), signal);
    const raised = await take(key, four, 7);
    expect(raised.decision).toMatchObject({ outcome: "allowed", remaining: 0 });
    expect(raised.policy).toMatchObject({ capacity: 10 });
    await backend.setOverride(ref, calendarPolicy(2, "month", "UTC"), signal);
    expect((await take(key, four)).decision).toMatchObject({ outcome: "denied", remaining: 0 });
    await backend.setOverride(ref, null, signal);
    expect((await take(key, four)).decision).toMatchObject({ outcome: "denied", remaining: 0 });
  });

  it("through the gateway (real time): a day quota gives q=L;w=the day's length, 200s then 429 with Retry-After to the zone's next midnight", async () => {
    // The zone whose next midnight is furthest away, so the test never straddles a boundary.
    const zones = ["Pacific/Kiritimati", "Asia/Tokyo", "Asia/Kolkata", "Europe/Berlin", "UTC", "America/New_York", "America/Los_Angeles", "Pacific/Pago_Pago"];
    const timeZone = zones.reduce((best, zone) =>
      calendarPeriodAt({ period: "day", timeZone: zone }, Date.now()).endMs > calendarPeriodAt({ period: "day", timeZone: best }, Date.now()).endMs ? zone : best,
    );
    const day = calendarPeriodAt({ period: "day", timeZone }, Date.now());
    const rules = [{ name: "daily", key: "ip", algorithm: "calendar", limit: 2, period: "day", timeZone }];
    const gateway = gatewayWith({ ...vars, LIMITER_RULES: JSON.stringify(rules) });
    const ip = randomIp();
    const first = await gateway("/", { ip });
    expect(first.status).toBe(200);
    expect(first.headers.get("RateLimit-Policy")).toBe(`"daily";q=2;w=${Math.ceil((day.endMs - day.startMs) / 1000)}`);
    const untilMidnight = Math.ceil((day.endMs - Date.now()) / 1000);
    const t = Number(/t=(\d+)/.exec(first.headers.get("RateLimit") ?? "")?.[1]);
    expect(Math.abs(t - untilMidnight)).toBeLessThanOrEqual(2);
    expect((await gateway("/", { ip })).status).toBe(200);
    const refused = await gateway("/", { ip });
    expect(refused.status).toBe(429);
    expect(Math.abs(Number(refused.headers.get("Retry-After")) - untilMidnight)).toBeLessThanOrEqual(2);
    expect(refused.headers.get("RateLimit")).toMatch(/^"daily";r=0;t=\d+$/);
  });
});
