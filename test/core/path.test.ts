import { describe, expect, it } from "vitest";
import { namedKeyValue, requestKeyValue } from "../../src/core/identity";
import { DEFAULTS } from "../../src/core/defaults";
import { Limiter } from "../../src/core/limiter";
import { memoryBackend } from "../../src/core/memory-backend";
import { normalizePath, pathSpellings, routePath } from "../../src/core/path";
import { compileRules, ruleMatches } from "../../src/core/rules";
import type { RequestSubject } from "../../src/core/subject";

const rule = (match: object) => {
  const compiled = compileRules([{ name: "r", match, capacity: 1, rate: 1 }]);
  if (!compiled.ok) throw new Error(JSON.stringify(compiled.errors));
  return compiled.rules[0]!;
};
const matches = (match: object, path: string, method = "POST", host = "example.com") => ruleMatches(rule(match), { method, pathname: normalizePath(path), headers: new Headers(), host });

describe("path spellings", () => {
  it("normalises escapes, slashes and dot segments", () => {
    expect(normalizePath("//api//%75sers/")).toBe("/api/users");
    expect(normalizePath("/a/./b/../../login")).toBe("/login");
    expect(normalizePath("/a/%2e%2E/login")).toBe("/login");
    expect(normalizePath("/")).toBe("/");
  });

  it("folds %2F, matrix parameters and format suffixes, keeping the path itself first", () => {
    expect(pathSpellings("/login")).toEqual(["/login"]);
    expect(pathSpellings("/login;jsessionid=1")).toEqual(["/login;jsessionid=1", "/login"]);
    expect(pathSpellings("/login.json")).toEqual(["/login.json", "/login"]);
    expect(pathSpellings("/api%2Flogin")).toEqual(["/api%2Flogin", "/api/login"]);
    expect(pathSpellings("/api;v=1/login.xml")).toEqual(["/api;v=1/login.xml", "/api/login.xml", "/api/login"]);
    expect(pathSpellings("/.well-known")).toEqual(["/.well-known"]);
    expect(routePath("/Login.JSON")).toBe("/login");
  });

  it.each([["/login;x"], ["/login;jsessionid=ABC"], ["/login.json"], ["/login.xml"], ["/login."], ["/login./"], ["/LOGIN.Json"], ["/api%2F..%2Flogin"], ["/x%2F..%2Flogin;a=b.json"]])(
    "a rule on /login covers %s",
    (path) => {
      expect(matches({ path: "/login", methods: ["POST"] }, path)).toBe(true);
    },
  );

  it("a rule on an API path covers %2F spellings; a rule is never lost by folding", () => {
    expect(matches({ path: "/api/login" }, "/api%2Flogin")).toBe(true);
    expect(matches({ path: "/api/login" }, "/api%2flogin.json")).toBe(true);
    // An origin that keeps %2F inside a segment (Express) routes this to /files/:name: still covered.
    expect(matches({ path: "/files/:name" }, "/files/a%2Fb")).toBe(true);
    expect(matches({ path: "/report.pdf" }, "/report.pdf")).toBe(true);
    expect(matches({ path: "/report.pdf" }, "/report.pdf;x")).toBe(true);
    expect(matches({ path: "/users/:id" }, "/users/7.json")).toBe(true);
    // Other paths stay other paths.
    expect(matches({ path: "/login" }, "/logins")).toBe(false);
    expect(matches({ path: "/login" }, "/login/x")).toBe(false);
    expect(matches({ path: "/login" }, "/.login")).toBe(false);
  });

  it("GET covers HEAD; other methods stay apart", () => {
    expect(matches({ path: "/search", methods: ["GET"] }, "/search", "HEAD")).toBe(true);
    expect(matches({ path: "/search", methods: ["GET"] }, "/search", "head")).toBe(true);
    expect(matches({ path: "/login", methods: ["POST"] }, "/login", "HEAD")).toBe(false);
    expect(matches({ path: "/login", methods: ["HEAD"] }, "/login", "GET")).toBe(false);
  });

  it("a POST counts as the method its override header names (Rack, Symfony and ASP.NET route it so)", () => {
    const deleting = { path: "/users/:id", methods: ["DELETE"] };
    const post = (headers: Record<string, string>) => ruleMatches(rule(deleting), { method: "POST", pathname: "/users/7", headers: new Headers(headers), host: "example.com" });
    expect(post({})).toBe(false);
    for (const name of ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"]) expect(post({ [name]: "delete" })).toBe(true);
    expect(post({ "X-HTTP-Method-Override": "PATCH" })).toBe(false);
    // Only a POST is overridden (frameworks ignore the header on other methods); GET still covers HEAD.
    expect(ruleMatches(rule(deleting), { method: "PUT", pathname: "/users/7", headers: new Headers({ "X-HTTP-Method-Override": "DELETE" }), host: "example.com" })).toBe(false);
    expect(ruleMatches(rule({ methods: ["GET"] }), { method: "POST", pathname: "/", headers: new Headers({ "X-HTTP-Method-Override": "HEAD" }), host: "example.com" })).toBe(true);
  });

  it("a host with a trailing dot is the same host", () => {
    expect(matches({ hosts: ["api.example.com"] }, "/", "GET", "api.example.com.")).toBe(true);
    expect(matches({ hosts: ["*.example.com"] }, "/", "GET", "API.example.com.")).toBe(true);
    expect(matches({ hosts: ["api.example.com."] }, "/", "GET", "api.example.com")).toBe(true);
    expect(matches({ hosts: ["api.example.com"] }, "/", "GET", "api.example.com..")).toBe(false);
  });

  it("route keys: every spelling of an endpoint is one value, HEAD is GET, and a named route agrees", () => {
    const route = { kind: "route" } as const;
    const value = (method: string, path: string) => requestKeyValue({ kind: "request", method, path, headers: new Headers() }, route, DEFAULTS.identity);
    for (const path of ["/login", "/login;x", "/login.json", "/login.", "//Login/", "/x/../login"]) expect(value("POST", path)).toBe("POST /login");
    expect(value("HEAD", "/items")).toBe("GET /items");
    expect(namedKeyValue(route, "head /Items.json", DEFAULTS.identity)).toBe("GET /items");
  });
});

describe("through the limiter, default settings", () => {
  const subject = (method: string, path: string, host = "api.example.com"): RequestSubject => ({
    kind: "request",
    method,
    path,
    host,
    headers: new Headers({ "cf-connecting-ip": "203.0.113.7" }),
  });

  it("no spelling of /login gets past a 5-per-15-minutes login rule or mints a bucket", async () => {
    const limiter = new Limiter({
      backend: memoryBackend(),
      rules: [
        { name: "login", match: { path: "/login", methods: ["POST"], hosts: ["api.example.com"] }, key: ["ip", "route"], capacity: 5, rate: "5/15m" },
        { name: "search", match: { path: "/search", methods: ["GET"] }, capacity: 2, rate: "2/15m" },
      ],
    });
    const spellings = ["/login", "/login;x", "/login.json", "/login.", "/api%2F..%2Flogin", "/LOGIN.xml", "/login;a.html"];
    const verdicts = [];
    for (const path of spellings) verdicts.push((await limiter.check(subject("POST", path))).kind);
    verdicts.push((await limiter.check(subject("POST", "/login", "api.example.com."))).kind);
    expect(verdicts.filter((kind) => kind === "allowed")).toHaveLength(5);
    expect(verdicts.filter((kind) => kind === "unmatched")).toHaveLength(0);

    const reads = [];
    for (const method of ["GET", "HEAD", "HEAD", "GET"]) reads.push((await limiter.check(subject(method, "/search"))).kind);
    expect(reads).toEqual(["allowed", "allowed", "refused", "refused"]);
  });
});
