import { describe, expect, it } from "vitest";
import { compileRules, parseRulesJson, ruleMatches, type RuleSpec } from "../../src/core/rules";

describe("one rule schema for code and LIMITER_RULES", () => {
  const specs = [
    { name: "api", key: "header:X-API-Key", capacity: 5, rate: "1/1m" },
    { name: "login", match: { path: "/login", methods: ["post"] }, capacity: 5, rate: 0.5, failMode: "closed" },
  ] satisfies RuleSpec[];

  it("code and JSON give the same rules, defaults filled in", () => {
    const fromCode = compileRules(specs, "open");
    const fromJson = parseRulesJson(JSON.stringify(specs), "open");
    expect(fromCode).toEqual(fromJson);
    if (!fromCode.ok) return;
    const [api, login] = fromCode.rules;
    expect(api).toMatchObject({ key: [{ kind: "header", name: "x-api-key" }], keyName: "header.x-api-key", mode: "enforce", failMode: "open", match: {} });
    expect(api?.policy).toEqual({ name: "api", capacity: 5, refillTokens: 1, refillPeriodMs: 60_000, cost: 1 });
    expect(login).toMatchObject({ key: [{ kind: "ip" }], failMode: "closed", match: { path: "/login", methods: ["POST"] } });
    // The rule as written, normalised: compiling it again gives the same rule.
    expect(
      compileRules(
        fromCode.rules.map((rule) => rule.spec),
        "closed",
      ),
    ).toEqual(fromCode);
  });

  it("code and JSON get the same errors", () => {
    const bad = [{ name: "api", capacity: 2, rate: "1/1m", cost: 3, burst: 1 }];
    const fromCode = compileRules(bad);
    expect(fromCode).toEqual(parseRulesJson(JSON.stringify(bad)));
    expect(fromCode).toMatchObject({ ok: false, errors: [{ field: "burst" }, { field: "cost", message: "3 exceeds capacity 2: no request could ever pass" }] });
  });

  it("a cost out of range names the range, for every kind of rule", () => {
    const message = "must be an integer from 1 to 1000000000";
    for (const cost of [0, 1.5, 2_000_000_000, "2"]) {
      for (const rule of [
        { name: "bucket", capacity: 2, rate: 1, cost },
        { name: "window", algorithm: "fixed-window", limit: 2, window: "1m", cost },
        { name: "quota", algorithm: "calendar", limit: 2, period: "day", cost },
      ]) {
        expect(compileRules([rule])).toMatchObject({ ok: false, errors: [{ field: "cost", message }] });
      }
    }
  });

  it("the fail mode given applies to rules that set none", () => {
    const compiled = compileRules([{ name: "a", capacity: 1, rate: 1 }], "closed");
    expect(compiled.ok && compiled.rules[0]?.failMode).toBe("closed");
  });
});

describe("richer matching: headers and hosts", () => {
  const compile = (match: object) => {
    const compiled = compileRules([{ name: "r", match, capacity: 1, rate: 1 }]);
    if (!compiled.ok) throw new Error(JSON.stringify(compiled.errors));
    return compiled.rules[0]!;
  };
  const request = (headers: Record<string, string>, host = "api.example.com") => ({ method: "GET", pathname: "/", headers: new Headers(headers), host });

  it("matches an exact header value, or any value with *", () => {
    const free = compile({ headers: { "X-Plan": "free" } });
    expect(free.match.headers).toEqual({ "x-plan": "free" });
    expect(ruleMatches(free, request({ "x-plan": "free" }))).toBe(true);
    expect(ruleMatches(free, request({ "x-plan": "pro" }))).toBe(false);
    expect(ruleMatches(free, request({}))).toBe(false);
    const present = compile({ headers: { "x-plan": "*" } });
    expect(ruleMatches(present, request({ "x-plan": "anything" }))).toBe(true);
    expect(ruleMatches(present, request({}))).toBe(false);
  });

  it("matches hosts exactly or by subdomain, case-insensitively", () => {
    const rule = compile({ hosts: ["API.example.com", "*.internal.example"] });
    expect(ruleMatches(rule, request({}, "api.example.com"))).toBe(true);
    expect(ruleMatches(rule, request({}, "Api.Example.Com"))).toBe(true);
    expect(ruleMatches(rule, request({}, "a.internal.example"))).toBe(true);
    expect(ruleMatches(rule, request({}, "internal.example"))).toBe(false);
    expect(ruleMatches(rule, request({}, "www.example.com"))).toBe(false);
  });

  it.each([
    [{ headers: {} }, "match.headers"],
    [{ headers: { "bad header": "x" } }, "match.headers.bad header"],
    [{ headers: { "x-plan": "" } }, "match.headers.x-plan"],
    [{ hosts: [] }, "match.hosts"],
    [{ hosts: ["http://api.example.com"] }, "match.hosts"],
    [{ cookies: {} }, "match.cookies"],
  ])("refuses %j naming %s", (match, field) => {
    expect(compileRules([{ name: "r", match, capacity: 1, rate: 1 }])).toMatchObject({ ok: false, errors: [{ field }] });
  });
});

describe("concurrency rules", () => {
  it("compile with a limit and a lease (default 30 s), their own kind beside bucket rules", () => {
    const compiled = compileRules([
      { name: "inflight", key: "header:x-api-key", concurrency: 2 },
      { name: "api", capacity: 1, rate: 1 },
    ]);
    expect(compiled).toMatchObject({ ok: true, rules: [{ name: "api" }], concurrency: [{ name: "inflight", limit: 2, leaseMs: 30_000, spec: { concurrency: 2, lease: "30s" } }] });
    if (compiled.ok) expect(compileRules([...compiled.rules, ...compiled.concurrency].map((rule) => rule.spec))).toEqual(compiled);
    expect(compileRules([{ name: "inflight", concurrency: 5, lease: "2m" }])).toMatchObject({ ok: true, concurrency: [{ leaseMs: 120_000 }] });
  });

  it("errors name the rule and the field", () => {
    const errors = (spec: object) => {
      const compiled = compileRules([spec]);
      return compiled.ok ? [] : compiled.errors.map(({ rule, field }) => `${rule} ${field}`);
    };
    expect(errors({ name: "c", concurrency: 0 })).toEqual(['"c" (#1) concurrency']);
    expect(errors({ name: "c", concurrency: 2.5 })).toEqual(['"c" (#1) concurrency']);
    expect(errors({ name: "c", concurrency: 2, capacity: 5, rate: 1 })).toEqual(['"c" (#1) capacity', '"c" (#1) rate']);
    expect(errors({ name: "c", concurrency: 2, lease: "500ms" })).toEqual(['"c" (#1) lease']);
    expect(errors({ name: "c", concurrency: 2, lease: "2h" })).toEqual(['"c" (#1) lease']);
    expect(errors({ name: "b", capacity: 5, rate: 1, lease: "30s" })).toEqual(['"b" (#1) lease']);
    expect(
      compileRules([
        { name: "x", concurrency: 1 },
        { name: "x", capacity: 1, rate: 1 },
      ]),
    ).toMatchObject({ ok: false, errors: [{ field: "name", message: "is used by another rule" }] });
  });
});
