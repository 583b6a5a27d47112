import type { LimiterBackend } from "../backends/backend";
import { durableObjectBackend } from "../backends/durable-object";
import { upstashBackend } from "../backends/upstash";
import { parseGatewayConfig, type ConfigError, type GatewayConfig } from "../config/gateway-config";
import type { Env } from "../config/env";
import { CircuitBreaker } from "../limiter/circuit-breaker";
import { DenyCache } from "../limiter/deny-cache";

/** The gateway as one isolate runs it: parsed configuration and the backend it names. */
export type Gateway = ReadyGateway | { readonly ok: false; readonly errors: readonly ConfigError[] };

/** A gateway whose configuration parsed. */
export interface ReadyGateway {
  readonly ok: true;
  readonly config: GatewayConfig;
  readonly backend: LimiterBackend;
  /** This isolate's memory of refused clients. */
  readonly denyCache: DenyCache;
  /** This isolate's view of the backend's health. */
  readonly breaker: CircuitBreaker;
}

// The env object is the same for every request of an isolate: parse once.
const gateways = new WeakMap<Env, Gateway>();

/**
 * Parses `env` and builds the backend, deny cache and circuit breaker, once per env object
 * (so once per isolate in production).
 *
 * @example
 * const gateway = gatewayFor(c.env);
 * if (!gateway.ok) return configErrorResponse(gateway.errors);
 */
export function gatewayFor(env: Env): Gateway {
  let gateway = gateways.get(env);
  if (gateway === undefined) {
    const parsed = parseGatewayConfig(env);
    gateway = parsed.ok
      ? {
          ok: true,
          config: parsed.config,
          backend: createBackend(parsed.config, env),
          denyCache: new DenyCache(parsed.config.denyCacheSize),
          breaker: new CircuitBreaker(parsed.config.breaker),
        }
      : parsed;
    gateways.set(env, gateway);
  }
  return gateway;
}

function createBackend(config: GatewayConfig, env: Env): LimiterBackend {
  switch (config.backend) {
    case "durable-object":
      return durableObjectBackend(env.LIMITER_BUCKETS);
    case "upstash":
      // parseGatewayConfig guarantees the Upstash settings when this backend is chosen.
      return upstashBackend(config.upstash!);
  }
}
