import { execFile } from "node:child_process";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { bundleForWorkers, startWorkerd } from "../../dev/workerd.mjs";
import { packSluice } from "./pack";

/**
 * The package as a user gets it: `npm pack` (which builds dist/ with tsdown), installed from the
 * tarball into a scratch project beside Hono, then run in plain Node, type-checked, and bundled
 * into a Worker that runs on workerd.
 */
const run = promisify(execFile);
const repo = new URL("../..", import.meta.url).pathname;
let consumer: string;

beforeAll(async () => {
  const tarball = await packSluice();
  const honoVersion = JSON.parse(await readFile(join(repo, "node_modules/hono/package.json"), "utf8")).version as string;

  consumer = await mkdtemp(join(tmpdir(), "sluice-consumer-"));
  await writeFile(join(consumer, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module", dependencies: { sluice: `file:${tarball}`, hono: honoVersion } }));
  await run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", "--ignore-scripts"], { cwd: consumer });
  await writeFile(
    join(consumer, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: { target: "es2022", module: "nodenext", moduleResolution: "nodenext", lib: ["es2023", "dom"], types: [], strict: true, noEmit: true, skipLibCheck: false },
      include: ["app.ts", "fetch-app.ts"],
    }),
  );
  await writeFile(join(consumer, "app.ts"), APP);
  await writeFile(join(consumer, "fetch-app.ts"), FETCH_APP);
}, 120_000);

/** The README's library example, as a consumer writes it. */
const APP = `import { Hono } from "hono";
import { memoryBackend } from "sluice";
import { rateLimiter } from "sluice/hono";

const app = new Hono();
app.use(rateLimiter({ backend: memoryBackend(), rules: [{ name: "api", key: "header:x-api-key", capacity: 5, rate: "1/1m" }] }));
app.get("/", (c) => c.text("ok"));

const results = [];
for (let i = 0; i < 6; i++) {
  const response = await app.request("/", { headers: { "x-api-key": "k" } });
  results.push({
    status: response.status,
    policy: response.headers.get("RateLimit-Policy"),
    rateLimit: response.headers.get("RateLimit"),
    contentType: response.headers.get("Content-Type"),
    body: await response.text(),
  });
}
console.log(JSON.stringify(results));
`;

/** docs/library.md's example without a framework: `limitRequest` around a handler. */
const FETCH_APP = `import { Limiter, memoryBackend } from "sluice";
import { limitRequest } from "sluice/fetch";

const limiter = new Limiter({ backend: memoryBackend(), rules: [{ name: "api", key: "header:x-api-key", capacity: 2, rate: "1/1m" }] });
const handler = async () => new Response("ok");

const results = [];
for (let i = 0; i < 3; i++) {
  const response = await limitRequest(new Request("http://localhost/", { headers: { "x-api-key": "k" } }), handler, { limiter });
  results.push({ status: response.status, rateLimit: response.headers.get("RateLimit"), body: await response.text() });
}
console.log(JSON.stringify(results));
`;

describe("the sluice package, installed from its tarball", () => {
  it("runs a Hono app in plain Node: five 200s, then a 429 with the IETF headers", async () => {
    const { stdout } = await run(process.execPath, ["app.ts"], { cwd: consumer });
    const results = JSON.parse(stdout) as { status: number; policy: string; rateLimit: string; contentType: string; body: string }[];
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 429]);
    expect(results[0]).toMatchObject({ policy: '"api";q=5;w=300', rateLimit: '"api";r=4;t=60', body: "ok" });
    const refused = results[5];
    expect(refused).toMatchObject({ policy: '"api";q=5;w=300', rateLimit: '"api";r=0;t=60', contentType: "application/problem+json" });
    expect(JSON.parse(refused?.body ?? "{}")).toMatchObject({ status: 429, "violated-policies": ["api"] });
  }, 30_000);

  it("runs limitRequest (sluice/fetch) in plain Node: two 200s with the headers, then a 429", async () => {
    const { stdout } = await run(process.execPath, ["fetch-app.ts"], { cwd: consumer });
    const results = JSON.parse(stdout) as { status: number; rateLimit: string; body: string }[];
    expect(results.map((r) => r.status)).toEqual([200, 200, 429]);
    expect(results[0]).toMatchObject({ rateLimit: '"api";r=1;t=60', body: "ok" });
    expect(JSON.parse(results[2]?.body ?? "{}")).toMatchObject({ status: 429, "violated-policies": ["api"] });
  }, 30_000);

  it("type-checks the consumer, and a wrong rule fails to", async () => {
    const tsc = join(repo, "node_modules/.bin/tsc");
    await expect(run(tsc, ["-p", "."], { cwd: consumer })).resolves.toBeDefined();
    await writeFile(join(consumer, "app.ts"), APP.replace('rate: "1/1m"', "rate: {}"));
    try {
      const failure = await run(tsc, ["-p", "."], { cwd: consumer }).then(
        () => "",
        (error: { stdout: string }) => error.stdout,
      );
      expect(failure).toMatch(/app\.ts.*error TS\d+/);
    } finally {
      await writeFile(join(consumer, "app.ts"), APP);
    }
  }, 60_000);

  it("each entry point exports exactly the names the README documents (no internal leaks out)", async () => {
    const dist = join(consumer, "node_modules/sluice/dist");
    // tsdown ends each entry with one `export { a, b as c };` statement: the names after `as`, or the names.
    const exported = async (entry: string) => {
      const text = await readFile(join(dist, entry), "utf8");
      const list = [...text.matchAll(/^export \{([^}]*)\};?$/gm)].flatMap((m) => (m[1] ?? "").split(","));
      return list
        .map(
          (item) =>
            item
              .trim()
              .split(/\s+as\s+/)
              .pop() ?? "",
        )
        .filter((name) => name !== "")
        .sort();
    };
    expect(await exported("index.js")).toEqual([
      "BackendConfigError",
      "DEFAULTS",
      "InvalidRulesError",
      "Limiter",
      "PROBLEM_TYPES",
      "memoryBackend",
      "parseRulesJson",
      "passes",
      "requestSubject",
      "verdictResponse",
    ]);
    expect(await exported("hono.js")).toEqual(["rateLimiter"]);
    expect(await exported("fetch.js")).toEqual(["limitRequest"]);
    expect(await exported("durable-object.js")).toEqual(["ClientBuckets", "durableObjectBackend"]);
    expect(await exported("upstash.js")).toEqual(["upstashBackend"]);
    expect(await exported("gateway.js")).toEqual(["ClientBuckets", "GatewayMetrics", "LimiterService", "default"]);
  });

  it("neither `sluice`, `sluice/hono` nor `sluice/fetch` loads cloudflare:workers; `sluice/durable-object` does; `sluice/gateway` loads nothing else", async () => {
    const dist = join(consumer, "node_modules/sluice/dist");
    const importsOf = async (file: string, seen = new Set<string>()): Promise<string[]> => {
      if (seen.has(file)) return [];
      seen.add(file);
      const text = await readFile(join(dist, file), "utf8");
      const specifiers = [...text.matchAll(/^import .* from "([^"]+)";$/gm)].map((m) => m[1] ?? "");
      const nested = await Promise.all(specifiers.filter((s) => s.startsWith("./")).map((s) => importsOf(s.slice(2), seen)));
      return [...specifiers, ...nested.flat()];
    };
    for (const entry of ["index.js", "hono.js", "fetch.js"]) expect((await importsOf(entry)).filter((s) => s.startsWith("cloudflare:"))).toEqual([]);
    expect(await importsOf("durable-object.js")).toContain("cloudflare:workers");
    // The gateway carries Hono and @upstash/redis inside: a deployment installs sluice and wrangler only.
    expect(await importsOf("gateway.js")).toEqual(["cloudflare:workers"]);
  });

  it("runs a Worker built on sluice/durable-object on workerd: 200, 200, 429", async () => {
    await writeFile(
      join(consumer, "worker.ts"),
      `import { Hono } from "hono";
import { Limiter } from "sluice";
import { ClientBuckets, durableObjectBackend } from "sluice/durable-object";
import { rateLimiter } from "sluice/hono";

export { ClientBuckets };
type Env = { Bindings: { BUCKETS: DurableObjectNamespace<ClientBuckets> } };
let limiter: Limiter | undefined;
const app = new Hono<Env>();
app.use(rateLimiter<Env>({ limiter: (c) => (limiter ??= new Limiter({ backend: durableObjectBackend(c.env.BUCKETS), rules: [{ name: "api", capacity: 2, rate: "1/1h" }] })) }));
app.get("/", (c) => c.text("ok"));
export default app;
`,
    );
    const outfile = join(consumer, "dist/worker.js");
    await bundleForWorkers(join(consumer, "worker.ts"), outfile);
    const worker = await startWorkerd({ scriptPath: outfile, vars: {}, durableObjects: { BUCKETS: { className: "ClientBuckets", useSQLite: true } } });
    try {
      const statuses = [];
      for (let i = 0; i < 3; i++) {
        const response = await fetch(`${worker.url}/`, { headers: { "cf-connecting-ip": "203.0.113.9" } });
        await response.arrayBuffer();
        statuses.push(response.status);
      }
      expect(statuses).toEqual([200, 200, 429]);
    } finally {
      await worker.dispose();
    }
  }, 60_000);
});
