import { describe, expect, it } from "vitest";
import { BackendConfigError, type LimiterBackend } from "../../src/core/backend";
import { Limiter, localPolicy, type LimiterEvent, type LimiterOptions } from "../../src/core/limiter";
import { memoryBackend } from "../../src/core/memory-backend";
import { InvalidRulesError, type RuleSpec } from "../../src/core/rules";
import type { RequestSubject } from "../../src/core/subject";
import { countingBackend } from "../support/helpers";

/** A limiter on the memory backend, with one clock (ms) for the limiter and the store that the test moves. */
function setup(rules: RuleSpec[], options: Partial<LimiterOptions> = {}) {
  const time = { now: 1_700_000_000_000 };
  const clock = () => time.now;
  const { backend, counter } = countingBackend(options.backend ?? memoryBackend({ clock }));
  const events: LimiterEvent[] = [];
  const limiter = new Limiter({ rules, clock, log: (event) => events.push(event), ...options, backend });
  return { limiter, time, counter, events };
}

const request = (headers: Record<string, string> = {}, method = "GET", path = "/"): RequestSubject => ({ kind: "request", method, path, headers: new Headers(headers) });

/** A store that can be switched off: each call then fails as an unreachable one would. */
function switchableBackend(inner: LimiterBackend, failure: () => Error | undefined): LimiterBackend {
  const guard = <T>(call: () => Promise<T>) => {
    const error = failure();
    return error === undefined ? call() : Promise.reject(error);
  };
  return {
    ...inner,
    name: "switchable",
    take: (charges, signal) => guard(() => inner.take(charges, signal)),
    peek: (charges, signal) => guard(() => inner.peek(charges, signal)),
    acquire: (claims, signal) => guard(() => inner.acquire(claims, signal)),
    release: (claims, signal) => guard(() => inner.release(claims, signal)),
    overrides: { ...inner.overrides, list: (signal) => guard(() => inner.overrides.list(signal)) },
    ping: (signal) => guard(() => inner.ping(signal)),
  };
}

