import { describe, expect, it } from "vitest";
import { parseRulesJson } from "../../src/core/rules";
import { gatewayWith, randomIp } from "../support/gateway";

const valid = { name: "api", capacity: 10, rate: 1 };

describe("LIMITER_RULES validation names the rule and the field", () => {
  it.each([
    ["invalid JSON", "[{", "(all)", "(json)"],
    ["not a list", JSON.stringify(valid), "(all)", "(list)"],
    ["an unknown field", JSON.stringify([{ ...valid, burst: 3 }]), '"api" (#1)', "burst"],
    ["a missing capacity", JSON.stringify([{ name: "api", rate: 1 }]), '"api" (#1)', "capacity"],
    ["a zero rate", JSON.stringify([{ ...valid, rate: 0 }]), '"api" (#1)', "rate"],
    ["a negative rate", JSON.stringify([{ ...valid, rate: -5 }]), '"api" (#1)', "rate"],
    ["a bad shorthand", JSON.stringify([{ ...valid, rate: "10/1w" }]), '"api" (#1)', "rate"],
    ["a pattern that does not parse", JSON.stringify([{ ...valid, match: { path: "/users/(" } }]), '"api" (#1)', "match.path"],
    ["a duplicate name", JSON.stringify([valid, valid]), '"api" (#2)', "name"],
    ["a bad mode", JSON.stringify([{ ...valid, mode: "dry-run" }]), '"api" (#1)', "mode"],
    ["a cost above capacity", JSON.stringify([{ ...valid, cost: 11 }]), '"api" (#1)', "cost"],
    ["a bad key", JSON.stringify([{ ...valid, key: ["ip", "cookie"] }]), '"api" (#1)', "key"],
    ["bad methods", JSON.stringify([{ ...valid, match: { methods: [] } }]), '"api" (#1)', "match.methods"],
    ["an unnamed rule", JSON.stringify([{ capacity: 1, rate: 1 }]), "#1", "name"],
    ["a bad block period", JSON.stringify([{ ...valid, blockFor: "10 minutes" }]), '"api" (#1)', "blockFor"],
    ["a bad count", JSON.stringify([{ ...valid, count: ["4xx", 700] }]), '"api" (#1)', "count"],
    ["an empty count", JSON.stringify([{ ...valid, count: [] }]), '"api" (#1)', "count"],
    ["a block longer than 30 days", JSON.stringify([{ ...valid, blockFor: "31d" }]), '"api" (#1)', "blockFor"],
  ])("%s", async (_, text, rule, field) => {
    const parsed = parseRulesJson(text, "open");
    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    expect(parsed.errors).toContainEqual(expect.objectContaining({ rule, field }));

    // Through the gateway: a 500 naming LIMITER_RULES, the rule and the field.
    const response = await gatewayWith({ LIMITER_RULES: text })("/", { ip: randomIp() });
    expect(response.status).toBe(500);
    const detail = ((await response.json()) as { detail: string }).detail;
    expect(detail).toContain("LIMITER_RULES");
    expect(detail).toContain(rule);
    expect(detail).toContain(`"${field}"`);
  });

  it("accepts a realistic rule set", () => {
    const parsed = parseRulesJson(
      JSON.stringify([
        { name: "login", match: { path: "/login", methods: ["post"] }, key: "ip", capacity: 5, rate: "5/1m" },
        { name: "search", match: { path: "/search/*" }, key: "header:X-API-Key", capacity: 20, rate: 20 },
        { name: "per-ip-daily", key: "ip", capacity: 10000, rate: "10000/1d", mode: "shadow", failMode: "closed" },
        { name: "per-endpoint", key: ["ip", "route"], capacity: 3, rate: 0.5, cost: 1 },
      ]),
      "open",
    );
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.rules.map((r) => [r.name, r.mode, r.failMode])).toEqual([
      ["login", "enforce", "open"],
      ["search", "enforce", "open"],
      ["per-ip-daily", "shadow", "closed"],
      ["per-endpoint", "enforce", "open"],
    ]);
    expect(parsed.rules[0]!.match).toEqual({ path: "/login", methods: ["POST"] });
    expect(parsed.rules[0]!.policy).toMatchObject({ capacity: 5, refillTokens: 1, refillPeriodMs: 12_000 });
    expect(parsed.rules[1]!.key).toEqual([{ kind: "header", name: "x-api-key" }]);
  });
});
