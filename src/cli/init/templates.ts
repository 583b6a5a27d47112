/**
 * The files `sluice init` writes: a gateway project whose Worker is `sluice/gateway`. Strings, not
 * files, so the one bundled `dist/cli.js` carries them wherever it runs.
 */

/** wrangler.toml's compatibility settings: the ones this repository's own wrangler.toml uses (a test keeps them equal). */
export const COMPATIBILITY = { date: "2026-11-01", flags: ["enable_request_signal"] } as const;

/**
 * Every Durable Object class `sluice/gateway` exports, with the binding the gateway reads it
 * through and the `[[migrations]]` tag that created it in this repository's wrangler.toml. A
 * release that adds a class appends an entry with the next tag; an entry, once released, is
 * never changed (docs/operations.md, "Deploy").
 */
export const DURABLE_OBJECTS = [
  { className: "ClientBuckets", binding: "LIMITER_BUCKETS", tag: "v1", why: "every client's buckets" },
  { className: "GatewayMetrics", binding: "LIMITER_METRICS_STORE", tag: "v2", why: "one object that adds up every isolate's metrics" },
] as const;

/** What the templates are filled with. */
export interface ProjectValues {
  /** The Worker's name (wrangler.toml) and the package's. */
  readonly name: string;
  /** The dependency spec for sluice: `^0.1.0`, or `file:/path/sluice-0.1.0.tgz`. */
  readonly sluiceSpec: string;
  /** The dev dependencies' ranges: wrangler, @cloudflare/workers-types, typescript. */
  readonly devDependencies: Readonly<Record<string, string>>;
}

/**
 * The project's files, path → content.
 *
 * @example
 * projectFiles({ name: "my-gateway", sluiceSpec: "^0.1.0", devDependencies: { wrangler: "^4.164.0" } })["src/index.ts"];
 * // 'export { default, ClientBuckets, GatewayMetrics, LimiterService } from "sluice/gateway";\n'
 */
export function projectFiles(values: ProjectValues): Record<string, string> {
  return {
    "package.json": packageJson(values),
    "wrangler.toml": wranglerToml(values.name),
    "src/index.ts": ENTRY,
    "tsconfig.json": TSCONFIG,
    ".dev.vars.example": DEV_VARS,
    ".gitignore": "node_modules/\n.wrangler/\n.dev.vars\ndist/\n",
    "README.md": readme(values.name),
  };
}

/** The Worker: sluice's gateway and the classes wrangler.toml binds. */
export const ENTRY = 'export { default, ClientBuckets, GatewayMetrics, LimiterService } from "sluice/gateway";\n';

/**
 * One `[[migrations]]` block that creates SQLite-backed classes.
 *
 * @example
 * migrationBlock("v3", ["GatewayMetrics"]); // '[[migrations]]\ntag = "v3"\nnew_sqlite_classes = ["GatewayMetrics"]\n'
 */
export function migrationBlock(tag: string, classes: readonly string[]): string {
  return `[[migrations]]\ntag = "${tag}"\nnew_sqlite_classes = [${classes.map((c) => `"${c}"`).join(", ")}]\n`;
}

/**
 * One `[[durable_objects.bindings]]` block.
 *
 * @example
 * bindingBlock("LIMITER_BUCKETS", "ClientBuckets");
 */
export function bindingBlock(binding: string, className: string): string {
  return `[[durable_objects.bindings]]\nname = "${binding}"\nclass_name = "${className}"\n`;
}

function packageJson({ name, sluiceSpec, devDependencies }: ProjectValues): string {
  const json = {
    name,
    private: true,
    type: "module",
    scripts: {
      dev: "wrangler dev",
      // The check first: a release that adds a Durable Object class says what to add, not a failed deploy.
      deploy: "sluice init --check . && wrangler deploy",
      check: "sluice init --check . && tsc --noEmit && wrangler deploy --dry-run --outdir .wrangler/dry-run",
    },
    dependencies: { sluice: sluiceSpec },
    devDependencies,
  };
  return `${JSON.stringify(json, null, 2)}\n`;
}

