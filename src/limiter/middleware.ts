import type { Context, MiddlewareHandler } from "hono";
import { BackendConfigError, withDeadline, type BucketCharge, type LimiterBackend } from "../backends/backend";
import { problemResponse } from "../http/problem";
import { CircuitBreaker } from "./circuit-breaker";
import { DenyCache } from "./deny-cache";
import { mostRestrictive, rateLimitHeaders, retryAfterSeconds, type HeaderMode, type RuleOutcome } from "./headers";
import { clientKey, DEFAULT_IDENTITY, describeKey, type IdentityOptions } from "./identity";
import { normalizePath, ruleMatches, type Rule } from "./rules";
import { waitForTokensMs } from "./token-bucket";

/** Options of {@link rateLimiter}. */
export interface RateLimiterOptions {
  /** Where buckets live, e.g. `durableObjectBackend(env.LIMITER_BUCKETS)`. */
  readonly backend: LimiterBackend;
  /** Every rule that matches a request applies; the request passes only if every enforced one allows it. */
  readonly rules: readonly Rule[];
  /** Budget of one backend call, in ms. */
  readonly timeoutMs: number;
  /** Which rate-limit headers to send. Default `all`. */
  readonly headers?: HeaderMode;
  /** How client addresses are read. Default: `CF-Connecting-IP`, IPv6 grouped by /64. */
  readonly identity?: IdentityOptions;
  /** A request lacking its rule's key: one shared `anonymous` bucket (default), or `reject` (401/400). */
  readonly missingKey?: "anonymous" | "reject";
  /** Per-isolate memory of refused clients. Default: one of 10,000 entries per middleware. */
  readonly denyCache?: DenyCache;
  /** Per-isolate circuit breaker. Default: opens after 5 failures, for 5 s, per middleware. */
  readonly breaker?: CircuitBreaker;
}

/**
 * Hono middleware that charges each request to the token buckets of every rule it matches,
 * refuses with 429 problem+json when an enforced bucket is empty (charging nothing then), and
 * adds rate-limit headers to every response. Options may be a function of the context, for
 * configuration read from `c.env`.
 *
 * @example
 * const app = new Hono<{ Bindings: Env }>();
 * app.use("/api/*", rateLimiter((c) => ({
 *   backend: durableObjectBackend(c.env.LIMITER_BUCKETS),
 *   rules: [{
 *     name: "api", match: {}, key: [{ kind: "header", name: "x-api-key" }], mode: "enforce", failMode: "open",
 *     policy: { name: "api", capacity: 100, refillTokens: 10, refillPeriodMs: 1000, cost: 1 },
 *   }],
 *   timeoutMs: 1000,
 * })));
 */
