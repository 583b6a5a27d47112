import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig, defineProject } from "vitest/config";

export default defineConfig({
  test: {
    projects: [
      // Tests that run inside the Workers runtime (workerd), against wrangler.toml's bindings.
      defineProject({
        plugins: [
          cloudflareTest(({ inject }) => ({
            wrangler: { configPath: "./wrangler.toml" },
            miniflare: { bindings: { ORIGIN_URL: inject("originUrl") } },
          })),
        ],
        test: {
          name: "workers",
          include: ["test/worker/**/*.test.ts"],
          globalSetup: ["./test/support/stack.global.ts"],
        },
      }),
      // Tests that run in Node: dev tooling, Redis, and several gateway processes.
      defineProject({
        test: {
          name: "node",
          include: ["test/node/**/*.test.ts"],
          environment: "node",
          globalSetup: ["./test/support/bundle.global.ts"],
          testTimeout: 30_000,
        },
      }),
    ],
  },
});