describe("Limiter.check on requests", () => {
  it("allows up to capacity with headers, then refuses naming the violated rule and the wait", async () => {
    const { limiter, time } = setup([{ name: "api", key: "header:x-api-key", capacity: 2, rate: "1/10s" }]);
    const alice = request({ "x-api-key": "alice" });
    const first = await limiter.check(alice);
    expect(first).toMatchObject({ kind: "allowed", outcomes: [{ decision: { outcome: "allowed", remaining: 1 } }] });
    if (first.kind !== "allowed") return;
    expect(first.headers).toContainEqual(["RateLimit", '"api";r=1;t=10']);
    expect(first.headers).toContainEqual(["RateLimit-Policy", '"api";q=2;w=20']);
    expect((await limiter.check(alice)).kind).toBe("allowed");
    time.now += 4_000;
    const refused = await limiter.check(alice);
    expect(refused).toMatchObject({ kind: "refused", violated: [{ name: "api" }] });
    // From the deny cache, whose waits are lower bounds by at most a millisecond.
    if (refused.kind === "refused") expect(refused.retryAfterMs).toBeOneOf([5_999, 6_000]);
    // Another client has its own bucket.
    expect((await limiter.check(request({ "x-api-key": "bob" }))).kind).toBe("allowed");
    time.now += 6_000;
    expect((await limiter.check(alice)).kind).toBe("allowed");
  });

  it("a request no rule matches is unmatched and costs no backend call", async () => {
    const { limiter, counter } = setup([{ name: "login", match: { path: "/login", methods: ["POST"] }, capacity: 1, rate: 1 }]);
    expect(await limiter.check(request({}, "GET", "/login"))).toEqual({ kind: "unmatched" });
    expect(await limiter.check(request({}, "POST", "/other"))).toEqual({ kind: "unmatched" });
    expect(counter.calls).toBe(0);
    expect((await limiter.check(request({}, "post", "//LOGIN/"))).kind).toBe("allowed");
  });

  it("a missing key is one anonymous bucket, or a missing-key verdict when rejected", async () => {
    const rules: RuleSpec[] = [{ name: "api", key: "bearer", capacity: 1, rate: "1/1h" }];
    const anonymous = setup(rules).limiter;
    expect((await anonymous.check(request({ "cf-connecting-ip": "192.0.2.1" }))).kind).toBe("allowed");
    expect((await anonymous.check(request({ "cf-connecting-ip": "192.0.2.2" }))).kind).toBe("refused");
    const strict = setup(rules, { missingKey: "reject" }).limiter;
    expect(await strict.check(request())).toMatchObject({ kind: "missing-key", rule: { name: "api" } });
    expect((await strict.check(request({ authorization: "Bearer t0ken" }))).kind).toBe("allowed");
  });

  it("a caller-established client id replaces the rules' key parts", async () => {
    const { limiter } = setup([{ name: "api", key: "ip", capacity: 1, rate: "1/1h" }]);
    const asUser = (user: string, ip: string): RequestSubject => ({ ...request({ "cf-connecting-ip": ip }), clientId: user });
    expect((await limiter.check(asUser("u1", "192.0.2.1"))).kind).toBe("allowed");
    expect((await limiter.check(asUser("u1", "192.0.2.2"))).kind).toBe("refused"); // same user, other address
    expect((await limiter.check(asUser("u2", "192.0.2.1"))).kind).toBe("allowed");
    // The same text as an address is another client: ids and addresses never share buckets.
    expect((await limiter.check(request({ "cf-connecting-ip": "u1" }))).kind).toBe("allowed");
  });

  it("the peer address keys ip rules when the address header is absent", async () => {
    const { limiter } = setup([{ name: "api", key: "ip", capacity: 1, rate: "1/1h" }]);
    const from = (peerAddress: string): RequestSubject => ({ ...request(), peerAddress });
    expect((await limiter.check(from("198.51.100.1"))).kind).toBe("allowed");
    expect((await limiter.check(from("198.51.100.1"))).kind).toBe("refused");
    expect((await limiter.check(from("198.51.100.2"))).kind).toBe("allowed");
  });

  it("shadow refusals are logged and never refuse", async () => {
    const { limiter, events } = setup([{ name: "dark", capacity: 1, rate: "1/1h", mode: "shadow" }]);
    expect((await limiter.check(request())).kind).toBe("allowed");
    expect((await limiter.check(request())).kind).toBe("allowed");
    expect(events).toEqual([{ event: "limiter.shadow_refusal", rule: "dark", outcome: "denied" }]);
  });

  it("a cost above the capacity is its own verdict, not a refusal a wait would cure", async () => {
    const { limiter } = setup([{ name: "api", capacity: 3, rate: 1 }]);
    expect(await limiter.check(request(), { cost: 4 })).toMatchObject({ kind: "cost-exceeds-capacity", rule: { name: "api" } });
    expect(await limiter.check(request(), { cost: 0 })).toMatchObject({ kind: "invalid-subject", field: "cost" });
    expect(await limiter.check(request(), { cost: 3 })).toMatchObject({ kind: "allowed", outcomes: [{ decision: { remaining: 0 } }] });
  });
});

