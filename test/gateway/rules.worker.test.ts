import { describe, expect, it } from "vitest";
import { BACKENDS } from "../support/backends";
import { gatewayWith, randomIp } from "../support/gateway";
import { rateLimitItems as fieldItems, sleep } from "../support/helpers";

const rules = (list: object[]) => JSON.stringify(list);
const remaining = (response: Response) => Number(response.headers.get("X-RateLimit-Remaining"));

describe.each(BACKENDS)("rules on the $name backend", ({ vars }) => {
  it("applies every matching rule, and headers describe each of them", async () => {
    const gateway = gatewayWith({
      ...vars,
      LIMITER_RULES: rules([
        { name: "global", key: "ip", capacity: 10, rate: "10/1m" },
        { name: "login", match: { path: "/login", methods: ["POST"] }, key: "ip", capacity: 2, rate: "2/1m" },
      ]),
    });
    const ip = randomIp();
    const first = await gateway("/login", { ip, method: "POST" });
    expect(first.status).toBe(200);
    expect(fieldItems(first.headers.get("RateLimit-Policy"))).toEqual([
      ["global", { q: 10, w: 60 }],
      ["login", { q: 2, w: 60 }],
    ]);
    // The most restrictive rule is the one reported: login has 1 left, global 9.
    expect(fieldItems(first.headers.get("RateLimit"))).toEqual([["login", { r: 1, t: 30 }]]);
    expect(first.headers.get("X-RateLimit-Limit")).toBe("2");

    await gateway("/login", { ip, method: "POST" });
    const refused = await gateway("/login", { ip, method: "POST" });
    expect(refused.status).toBe(429);
    expect(fieldItems(refused.headers.get("RateLimit"))).toEqual([["login", { r: 0, t: 30 }]]);
    expect(refused.headers.get("Retry-After")).toBe("30");
    expect(await refused.json()).toMatchObject({ "violated-policies": ["login"] });

    // Other routes only see the global rule, which was charged twice (not for the refusal).
    const other = await gateway("/other", { ip });
    expect(fieldItems(other.headers.get("RateLimit-Policy"))).toEqual([["global", { q: 10, w: 60 }]]);
    expect(remaining(other)).toBe(7);
  });

  it.each([
    ["the same client key", "ip", {}],
    ["different client keys", "header:x-api-key", {}],
    // With the deny cache off every refusal reaches the store: its own all-or-nothing is what is tested.
    ["the same client key, every refusal from the store", "ip", { LIMITER_DENY_CACHE_SIZE: "0" }],
    ["different client keys, every refusal from the store", "header:x-api-key", { LIMITER_DENY_CACHE_SIZE: "0" }],
  ])("all or nothing with %s: a refusal by one rule leaves the others' buckets untouched", async (_, keyB, setting) => {
    const gateway = gatewayWith({
      ...vars,
      ...setting,
      LIMITER_RULES: rules([
        { name: "a", key: "ip", capacity: 5, rate: 0.001 },
        { name: "b", match: { path: "/b" }, key: keyB, capacity: 1, rate: 0.001 },
      ]),
    });
    const ip = randomIp();
    const headers = { "x-api-key": `key-${crypto.randomUUID()}` };
    expect((await gateway("/b", { ip, headers })).status).toBe(200); // a: 4, b: 0
    for (let i = 0; i < 3; i++) expect((await gateway("/b", { ip, headers })).status).toBe(429); // charges nothing
    const onlyA = await gateway("/a", { ip, headers });
    expect(onlyA.status).toBe(200);
    expect(remaining(onlyA)).toBe(3); // a: 4 - 1; the refusals took nothing
  });

  it("shadow rules are charged and reported but never refuse", async () => {
    const gateway = gatewayWith({
      ...vars,
      LIMITER_RULES: rules([
        { name: "dark-launch", key: "ip", capacity: 1, rate: 0.001, mode: "shadow" },
        { name: "live", key: "ip", capacity: 100, rate: 1 },
      ]),
    });
    const ip = randomIp();
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await gateway("/", { ip })).status);
    expect(statuses).toEqual([200, 200, 200, 200]);
    const last = await gateway("/", { ip });
    expect(fieldItems(last.headers.get("RateLimit-Policy")).map(([name]) => name)).toEqual(["dark-launch", "live"]);
    expect(fieldItems(last.headers.get("RateLimit"))[0]![0]).toBe("live");

    const shadowOnly = gatewayWith({ ...vars, LIMITER_RULES: rules([{ name: "dark", key: "ip", capacity: 1, rate: 0.001, mode: "shadow" }]) });
    const shadowIp = randomIp();
    for (let i = 0; i < 3; i++) expect((await shadowOnly("/", { ip: shadowIp })).status).toBe(200);
    // The shadow bucket was really charged: the headers report it empty.
    expect(fieldItems((await shadowOnly("/", { ip: shadowIp })).headers.get("RateLimit"))).toEqual([["dark", { r: 0, t: 1000 }]]);
  });

  it("tiers set upstream (match.headers) and several APIs behind one gateway (match.hosts) have their own rules", async () => {
    const gateway = gatewayWith({
      ...vars,
      LIMITER_RULES: rules([
        { name: "free", match: { headers: { "x-plan": "free" } }, key: "header:x-api-key", capacity: 1, rate: "1/1h" },
        { name: "paid", match: { headers: { "x-plan": "*" } }, key: "header:x-api-key", capacity: 3, rate: "1/1h" },
        { name: "other-api", match: { hosts: ["other.test"] }, key: "ip", capacity: 1, rate: "1/1h" },
      ]),
    });
    const key = `k-${crypto.randomUUID()}`;
    const free = await gateway("/", { headers: { "x-api-key": key, "x-plan": "free" } });
    expect(fieldItems(free.headers.get("RateLimit-Policy")).map(([name]) => name)).toEqual(["free", "paid"]);
    expect((await gateway("/", { headers: { "x-api-key": key, "x-plan": "free" } })).status).toBe(429);
    const pro = await gateway("/", { headers: { "x-api-key": key, "x-plan": "pro" } });
    expect(pro.status).toBe(200);
    expect(fieldItems(pro.headers.get("RateLimit-Policy")).map(([name]) => name)).toEqual(["paid"]);
    // gateway.test is not other.test: no rule applies without a plan.
    expect((await gateway("/", { headers: { "x-api-key": key } })).headers.get("RateLimit")).toBeNull();
  });

  it("blockFor: once refused, refused for the whole period whatever the bucket refills", async () => {
    // Default settings: the deny cache must not answer the refusal that starts the block.
    const gateway = gatewayWith({
      ...vars,
      LIMITER_RULES: rules([{ name: "guard", key: "ip", capacity: 2, rate: "2/1s", blockFor: "2500ms" }]),
    });
    const ip = randomIp();
    expect((await gateway("/", { ip })).status).toBe(200);
    expect((await gateway("/", { ip })).status).toBe(200);
    const refused = await gateway("/", { ip });
    expect(refused.status).toBe(429);
    expect(refused.headers.get("Retry-After")).toBe("3"); // the block's end, 2.5 s, rounded up
    expect(fieldItems(refused.headers.get("RateLimit"))).toEqual([["guard", { r: 0, t: 3 }]]);
    await sleep(1_100); // the bucket is full again by now
    const blocked = await gateway("/", { ip });
    expect(blocked.status).toBe(429);
    expect(Number(blocked.headers.get("Retry-After"))).toBe(2); // the block's end, not the bucket's refill
    await sleep(1_500);
    expect((await gateway("/", { ip })).status).toBe(200);
  });

  it("blockFor: a client going over one request at a time starts the block (deny cache on)", async () => {
    const gateway = gatewayWith({ ...vars, LIMITER_RULES: rules([{ name: "guard", key: "ip", capacity: 1, rate: "1/1s", blockFor: "1h" }]) });
    const ip = randomIp();
    expect((await gateway("/", { ip })).status).toBe(200);
    const refused = await gateway("/", { ip });
    expect(refused.status).toBe(429);
    expect(refused.headers.get("Retry-After")).toBe("3600");
    await sleep(1_100); // the bucket refilled; the block holds
    const blocked = await gateway("/", { ip });
    expect(blocked.status).toBe(429);
    expect(Number(blocked.headers.get("Retry-After"))).toBeGreaterThan(3500);
  });

  it("count: only responses with those statuses are charged (5 failed logins, however many succeed)", async () => {
    const gateway = gatewayWith({
      ...vars,
      LIMITER_RULES: rules([{ name: "failed-logins", match: { path: "/status/*" }, key: "ip", capacity: 3, rate: "3/15m", count: [401, "5xx"] }]),
    });
    const ip = randomIp();
    // Successful answers are charged on the way in and given back after (the refund runs after
    // the response; the test helper waits for it).
    for (let i = 0; i < 6; i++) expect((await gateway("/status/200", { ip })).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await gateway("/status/401", { ip })).status).toBe(401);
    const refused = await gateway("/status/200", { ip });
    expect(refused.status).toBe(429); // three failures spent the bucket, whatever comes next
    expect(await refused.json()).toMatchObject({ "violated-policies": ["failed-logins"] });
  });

  it("Retry-After is the time until every refusing rule would allow", async () => {
    const gateway = gatewayWith({
      ...vars,
      LIMITER_RULES: rules([
        { name: "short", key: "ip", capacity: 1, rate: "1/5s" },
        { name: "long", key: "ip", capacity: 1, rate: "1/20s" },
      ]),
    });
    const ip = randomIp();
    await gateway("/", { ip });
    const refused = await gateway("/", { ip });
    expect(refused.status).toBe(429);
    expect(refused.headers.get("Retry-After")).toBe("20");
    expect(fieldItems(refused.headers.get("RateLimit"))).toEqual([["long", { r: 0, t: 20 }]]);
    // Both refused; the one that holds the client longest comes first.
    expect(await refused.json()).toMatchObject({ "violated-policies": ["long", "short"] });
  });
});

