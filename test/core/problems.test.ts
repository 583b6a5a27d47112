import { describe, expect, it } from "vitest";
import { compileRules } from "../../src/core/rules";
import { Limiter } from "../../src/core/limiter";
import { memoryBackend } from "../../src/core/memory-backend";
import { PROBLEM_TYPES, rateLimitedProblem } from "../../src/core/problems";
import { verdictResponse } from "../../src/core/verdict-response";
import type { Verdict } from "../../src/core/verdict";

const [rule] = (() => {
  const compiled = compileRules([{ name: "api", key: "bearer", capacity: 1, rate: "1/1m" }]);
  if (!compiled.ok) throw new Error("rules");
  return compiled.rules;
})();

describe("the problem catalogue", () => {
  it("every type is registered or an absolute non-path URI: none is a path the gateway would proxy", () => {
    for (const type of Object.values(PROBLEM_TYPES)) {
      expect(type).toMatch(/^(https:\/\/iana\.org\/assignments\/http-problem-types#quota-exceeded$|about:blank$|tag:sluice\.dev,2026:[a-z-]+$)/);
    }
  });

  it("a refusal is the draft's quota-exceeded problem with violated-policies and Retry-After", async () => {
    const limiter = new Limiter({ backend: memoryBackend(), rules: [{ name: "api", capacity: 1, rate: "1/1m" }] });
    const subject = { kind: "request", method: "GET", path: "/", headers: new Headers() } as const;
    await limiter.check(subject);
    const response = verdictResponse(await limiter.check(subject));
    expect(response?.status).toBe(429);
    expect(response?.headers.get("content-type")).toBe("application/problem+json");
    expect(response?.headers.get("Retry-After")).toBe("60");
    expect(response?.headers.get("Cache-Control")).toBeNull(); // no cache may store a 429 (RFC 6585 §4)
    expect(response?.headers.get("RateLimit")).toBe('"api";r=0;t=60');
    expect(await response?.json()).toEqual({
      type: PROBLEM_TYPES.quotaExceeded,
      title: "Too Many Requests",
      status: 429,
      detail: 'Rate limit "api" exceeded: retry in 60 s.',
      "violated-policies": ["api"],
    });
  });

  it("a repeated refusal reuses its body and headers only while nothing in them changed", async () => {
    const headers = (t: number) => [["RateLimit", `"api";r=0;t=${t}`] as const];
    const first = rateLimitedProblem(["api"], 2, headers(2));
    first.headers.set("X-Added-Later", "1"); // a later middleware's header stays on its own response
    const same = rateLimitedProblem(["api"], 2, headers(2));
    expect([...same.headers]).toEqual([...first.headers].filter(([name]) => name !== "x-added-later"));
    expect(rateLimitedProblem(["api"], 2, headers(1)).headers.get("RateLimit")).toBe('"api";r=0;t=1');
    const later = rateLimitedProblem(["api"], 1, headers(1));
    expect([later.headers.get("Retry-After"), later.headers.get("RateLimit")]).toEqual(["1", '"api";r=0;t=1']);
    expect(await later.json()).toMatchObject({ detail: 'Rate limit "api" exceeded: retry in 1 s.' });
    const other = rateLimitedProblem(["login", "api"], 1, headers(1));
    expect(await other.json()).toMatchObject({ "violated-policies": ["login", "api"] });
    expect(await rateLimitedProblem(["api"], 1, headers(1)).json()).toMatchObject({ "violated-policies": ["api"] });
  });

  it.each<[Verdict, number, string]>([
    [{ kind: "missing-key", rule: rule! }, 401, PROBLEM_TYPES.missingClientKey],
    [{ kind: "fail-closed", rule: rule!, backend: "upstash", reason: "timeout" }, 503, PROBLEM_TYPES.limiterUnavailable],
    [{ kind: "invalid-subject", field: "client.ip", message: "is missing" }, 400, PROBLEM_TYPES.invalidRequest],
    [{ kind: "cost-exceeds-capacity", rule: rule! }, 500, PROBLEM_TYPES.costExceedsCapacity],
    [{ kind: "backend-misconfigured", variable: "UPSTASH_REDIS_REST_TOKEN", message: "refused" }, 500, PROBLEM_TYPES.invalidConfiguration],
  ])("%j answers %i with its type", async (verdict, status, type) => {
    const response = verdictResponse(verdict);
    expect(response?.status).toBe(status);
    expect(response?.headers.get("Cache-Control")).toBe("no-store");
    expect(await response?.json()).toMatchObject({ type, status });
  });

  it("a missing bearer token asks for one", () => {
    expect(verdictResponse({ kind: "missing-key", rule: rule! })?.headers.get("WWW-Authenticate")).toBe("Bearer");
  });

  it.each<Verdict>([{ kind: "unmatched" }, { kind: "fail-open", rules: [], reason: "down" }, { kind: "allowed", outcomes: [], headers: [], degraded: false }])(
    "%j lets the request through",
    (verdict) => expect(verdictResponse(verdict)).toBeUndefined(),
  );
});
