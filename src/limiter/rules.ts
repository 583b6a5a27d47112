import type { KeyPart } from "./identity";
import type { NamedPolicy } from "./policy";

/** What a backend failure does to a request a rule covers: allow it, or refuse with 503. */
export type FailMode = "open" | "closed";

/** Which requests a rule covers; an empty match covers every request. */
export interface RouteMatch {
  /** A URLPattern pathname, e.g. `/api/*` or `/users/:id`. */
  readonly path?: string;
  /** Upper-case methods; absent = any method. */
  readonly methods?: readonly string[];
}

/** One named limit: which requests, whose bucket, how large and how fast, and whether it refuses. */
export interface Rule {
  readonly name: string;
  readonly match: RouteMatch;
  readonly key: readonly KeyPart[];
  readonly policy: NamedPolicy;
  /** `shadow` rules are charged and reported but never refuse. */
  readonly mode: "enforce" | "shadow";
  readonly failMode: FailMode;
}

// URLPattern compiles once per pattern text, not per request.
const patterns = new Map<string, URLPattern>();

/**
 * Whether a rule covers a request, given its method and its path as {@link normalizePath}
 * returns it. Paths match case-insensitively: many origins route `/LOGIN` to `/login`, and a
 * limit must not be dodged by spelling.
 *
 * @example
 * ruleMatches({ ...rule, match: { path: "/login", methods: ["POST"] } }, "POST", "/login"); // true
 */
export function ruleMatches(rule: Rule, method: string, pathname: string): boolean {
  const { path, methods } = rule.match;
  if (methods !== undefined && !methods.includes(method.toUpperCase())) return false;
  if (path === undefined) return true;
  let pattern = patterns.get(path);
  if (pattern === undefined) patterns.set(path, (pattern = new URLPattern({ pathname: path }, { ignoreCase: true })));
  return pattern.test({ pathname });
}

/**
 * The path rules see: percent-encoded unreserved characters decoded, repeated slashes
 * collapsed, a trailing slash dropped, so `/%6Cogin`, `//login` and `/login/` are all `/login`.
 *
 * @example
 * normalizePath("//api//%75sers/"); // "/api/users"
 */
export function normalizePath(pathname: string): string {
  const decoded = pathname.replace(/%(2[DdEe]|3[0-9]|[46][1-9A-Fa-f]|[57][0-9Aa]|5[Ff]|7[Ee])/g, (escape) =>
    String.fromCharCode(parseInt(escape.slice(1), 16)),
  );
  const collapsed = decoded.replace(/\/{2,}/g, "/");
  return collapsed.length > 1 && collapsed.endsWith("/") ? collapsed.slice(0, -1) : collapsed;
}