describe("route matching", () => {
  it("cannot be dodged by spelling the path or the method differently", async () => {
    const gateway = gatewayWith({
      LIMITER_RULES: rules([{ name: "login", match: { path: "/login", methods: ["PATCH"] }, key: "ip", capacity: 5, rate: 0.001 }]),
    });
    const ip = randomIp();
    const spellings = ["/login", "/%6Cogin", "//login", "/login/", "/LOGIN", "/Login"];
    for (const [i, path] of spellings.entries()) {
      const response = await gateway(path, { ip, method: i % 2 === 0 ? "PATCH" : "patch" });
      expect(response.status, path).toBe(i < 5 ? 200 : 429);
    }
    // A path outside the pattern is not covered.
    expect((await gateway("/login-help", { ip, method: "PATCH" })).headers.get("RateLimit")).toBeNull();
  });

  it("the route key folds spellings into one bucket per endpoint", async () => {
    const gateway = gatewayWith({ LIMITER_RULES: rules([{ name: "per-endpoint", key: ["ip", "route"], capacity: 2, rate: 0.001 }]) });
    const ip = randomIp();
    expect(remaining(await gateway("/items/1", { ip }))).toBe(1);
    expect(remaining(await gateway("/ITEMS//1/", { ip }))).toBe(0);
    expect(remaining(await gateway("/items/2", { ip }))).toBe(1);
  });
});

