import { dirname } from "node:path";
import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig, defineProject } from "vitest/config";
import { wranglerCompatibility } from "./dev/workerd.mjs";
import { UNIT_EXCLUDE, UNIT_TESTS } from "./vitest.unit.config";

const compatibility = await wranglerCompatibility();

export default defineConfig({
  test: {
    projects: [
      // Tests are grouped by subject (core, backends, hono, gateway, proxy, dev, package); the
      // runtime is in the name: `*.worker.test.ts` run inside workerd, against wrangler.toml's bindings.
      defineProject({
        plugins: [
          cloudflareTest(({ inject }) => ({
            wrangler: { configPath: "./wrangler.toml" },
            miniflare: {
              // Metrics flush soon after a request, so tests that read them need not wait long.
              bindings: { ORIGIN_URL: inject("originUrl"), LIMITER_METRICS_FLUSH_MS: "20" },
              // The gateway's deployable bundle as a second Worker, which the tests (a Worker
              // too) call over a real service binding to its LimiterService entrypoint.
              serviceBindings: { SLUICE_GATEWAY: { name: "sluice-gateway", entrypoint: "LimiterService" } },
              workers: [
                {
                  name: "sluice-gateway",
                  modules: [{ type: "ESModule", path: inject("gatewayBundle") }],
                  modulesRoot: dirname(inject("gatewayBundle")),
                  ...compatibility,
                  bindings: { ORIGIN_URL: inject("originUrl") },
                  durableObjects: { LIMITER_BUCKETS: { className: "ClientBuckets", useSQLite: true } },
                },
              ],
            },
          })),
        ],
        test: {
          name: "workers",
          include: ["test/**/*.worker.test.ts"],
          // Tests that drain a bucket one call at a time take seconds on a busy 2-core machine.
          testTimeout: 20_000,
          // First: stop at once, with one message, on a machine without redis-server, prometheus or chromium.
          globalSetup: ["./test/support/requirements.global.ts", "./test/support/stack.global.ts", "./test/support/bundle.global.ts"],
        },
      }),
      // Pure modules in Node, with nothing else running (also `npm run test:unit` alone).
      defineProject({ test: { name: "unit", include: UNIT_TESTS, exclude: UNIT_EXCLUDE, environment: "node" } }),
      // Everything else runs in Node: Redis, dev tooling, several gateway processes, the package.
      defineProject({
        test: {
          name: "node",
          include: ["test/**/*.test.ts"],
          exclude: [...UNIT_TESTS, "test/**/*.worker.test.ts", "**/node_modules/**"],
          environment: "node",
          globalSetup: ["./test/support/requirements.global.ts", "./test/support/bundle.global.ts"],
          testTimeout: 30_000,
        },
      }),
    ],
  },
});