describe("Limiter.check on named clients", () => {
  const rules: RuleSpec[] = [
    { name: "api", key: "header:x-api-key", capacity: 3, rate: "1/1h" },
    { name: "login", key: "ip", capacity: 3, rate: "1/1h" },
    { name: "per-route", key: ["ip", "route"], capacity: 3, rate: "1/1h" },
  ];

  it("reaches the same bucket as the client's traffic: header, IPv6 /64 and route spellings", async () => {
    const { limiter } = setup(rules);
    await limiter.check(request({ "x-api-key": "abc" }, "GET", "/x"));
    expect(await limiter.check({ kind: "client", rule: "api", client: { "header:x-api-key": "abc" } }, { mode: "peek" })).toMatchObject({
      kind: "allowed",
      outcomes: [{ decision: { remaining: 1 } }], // 3 - 1 by traffic, and a peek of 1 more
    });

    await limiter.check(request({ "cf-connecting-ip": "2001:db8:1:2::7" }, "POST", "/Login/"));
    const byAddress = await limiter.check({ kind: "client", rule: "login", client: { ip: "2001:db8:1:2:ffff::1" } }, { mode: "peek" });
    expect(byAddress).toMatchObject({ outcomes: [{ decision: { remaining: 1 } }] });
    const byRoute = await limiter.check({ kind: "client", rule: "per-route", client: { ip: "2001:db8:1:2::9", route: "post //login" } }, { mode: "peek" });
    expect(byRoute).toMatchObject({ outcomes: [{ decision: { remaining: 1 } }] });
  });

  it("charges like traffic: the client's next request sees the charge", async () => {
    const { limiter } = setup(rules);
    expect(await limiter.check({ kind: "client", rule: "api", client: { "header:x-api-key": "k" } }, { cost: 3 })).toMatchObject({ kind: "allowed" });
    expect((await limiter.check(request({ "x-api-key": "k" }))).kind).toBe("refused");
  });

  it.each([
    [{ kind: "client", rule: "nope", client: {} }, "rule"],
    [{ kind: "client", rule: "api", client: {} }, "client.header:x-api-key"],
    [{ kind: "client", rule: "api", client: { "header:x-api-key": "k", ip: "192.0.2.1" } }, "client.ip"],
    [{ kind: "client", rule: "per-route", client: { ip: "192.0.2.1", route: "/login" } }, "client.route"],
    [{ kind: "client", rule: "login", client: { ip: "   " } }, "client.ip"],
  ] as const)("a client that does not fit is named: %j", async (subject, field) => {
    const { limiter, counter } = setup(rules);
    expect(await limiter.check(subject)).toMatchObject({ kind: "invalid-subject", field });
    expect(counter.calls).toBe(0);
  });
});

describe("peek", () => {
  it("consumes nothing: traffic after a peek sees the same remaining", async () => {
    const { limiter } = setup([{ name: "api", capacity: 2, rate: "1/1h" }]);
    for (let i = 0; i < 5; i++) expect(await limiter.check(request(), { mode: "peek" })).toMatchObject({ kind: "allowed", outcomes: [{ decision: { remaining: 1 } }] });
    expect(await limiter.check(request())).toMatchObject({ kind: "allowed", outcomes: [{ decision: { remaining: 1 } }] });
  });

  it("is answered from the deny cache when it already knows the client is refused", async () => {
    const { limiter, counter } = setup([{ name: "api", capacity: 1, rate: "1/1h" }]);
    await limiter.check(request()); // empties the bucket: remembered
    const calls = counter.calls;
    expect(await limiter.check(request(), { mode: "peek" })).toMatchObject({ kind: "refused", cached: true });
    expect(counter.calls).toBe(calls);
  });
});