describe("identity", () => {
  it("groups IPv6 clients by /64 by default", async () => {
    const gateway = gatewayWith({ LIMITER_CAPACITY: "2", LIMITER_REFILL_RATE: "0.001" });
    const net = `2001:db8:${Math.floor(Math.random() * 0xffff).toString(16)}:1`;
    expect(remaining(await gateway("/", { ip: `${net}::1` }))).toBe(1);
    expect(remaining(await gateway("/", { ip: `${net}:ffff:ffff:ffff:ffff` }))).toBe(0);
    expect((await gateway("/", { ip: `${net}:0:0:0:2` })).status).toBe(429);
    expect(remaining(await gateway("/", { ip: `${net.slice(0, -1)}2::1` }))).toBe(1); // another /64

    const perAddress = gatewayWith({ LIMITER_CAPACITY: "2", LIMITER_REFILL_RATE: "0.001", LIMITER_IPV6_PREFIX: "128" });
    expect(remaining(await perAddress("/", { ip: `${net}::1` }))).toBe(1);
    expect(remaining(await perAddress("/", { ip: `${net}::2` }))).toBe(1);
  });

  it("never trusts X-Forwarded-For unless configured", async () => {
    const gateway = gatewayWith({ LIMITER_CAPACITY: "5", LIMITER_REFILL_RATE: "0.001" });
    const ip = randomIp();
    expect(remaining(await gateway("/", { ip, headers: { "x-forwarded-for": "192.0.2.1" } }))).toBe(4);
    expect(remaining(await gateway("/", { ip, headers: { "x-forwarded-for": "192.0.2.2" } }))).toBe(3);

    const behindProxy = gatewayWith({ LIMITER_CAPACITY: "5", LIMITER_REFILL_RATE: "0.001", LIMITER_IP_HEADER: "X-Forwarded-For" });
    const [a, b] = [randomIp(), randomIp()];
    // The proxy appends the client it saw: the last entry is the client, whatever it wrote before.
    expect(remaining(await behindProxy("/", { ip, headers: { "x-forwarded-for": `10.0.0.1, ${a}` } }))).toBe(4);
    expect(remaining(await behindProxy("/", { ip, headers: { "x-forwarded-for": `10.0.0.1, ${b}` } }))).toBe(4);
  });

  it("a request without the configured key is refused when so configured", async () => {
    const byHeader = gatewayWith({ LIMITER_KEY: "header:x-api-key", LIMITER_MISSING_KEY: "reject" });
    const noKey = await byHeader("/", { ip: randomIp() });
    expect(noKey.status).toBe(400);
    expect(noKey.headers.get("content-type")).toBe("application/problem+json");
    expect(((await noKey.json()) as { detail: string }).detail).toContain("x-api-key");
    expect((await byHeader("/", { headers: { "x-api-key": "k" } })).status).toBe(200);

    const byBearer = gatewayWith({ LIMITER_KEY: "bearer", LIMITER_MISSING_KEY: "reject" });
    const noToken = await byBearer("/", { ip: randomIp() });
    expect(noToken.status).toBe(401);
    expect(noToken.headers.get("WWW-Authenticate")).toBe("Bearer");
  });

  it("requests without the key share one anonymous bucket by default", async () => {
    const gateway = gatewayWith({
      LIMITER_RULES: rules([{ name: `anon-${crypto.randomUUID().slice(0, 8)}`, key: "header:x-api-key", capacity: 2, rate: 0.001 }]),
    });
    expect((await gateway("/", { ip: randomIp() })).status).toBe(200);
    expect((await gateway("/", { ip: randomIp() })).status).toBe(200);
    expect((await gateway("/", { ip: randomIp() })).status).toBe(429);
    expect((await gateway("/", { headers: { "x-api-key": "someone" } })).status).toBe(200);
  });
});
