import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { Env, VarName } from "../../src/gateway/env";
import worker from "../../src/index";
import { gatewayWith, randomIp } from "../support/gateway";

const rules = (list: object[]) => JSON.stringify(list);
const TOKEN = "admin-token-0123456789abcdef";

/** The real gateway on the default backend, called at any URL (host and path exactly as given). */
function gatewayAt(vars: Partial<Record<VarName, string>>) {
  const gatewayEnv: Env = { ...env, ...vars };
  return async (url: string, init: RequestInit & { ip?: string } = {}): Promise<Response> => {
    const { ip, ...rest } = init;
    const headers = new Headers(rest.headers);
    if (ip !== undefined) headers.set("cf-connecting-ip", ip);
    const ctx = createExecutionContext();
    const response = await worker.fetch(new Request(url, { ...rest, headers }), gatewayEnv, ctx);
    await waitOnExecutionContext(ctx);
    return response;
  };
}

describe("client address behind a proxy (default backend, default settings but the header)", () => {
  it("X-Forwarded-For: a client writing its own first entry is still one client (5 of 30 login attempts pass)", async () => {
    const gateway = gatewayWith({
      LIMITER_IP_HEADER: "x-forwarded-for",
      LIMITER_RULES: rules([{ name: "login", match: { path: "/login", methods: ["POST"] }, key: "ip", capacity: 5, rate: "5/15m" }]),
    });
    const client = randomIp();
    const statuses: number[] = [];
    // What nginx's $proxy_add_x_forwarded_for makes of a header the client wrote: its text, then the peer.
    for (let i = 0; i < 30; i++) statuses.push((await gateway("/login", { method: "POST", headers: { "x-forwarded-for": `${randomIp()}, ${client}` } })).status);
    expect(statuses.filter((status) => status === 200)).toHaveLength(5);
    expect(statuses.filter((status) => status === 429)).toHaveLength(25);
  });

  it("LIMITER_TRUSTED_PROXIES=2: the entry two from the right", async () => {
    const gateway = gatewayWith({ LIMITER_IP_HEADER: "x-forwarded-for", LIMITER_TRUSTED_PROXIES: "2", LIMITER_CAPACITY: "2", LIMITER_REFILL_RATE: "0.001" });
    const [client, balancer] = [randomIp(), randomIp()];
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await gateway("/", { headers: { "x-forwarded-for": `${randomIp()}, ${client}, ${balancer}` } })).status);
    expect(statuses).toEqual([200, 200, 429, 429]);
    // Another client behind the same balancer has its own bucket.
    expect((await gateway("/", { headers: { "x-forwarded-for": `${randomIp()}, ${balancer}` } })).status).toBe(200);
  });

  it.each([["0"], ["x"], ["33"]])("LIMITER_TRUSTED_PROXIES=%s is a 500 naming the variable and the value", async (value) => {
    const response = await gatewayWith({ LIMITER_IP_HEADER: "x-forwarded-for", LIMITER_TRUSTED_PROXIES: value })("/", { ip: randomIp() });
    expect(response.status).toBe(500);
    const problem = (await response.json()) as { detail: string };
    expect(problem.detail).toContain(`LIMITER_TRUSTED_PROXIES=${JSON.stringify(value)}`);
  });
});

describe("path, method and host spellings (default backend, default settings)", () => {
  const gateway = gatewayAt({
    LIMITER_RULES: rules([
      { name: "login", match: { path: "/login", methods: ["POST"], hosts: ["gateway.test"] }, key: ["ip", "route"], capacity: 1, rate: "1/15m" },
      { name: "search", match: { path: "/search", methods: ["GET"] }, key: "ip", capacity: 1, rate: "1/15m" },
    ]),
  });

  it.each([["/login;x"], ["/login;jsessionid=1"], ["/login.json"], ["/login."], ["/x%2F..%2Flogin"], ["/LOGIN.xml"]])("%s is charged to the /login rule and its one bucket", async (spelling) => {
    const ip = randomIp();
    expect((await gateway("https://gateway.test/login", { method: "POST", ip })).status).toBe(200);
    const other = await gateway(`https://gateway.test${spelling}`, { method: "POST", ip });
    expect(other.status).toBe(429);
    expect(await other.json()).toMatchObject({ "violated-policies": ["login"] });
  });

  it("a trailing-dot Host is the same host", async () => {
    const ip = randomIp();
    expect((await gateway("https://gateway.test/login", { method: "POST", ip })).status).toBe(200);
    expect((await gateway("https://gateway.test./login", { method: "POST", ip })).status).toBe(429);
  });

  it("HEAD is charged to a GET rule", async () => {
    const ip = randomIp();
    expect((await gateway("https://gateway.test/search", { ip })).status).toBe(200);
    expect((await gateway("https://gateway.test/search", { method: "HEAD", ip })).status).toBe(429);
  });
});

describe("IPv6 network overrides through the admin API", () => {
  const vars = { LIMITER_ADMIN_TOKEN: TOKEN, LIMITER_RULES: rules([{ name: "api", key: "ip", capacity: 2, rate: "2/1h" }]) };
  const gateway = gatewayWith(vars);
  const admin = (method: string, body: unknown) =>
    gateway("/__limiter/admin/overrides", { method, headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" }, body: JSON.stringify(body) });
  const hex = () => Math.floor(Math.random() * 0xffff).toString(16);

  it("a compressed, upper-case, zero-padded network applies to its clients", async () => {
    const [a, b] = [hex(), hex()];
    const written = `2001:0DB8:${a.toUpperCase().padStart(4, "0")}::/48`;
    const put = await admin("PUT", { rule: "api", client: { ip: written }, capacity: 50, rate: "50/1h" });
    expect(put.status).toBe(200);
    expect(await put.json()).toMatchObject({ override: { kind: "prefix", client: { ip: `2001:db8:${a}:*` } } });
    const inside = await gateway("/", { ip: `2001:db8:${a}:${b}::7` });
    expect(inside.headers.get("X-RateLimit-Limit")).toBe("50");
    await admin("DELETE", { rule: "api", client: { ip: written } });
  });

  it.each([["2001:db8::*"], ["2001:db8:1:2:3:*"], ["203.0.112.0/20"], ["nope"]])("%s is a 400 naming client.ip", async (written) => {
    const response = await admin("PUT", { rule: "api", client: { ip: written }, capacity: 50, rate: "50/1h" });
    expect(response.status).toBe(400);
    expect(response.headers.get("content-type")).toBe("application/problem+json");
    expect(await response.json()).toMatchObject({ field: "client.ip" });
  });
});
