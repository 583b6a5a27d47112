import type { NamedPolicy } from "./policy";
import type { Rule } from "./rules";

/**
 * The catalogue of every problem (RFC 9457) the limiter and the gateway answer with. `type` is
 * the IETF rate-limit draft's registered URI for an exceeded quota, `about:blank` where the
 * status says it all, and otherwise a `tag:` URI (RFC 4151: an identifier, never fetched, never a
 * path on the gateway) that the "Problem types" table of docs/configuration.md documents.
 */
export const PROBLEM_TYPES = {
  /** 429: draft-ietf-httpapi-ratelimit-headers, with the `violated-policies` member. */
  quotaExceeded: "https://iana.org/assignments/http-problem-types#quota-exceeded",
  /** 503: the store could not decide and a rule fails closed. */
  limiterUnavailable: "tag:sluice.dev,2026:limiter-unavailable",
  /** 500: a variable or a rule does not parse, or the store refused the gateway's credentials. */
  invalidConfiguration: "tag:sluice.dev,2026:invalid-configuration",
  /** 500: a rule charges more than its bucket holds. */
  costExceedsCapacity: "tag:sluice.dev,2026:cost-exceeds-capacity",
  /** 400 or 401: the request lacks the header or token a rule identifies clients by. */
  missingClientKey: "tag:sluice.dev,2026:missing-client-key",
  /** 401: an admin or metrics route without the right bearer token. */
  unauthorized: "tag:sluice.dev,2026:unauthorized",
  /** 400: a body or parameter the limiter cannot use; `field` names it. */
  invalidRequest: "tag:sluice.dev,2026:invalid-request",
  /** 502: the origin could not be reached. */
  originUnreachable: "tag:sluice.dev,2026:origin-unreachable",
  /** 504: the origin sent no response headers in time. */
  originTimeout: "tag:sluice.dev,2026:origin-timeout",
  /** 404: a path under the reserved `/__limiter/` prefix that is no endpoint. */
  notFound: "about:blank",
  /** 405: a reserved endpoint asked with a method it does not take; `Allow` lists those it does. */
  methodNotAllowed: "about:blank",
  /** 500: the gateway failed on a request (a bug): its log line says why. */
  internalError: "about:blank",
} as const;

/** A problem details object; extension members sit beside the standard ones. */
export interface Problem {
  readonly type: (typeof PROBLEM_TYPES)[keyof typeof PROBLEM_TYPES];
  readonly title: string;
  readonly status: number;
  readonly detail: string;
  readonly [extension: string]: unknown;
}

/** A header list as responses take it. */
export type HeaderList = readonly (readonly [string, string])[];

/**
 * 429: every violated (enforced, refusing) rule is named in `violated-policies`.
 *
 * @example
 * rateLimitedProblem(["login"], 30, [["RateLimit", '"login";r=0;t=30']]);
 */
export function rateLimitedProblem(violated: readonly string[], retryAfterSeconds: number, headers: HeaderList): Response {
  // A flood repeats the same refusal: its body and headers are built once, until one of them
  // changes (the wait, each second). A built Headers object is copied into each response faster
  // than a record is converted (docs/profile.md, "The flood, counted").
  const last = lastRefusal;
  if (last !== undefined && last.retryAfterSeconds === retryAfterSeconds && sameStrings(last.violated, violated) && sameHeaders(last.headerList, headers)) {
    return new Response(last.body, { status: 429, headers: last.headers });
  }
  const names = violated.map((name) => `"${name}"`).join(", ");
  const body = JSON.stringify({
    type: PROBLEM_TYPES.quotaExceeded,
    title: "Too Many Requests",
    status: 429,
    detail: `Rate limit ${names} exceeded: retry in ${retryAfterSeconds} s.`,
    "violated-policies": violated,
  } satisfies Problem);
  lastRefusal = { violated, retryAfterSeconds, headerList: headers, body, headers: new Headers(problemHeaders(headers, String(retryAfterSeconds))) };
  return new Response(body, { status: 429, headers: lastRefusal.headers });
}

/** The last 429 built, and what it was built from. */
let lastRefusal: { readonly violated: readonly string[]; readonly retryAfterSeconds: number; readonly headerList: HeaderList; readonly body: string; readonly headers: Headers } | undefined;

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameHeaders(a: HeaderList, b: HeaderList): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i]?.[0] !== b[i]?.[0] || a[i]?.[1] !== b[i]?.[1]) return false;
  return true;
}

/**
 * 503: the store did not answer, and `rule` fails closed (or, for a control operation, `what` could not be done).
 *
 * @example
 * limiterUnavailableProblem("upstash", 'rule "payments" fails closed');
 */
export function limiterUnavailableProblem(backendName: string, consequence: string): Response {
  return problemResponse({
    type: PROBLEM_TYPES.limiterUnavailable,
    title: "Rate limiter unavailable",
    status: 503,
    detail: `The rate-limit store (${backendName}) did not answer, and ${consequence}.`,
  });
}

/**
 * 401 with `WWW-Authenticate: Bearer`: a missing or wrong token (which one is not said).
 *
 * @example
 * unauthorizedProblem("the admin API");
 */
export function unauthorizedProblem(what: string): Response {
  return problemResponse({ type: PROBLEM_TYPES.unauthorized, title: "Unauthorized", status: 401, detail: `${what} needs Authorization: Bearer <token>.` }, [
    ["WWW-Authenticate", 'Bearer realm="sluice"'],
  ]);
}