describe("deny cache, breaker and deadline", () => {
  it("a flood from one client costs one backend call per token", async () => {
    const { limiter, counter, time } = setup([{ name: "api", capacity: 3, rate: "1/1s" }]);
    const verdicts = [];
    for (let i = 0; i < 100; i++) verdicts.push((await limiter.check(request())).kind);
    expect(verdicts.filter((kind) => kind === "allowed")).toHaveLength(3);
    expect(counter.calls).toBe(4); // the override registry once, then one take per token
    expect(limiter.stats.backendCalls).toBe(4);
    time.now += 1_000; // one token later: one call lets one request through
    const after = [];
    for (let i = 0; i < 10; i++) after.push((await limiter.check(request())).kind);
    expect(after).toEqual(["allowed", ...Array(9).fill("refused")]);
    expect(counter.calls).toBe(5);
  });

  it("fails open or closed per rule, opens the breaker, and probes after the cool-down", async () => {
    let down = true;
    const time = { now: 0 };
    const backend = switchableBackend(memoryBackend(), () => (down ? new Error("connection refused") : undefined));
    const events: LimiterEvent[] = [];
    const limiter = new Limiter({
      backend,
      rules: [
        { name: "open", capacity: 10, rate: 1 },
        { name: "payments", match: { path: "/pay" }, capacity: 10, rate: 1, failMode: "closed" },
      ],
      breaker: { failureThreshold: 2, cooldownMs: 1_000 },
      clock: () => time.now,
      log: (event) => events.push(event),
    });
    expect(await limiter.check(request())).toMatchObject({ kind: "fail-open", reason: "Error: connection refused" });
    expect(await limiter.check(request({}, "GET", "/pay"))).toMatchObject({ kind: "fail-closed", rule: { name: "payments" }, backend: "switchable" });
    expect(limiter.isolateState().breaker).toBe("open");
    expect(await limiter.check(request())).toMatchObject({ kind: "fail-open", reason: expect.stringContaining("circuit open") });
    expect(limiter.stats.backendCalls).toBe(2);
    expect(events.map((e) => e.event)).toEqual(["limiter.backend_failure", "limiter.breaker_opened", "limiter.backend_failure", "limiter.backend_failure"]);

    down = false;
    time.now += 1_000;
    expect((await limiter.check(request())).kind).toBe("allowed"); // the probe
    expect(limiter.isolateState().breaker).toBe("closed");
  });

  it("a store that refuses the credentials is a misconfiguration, not an outage", async () => {
    const backend = switchableBackend(memoryBackend(), () => new BackendConfigError("UPSTASH_REDIS_REST_TOKEN", "refused"));
    const { limiter } = setup([{ name: "api", capacity: 1, rate: 1, failMode: "open" }], { backend, breaker: { failureThreshold: 1, cooldownMs: 1_000 } });
    for (let i = 0; i < 3; i++) {
      expect(await limiter.check(request())).toEqual({ kind: "backend-misconfigured", variable: "UPSTASH_REDIS_REST_TOKEN", message: "refused" });
    }
    expect(limiter.isolateState().breaker).toBe("closed");
    expect(await limiter.ping()).toMatchObject({ ok: false, configError: { variable: "UPSTASH_REDIS_REST_TOKEN" } });
  });

  it("a store that does not answer costs at most the timeout", async () => {
    const never = () => new Promise<never>(() => {});
    const hanging: LimiterBackend = { ...memoryBackend(), name: "hanging", take: never, peek: never, ping: never };
    const limiter = new Limiter({ backend: hanging, rules: [{ name: "api", capacity: 1, rate: 1 }], timeoutMs: 50, log: () => {} });
    const started = performance.now();
    expect(await limiter.check(request())).toMatchObject({ kind: "fail-open", reason: expect.stringContaining("BackendTimeoutError") });
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(await limiter.ping()).toMatchObject({ ok: false });
  });

  it("reads a request id given as a function only when an event is logged, and logs it", async () => {
    let down = false;
    const backend = switchableBackend(memoryBackend(), () => (down ? new Error("connection refused") : undefined));
    const logged: (string | undefined)[] = [];
    const limiter = new Limiter({ backend, rules: [{ name: "api", capacity: 100, rate: "1/1h" }], log: (_event, requestId) => logged.push(requestId) });
    let reads = 0;
    const requestId = () => `req-${++reads}`;
    for (let i = 0; i < 3; i++) expect((await limiter.check(request(), { requestId })).kind).toBe("allowed");
    expect(reads).toBe(0);
    down = true;
    expect((await limiter.check(request(), { requestId })).kind).toBe("fail-open");
    expect(logged).toEqual(["req-1"]);
    expect((await limiter.check(request(), { requestId: "plain" })).kind).toBe("fail-open");
    expect(logged.at(-1)).toBe("plain");
  });
});

