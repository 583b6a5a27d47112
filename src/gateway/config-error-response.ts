import { describeConfigErrors, type ConfigError } from "../config/gateway-config";
import { problemResponse } from "../http/problem";

/**
 * The 500 every request gets while the configuration is invalid: it names each bad variable
 * and its value, so the operator sees the mistake on the first request.
 *
 * @example
 * configErrorResponse([{ variable: "LIMITER_CAPACITY", value: "abc", message: "must be an integer from 1 to 1000000000" }]);
 */
export function configErrorResponse(errors: readonly ConfigError[]): Response {
  const lines = describeConfigErrors(errors);
  return problemResponse({
    type: "/problems/invalid-configuration",
    title: "Invalid gateway configuration",
    status: 500,
    detail: lines.join("; "),
    errors,
  });
}