/**
 * 500: each line names a variable (or rule field) and its value; `errors` carries them structured.
 *
 * @example
 * invalidConfigurationProblem(['LIMITER_CAPACITY="abc" must be an integer from 1 to 1000000000']);
 */
export function invalidConfigurationProblem(lines: readonly string[], errors?: readonly unknown[]): Response {
  return problemResponse({
    type: PROBLEM_TYPES.invalidConfiguration,
    title: "Invalid gateway configuration",
    status: 500,
    detail: lines.join("; "),
    ...(errors !== undefined && { errors }),
  });
}

/**
 * 500: no wait would cure this; the configuration must change.
 *
 * @example
 * costExceedsCapacityProblem({ name: "exports", capacity: 5, cost: 10, refillTokens: 1, refillPeriodMs: 1000 });
 */
export function costExceedsCapacityProblem(policy: NamedPolicy): Response {
  return problemResponse({
    type: PROBLEM_TYPES.costExceedsCapacity,
    title: "Request cost exceeds the bucket",
    status: 500,
    detail: `Policy "${policy.name}" charges ${policy.cost} tokens but holds only ${policy.capacity}: no request can pass. Fix the configuration.`,
  });
}

/**
 * 401 with `WWW-Authenticate: Bearer` when the rule keys on a bearer token, 400 otherwise.
 *
 * @example
 * missingClientKeyProblem(rule); // 400: Rate limit "api" needs the x-api-key header to identify the client.
 */
export function missingClientKeyProblem(rule: Pick<Rule, "name" | "key">): Response {
  const bearer = rule.key.some((part) => part.kind === "bearer");
  const missing = rule.key.map((part) => (part.kind === "header" ? `the ${part.name} header` : part.kind === "bearer" ? "a bearer token" : part.kind)).join(" and ");
  return problemResponse(
    {
      type: PROBLEM_TYPES.missingClientKey,
      title: bearer ? "Unauthorized" : "Bad Request",
      status: bearer ? 401 : 400,
      detail: `Rate limit "${rule.name}" needs ${missing} to identify the client.`,
    },
    bearer ? [["WWW-Authenticate", "Bearer"]] : [],
  );
}

/**
 * 400: `field` of the request (a body member, a parameter, a named client's key part) is unusable.
 *
 * @example
 * invalidRequestProblem("client.ip", 'is missing: rule "login" keys on ip');
 */
export function invalidRequestProblem(field: string, message: string): Response {
  return problemResponse({ type: PROBLEM_TYPES.invalidRequest, title: "Bad Request", status: 400, detail: `${field} ${message}`, field });
}

/** 502: the origin could not be reached. */
export function originUnreachableProblem(): Response {
  return problemResponse({ type: PROBLEM_TYPES.originUnreachable, title: "Bad Gateway", status: 502, detail: "The origin could not be reached." });
}

/** 504: the origin sent no response headers within `timeoutMs`. */
export function originTimeoutProblem(timeoutMs: number): Response {
  return problemResponse({
    type: PROBLEM_TYPES.originTimeout,
    title: "Gateway Timeout",
    status: 504,
    detail: `The origin did not answer within ${timeoutMs} ms.`,
  });
}

/** 404 for a reserved path that is no endpoint. */
export function notFoundProblem(path: string, detail = `${path} is not a limiter endpoint; /__limiter/ is reserved and never proxied.`): Response {
  return problemResponse({ type: PROBLEM_TYPES.notFound, title: "Not Found", status: 404, detail });
}

/**
 * 405 with `Allow`: a reserved endpoint asked with a method it does not take.
 *
 * @example
 * methodNotAllowedProblem("/__limiter/health", "POST", ["GET", "HEAD"]);
 */
export function methodNotAllowedProblem(path: string, method: string, allowed: readonly string[]): Response {
  return problemResponse({ type: PROBLEM_TYPES.methodNotAllowed, title: "Method Not Allowed", status: 405, detail: `${path} does not take ${method}: it takes ${allowed.join(", ")}.` }, [
    ["Allow", allowed.join(", ")],
  ]);
}

/**
 * 500: the gateway failed on this request (a bug, not the client's doing); the log line with the
 * same request id says why.
 *
 * @example
 * internalErrorProblem("8c2f1e3a9b7d-1");
 */
export function internalErrorProblem(requestId: string): Response {
  return problemResponse({
    type: PROBLEM_TYPES.internalError,
    title: "Internal Server Error",
    status: 500,
    detail: `The gateway failed on this request; its log line "gateway.internal_error" carries request id ${requestId}.`,
  });
}

function problemResponse(problem: Problem, headers: HeaderList = []): Response {
  return problemText(JSON.stringify(problem), problem.status, headers);
}

/** A problem's response. */
function problemText(body: string, status: number, headers: HeaderList): Response {
  return new Response(body, { status, headers: problemHeaders(headers) });
}

/**
 * A problem's headers: a 429's with its `Retry-After` and no `Cache-Control` (no cache may store
 * a 429, RFC 6585 §4), any other's with `Cache-Control: no-store` (a 404 could be cached).
 */
function problemHeaders(headers: HeaderList, retryAfter?: string): Record<string, string> {
  // A record, not a list of pairs: the runtime converts it several times faster.
  const init: Record<string, string> =
    retryAfter === undefined ? { "Content-Type": "application/problem+json", "Cache-Control": "no-store" } : { "Content-Type": "application/problem+json", "Retry-After": retryAfter };
  for (const [name, value] of headers) init[name] = Object.hasOwn(init, name) ? `${init[name]}, ${value}` : value;
  return init;
}
