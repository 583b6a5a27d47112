import { describe, expect, it } from "vitest";
import { DEFAULTS } from "../../src/core/defaults";
import { clientIp, groupAddress, hashedClientKey, hashMemoStats, parseAddress, type IdentityOptions } from "../../src/core/identity";
import { Limiter } from "../../src/core/limiter";
import { memoryBackend } from "../../src/core/memory-backend";
import type { RequestSubject } from "../../src/core/subject";
import { parseGatewayConfig, describeConfigErrors } from "../../src/gateway/config";
import type { Env } from "../../src/gateway/env";

const xff: IdentityOptions = { ...DEFAULTS.identity, ipHeader: "x-forwarded-for" };

describe("client address from a proxy's list header", () => {
  it("X-Forwarded-For: the entry the trusted proxy appended (the last), never what the client wrote", () => {
    // nginx's $proxy_add_x_forwarded_for, a load balancer, Cloudflare: each appends the peer.
    expect(clientIp(new Headers({ "x-forwarded-for": "6.6.6.6, 203.0.113.7" }), xff)).toBe("203.0.113.7");
    expect(clientIp(new Headers({ "x-forwarded-for": "203.0.113.7" }), xff)).toBe("203.0.113.7");
    // Two header lines are one list; the proxy's entry is still the last.
    const twoLines = new Headers([
      ["x-forwarded-for", "1.1.1.1"],
      ["x-forwarded-for", "2.2.2.2, 203.0.113.7"],
    ]);
    expect(clientIp(twoLines, xff)).toBe("203.0.113.7");
  });

  it("with trustedHops n, the n-th entry from the right; a shorter list names nobody (the peer address)", () => {
    const two = { ...xff, trustedHops: 2 };
    expect(clientIp(new Headers({ "x-forwarded-for": "6.6.6.6, 203.0.113.7, 10.0.0.2" }), two)).toBe("203.0.113.7");
    expect(clientIp(new Headers({ "x-forwarded-for": "203.0.113.7" }), two, "192.0.2.9")).toBe("192.0.2.9");
    expect(clientIp(new Headers({ "x-forwarded-for": "203.0.113.7" }), two)).toBe("127.0.0.1");
  });

  it("a port or brackets a proxy wrote do not make one client many", () => {
    expect(clientIp(new Headers({ "x-forwarded-for": "203.0.113.7:4711" }), xff)).toBe("203.0.113.7");
    expect(clientIp(new Headers({ "x-forwarded-for": "[2001:db8:1:2::7]:443" }), xff)).toBe("2001:db8:1:2:0:0:0:0/64");
    expect(groupAddress("010.000.000.001", xff)).toBe("10.0.0.1");
  });

  it("Forwarded (RFC 7239): the for= of the element the proxy appended; unknown or obfuscated names nobody", () => {
    const fwd = { ...DEFAULTS.identity, ipHeader: "forwarded" };
    const header = 'for=6.6.6.6;proto=https, for="[2001:db8:cafe::17]:4711";proto=https';
    expect(clientIp(new Headers({ forwarded: header }), fwd)).toBe("2001:db8:cafe:0:0:0:0:0/64");
    expect(clientIp(new Headers({ forwarded: "for=6.6.6.6, by=10.0.0.1;for=192.0.2.60" }), fwd)).toBe("192.0.2.60");
    expect(clientIp(new Headers({ forwarded: "for=6.6.6.6, for=unknown" }), fwd, "192.0.2.9")).toBe("192.0.2.9");
    expect(clientIp(new Headers({ forwarded: "for=6.6.6.6, for=_hidden" }), fwd, "192.0.2.9")).toBe("192.0.2.9");
  });

  it("through the limiter with default settings: a client rewriting X-Forwarded-For stays one client", async () => {
    const limiter = new Limiter({ rules: [{ name: "login", capacity: 5, rate: "5/15m" }], backend: memoryBackend(), identity: { ipHeader: "x-forwarded-for" } });
    const attempt = (i: number): RequestSubject => ({ kind: "request", method: "POST", path: "/login", headers: new Headers({ "x-forwarded-for": `198.51.100.${i}, 203.0.113.7` }) });
    const verdicts = [];
    for (let i = 0; i < 20; i++) verdicts.push((await limiter.check(attempt(i))).kind);
    expect(verdicts.filter((kind) => kind === "allowed")).toHaveLength(5);
  });
});

