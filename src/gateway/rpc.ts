import { WorkerEntrypoint } from "cloudflare:workers";
import { checkClient, deleteOverride, listOverrides, peekClient, putOverride, resetClient, type BucketStatus, type CheckResult, type ControlError } from "./control";
import type { OverrideRecord } from "../core/backend";
import type { Limiter } from "../core/limiter";
import { describeConfigErrors } from "./config";
import type { Env } from "./env";
import { gatewayFor } from "./gateway";

/**
 * The limiter as a service for other Workers, over a service binding (no HTTP, no token: the
 * binding itself is the permission): the admin API's operations, clients named as there. A bad
 * input answers `{ ok: false, field, message }`; a store that does not answer rejects the call. Bind it from
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

  /** Sets an override: `{ rule, client, capacity, rate }` (a value ending in `*`: every client it prefixes). */
  async putOverride(input: unknown): Promise<{ ok: true; override: OverrideRecord & { kind: "exact" | "prefix" } } | ControlError> {
    return this.withLimiter((limiter) => putOverride(limiter, input));
  }

  /** Every override, exact and prefix. */
  async listOverrides(): Promise<{ ok: true; overrides: (OverrideRecord & { kind: "exact" | "prefix" })[] } | ControlError> {
    return this.withLimiter((limiter) => listOverrides(limiter));
  }

  /** Removes an override: `{ rule, client }` as it was set. */
  async deleteOverride(input: unknown): Promise<{ ok: true; removed: boolean } | ControlError> {
    return this.withLimiter((limiter) => deleteOverride(limiter, input));
  }

  private async withLimiter<T>(operation: (limiter: Limiter) => Promise<T>): Promise<T | ControlError> {
    const gateway = gatewayFor(this.env);
    if (!gateway.ok) return { ok: false, field: "(configuration)", message: describeConfigErrors(gateway.errors).join("; ") };
    return operation(gateway.limiter);
  }
}