export function rateLimiter<C = Context>(options: RateLimiterOptions | ((c: C) => RateLimiterOptions)): MiddlewareHandler {
  const fallbackDenyCache = new DenyCache(10_000);
  const fallbackBreaker = new CircuitBreaker({ failureThreshold: 5, cooldownMs: 5_000 });

  return async (c, next) => {
    const opts = typeof options === "function" ? options(c as C) : options;
    const { backend, headers: headerMode = "all", identity = DEFAULT_IDENTITY } = opts;
    const denyCache = opts.denyCache ?? fallbackDenyCache;
    const breaker = opts.breaker ?? fallbackBreaker;
    const request = c.req.raw;

    const pathname = normalizePath(new URL(request.url).pathname);
    const rules = opts.rules.filter((rule) => ruleMatches(rule, request.method, pathname));
    if (rules.length === 0) return next();
    const policies = rules.map((rule) => rule.policy);

    // Rules with the same key parts share one hash computation.
    const keys = new Map<string, Promise<string | undefined>>();
    const charges: BucketCharge[] = [];
    for (const rule of rules) {
      const kind = describeKey(rule.key);
      if (!keys.has(kind)) keys.set(kind, clientKey(request, rule.key, identity));
      const key = await keys.get(kind);
      if (key === undefined && opts.missingKey === "reject") return missingKeyResponse(rule);
      charges.push({
        clientKey: key ?? `${kind}:anonymous`,
        bucket: rule.name,
        policy: rule.policy,
        cost: rule.policy.cost,
        enforced: rule.mode === "enforce",
      });
    }

    // A client this isolate saw refused is refused again until its retry time, with no backend call.
    const nowMs = Date.now();
    const cached = await consultDenyCache(denyCache, charges, rules, nowMs, opts.timeoutMs);
    // Requests of the same client waiting on this one's answer may go on.
    const releaseProbes = () => cached.probes.splice(0).forEach((release) => release());
    try {
      if (cached.refusals.length > 0) {
        const limiting = mostRestrictive(cached.refusals)!;
        const retryAfterMs = limiting.decision.outcome === "denied" ? limiting.decision.retryAfterMs : 0;
        return rateLimitedResponse(limiting.policy.name, retryAfterMs, rateLimitHeaders(policies, cached.refusals, headerMode));
      }
      return await askBackend();
    } finally {
      releaseProbes();
    }

    async function askBackend() {
      if (!breaker.allowCall(nowMs)) {
        releaseProbes();
        return failModeResponse(next, rules, backend.name, "circuit open: backend skipped during cool-down");
      }
      let outcomes: RuleOutcome[];
      try {
        const decisions = await withDeadline((signal) => backend.take(charges, signal), opts.timeoutMs);
        breaker.recordSuccess();
        outcomes = rules.map((rule, i) => ({ policy: rule.policy, decision: decisions[i]!, enforced: rule.mode === "enforce" }));
      } catch (error) {
        releaseProbes(); // before a fail-open request goes on to the origin
        if (error instanceof BackendConfigError) {
          breaker.recordSuccess(); // the backend answered: it is misconfigured, not down
          return backendConfigErrorResponse(error);
        }
        breaker.recordFailure(Date.now());
        return failModeResponse(next, rules, backend.name, error instanceof Error ? `${error.name}: ${error.message}` : String(error));
      }

      for (const outcome of outcomes) {
        if (!outcome.enforced && outcome.decision.outcome !== "allowed") {
          console.log(JSON.stringify({ event: "limiter.shadow_refusal", rule: outcome.policy.name, outcome: outcome.decision.outcome }));
        }
      }
      const impossible = outcomes.find((o) => o.enforced && o.decision.outcome === "cost_exceeds_capacity");
      if (impossible !== undefined) return costExceedsCapacityResponse(impossible);

      const headers = rateLimitHeaders(policies, outcomes, headerMode);
      const refusals = outcomes.flatMap((o, i) => (o.enforced && o.decision.outcome === "denied" ? [{ charge: charges[i]!, decision: o.decision }] : []));
      // Waits count from the answer's arrival: a request queued behind others at the store got
      // its retry time later than it started (this errs by one response's transit, not by a queue).
      rememberEmptyBuckets(denyCache, charges, outcomes, refusals.length > 0, Date.now());
      releaseProbes();
      if (refusals.length > 0) {
        // Retry-After: until every refusing rule would allow.
        const retryAfterMs = Math.max(...refusals.map((r) => r.decision.retryAfterMs));
        return rateLimitedResponse(mostRestrictive(outcomes)!.policy.name, retryAfterMs, headers);
      }

      await next();
      if (headers.length > 0) setHeaders(c, headers);
    }
  };
}

/**
 * Tells the deny cache which of this client's buckets cannot serve another request yet: every
 * refusing one until its retry time and, on an allowed request, every bucket it left with
 * fewer than `cost` tokens, until they refill (so a flood after the retry time costs one backend
 * call per token, not one per waiting request).
 */
function rememberEmptyBuckets(
  denyCache: DenyCache,
  charges: readonly BucketCharge[],
  outcomes: readonly RuleOutcome[],
  refused: boolean,
  nowMs: number,
): void {
  outcomes.forEach(({ decision, enforced }, i) => {
    const charge = charges[i]!;
    if (!enforced) return;
    const waitMs =
      decision.outcome === "denied"
        ? decision.retryAfterMs
        : decision.outcome === "allowed" && !refused
          ? waitForTokensMs(charge.policy, charge.cost, decision.resetMs)
          : 0;
    if (waitMs > 0) {
      denyCache.remember(denyCacheKey(charge), { retryAtMs: nowMs + waitMs, resetAtMs: nowMs + decision.resetMs, remaining: decision.remaining });
    }
  });
}

/**
 * Checks a request's enforced charges against the deny cache. Refusals that still hold come
 * back as outcomes. Where a refusal has just expired and another request of the same client is
 * already asking the backend, this one waits for that answer (at most `timeoutMs`) and looks
 * again; where none is, this request asks, and must call the returned `probes` when done.
 */
