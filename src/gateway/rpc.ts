import { WorkerEntrypoint } from "cloudflare:workers";
import { checkClient, peekClient, resetClient, type BucketStatus, type CheckResult, type ControlError } from "./control";
import type { Limiter } from "../core/limiter";
import { describeConfigErrors } from "./config";
import type { Env } from "./env";
import { gatewayFor } from "./gateway";

/**
 * The limiter as a service for other Workers, over a service binding (no HTTP, no token: the
 * binding itself is the permission). Clients are named as in the admin API. Bind it from
 * another Worker's wrangler.toml:
 *
 * ```toml
 * [[services]]
 * binding = "LIMITER"
 * service = "sluice"
 * entrypoint = "LimiterService"
 * ```
 *
 * @example
 * const result = await env.LIMITER.check({ rule: "api", client: { "header:x-api-key": key } });
 * if (result.ok && !result.allowed) return new Response("slow down", { status: 429 });
 */
export class LimiterService extends WorkerEntrypoint<Env> {
  /** Charges a named client like traffic: `{ rule, client, cost? }`. */
  async check(input: unknown): Promise<CheckResult | ControlError> {
    return this.withLimiter((limiter) => checkClient(limiter, input));
  }

  /** A named client's bucket(s) as they stand: `{ rule?, client }`. */
  async peek(input: unknown): Promise<{ ok: true; buckets: BucketStatus[] } | ControlError> {
    return this.withLimiter((limiter) => peekClient(limiter, input));
  }

  /** Makes a named client's bucket(s) full again: `{ rule?, client }`. */
  async reset(input: unknown): Promise<{ ok: true; reset: string[] } | ControlError> {
    return this.withLimiter((limiter) => resetClient(limiter, input));
  }

  private async withLimiter<T>(operation: (limiter: Limiter) => Promise<T>): Promise<T | ControlError> {
    const gateway = gatewayFor(this.env);
    if (!gateway.ok) return { ok: false, field: "(configuration)", message: describeConfigErrors(gateway.errors).join("; ") };
    return operation(gateway.limiter);
  }
}
