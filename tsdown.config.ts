import { defineConfig, type UserConfig } from "tsdown";

/**
 * The `sluice` package: ES modules and type declarations for each subpath, shared code in
 * chunks (so `sluice/hono`, `sluice/fetch` and `sluice` share one `Limiter` class). Hono, @upstash/redis and the
 * Workers runtime module stay imports, resolved by the consumer.
 */
const library: UserConfig = {
  entry: {
    index: "src/core/index.ts",
    hono: "src/hono/index.ts",
    fetch: "src/fetch/index.ts",
    "durable-object": "src/backends/durable-object/index.ts",
    upstash: "src/backends/upstash/index.ts",
  },
  format: "esm",
  platform: "neutral",
  target: "es2022",
  outDir: "dist",
  clean: true,
  dts: true,
  tsconfig: "tsconfig.build.json",
  deps: { neverBundle: [/^hono(\/.*)?$/, /^@upstash\/redis(\/.*)?$/, /^cloudflare:/] },
};

/**
 * `sluice/gateway`: the gateway Worker in one module, with Hono and @upstash/redis bundled in, so a
 * deployment needs only `sluice` and wrangler. The runtime's `cloudflare:workers` stays an import;
 * the dashboard's assets (dev/build-dashboard.mjs, run first by `npm run build`) are inlined.
 */
const gateway: UserConfig = {
  entry: { gateway: "src/gateway/index.ts" },
  format: "esm",
  platform: "neutral",
  target: "es2022",
  outDir: "dist",
  clean: false,
  dts: true,
  tsconfig: "tsconfig.gateway.json",
  deps: { neverBundle: [/^cloudflare:/], alwaysBundle: [/^hono(\/.*)?$/, /^@upstash\/redis(\/.*)?$/], onlyBundle: false, onlyImport: [/^cloudflare:/] },
};

/**
 * The `sluice` command (package.json "bin"): one file for Node, no declarations. (tsdown empties
 * dist/ once, before either build starts.)
 */
const cli: UserConfig = {
  entry: { cli: "src/cli/index.ts" },
  format: "esm",
  platform: "node",
  target: "node22",
  fixedExtension: false,
  outDir: "dist",
  clean: false,
  dts: false,
};

export default defineConfig([library, gateway, cli]);