describe("construction", () => {
  it("refuses rules that do not check, naming rule and field like LIMITER_RULES does", () => {
    const build = () => new Limiter({ backend: memoryBackend(), rules: [{ name: "api", capacity: 0, rate: "1/1w" }] });
    expect(build).toThrow(InvalidRulesError);
    expect(build).toThrow('rule "api" (#1): field "capacity" must be an integer from 1 to 1000000000; rule "api" (#1): field "rate" must be');
  });
});

describe("degraded mode (failMode: local)", () => {
  it("while the store is down, each isolate enforces its fraction of the rule, and says so", async () => {
    const backend = switchableBackend(memoryBackend(), () => new Error("store down"));
    const events: LimiterEvent[] = [];
    const limiter = new Limiter({
      backend,
      rules: [
        { name: "api", key: "header:x-api-key", capacity: 10, rate: "10/1h", failMode: "local" },
        { name: "loose", capacity: 1, rate: "1/1h", failMode: "open" },
      ],
      localFraction: 0.5,
      log: (event) => events.push(event),
    });
    const verdicts = [];
    for (let i = 0; i < 7; i++) verdicts.push(await limiter.check(request({ "x-api-key": "k" })));
    expect(verdicts.map((v) => v.kind)).toEqual(["allowed", "allowed", "allowed", "allowed", "allowed", "refused", "refused"]);
    const [first] = verdicts;
    expect(first).toMatchObject({ degraded: true, outcomes: [{ rule: { name: "api" }, policy: { capacity: 5 } }] });
    if (first?.kind === "allowed") expect(first.headers).toContainEqual(["X-Sluice-Degraded", "local"]);
    expect(events[0]).toMatchObject({ event: "limiter.backend_failure", failMode: "local" });
    // Another client has its own local bucket.
    expect(await limiter.check(request({ "x-api-key": "other" }))).toMatchObject({ kind: "allowed", degraded: true });
  });

  it("an outage does not lift a client's lowered limit: the local bucket scales the exact override the store last answered with", async () => {
    let down = false;
    const inner = memoryBackend();
    const backend = switchableBackend(inner, () => (down ? new Error("store down") : undefined));
    const limiter = new Limiter({ backend, rules: [{ name: "api", key: "header:x-api-key", capacity: 1000, rate: "1000/1h", failMode: "local" }], localFraction: 0.5, log: () => {} });
    const trial = request({ "x-api-key": "trial" });
    const named = await limiter.findBuckets("api", { "header:x-api-key": "trial" });
    if (!named.ok) throw new Error(named.message);
    await inner.setOverride(named.buckets[0]!.ref, { capacity: 10, refillTokens: 10, refillPeriodMs: 3_600_000 }, new AbortController().signal);
    expect(await limiter.check(trial)).toMatchObject({ kind: "allowed", outcomes: [{ policy: { capacity: 10 } }] });
    down = true;
    const kinds = [];
    for (let i = 0; i < 8; i++) kinds.push((await limiter.check(trial)).kind);
    expect(kinds).toEqual(["allowed", "allowed", "allowed", "allowed", "allowed", "refused", "refused", "refused"]); // half of 10, not of 1000
  });

  it("a local bucket holds at least one request's cost, so an outage never turns into a 500", async () => {
    expect(localPolicy({ capacity: 50, refillTokens: 1, refillPeriodMs: 1000 }, 0.1, 10)).toMatchObject({ capacity: 10 });
    const limiter = new Limiter({ backend: switchableBackend(memoryBackend(), () => new Error("down")), rules: [{ name: "big", capacity: 50, rate: 1, cost: 10, failMode: "local" }], log: () => {} });
    expect(await limiter.check(request())).toMatchObject({ kind: "allowed", degraded: true });
  });

  it("scales a policy down, never refilling faster and never below one token", () => {
    expect(localPolicy({ capacity: 100, refillTokens: 1, refillPeriodMs: 100 }, 0.1)).toEqual({ capacity: 10, refillTokens: 1, refillPeriodMs: 1000 });
    expect(localPolicy({ capacity: 3, refillTokens: 2, refillPeriodMs: 1000 }, 0.1)).toEqual({ capacity: 1, refillTokens: 2, refillPeriodMs: 10_000 });
  });
});

