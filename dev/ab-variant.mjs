// @ts-check
/**
 * sluice on Upstash as one more of the benchmark's limiters, for the A/B tools
 * (`ab-throughput.mjs`, `ab-instructions.mjs`): another build, or other vars on top, started as
 * the benchmark starts `sluice-upstash` (its own workerd, on its own socket).
 */
import { upstashVars } from "./local-stack.mjs";
import { startGateway } from "./miniflare-gateway.mjs";

/**
 * @param {import("../bench/limiters.mjs").Limiter} base  the benchmark's `sluice-upstash`
 * @param {{ bridgeUrl: string, originUrl: string }} stack
 * @param {{ id: string, scriptPath: string, extraVars?: Record<string, string> }} variant
 * @returns {import("../bench/limiters.mjs").Limiter}
 * @example
 * limiters.push(sluiceUpstashVariant(base, stack, { id: "ietf", scriptPath: bundle, extraVars: { LIMITER_HEADERS: "ietf" } }));
 */
export function sluiceUpstashVariant(base, stack, { id, scriptPath, extraVars = {} }) {
  const upstash = upstashVars({ bridge: { url: stack.bridgeUrl }, origin: { url: stack.originUrl } });
  return {
    ...base,
    id,
    start: (policy) =>
      startGateway({
        scriptPath,
        vars: {
          ORIGIN_URL: stack.originUrl,
          LIMITER_CAPACITY: String(policy.capacity),
          LIMITER_REFILL_RATE: String(policy.rate),
          LIMITER_KEY: "header:x-api-key",
          LIMITER_FAIL_MODE: "closed",
          LIMITER_TIMEOUT_MS: "5000",
          ...upstash,
          ...extraVars,
        },
        direct: true,
      }),
  };
}