function wranglerToml(name: string): string {
  const bindings = DURABLE_OBJECTS.map((o) => `# ${o.why}\n${bindingBlock(o.binding, o.className)}`).join("\n");
  const migrations = DURABLE_OBJECTS.map((o) => migrationBlock(o.tag, [o.className])).join("\n");
  return `# A sluice rate-limiting gateway. Every var: node_modules/sluice/README.md and the docs it links
# (Configuration). \`npx sluice init --check .\` checks this file against the installed sluice.
name = "${name}"
main = "src/index.ts"
compatibility_date = "${COMPATIBILITY.date}"
# request.signal aborts when the client disconnects: a concurrency rule's slot is given back then.
compatibility_flags = [${COMPATIBILITY.flags.map((f) => `"${f}"`).join(", ")}]
keep_names = false

# Workers Logs: the gateway's JSON log lines are collected and searchable.
[observability]
enabled = true

[vars]
# Required: your API. Every request the limiter lets through goes there (path and query appended).
ORIGIN_URL = "https://api.example.com"
# ORIGIN_TIMEOUT_MS = "30000"           # time allowed for the origin's response headers; past it 504

# One rule from three vars (defaults shown) ...
# LIMITER_CAPACITY = "60"                # bucket size: the largest burst
# LIMITER_REFILL_RATE = "1"              # tokens per second (0.5 = one every 2 s)
# LIMITER_KEY = "ip"                     # ip, header:x-api-key, bearer or route
# ... or any number of rules as JSON (replaces the three above):
# LIMITER_RULES = '[{"name":"api","key":"header:x-api-key","capacity":100,"rate":"100/1m"},{"name":"login","match":{"path":"/login","methods":["POST"]},"capacity":5,"rate":"5/15m","blockFor":"15m"}]'
# LIMITER_MISSING_KEY = "anonymous"      # a request without its rule's key: anonymous (one shared bucket) or reject

# LIMITER_BACKEND = "durable-object"     # durable-object, upstash (set the two UPSTASH_ secrets) or memory (tests only)
# LIMITER_KEY_PREFIX = "sluice"          # upstash: namespace of every Redis key
# LIMITER_FAIL_MODE = "open"             # when the store fails: open (allow), closed (503) or local
# LIMITER_TIMEOUT_MS = "1000"            # budget of one store call
# LIMITER_HEADERS = "all"                # all, ietf, legacy or none

# Behind a proxy you control that appends the client address (else leave cf-connecting-ip):
# LIMITER_IP_HEADER = "x-forwarded-for"
# LIMITER_TRUSTED_PROXIES = "1"
# LIMITER_IPV6_PREFIX = "64"

# LIMITER_METRICS = "on"                 # count decisions for /__limiter/metrics and the dashboard
# LIMITER_METRICS_FLUSH_MS = "5000"

# Secrets are never written here: \`npx wrangler secret put NAME\` (and .dev.vars for wrangler dev):
# LIMITER_ADMIN_TOKEN       the admin API (sluice peek|reset|check|overrides|status); unset: no admin API
# LIMITER_METRICS_TOKEN     /__limiter/metrics and the dashboard (the admin token serves when unset)
# LIMITER_HASH_KEY          keys the hash of client keys in storage and metrics
# UPSTASH_REDIS_REST_URL, UPSTASH_REDIS_REST_TOKEN   with LIMITER_BACKEND = "upstash"

${bindings}
# Optional: one Analytics Engine data point per decision.
# [[analytics_engine_datasets]]
# binding = "LIMITER_ANALYTICS"
# dataset = "sluice_decisions"

# Durable Object migrations: one tag per class, in the order sluice added them. Never edit or
# remove a tag once deployed; when an upgrade of sluice adds a class, \`npx sluice init --check .\`
# prints the [[migrations]] block to append.
${migrations}`;
}

const TSCONFIG = `${JSON.stringify(
  {
    compilerOptions: {
      target: "es2022",
      module: "es2022",
      moduleResolution: "bundler",
      lib: ["es2023"],
      types: ["@cloudflare/workers-types"],
      strict: true,
      isolatedModules: true,
      noEmit: true,
    },
    include: ["src"],
  },
  null,
  2,
)}\n`;

const DEV_VARS = `# Copy to .dev.vars (never committed) for \`npx wrangler dev\`; in production: \`npx wrangler secret put NAME\`.
# ORIGIN_URL=http://localhost:3000
# LIMITER_ADMIN_TOKEN=change-me-to-32-random-hex-chars
# LIMITER_METRICS_TOKEN=change-me-to-32-random-hex-chars
# LIMITER_HASH_KEY=change-me-to-32-random-hex-chars
# UPSTASH_REDIS_REST_URL=https://example.upstash.io
# UPSTASH_REDIS_REST_TOKEN=
`;

function readme(name: string): string {
  return `# ${name}

A rate-limiting gateway in front of your API: [sluice](https://www.npmjs.com/package/sluice)'s gateway
Worker, configured by the vars in \`wrangler.toml\`.

1. Set \`ORIGIN_URL\` (and your limits) in \`wrangler.toml\`; secrets in \`.dev.vars\` (see \`.dev.vars.example\`).
2. \`npm install\`, then \`npx wrangler dev\`: the gateway on http://localhost:8787.
3. \`npm run deploy\`: checks \`wrangler.toml\` against the installed sluice, then \`wrangler deploy\`.
   Secrets: \`npx wrangler secret put LIMITER_ADMIN_TOKEN\`.

Upgrade with \`npm update sluice\`, then \`npx sluice init --check .\`: when a release adds a Durable
Object class, it prints the \`[[migrations]]\` block to append (never edit one already deployed).
\`npm run check\` type-checks and bundles without deploying.
`;
}