describe("concurrency rules", () => {
  const rules: RuleSpec[] = [
    { name: "inflight", key: "header:x-api-key", concurrency: 2 },
    { name: "api", key: "header:x-api-key", capacity: 3, rate: "3/1h" },
  ];
  const alice = request({ "x-api-key": "alice" });

  it("holds a slot per allowed request until it is released; the limit+1th is refused with concurrent-requests headers", async () => {
    const { limiter } = setup(rules);
    const [first, second] = [await limiter.check(alice), await limiter.check(alice)];
    expect([first.kind, second.kind]).toEqual(["allowed", "allowed"]);
    expect(limiter.holding(first)).toEqual({ renewEveryMs: 10_000 });
    if (second.kind === "allowed") expect(second.headers).toContainEqual(["RateLimit-Policy", '"api";q=3;w=3600, "inflight";q=2;qu="concurrent-requests"']);
    const third = await limiter.check(alice);
    expect(third).toMatchObject({ kind: "concurrency-refused", rule: { name: "inflight" }, inFlight: 2 });
    if (third.kind === "concurrency-refused")
      expect(third.headers).toEqual([
        ["RateLimit-Policy", '"inflight";q=2;qu="concurrent-requests"'],
        ["RateLimit", '"inflight";r=0'],
      ]);
    expect(limiter.holding(third)).toBeUndefined();
    // The refusal charged no token: releasing one slot lets exactly the bucket's last token through.
    await limiter.release(first);
    await limiter.release(first); // idempotent
    expect((await limiter.check(alice)).kind).toBe("allowed");
    expect(await limiter.check(request({ "x-api-key": "bob" }))).toMatchObject({ kind: "allowed" });
  });

  it("gives the slot back when a bucket rule refuses", async () => {
    const { limiter } = setup([
      { name: "inflight", key: "header:x-api-key", concurrency: 1 },
      { name: "tiny", key: "header:x-api-key", capacity: 1, rate: "1/1h" },
    ]);
    const first = await limiter.check(alice);
    await limiter.release(first);
    for (let i = 0; i < 3; i++) expect(await limiter.check(alice)).toMatchObject({ kind: "refused", violated: [{ name: "tiny" }] });
  });

  it("a request only a concurrency rule covers is allowed with its headers; a peek does not look at slots", async () => {
    const { limiter } = setup([{ name: "inflight", concurrency: 1 }]);
    const verdict = await limiter.check(request());
    expect(verdict).toMatchObject({
      kind: "allowed",
      headers: [
        ["RateLimit-Policy", '"inflight";q=1;qu="concurrent-requests"'],
        ["RateLimit", '"inflight";r=0'],
      ],
    });
    expect(await limiter.check(request(), { mode: "peek" })).toEqual({ kind: "unmatched" });
  });

  it("shadow concurrency rules never refuse", async () => {
    const { limiter, events } = setup([{ name: "inflight", concurrency: 1, mode: "shadow" }]);
    await limiter.check(request());
    expect(await limiter.check(request())).toMatchObject({ kind: "allowed" });
    expect(events).toContainEqual({ event: "limiter.shadow_refusal", rule: "inflight", outcome: "denied" });
  });

  it("while the store is down: local slots (the fraction, at least one) or closed, as each rule says", async () => {
    const down = switchableBackend(memoryBackend(), () => new Error("store down"));
    const local = new Limiter({ backend: down, rules: [{ name: "inflight", concurrency: 4, failMode: "local" }], localFraction: 0.5, log: () => {} });
    const held = [await local.check(request()), await local.check(request())];
    expect(held.map((v) => v.kind)).toEqual(["allowed", "allowed"]);
    expect(held[0]).toMatchObject({ degraded: true });
    if (held[0]?.kind === "allowed") expect(held[0].headers).toContainEqual(["X-Sluice-Degraded", "local"]);
    expect(await local.check(request())).toMatchObject({ kind: "concurrency-refused", degraded: true });
    await local.release(held[0]!);
    expect(await local.check(request())).toMatchObject({ kind: "allowed" });

    const closed = new Limiter({ backend: down, rules: [{ name: "inflight", concurrency: 4, failMode: "closed" }], log: () => {} });
    expect(await closed.check(request())).toMatchObject({ kind: "fail-closed", rule: { name: "inflight" } });
    const open = new Limiter({ backend: down, rules: [{ name: "inflight", concurrency: 1 }], log: () => {} });
    expect([(await open.check(request())).kind, (await open.check(request())).kind]).toEqual(["fail-open", "fail-open"]);
  });
});

