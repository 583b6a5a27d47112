import type { MiddlewareHandler } from "hono";
import { durableObjectBackend } from "../backends/durable-object";
import { upstashBackend } from "../backends/upstash";
import type { LimiterBackend } from "../core/backend";
import { Limiter, type DecisionEvent, type LimiterEvent } from "../core/limiter";
import { memoryBackend } from "../core/memory-backend";
import { invalidConfigurationProblem } from "../core/problems";
import type { RuleSpec } from "../core/rules";
import { describeConfigErrors, parseGatewayConfig, type BackendConfig, type ConfigError, type GatewayConfig } from "./config";
import type { Env } from "./env";
import { HealthProbe } from "./health";
import { logEvent } from "./log";
import type { GatewayMetrics } from "./metrics-object";
import { MetricsPipeline } from "./metrics-pipeline";

/** The gateway as one isolate runs it: its configuration and the limiter built from it, or what is wrong. */
export type Gateway = ReadyGateway | { readonly ok: false; readonly errors: readonly ConfigError[] };

/** A gateway whose configuration parsed. */
export interface ReadyGateway {
  readonly ok: true;
  readonly config: GatewayConfig;
  readonly limiter: Limiter;
  /** Limits `/__limiter/status` per client, on the same store. */
  readonly statusLimiter: Limiter;
  /** This isolate's cached probe of the store, for health and the dashboard. */
  readonly health: HealthProbe;
  /** This isolate's counts, on their way to the metrics object. */
  readonly metrics: MetricsPipeline;
  /**
   * The metrics object, when bound: totals across every isolate. A function, because a stub is
   * an I/O object of the request that made it: each request (or flush) makes its own.
   */
  readonly metricsStore: (() => DurableObjectStub<GatewayMetrics>) | undefined;
}

/** The reserved routes' (Hono's) view of the gateway: the Worker's bindings, and the isolate's gateway once configuration parsed. */
export type GatewayEnv = { Bindings: Env; Variables: { gateway: ReadyGateway } };

/** How often one client may ask `/__limiter/status`: it must not become a way to hammer the store. */
export const STATUS_RULE: RuleSpec = { name: "__limiter_status", key: "ip", capacity: 10, rate: "10/1m" };

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
    if (parsed.ok) {
      const { config } = parsed;
      const backend = createBackend(config.backend, env, config.limiter.timeoutMs);
      const namespace = config.metrics.kind === "on" ? env.LIMITER_METRICS_STORE : undefined;
      const metricsStore = namespace && (() => namespace.get(namespace.idFromName("global")));
      const flushMs = config.metrics.kind === "on" ? config.metrics.flushMs : 60_000;
      const metrics = new MetricsPipeline(metricsStore && ((delta) => metricsStore().add(delta)), flushMs, config.metrics.kind === "on" ? env.LIMITER_ANALYTICS : undefined);
      const observed = {
        ...config.limiter,
        backend,
        log: (event: LimiterEvent, requestId: string | undefined) => logEvent(event, requestId),
        ...(config.metrics.kind === "on" && { onDecision: (event: DecisionEvent) => metrics.recordDecision(event) }),
      };
      const limiter = new Limiter(observed);
      const health = new HealthProbe(() => limiter.ping(), limiter.timeoutMs);
      gateway = { ok: true, config, limiter, statusLimiter: new Limiter({ ...observed, rules: [STATUS_RULE] }), health, metrics, metricsStore };
    } else {
      gateway = parsed;
      logEvent({ event: "config.invalid", errors: describeConfigErrors(parsed.errors) });
    }
    gateways.set(env, gateway);
  }
  return gateway;
}

/**
 * Middleware of the reserved routes that need the configuration (status, admin, metrics,
 * dashboard): puts the isolate's gateway in `c.var.gateway`, or answers the 500 that names every
 * bad variable while the configuration is invalid.
 *
 * @example
 * limiterRoutes.use("/status", withGateway);
 */
export const withGateway: MiddlewareHandler<GatewayEnv> = async (c, next) => {
  const gateway = gatewayFor(c.env);
  if (!gateway.ok) return configErrorResponse(gateway.errors);
  c.set("gateway", gateway);
  return next();
};

/**
 * The 500 every request gets while the configuration is invalid: it names each bad variable
 * and its value, so the operator sees the mistake on the first request.
 *
 * @example
 * configErrorResponse([{ variable: "LIMITER_CAPACITY", value: "abc", message: "must be an integer from 1 to 1000000000" }]);
 */
export function configErrorResponse(errors: readonly ConfigError[]): Response {
  return invalidConfigurationProblem(describeConfigErrors(errors), errors);
}

function createBackend(config: BackendConfig, env: Env, timeoutMs: number): LimiterBackend {
  switch (config.kind) {
    case "durable-object":
      // A client's call that outlives the backend budget no longer holds back its next one.
      return durableObjectBackend(env.LIMITER_BUCKETS, { staleAfterMs: timeoutMs });
    case "upstash":
      return upstashBackend({ ...config, staleAfterMs: timeoutMs });
    case "memory":
      return memoryBackend();
  }
}
