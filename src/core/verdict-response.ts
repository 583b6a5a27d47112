import { retryAfterSeconds } from "./headers";
import { costExceedsCapacityProblem, invalidConfigurationProblem, invalidRequestProblem, limiterUnavailableProblem, missingClientKeyProblem, rateLimitedProblem } from "./problems";
import type { Verdict } from "./verdict";

/**
 * The HTTP answer to a verdict that stops the request, from the problem catalogue; `undefined`
 * when the request goes on (allowed, fail-open, no rule applies). Every adapter that speaks HTTP
 * uses this one mapping.
 *
 * @example
 * const verdict = await limiter.check(requestSubject(request));
 * const refusal = verdictResponse(verdict);
 * if (refusal !== undefined) return refusal;
 */
export function verdictResponse(verdict: Verdict): Response | undefined {
  switch (verdict.kind) {
    case "unmatched":
    case "allowed":
    case "fail-open":
      return undefined;
    case "refused":
      return rateLimitedProblem(
        verdict.violated.map((rule) => rule.name),
        retryAfterSeconds(verdict.retryAfterMs),
        verdict.headers,
      );
    case "concurrency-refused":
      // No wait is known (a slot frees when some response ends): a short one.
      return rateLimitedProblem([verdict.rule.name], 1, verdict.headers);
    case "fail-closed":
      return limiterUnavailableProblem(verdict.backend, `rule "${verdict.rule.name}" fails closed`);
    case "missing-key":
      return missingClientKeyProblem(verdict.rule);
    case "invalid-subject":
      return invalidRequestProblem(verdict.field, verdict.message);
    case "cost-exceeds-capacity":
      return costExceedsCapacityProblem(verdict.rule.policy);
    case "backend-misconfigured":
      return invalidConfigurationProblem([`${verdict.variable}: ${verdict.message}`]);
  }
}
