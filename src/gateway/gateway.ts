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
  /** Backend calls this isolate made (health reports it; the benchmark divides it by requests). */
  readonly stats: { backendCalls: number };
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
    if (parsed.ok) {
      const stats = { backendCalls: 0 };
      const backend = countCalls(createBackend(parsed.config, env), stats);
      gateway = {
        ok: true,
        config: parsed.config,
        backend,
        denyCache: new DenyCache(parsed.config.denyCacheSize),
        breaker: new CircuitBreaker(parsed.config.breaker),
        stats,
      };
    } else {
      gateway = parsed;
    }
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

function countCalls(backend: LimiterBackend, stats: { backendCalls: number }): LimiterBackend {
  return {
    name: backend.name,
    take(charges, signal) {
      stats.backendCalls += 1;
      return backend.take(charges, signal);
    },
    ping: (signal) => backend.ping(signal),
  };
}