describe("keyed hashing (identity.hashKey)", () => {
  it("names a client's buckets by HMAC with the secret: another secret, or none, gives other names", async () => {
    const rules: RuleSpec[] = [{ name: "api", key: "ip", capacity: 1, rate: "1/1h" }];
    const name = async (hashKey?: string) => {
      const limiter = new Limiter({ backend: memoryBackend(), rules, ...(hashKey !== undefined && { identity: { hashKey } }) });
      const named = await limiter.findBuckets("api", { ip: "203.0.113.7" });
      if (!named.ok) throw new Error(named.message);
      return named.buckets[0]!.ref.clientKey;
    };
    const [plain, keyed, again, other] = [await name(), await name("secret-one-0123456789"), await name("secret-one-0123456789"), await name("secret-two-0123456789")];
    expect(keyed).toMatch(/^ip:[0-9a-f]{64}$/);
    expect(keyed).toBe(again);
    expect(new Set([plain, keyed, other]).size).toBe(3);
  });
});

describe("blockFor under the default deny cache and overrides (issue 16: 1, 2)", () => {
  const guard: RuleSpec = { name: "guard", key: "header:x-api-key", capacity: 1, rate: "1/1s", blockFor: "1h" };

  it("a client going over one request at a time starts the block", async () => {
    const { limiter, time } = setup([guard]);
    const client = request({ "x-api-key": "a" });
    expect((await limiter.check(client)).kind).toBe("allowed");
    const refused = await limiter.check(client);
    expect(refused).toMatchObject({ kind: "refused", retryAfterMs: 3_600_000 });
    time.now += 2_000; // the bucket refilled; the block holds
    expect((await limiter.check(client)).kind).toBe("refused");
  });

  it("a prefix override changes capacity and rate, never the block", async () => {
    const { limiter, time } = setup([guard]);
    await limiter.backend.overrides.put({ id: "guard ent", rule: "guard", client: { "header:x-api-key": "ent_*" }, capacity: 2, rate: "2/1s" }, new AbortController().signal);
    const client = request({ "x-api-key": "ent_1" });
    expect((await limiter.check(client)).kind).toBe("allowed");
    expect((await limiter.check(client)).kind).toBe("allowed"); // the override's capacity
    const refused = await limiter.check(client);
    expect(refused).toMatchObject({ kind: "refused", retryAfterMs: 3_600_000 });
    time.now += 5_000;
    expect((await limiter.check(client)).kind).toBe("refused");
  });

  it("a degraded decision under a cached prefix override keeps the block", async () => {
    let down = false;
    const time = { now: 1_700_000_000_000 };
    const clock = () => time.now;
    const backend = switchableBackend(memoryBackend({ clock }), () => (down ? new Error("down") : undefined));
    const limiter = new Limiter({ rules: [{ ...guard, failMode: "local" }], clock, log: () => {}, backend, localFraction: 1 });
    await backend.overrides.put({ id: "guard ent", rule: "guard", client: { "header:x-api-key": "ent_*" }, capacity: 2, rate: "2/1s" }, new AbortController().signal);
    const client = request({ "x-api-key": "ent_1" });
    expect((await limiter.check(client)).kind).toBe("allowed"); // loads the prefix overrides
    down = true;
    expect((await limiter.check(client)).kind).toBe("allowed"); // local bucket: the override's 2
    expect((await limiter.check(client)).kind).toBe("allowed");
    expect((await limiter.check(client)).kind).toBe("refused");
    time.now += 5_000;
    expect((await limiter.check(client)).kind).toBe("refused");
  });
});

