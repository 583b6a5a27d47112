import { describe, expect, it } from "vitest";
import { BACKENDS, SHARED_BACKENDS } from "../support/backends";
import { gatewayWith, randomIp } from "../support/gateway";
import { rateLimitItems, sleep } from "../support/helpers";

const TOKEN = "admin-token-0123456789abcdef";
const rules = (list: object[]) => JSON.stringify(list);
const remaining = (response: Response) => Number(response.headers.get("X-RateLimit-Remaining"));

/** A gateway with the admin API on, and a helper to call it. */
function adminGateway(vars: Record<string, string>) {
  const gateway = gatewayWith({ LIMITER_ADMIN_TOKEN: TOKEN, ...vars });
  const admin = (method: string, path: string, body?: unknown, token = TOKEN) =>
    gateway(`/__limiter/admin${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      ...(body !== undefined && { body: typeof body === "string" ? body : JSON.stringify(body) }),
    });
  return { gateway, admin };
}

describe("the admin API's door", () => {
  it("is a 404 when LIMITER_ADMIN_TOKEN is unset, as if it did not exist", async () => {
    const gateway = gatewayWith();
    for (const path of ["/__limiter/admin/peek", "/__limiter/admin/overrides"]) {
      const response = await gateway(path, { method: "POST", headers: { authorization: `Bearer ${TOKEN}` }, body: "{}" });
      expect(response.status).toBe(404);
      expect(await response.json()).toMatchObject({ type: "about:blank", status: 404 });
    }
  });

  it("answers 401 with WWW-Authenticate without the token or with a wrong one, and never charges or proxies", async () => {
    const { gateway, admin } = adminGateway({ LIMITER_CAPACITY: "1", LIMITER_REFILL_RATE: "0.001" });
    const ip = randomIp();
    const none = await gateway("/__limiter/admin/overrides", { ip });
    expect(none.status).toBe(401);
    expect(none.headers.get("WWW-Authenticate")).toMatch(/^Bearer/);
    expect(await none.json()).toMatchObject({ type: "tag:sluice.dev,2026:unauthorized" });
    for (const wrong of [`${TOKEN}x`, TOKEN.slice(0, -1), "x"]) expect((await admin("GET", "/overrides", undefined, wrong)).status).toBe(401);
    expect((await admin("GET", "/overrides")).status).toBe(200);
    // None of that was charged to the caller (capacity 1).
    expect((await gateway("/", { ip })).status).toBe(200);
  });

  it("refuses a short token as a configuration error that names the variable, never the value", async () => {
    const response = await gatewayWith({ LIMITER_ADMIN_TOKEN: "short-secret" })("/", { ip: randomIp() });
    expect(response.status).toBe(500);
    const text = await response.text();
    expect(text).toContain("LIMITER_ADMIN_TOKEN");
    expect(text).not.toContain("short-secret");
  });
});

describe.each(BACKENDS)("the admin API on the $name backend", ({ vars }) => {
  const ruleSet = rules([
    { name: "api", match: { path: "/" }, key: "header:x-api-key", capacity: 5, rate: "5/1h" },
    { name: "login", match: { path: "/login" }, key: "ip", capacity: 3, rate: "3/1h" },
  ]);

  it("peek consumes nothing: traffic after a peek sees the same remaining", async () => {
    const { gateway, admin } = adminGateway({ ...vars, LIMITER_RULES: ruleSet });
    const key = `k-${crypto.randomUUID()}`;
    expect(remaining(await gateway("/", { headers: { "x-api-key": key } }))).toBe(4);
    for (let i = 0; i < 3; i++) {
      const peek = await admin("POST", "/peek", { rule: "api", client: { "header:x-api-key": key } });
      expect(peek.status).toBe(200);
      expect(await peek.json()).toMatchObject({ buckets: [{ rule: "api", remaining: 4, capacity: 5, rate: "1/720000ms", override: null }] });
    }
    expect(remaining(await gateway("/", { headers: { "x-api-key": key } }))).toBe(3);
  });

  it("peek without a rule shows every bucket keyed on those parts", async () => {
    const { gateway, admin } = adminGateway({ ...vars, LIMITER_RULES: ruleSet });
    const ip = randomIp();
    await gateway("/login", { ip });
    const peek = await admin("POST", "/peek", { client: { ip } });
    expect(await peek.json()).toMatchObject({ buckets: [{ rule: "login", remaining: 2, client: { ip } }] });
  });

  it("reset makes the bucket full again", async () => {
    const { gateway, admin } = adminGateway({ ...vars, LIMITER_RULES: ruleSet });
    const ip = randomIp();
    for (let i = 0; i < 3; i++) await gateway("/login", { ip });
    expect((await gateway("/login", { ip })).status).toBe(429);
    const reset = await admin("POST", "/reset", { rule: "login", client: { ip } });
    expect(await reset.json()).toEqual({ reset: ["login"] });
    // The same isolate had it in its deny cache: the reset clears that too.
    expect(remaining(await gateway("/login", { ip }))).toBe(2);
  });

  it("an exact override raises and lowers one client only, at once, and keeps its tokens", async () => {
    const { gateway, admin } = adminGateway({ ...vars, LIMITER_RULES: ruleSet });
    const [alice, bob] = [`alice-${crypto.randomUUID()}`, `bob-${crypto.randomUUID()}`];
    const as = (key: string) => gateway("/", { headers: { "x-api-key": key } });
    for (let i = 0; i < 2; i++) await as(alice); // alice: 3 of 5 left
    const raised = await admin("PUT", "/overrides", { rule: "api", client: { "header:x-api-key": alice }, capacity: 50, rate: "50/1h" });
    expect(raised.status).toBe(200);
    expect(await raised.json()).toMatchObject({ override: { rule: "api", capacity: 50, rate: "50/1h", kind: "exact" } });
    const next = await as(alice);
    // Not a fresh bucket: 3 tokens (plus a sliver of refill) under the new policy, minus this one.
    expect(remaining(next)).toBe(2);
    expect(rateLimitItems(next.headers.get("RateLimit-Policy"))).toEqual([["api", { q: 50, w: 3600 }]]);
    expect(remaining(await as(bob))).toBe(4); // bob is untouched

    const lowered = await admin("PUT", "/overrides", { rule: "api", client: { "header:x-api-key": alice }, capacity: 1, rate: "1/1h" });
    expect(lowered.status).toBe(200);
    // Capped to the new capacity: 1 token, which this request takes; the next is refused.
    expect(remaining(await as(alice))).toBe(0);
    expect((await as(alice)).status).toBe(429);

    const peek = await admin("POST", "/peek", { rule: "api", client: { "header:x-api-key": alice } });
    expect(await peek.json()).toMatchObject({ buckets: [{ capacity: 1, override: { kind: "exact", capacity: 1 } }] });
    const removed = await admin("DELETE", "/overrides", { rule: "api", client: { "header:x-api-key": alice } });
    expect(await removed.json()).toEqual({ removed: true });
    const after = await admin("POST", "/peek", { rule: "api", client: { "header:x-api-key": alice } });
    // Back to the rule's policy, still empty: removing an override is no reset.
    expect(await after.json()).toMatchObject({ buckets: [{ capacity: 5, remaining: 0, override: null }] });
  });

  it("lists and removes overrides; a prefix override applies to every matching client", async () => {
    const { gateway, admin } = adminGateway({ ...vars, LIMITER_RULES: ruleSet });
    const tag = crypto.randomUUID().slice(0, 8);
    const put = await admin("PUT", "/overrides", { rule: "api", client: { "header:x-api-key": `ent_${tag}_*` }, capacity: 100, rate: "100/1h" });
    expect(await put.json()).toMatchObject({ override: { kind: "prefix", client: { "header:x-api-key": `ent_${tag}_*` } } });
    const listed = (await (await admin("GET", "/overrides")).json()) as { overrides: { client: Record<string, string> }[] };
    expect(listed.overrides.map((o) => o.client["header:x-api-key"])).toContain(`ent_${tag}_*`);
    // This isolate refreshed its prefix cache when the override was set.
    const enterprise = await gateway("/", { headers: { "x-api-key": `ent_${tag}_acme` } });
    expect(rateLimitItems(enterprise.headers.get("RateLimit-Policy"))).toEqual([["api", { q: 100, w: 3600 }]]);
    const other = await gateway("/", { headers: { "x-api-key": `free_${tag}` } });
    expect(rateLimitItems(other.headers.get("RateLimit-Policy"))).toEqual([["api", { q: 5, w: 3600 }]]);
    // An exact override wins over the prefix.
    await admin("PUT", "/overrides", { rule: "api", client: { "header:x-api-key": `ent_${tag}_small` }, capacity: 2, rate: "2/1h" });
    const small = await gateway("/", { headers: { "x-api-key": `ent_${tag}_small` } });
    expect(rateLimitItems(small.headers.get("RateLimit-Policy"))).toEqual([["api", { q: 2, w: 3600 }]]);
    expect(await (await admin("DELETE", "/overrides", { rule: "api", client: { "header:x-api-key": `ent_${tag}_*` } })).json()).toEqual({ removed: true });
    expect(await (await admin("DELETE", "/overrides", { rule: "api", client: { "header:x-api-key": `ent_${tag}_*` } })).json()).toEqual({ removed: false });
  });

  it("check charges exactly like traffic: 200 concurrent checks against capacity 50 allow exactly 50", async () => {
    const { gateway, admin } = adminGateway({ ...vars, LIMITER_RULES: rules([{ name: "svc", key: "header:x-client", capacity: 50, rate: "1/1h" }]) });
    const client = { "header:x-client": `c-${crypto.randomUUID()}` };
    const results = await Promise.all(Array.from({ length: 200 }, () => admin("POST", "/check", { rule: "svc", client }).then((r) => r.json() as Promise<{ allowed: boolean }>)));
    expect(results.filter((r) => r.allowed)).toHaveLength(50);
    expect(results.filter((r) => !r.allowed)).toHaveLength(150);
    expect((await gateway("/", { headers: { "x-client": client["header:x-client"] } })).status).toBe(429);
    const costly = await admin("POST", "/check", { rule: "svc", client: { "header:x-client": `d-${crypto.randomUUID()}` }, cost: 20 });
    expect(await costly.json()).toMatchObject({ allowed: true, remaining: 30, limit: 50 });
  });

  it.each([
    ["not JSON", "POST", "/peek", "{", "(body)"],
    ["not an object", "POST", "/peek", "[]", "(body)"],
    ["an unknown field", "POST", "/peek", { client: {}, extra: 1 }, "extra"],
    ["an unknown rule", "POST", "/reset", { rule: "nope", client: { ip: "192.0.2.1" } }, "rule"],
    ["a missing key part", "POST", "/check", { rule: "api", client: {} }, "client.header:x-api-key"],
    ["a key part of the wrong kind", "POST", "/peek", { rule: "api", client: { ip: "192.0.2.1" } }, "client.ip"],
    ["a bad cost", "POST", "/check", { rule: "api", client: { "header:x-api-key": "k" }, cost: -1 }, "cost"],
    ["an override without capacity", "PUT", "/overrides", { rule: "api", client: { "header:x-api-key": "k" }, rate: 1 }, "capacity"],
    ["an override with a bad rate", "PUT", "/overrides", { rule: "api", client: { "header:x-api-key": "k" }, capacity: 5, rate: "fast" }, "rate"],
    ["an override below the rule's cost", "PUT", "/overrides", { rule: "expensive", client: { ip: "192.0.2.1" }, capacity: 2, rate: 1 }, "cost"],
    ["a * inside a value", "PUT", "/overrides", { rule: "api", client: { "header:x-api-key": "a*b" }, capacity: 5, rate: 1 }, "client.header:x-api-key"],
  ])("a bad body (%s) is a 400 problem naming the field", async (_, method, path, body, field) => {
    const { admin } = adminGateway({
      ...vars,
      LIMITER_RULES: rules([
        { name: "api", key: "header:x-api-key", capacity: 5, rate: 1 },
        { name: "expensive", key: "ip", capacity: 10, rate: 1, cost: 5 },
      ]),
    });
    const response = await admin(method, path, body);
    expect(response.status).toBe(400);
    expect(response.headers.get("content-type")).toBe("application/problem+json");
    expect(await response.json()).toMatchObject({ type: "tag:sluice.dev,2026:invalid-request", field });
  });
});

describe.each(SHARED_BACKENDS)("overrides across isolates on the $name backend", ({ vars }) => {
  const ruleSet = rules([{ name: "api", key: "header:x-api-key", capacity: 5, rate: "5/1h" }]);

  it("an exact override applies to the very next request in another isolate; a prefix one within 10 s", async () => {
    // Two env objects: two gateways, each with its own limiter, caches and deny cache, sharing the store.
    const first = adminGateway({ ...vars, LIMITER_RULES: ruleSet });
    const other = gatewayWith({ ...vars, LIMITER_RULES: ruleSet });
    const key = `vip-${crypto.randomUUID()}`;
    const policyOf = async (gateway: typeof other, apiKey: string) => rateLimitItems((await gateway("/", { headers: { "x-api-key": apiKey } })).headers.get("RateLimit-Policy"));
    expect(await policyOf(other, key)).toEqual([["api", { q: 5, w: 3600 }]]); // the other isolate has cached the (empty) registry

    await first.admin("PUT", "/overrides", { rule: "api", client: { "header:x-api-key": key }, capacity: 40, rate: "40/1h" });
    expect(await policyOf(other, key)).toEqual([["api", { q: 40, w: 3600 }]]);

    const tag = crypto.randomUUID().slice(0, 8);
    await first.admin("PUT", "/overrides", { rule: "api", client: { "header:x-api-key": `p${tag}*` }, capacity: 70, rate: "70/1h" });
    const started = Date.now();
    let seenAfterMs = -1;
    for (let i = 0; Date.now() - started < 12_000; i++) {
      if ((await policyOf(other, `p${tag}-${i}`))[0]?.[1].q === 70) {
        seenAfterMs = Date.now() - started;
        break;
      }
      await sleep(250);
    }
    console.log(JSON.stringify({ event: "prefix override reached another isolate", backend: vars.LIMITER_BACKEND ?? "durable-object", afterMs: seenAfterMs }));
    expect(seenAfterMs).toBeGreaterThanOrEqual(0);
    expect(seenAfterMs).toBeLessThanOrEqual(10_000);
    await first.admin("DELETE", "/overrides", { rule: "api", client: { "header:x-api-key": `p${tag}*` } });
  }, 20_000);
});

describe("self-service status", () => {
  it("answers the caller's buckets for a method and path without charging, and is itself limited", async () => {
    const gateway = gatewayWith({
      LIMITER_RULES: rules([
        { name: "login", match: { path: "/login", methods: ["POST"] }, key: "ip", capacity: 5, rate: "5/1h" },
        { name: "all", key: "ip", capacity: 100, rate: "100/1h" },
      ]),
    });
    const ip = randomIp();
    await gateway("/login", { ip, method: "POST" });
    const status = await gateway("/__limiter/status?method=POST&path=/login", { ip });
    expect(status.status).toBe(200);
    expect(await status.json()).toMatchObject({
      method: "POST",
      path: "/login",
      allowed: true,
      buckets: [
        { rule: "login", limit: 5, remaining: 4 },
        { rule: "all", limit: 100, remaining: 99 },
      ],
    });
    // Nothing was charged by asking.
    expect(remaining(await gateway("/login", { ip, method: "POST" }))).toBe(3);
    expect(await (await gateway("/__limiter/status?path=/elsewhere", { ip })).json()).toMatchObject({ buckets: [{ rule: "all", remaining: 98 }] });

    const statuses = [];
    for (let i = 0; i < 12; i++) statuses.push((await gateway("/__limiter/status?path=/", { ip })).status);
    // 10 a minute per client, 2 of them spent above.
    expect(statuses.filter((s) => s === 200)).toHaveLength(8);
    expect(statuses.slice(8).every((s) => s === 429)).toBe(true);
    expect((await gateway("/__limiter/status?path=nope", { ip: randomIp() })).status).toBe(400);
  });
});
