import { defineConfig } from "vitest/config";

/**
 * Tests of pure modules: Node only, no redis-server, prometheus, chromium or workerd, and no
 * bundle to build. `npm run test:unit` runs just these in seconds; `npm test` runs them too (as
 * the `unit` project of vitest.config.ts).
 */
export const UNIT_TESTS = ["test/core/**/*.test.ts", "test/hono/*.test.ts", "test/**/*.unit.test.ts"];

export const UNIT_EXCLUDE = ["**/*.worker.test.ts", "**/node_modules/**"];

export default defineConfig({
  test: { name: "unit", include: UNIT_TESTS, exclude: UNIT_EXCLUDE, environment: "node" },
});