describe("LIMITER_TRUSTED_PROXIES", () => {
  const parse = (vars: Record<string, string>) => parseGatewayConfig({ ORIGIN_URL: "https://origin.test", ...vars } as unknown as Env);

  it("defaults to 1 and sets the identity's trusted hops", () => {
    const defaults = parse({});
    expect(defaults.ok && defaults.config.limiter.identity.trustedHops).toBe(1);
    const two = parse({ LIMITER_IP_HEADER: "x-forwarded-for", LIMITER_TRUSTED_PROXIES: "2" });
    expect(two.ok && two.config.limiter.identity.trustedHops).toBe(2);
  });

  it.each([["0"], ["33"], ["two"], ["1.5"]])("refuses %s, naming the variable and the value", (value) => {
    const result = parse({ LIMITER_IP_HEADER: "x-forwarded-for", LIMITER_TRUSTED_PROXIES: value });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(describeConfigErrors(result.errors)).toEqual([`LIMITER_TRUSTED_PROXIES=${JSON.stringify(value)} must be an integer from 1 to 32`]);
  });

  it.each([[undefined], ["x-real-ip"], ["True-Client-IP"]])("refuses more than one with a header that holds one address (%s; unset: cf-connecting-ip)", (header) => {
    // A one-entry header read two from the right names nobody: every client would share one bucket.
    const result = parse({ ...(header !== undefined && { LIMITER_IP_HEADER: header }), LIMITER_TRUSTED_PROXIES: "2" });
    expect(result).toMatchObject({ ok: false, errors: [{ variable: "LIMITER_TRUSTED_PROXIES", value: "2" }] });
    if (!result.ok) expect(describeConfigErrors(result.errors)[0]).toContain(`${(header ?? "cf-connecting-ip").toLowerCase()} holds one address, so it must be 1`);
  });
});

describe("named ip values", () => {
  it("every spelling of an address is the value traffic produces; garbage is none", () => {
    const identity = DEFAULTS.identity;
    for (const spelling of ["2001:db8:1:2::7", "2001:0DB8:0001:0002:0:0:0:7", "[2001:db8:1:2::7]", "2001:db8:1:2::/64", "2001:db8:1:2::7/128"]) {
      expect(parseAddress(spelling, identity)).toEqual({ kind: "address", value: "2001:db8:1:2:0:0:0:0/64" });
    }
    expect(parseAddress("::ffff:203.0.113.7", identity)).toEqual({ kind: "address", value: "203.0.113.7" });
    expect(parseAddress("2001:db8::/32", identity)).toMatchObject({ kind: "network", family: 6, length: 32 });
    expect(parseAddress("203.0.113.0/24", identity)).toMatchObject({ kind: "network", family: 4, groups: [203, 0, 113, 0], length: 24 });
    for (const bad of ["nope", "203.0.113.256", "2001:db8::/129", "1.2.3.4/33", "2001:db8::1::2", "1.2.3.4/8/8"]) expect(parseAddress(bad, identity)).toBeUndefined();
  });
});

describe("the client-key hash memo", () => {
  it("keeps a bounded number of characters whatever the keys' size (5,000 keys of 16 KB)", async () => {
    const big = "k".repeat(16 * 1024);
    for (let i = 0; i < 5_000; i++) await hashedClientKey("header.x-api-key", [`${i}:${big}`]);
    // Values short enough to remember, but many: the bound holds by evicting the oldest.
    const medium = "m".repeat(4_000);
    for (let i = 0; i < 1_000; i++) await hashedClientKey("header.x-api-key", [`${i}:${medium}`]);
    // 5,000 × 16 KB would be 80 M characters; the memo keeps at most its bound (about 1 M).
    const stats = hashMemoStats();
    expect(stats.chars).toBeLessThanOrEqual(stats.maxChars);
    expect(stats.maxChars).toBeLessThanOrEqual(2 * 1024 * 1024);
  });

  it("keeps remembering short keys, within the bound, and hashes the same as without it", async () => {
    const first = await hashedClientKey("ip", ["203.0.113.7"]);
    for (let i = 0; i < 10_000; i++) await hashedClientKey("ip", [`10.0.${i >> 8}.${i & 255}`]);
    const stats = hashMemoStats();
    expect(stats.entries).toBeGreaterThan(0);
    expect(stats.chars).toBeLessThanOrEqual(stats.maxChars);
    expect(await hashedClientKey("ip", ["203.0.113.7"])).toBe(first);
    expect(first).toBe(`ip:${[...new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode("203.0.113.7")))].map((b) => b.toString(16).padStart(2, "0")).join("")}`);
  });
});
