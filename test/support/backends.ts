import { env } from "cloudflare:workers";
import { inject } from "vitest";
import type { LimiterBackend } from "../../src/backends/backend";
import { durableObjectBackend } from "../../src/backends/durable-object";
import { upstashBackend } from "../../src/backends/upstash";

/** Both backends, for suites that must hold for each: name, a backend, and the gateway vars selecting it. */
export const BACKENDS: { name: string; create: () => LimiterBackend; vars: Record<string, string> }[] = [
  { name: "durable-object", create: () => durableObjectBackend(env.LIMITER_BUCKETS), vars: {} },
  {
    name: "upstash",
    create: () => upstashBackend({ url: inject("upstashUrl"), token: inject("upstashToken"), keyPrefix: `test-${crypto.randomUUID()}` }),
    vars: { LIMITER_BACKEND: "upstash", UPSTASH_REDIS_REST_URL: inject("upstashUrl"), UPSTASH_REDIS_REST_TOKEN: inject("upstashToken") },
  },
];
