import { durableObjectBackend } from "../backends/durable-object";
import { upstashBackend } from "../backends/upstash";
import type { LimiterBackend } from "../core/backend";
import { Limiter } from "../core/limiter";
import { memoryBackend } from "../core/memory-backend";
import { parseGatewayConfig, type BackendConfig, type ConfigError, type GatewayConfig } from "./config";
import type { Env } from "./env";

/** The gateway as one isolate runs it: its configuration and the limiter built from it, or what is wrong. */
export type Gateway = ReadyGateway | { readonly ok: false; readonly errors: readonly ConfigError[] };

/** A gateway whose configuration parsed. */
export interface ReadyGateway {
  readonly ok: true;
  readonly config: GatewayConfig;
  readonly limiter: Limiter;
}

// The env object is the same for every request of an isolate: parse once.
const gateways = new WeakMap<Env, Gateway>();

/**
 * Parses `env` and builds the limiter (backend, deny cache, circuit breaker) once per env
 * object, so once per isolate in production.
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
      ? { ok: true, config: parsed.config, limiter: new Limiter({ ...parsed.config.limiter, backend: createBackend(parsed.config.backend, env) }) }
      : parsed;
    gateways.set(env, gateway);
  }
  return gateway;
}

function createBackend(config: BackendConfig, env: Env): LimiterBackend {
  switch (config.kind) {
    case "durable-object":
      return durableObjectBackend(env.LIMITER_BUCKETS);
    case "upstash":
      return upstashBackend(config);
    case "memory":
      return memoryBackend();
  }
}
