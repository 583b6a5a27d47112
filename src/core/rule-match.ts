import { isHeaderName } from "./key-parts";
import { pathSpellings } from "./path";
import { isObject } from "./units";

/** Which requests a rule covers; an empty match covers every request. */
export interface RouteMatch {
  /** A URLPattern pathname, e.g. `/api/*` or `/users/:id`. */
  readonly path?: string;
  /** Upper-case methods; absent = any method. */
  readonly methods?: readonly string[];
  /** Lower-case header names and the value each must have (`*`: any value, but present). */
  readonly headers?: Readonly<Record<string, string>>;
  /** Lower-case hosts; `*.example.com` covers subdomains of example.com. */
  readonly hosts?: readonly string[];
}

/** What rule matching looks at in a request. */
export interface MatchableRequest {
  readonly method: string;
  /** As `normalizePath` returns it. */
  readonly pathname: string;
  readonly headers: Headers;
  /** The host the request was for, without port; empty when unknown. */
  readonly host: string;
}

const MATCH_FIELDS = ["path", "methods", "headers", "hosts"] as const;
const HOST = /^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/;
const METHOD = /^[A-Z]{1,16}$/;

// URLPattern compiles once per pattern text, not per request.
const patterns = new Map<string, URLPattern>();

/**
 * Whether a rule covers a request: method, path (as `normalizePath` returns it), headers and host.
 * Paths match case-insensitively, and in every spelling an origin may route to the same handler
 * (`pathSpellings`: `/login;x`, `/login.json`, `/api%2Flogin`): a limit must not be dodged by
 * spelling. `GET` covers `HEAD` (the same handler, without the body), a `POST` also counts as the
 * method an `X-HTTP-Method-Override` (or `X-HTTP-Method`, `X-Method-Override`) header names, and a
 * host's trailing dot (`example.com.`, the same name) is ignored.
 *
 * @example
 * ruleMatches(rule, { method: "POST", pathname: "/login", headers, host: "api.example.com" }); // true
 */
export function ruleMatches(rule: { readonly match: RouteMatch }, request: MatchableRequest): boolean {
  const { path, methods, headers, hosts } = rule.match;
  if (methods !== undefined && !methodMatches(methods, request.method.toUpperCase(), request.headers)) return false;
  if (hosts !== undefined && !hosts.some((host) => hostMatches(host, request.host))) return false;
  if (headers !== undefined) {
    for (const [name, value] of Object.entries(headers)) {
      const given = request.headers.get(name);
      if (given === null || (value !== "*" && given.trim() !== value)) return false;
    }
  }
  if (path === undefined) return true;
  let pattern = patterns.get(path);
  if (pattern === undefined) patterns.set(path, (pattern = new URLPattern({ pathname: path }, { ignoreCase: true })));
  const compiled = pattern;
  return pathSpellings(request.pathname).some((pathname) => compiled.test({ pathname }));
}

function methodMatches(methods: readonly string[], method: string, headers: Headers): boolean {
  if (listed(methods, method)) return true;
  // A POST may carry the method its origin routes it as (Rack, Symfony, ASP.NET honour these):
  // a rule on DELETE must not be dodged by a POST that says DELETE.
  if (method !== "POST") return false;
  for (const name of METHOD_OVERRIDE_HEADERS) {
    const override = headers.get(name)?.trim().toUpperCase();
    if (override !== undefined && listed(methods, override)) return true;
  }
  return false;
}

function listed(methods: readonly string[], method: string): boolean {
  return methods.includes(method) || (method === "HEAD" && methods.includes("GET"));
}

/** Headers frameworks read a POST's real method from. */
const METHOD_OVERRIDE_HEADERS = ["x-http-method-override", "x-http-method", "x-method-override"] as const;

function hostMatches(pattern: string, host: string): boolean {
  const name = host.toLowerCase().replace(/\.$/, "");
  return pattern.startsWith("*.") ? name.endsWith(pattern.slice(1)) && name.length > pattern.length - 1 : name === pattern;
}

/**
 * Checks a rule's `match` (path pattern, methods, headers, hosts), reporting each problem with its field.
 *
 * @example
 * parseMatch({ path: "/login", methods: ["post"] }, fail); // { path: "/login", methods: ["POST"] }
 */
export function parseMatch(value: unknown, fail: (field: string, message: string) => undefined): RouteMatch | undefined {
  if (value === undefined) return {};
  if (!isObject(value)) return fail("match", "must be an object with path, methods, headers and/or hosts");
  for (const field of Object.keys(value)) {
    if (!(MATCH_FIELDS as readonly string[]).includes(field)) fail(`match.${field}`, `is not a match field (known: ${MATCH_FIELDS.join(", ")})`);
  }
  let headers: Record<string, string> | undefined;
  if (value.headers !== undefined) {
    if (!isObject(value.headers) || Object.keys(value.headers).length === 0) return fail("match.headers", 'must be an object of header names and values, e.g. {"x-plan": "free"} ("*": present)');
    headers = {};
    for (const [name, wanted] of Object.entries(value.headers)) {
      if (!isHeaderName(name)) return fail(`match.headers.${name}`, "is not a header name");
      if (typeof wanted !== "string" || wanted.trim() === "") return fail(`match.headers.${name}`, 'must be a value to match, or "*" for any');
      headers[name.toLowerCase()] = wanted.trim();
    }
  }
  let hosts: string[] | undefined;
  if (value.hosts !== undefined) {
    const list: unknown[] = Array.isArray(value.hosts) ? value.hosts : [];
    // `example.com.` is `example.com` (the root's dot), as requests are matched.
    const lower = list.map((h) => (typeof h === "string" ? h.trim().toLowerCase().replace(/\.$/, "") : ""));
    if (lower.length === 0 || !lower.every((h) => HOST.test(h))) return fail("match.hosts", 'must be a non-empty list of host names, e.g. ["api.example.com", "*.example.com"]');
    hosts = lower;
  }
  let path: string | undefined;
  if (value.path !== undefined) {
    if (typeof value.path !== "string" || !value.path.startsWith("/")) return fail("match.path", "must be a path pattern starting with /");
    try {
      new URLPattern({ pathname: value.path });
      path = value.path;
    } catch (error) {
      return fail("match.path", `does not parse as a URL pattern: ${(error as Error).message}`);
    }
  }
  let methods: string[] | undefined;
  if (value.methods !== undefined) {
    const list: unknown[] = Array.isArray(value.methods) ? value.methods : [];
    const upper = list.map((m) => (typeof m === "string" ? m.toUpperCase() : ""));
    if (upper.length === 0 || !upper.every((m) => METHOD.test(m))) {
      return fail("match.methods", 'must be a non-empty list of HTTP methods, e.g. ["GET", "POST"]');
    }
    methods = upper;
  }
  return { ...(path !== undefined && { path }), ...(methods !== undefined && { methods }), ...(headers !== undefined && { headers }), ...(hosts !== undefined && { hosts }) };
}
