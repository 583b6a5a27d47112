import { describe, expect, it } from "vitest";
import { listOverrides, putOverride } from "../../src/gateway/control";
import { DEFAULTS } from "../../src/core/defaults";
import { Limiter } from "../../src/core/limiter";
import { memoryBackend } from "../../src/core/memory-backend";
import { compileOverride } from "../../src/core/overrides";
import { compileRules } from "../../src/core/rules";
import type { RequestSubject } from "../../src/core/subject";

const compiled = compileRules([
  { name: "api", key: "ip", capacity: 2, rate: "2/1h" },
  { name: "routes", key: ["ip", "route"], capacity: 2, rate: "2/1h" },
]);
if (!compiled.ok) throw new Error("rules");
const rules = compiled.rules;
const override = (client: Record<string, string>, rule = "api", identity = DEFAULTS.identity) => compileOverride(rules, { rule, client, capacity: 100, rate: "100/1h" }, identity);
const canonicalIp = (client: Record<string, string>) => {
  const result = override(client);
  return result.ok ? result.override.record.client.ip : `refused: ${result.field}`;
};

describe("IPv6 and IPv4 network overrides", () => {
  it.each([
    ["2001:db8:*", "2001:db8:*"],
    ["2001:0DB8:*", "2001:db8:*"],
    ["2001:DB8:00AB:*", "2001:db8:ab:*"],
    ["2001:db8::/32", "2001:db8:*"],
    ["2001:0db8:0000::/48", "2001:db8:0:*"],
    ["2001:DB8:1:2:3::/32", "2001:db8:*"],
    ["203.0.113.*", "203.0.113.*"],
    ["203.000.113.*", "203.0.113.*"],
    ["203.0.113.0/24", "203.0.113.*"],
    ["10.0.0.0/8", "10.*"],
    ["::ffff:203.0.113.0/120", "203.0.113.*"],
  ])("%s is stored as the network traffic matches: %s", (written, stored) => {
    expect(canonicalIp({ ip: written })).toBe(stored);
  });

  it("an address in any spelling, or its own /64, is an exact override", () => {
    for (const written of ["2001:DB8:1:2::7", "2001:0db8:0001:0002::", "2001:db8:1:2::/64", "2001:db8:1:2::/96", "[2001:db8:1:2::9]"]) {
      const result = override({ ip: written });
      expect(result.ok && result.override.kind).toBe("exact");
      expect(result.ok && result.override.record.client.ip).toBe("2001:db8:1:2:0:0:0:0/64");
    }
  });

  it.each([
    ["2001:db8::*", "a * after :: (ambiguous)"],
    ["2001:db*", "a part of a group"],
    ["203.0.11*", "a part of a group"],
    ["2001:db8::/20", "off a group boundary"],
    ["203.0.112.0/20", "off a group boundary"],
    ["2001:db8:1:2:3:*", "longer than the /64 grouping: never matches"],
    ["not-an-address", "no address"],
    ["0.0.0.0/0", "everyone"],
    ["*", "everyone"],
    ["203.0.113.256", "no address"],
  ])("%s is refused (%s) with a 400 naming client.ip", (written) => {
    expect(override({ ip: written })).toMatchObject({ ok: false, field: "client.ip" });
  });

  it("a route prefix is brought to the spelling route values have; one that can never match is refused", () => {
    const route = (text: string) => {
      const result = override({ ip: "203.0.113.7", route: text }, "routes");
      return result.ok ? result.override.record.client.route : `refused: ${result.field}`;
    };
    expect(route("post /API/*")).toBe("POST /api/*");
    expect(route("head //Items*")).toBe("GET /items*");
    expect(route("/login*")).toBe("refused: client.route");
    expect(route("POST /login;*")).toBe("refused: client.route");
  });

  it("through the limiter: a compressed, upper-case IPv6 prefix override applies to the network's clients only", async () => {
    const limiter = new Limiter({ backend: memoryBackend(), rules: [{ name: "api", key: "ip", capacity: 2, rate: "2/1h" }] });
    const put = await putOverride(limiter, { rule: "api", client: { ip: "2001:0DB8:00AB::/48" }, capacity: 50, rate: "50/1h" });
    expect(put).toMatchObject({ ok: true, override: { kind: "prefix", client: { ip: "2001:db8:ab:*" } } });
    expect((await listOverrides(limiter)).overrides).toMatchObject([{ kind: "prefix" }]);
    const from = (ip: string): RequestSubject => ({ kind: "request", method: "GET", path: "/", headers: new Headers({ "cf-connecting-ip": ip }) });
    const inside = await limiter.check(from("2001:db8:ab:1::7"));
    expect(inside).toMatchObject({ kind: "allowed", outcomes: [{ policy: { capacity: 50 } }] });
    const outside = await limiter.check(from("2001:db8:ac:1::7"));
    expect(outside).toMatchObject({ kind: "allowed", outcomes: [{ policy: { capacity: 2 } }] });
  });
});
