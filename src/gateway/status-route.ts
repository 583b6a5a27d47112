import type { Handler } from "hono";
import { invalidRequestProblem, limiterUnavailableProblem } from "../core/problems";
import { requestSubject } from "../core/subject";
import { verdictResponse } from "../core/verdict-response";
import type { GatewayEnv } from "./gateway";

const METHOD = /^[A-Za-z]{1,16}$/;

/**
 * `GET /__limiter/status?method=GET&path=/api/items`: the buckets the caller's request to that
 * method and path would be charged to, as they stand, without charging them (GitHub's
 * `/rate_limit` is the model). The caller is identified as its traffic is (its address, API key,
 * bearer token). The endpoint is itself limited per client (`STATUS_RULE`), and a client the
 * isolate's deny cache already knows to be refused is answered from there.
 *
 * @example
 * // curl 'https://gateway.example.com/__limiter/status?method=POST&path=/login'
 * // { "method": "POST", "path": "/login", "buckets": [{ "rule": "login", "limit": 5, "remaining": 3, … }] }
 */
export const statusRoute: Handler<GatewayEnv> = async (c) => {
  const { limiter, statusLimiter } = c.var.gateway;
  const method = (c.req.query("method") ?? "GET").toUpperCase();
  const path = c.req.query("path");
  if (!METHOD.test(method)) return invalidRequestProblem("method", "must be an HTTP method, e.g. GET");
  if (path === undefined || !path.startsWith("/")) return invalidRequestProblem("path", "must be a path starting with /, e.g. /api/items");

  // The status endpoint's own limit comes first: asking must cost the caller something.
  const own = await statusLimiter.check(requestSubject(c.req.raw));
  const refusal = verdictResponse(own);
  if (refusal !== undefined) return refusal;

  const verdict = await limiter.check({ kind: "request", method, path, headers: c.req.raw.headers }, { mode: "peek" });
  const headers = own.kind === "allowed" ? own.headers : [];
  switch (verdict.kind) {
    case "unmatched":
      return c.json({ method, path, buckets: [] }, 200, Object.fromEntries(headers));
    case "allowed":
    case "refused": {
      const buckets = verdict.outcomes.map(({ rule, policy, decision }) => ({
        rule: rule.name,
        mode: rule.mode,
        limit: policy.capacity,
        // A peek reports the bucket as the request would leave it: add its cost back for "now".
        remaining: decision.outcome === "allowed" ? decision.remaining + policy.cost : decision.remaining,
        cost: policy.cost,
        retryAfterSeconds: decision.outcome === "denied" ? Math.ceil(decision.retryAfterMs / 1000) : 0,
        fullInSeconds: decision.outcome === "denied" ? Math.ceil(decision.resetMs / 1000) : undefined,
      }));
      return c.json({ method, path, allowed: verdict.kind === "allowed", buckets }, 200, Object.fromEntries(headers));
    }
    case "fail-open":
    case "fail-closed":
      return limiterUnavailableProblem(limiter.backend.name, "the status could not be read");
    default:
      return verdictResponse(verdict) ?? limiterUnavailableProblem(limiter.backend.name, "the status could not be read");
  }
};
