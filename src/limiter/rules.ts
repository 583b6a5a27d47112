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
 * Whether a rule covers a request, given its method and path.
 *
 * @example
 * ruleMatches({ ...rule, match: { path: "/login", methods: ["POST"] } }, "POST", "/login"); // true
 */
export function ruleMatches(rule: Rule, method: string, pathname: string): boolean {
  const { path, methods } = rule.match;
  if (methods !== undefined && !methods.includes(method)) return false;
  if (path === undefined) return true;
  let pattern = patterns.get(path);
  if (pattern === undefined) patterns.set(path, (pattern = new URLPattern({ pathname: path })));
  return pattern.test({ pathname });
}