async function consultDenyCache(
  denyCache: DenyCache,
  charges: readonly BucketCharge[],
  rules: readonly Rule[],
  nowMs: number,
  timeoutMs: number,
): Promise<{ refusals: RuleOutcome[]; probes: (() => void)[] }> {
  const refusals: RuleOutcome[] = [];
  const probes: (() => void)[] = [];
  for (const [i, charge] of charges.entries()) {
    if (!charge.enforced) continue;
    const key = denyCacheKey(charge);
    let answer = denyCache.lookup(key, nowMs);
    const deadline = Date.now() + timeoutMs;
    while (answer.kind === "wait") {
      const left = deadline - Date.now();
      // Undecided for a whole backend budget (the asking request was cancelled): ask ourselves.
      if (left <= 0) {
        answer = { kind: "miss" };
        break;
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([answer.probe, new Promise<void>((resolve) => (timer = setTimeout(resolve, left)))]);
      clearTimeout(timer);
      answer = denyCache.lookup(key, Date.now());
    }
    if (answer.kind === "probe") probes.push(answer.release);
    if (answer.kind === "refused") {
      const { refusal } = answer;
      const now = Date.now();
      const decision = { outcome: "denied", remaining: refusal.remaining, retryAfterMs: refusal.retryAtMs - now, resetMs: refusal.resetAtMs - now } as const;
      refusals.push({ policy: rules[i]!.policy, decision, enforced: true });
    }
  }
  return { refusals, probes };
}

function denyCacheKey(charge: BucketCharge): string {
  return `${charge.bucket}|${charge.clientKey}`;
}

function rateLimitedResponse(ruleName: string, retryAfterMs: number, headers: [string, string][]): Response {
  const retryAfter = retryAfterSeconds(retryAfterMs);
  return problemResponse(
    {
      type: "/problems/rate-limited",
      title: "Too Many Requests",
      status: 429,
      detail: `Rate limit "${ruleName}" exceeded: retry in ${retryAfter} s.`,
      policy: ruleName,
      retryAfter,
    },
    [["Retry-After", String(retryAfter)], ...headers],
  );
}

/** Backend unreachable: each rule's fail mode decides; one closed enforced rule refuses the request. */
async function failModeResponse(next: () => Promise<void>, rules: readonly Rule[], backendName: string, reason: string) {
  const closed = rules.find((rule) => rule.mode === "enforce" && rule.failMode === "closed");
  console.error(JSON.stringify({ event: "limiter.backend_failure", backend: backendName, failMode: closed ? "closed" : "open", reason }));
  if (closed === undefined) return next();
  return problemResponse({
    type: "/problems/limiter-unavailable",
    title: "Rate limiter unavailable",
    status: 503,
    detail: `The rate-limit store (${backendName}) did not answer, and rule "${closed.name}" fails closed.`,
  });
}

function missingKeyResponse(rule: Rule): Response {
  const bearer = rule.key.some((part) => part.kind === "bearer");
  const missing = rule.key.map((part) => (part.kind === "header" ? `the ${part.name} header` : part.kind === "bearer" ? "a bearer token" : part.kind)).join(" and ");
  return problemResponse(
    {
      type: "/problems/missing-client-key",
      title: bearer ? "Unauthorized" : "Bad Request",
      status: bearer ? 401 : 400,
      detail: `Rate limit "${rule.name}" needs ${missing} to identify the client.`,
    },
    bearer ? [["WWW-Authenticate", "Bearer"]] : [],
  );
}

function costExceedsCapacityResponse({ policy }: RuleOutcome): Response {
  return problemResponse({
    type: "/problems/cost-exceeds-capacity",
    title: "Request cost exceeds the bucket",
    status: 500,
    detail: `Policy "${policy.name}" charges ${policy.cost} tokens but holds only ${policy.capacity}: no request can pass. Fix the configuration.`,
  });
}

function backendConfigErrorResponse(error: BackendConfigError): Response {
  console.error(JSON.stringify({ event: "limiter.backend_config_error", variable: error.variable, reason: error.message }));
  return problemResponse({
    type: "/problems/invalid-configuration",
    title: "Invalid gateway configuration",
    status: 500,
    detail: `${error.variable}: ${error.message}`,
  });
}

function setHeaders(c: Context, headers: [string, string][]): void {
  try {
    for (const [name, value] of headers) c.res.headers.set(name, value);
  } catch {
    // A response straight from fetch() has immutable headers: copy it (the body still streams).
    c.res = new Response(c.res.body, c.res);
    for (const [name, value] of headers) c.res.headers.set(name, value);
  }
}
