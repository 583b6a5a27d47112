import { env } from "cloudflare:workers";
import { inject } from "vitest";
import { durableObjectBackend } from "../../src/backends/durable-object";
import { upstashBackend } from "../../src/backends/upstash";
import type { LimiterBackend } from "../../src/core/backend";
import { memoryBackend } from "../../src/core/memory-backend";

/** Every backend, for suites that must hold for each: name, a backend, and the gateway vars selecting it. */
export const BACKENDS: { name: string; create: () => LimiterBackend; vars: Record<string, string> }[] = [
  { name: "durable-object", create: () => durableObjectBackend(env.LIMITER_BUCKETS), vars: {} },
  {
    name: "upstash",
    create: () => upstashBackend({ url: inject("upstashUrl"), token: inject("upstashToken"), keyPrefix: `test-${crypto.randomUUID()}` }),
    vars: { LIMITER_BACKEND: "upstash", UPSTASH_REDIS_REST_URL: inject("upstashUrl"), UPSTASH_REDIS_REST_TOKEN: inject("upstashToken") },
  },
  { name: "memory", create: () => memoryBackend(), vars: { LIMITER_BACKEND: "memory" } },
];

/** The backends whose state every isolate shares (the memory backend's is one isolate's). */
export const SHARED_BACKENDS = BACKENDS.filter((backend) => backend.name !== "memory");