describe("one failing object does not open the breaker for every client (issue 16: 15)", () => {
  /** A store of one object per client (like Durable Objects) where the objects of `broken` clients fail. */
  function perClientStore(broken: Set<string>) {
    const inner = memoryBackend();
    const backend: LimiterBackend = {
      ...inner,
      name: "objects",
      failureScope: "client",
      take: (charges, signal) => (charges.some((c) => broken.has(c.clientKey)) ? Promise.reject(new Error("Durable Object is overloaded")) : inner.take(charges, signal)),
    };
    return backend;
  }

  it("a hot object's errors open only its client's circuit; two failing clients open the store's", async () => {
    const broken = new Set<string>();
    const backend = perClientStore(broken);
    const limiter = new Limiter({ backend, rules: [{ name: "api", key: "header:x-api-key", capacity: 100, rate: 1 }], log: () => {} });
    const hot = (await limiter.findBuckets("api", { "header:x-api-key": "hot" })) as { ok: true; buckets: { ref: { clientKey: string } }[] };
    broken.add(hot.buckets[0]!.ref.clientKey);
    for (let i = 0; i < 20; i++) expect((await limiter.check(request({ "x-api-key": "hot" }))).kind).toBe("fail-open");
    const other = await limiter.check(request({ "x-api-key": "calm" }));
    expect(other.kind).toBe("allowed"); // a real decision: the store's circuit stayed closed
    expect(limiter.isolateState()).toMatchObject({ breaker: "closed", clientCircuitsOpen: 1 });

    for (const key of ["down-1", "down-2", "down-3"]) {
      const named = (await limiter.findBuckets("api", { "header:x-api-key": key })) as { ok: true; buckets: { ref: { clientKey: string } }[] };
      broken.add(named.buckets[0]!.ref.clientKey);
    }
    for (let i = 0; i < 3; i++) for (const key of ["down-1", "down-2", "down-3"]) await limiter.check(request({ "x-api-key": key }));
    expect(limiter.isolateState().breaker).toBe("open"); // failures across clients: the store itself may be down
  });
});

describe("degraded mode's local state under other clients' traffic (issue 16: 11)", () => {
  it("a drained client stays drained however many other clients the isolate serves", async () => {
    const time = { now: 1_700_000_000_000 };
    const backend = switchableBackend(memoryBackend(), () => new Error("down"));
    const limiter = new Limiter({
      backend,
      rules: [{ name: "api", key: "header:x-api-key", capacity: 1_000, rate: "1000/1h", failMode: "local" }],
      breaker: { failureThreshold: 1_000_000, cooldownMs: 1 },
      clock: () => time.now,
      log: () => {},
    });
    const drained = request({ "x-api-key": "drained" });
    let allowed = 0;
    for (let i = 0; i < 150; i++) if ((await limiter.check(drained)).kind === "allowed") allowed += 1;
    expect(allowed).toBe(100); // a tenth of 1,000
    // 10,000 other clients pass through this isolate (the old LRU evicted the drained client here).
    for (let i = 0; i < 10_000; i++) await limiter.check(request({ "x-api-key": `other-${i}` }));
    for (let i = 0; i < 50; i++) expect((await limiter.check(drained)).kind).toBe("refused");
    // One more new client finds no room (every entry is live): refused, never a fresh share.
    expect((await limiter.check(request({ "x-api-key": "newcomer" }))).kind).toBe("refused");
  }, 60_000);
});
