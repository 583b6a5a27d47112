import { startGateway } from "../../dev/miniflare-gateway.mjs";
import { freePort } from "./ports";

/** The admin token of the gateways the CLI and OpenAPI tests start (at least 16 characters, as the gateway asks). */
export const ADMIN_TOKEN = "admin-tests-token-0123456789";

/** Two rules with different key parts, so peek, reset and overrides have something to tell apart. */
export const RULES = [
  { name: "api", key: "header:x-api-key", capacity: 5, rate: "5/1m" },
  { name: "login", key: "ip", capacity: 3, rate: "3/1m", match: { path: "/login", methods: ["POST"] } },
];

/** The vars of a healthy gateway on the Durable Object backend with the admin API on. The origin is never called. */
export const ADMIN_VARS = { ORIGIN_URL: "http://127.0.0.1:9", LIMITER_ADMIN_TOKEN: ADMIN_TOKEN, LIMITER_RULES: JSON.stringify(RULES) };

/** A loopback port nothing listens on: a store the gateway cannot reach. */
export const closedPort = freePort;

/**
 * Gateways in the states an admin client meets: `healthy` (admin API on), `adminOff` (no
 * LIMITER_ADMIN_TOKEN), `storeDown` (Upstash backend whose REST endpoint refuses connections:
 * health and admin answer 503), `misconfigured` (a bad variable: every route answers 500, health
 * 503). Each is its own workerd process running the deployable bundle; `stop` ends them all.
 *
 * @example
 * const gateways = await startAdminGateways(inject("gatewayBundle"), ["healthy", "adminOff"]);
 * await fetch(`${gateways.healthy.url}/__limiter/health`);
 */
export async function startAdminGateways<Name extends GatewayState>(scriptPath: string, names: readonly Name[]) {
  const storePort = await closedPort();
  const vars: Record<GatewayState, Record<string, string>> = {
    healthy: ADMIN_VARS,
    adminOff: { ...ADMIN_VARS, LIMITER_ADMIN_TOKEN: "" },
    storeDown: {
      ...ADMIN_VARS,
      LIMITER_BACKEND: "upstash",
      UPSTASH_REDIS_REST_URL: `http://127.0.0.1:${storePort}`,
      UPSTASH_REDIS_REST_TOKEN: "unused-token",
      LIMITER_TIMEOUT_MS: "500",
    },
    misconfigured: { ...ADMIN_VARS, LIMITER_CAPACITY: "lots" },
  };
  const started = await Promise.all(names.map(async (name) => [name, await startGateway({ scriptPath, vars: withoutEmpty(vars[name]) })] as const));
  const gateways = Object.fromEntries(started) as Record<Name, { url: string; dispose: () => Promise<void> }>;
  return { ...gateways, stop: () => Promise.all(started.map(([, gateway]) => gateway.dispose())) };
}

export type GatewayState = "healthy" | "adminOff" | "storeDown" | "misconfigured";

function withoutEmpty(vars: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(vars).filter(([, value]) => value !== ""));
}
