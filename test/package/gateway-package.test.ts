import { execFile, spawn, type ChildProcess } from "node:child_process";
import { appendFile, mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { startOrigin } from "../../dev/origin.mjs";
import { packSluice } from "./pack";

/**
 * `sluice/gateway` as a stranger gets it: `npm pack`, then the packed `sluice init` writes a project
 * into a scratch folder, `npm install` installs the tarball and wrangler there, and the project runs
 * under `wrangler dev`, bundles with `wrangler deploy --dry-run` and type-checks with its own tsc.
 * Nothing of this repository is used past the tarball (but the demo origin, and wrangler's reader
 * of this repository's wrangler.toml to compare the bindings).
 */
const run = promisify(execFile);
const repo = new URL("../..", import.meta.url).pathname;
// wrangler dev would fetch the `Request.cf` object from workers.cloudflare.com: tests talk to loopback only.
const QUIET = { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false", NO_UPDATE_NOTIFIER: "1" };
let cli: string;
let tarball: string;
let project: string;

beforeAll(async () => {
  tarball = await packSluice();
  await run("tar", ["xzf", tarball, "-C", dirname(tarball)]);
  cli = join(dirname(tarball), "package/dist/cli.js");

  project = join(await mkdtemp(join(tmpdir(), "sluice-init-")), "my-gateway");
  await run(process.execPath, [cli, "init", project, "--sluice-version", `file:${tarball}`]);
  await pinToTestedVersions(project, ["wrangler", "@cloudflare/workers-types"]);
  await run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline"], { cwd: project, env: QUIET });
}, 240_000);

/**
 * Sets these dev dependencies of the scratch project to the versions this repository installed
 * (and was tested with). A registry may hold a newer wrangler whose peer range names a
 * @cloudflare/workers-types it does not hold yet (seen on this machine's mirror: wrangler 4.168.0
 * asks for ^5.20261123.1, the newest there was 5.20261117.1), and `npm install` then fails on the
 * registry, not on sluice. A user installs the template's ranges (src/cli/init/templates.ts).
 */
async function pinToTestedVersions(folder: string, names: readonly string[]): Promise<void> {
  const path = join(folder, "package.json");
  const pkg = JSON.parse(await readFile(path, "utf8"));
  for (const name of names) {
    const installed = JSON.parse(await readFile(join(repo, "node_modules", name, "package.json"), "utf8")).version;
    pkg.devDependencies[name] = installed;
  }
  await writeFile(path, JSON.stringify(pkg, null, 2));
}

describe("sluice init, from the packed tarball", () => {
  it("writes the project: the one-line Worker, wrangler.toml, package.json, .dev.vars.example, README", async () => {
    expect((await readdir(project)).sort()).toEqual(
      [".dev.vars.example", ".gitignore", "README.md", "node_modules", "package-lock.json", "package.json", "src", "tsconfig.json", "wrangler.toml"].sort(),
    );
    expect(await readFile(join(project, "src/index.ts"), "utf8")).toBe('export { default, ClientBuckets, GatewayMetrics, LimiterService } from "sluice/gateway";\n');
    const pkg = JSON.parse(await readFile(join(project, "package.json"), "utf8"));
    expect(pkg).toMatchObject({ name: "my-gateway", dependencies: { sluice: `file:${tarball}` } });
    expect(Object.keys(pkg.devDependencies)).toContain("wrangler");
    const toml = await readFile(join(project, "wrangler.toml"), "utf8");
    // Every common var is there, commented, with its default.
    for (const name of [
      "LIMITER_CAPACITY",
      "LIMITER_REFILL_RATE",
      "LIMITER_KEY",
      "LIMITER_RULES",
      "LIMITER_BACKEND",
      "LIMITER_FAIL_MODE",
      "LIMITER_ADMIN_TOKEN",
      "LIMITER_METRICS_TOKEN",
      "LIMITER_HASH_KEY",
    ]) {
      expect(toml).toContain(name);
    }
  });

  it("its wrangler.toml has this repository's compatibility, bindings and migrations", async () => {
    const { experimental_readRawConfig: read } = await import("wrangler");
    const ours = read({ config: join(repo, "wrangler.toml") }).rawConfig;
    const theirs = read({ config: join(project, "wrangler.toml") }).rawConfig;
    for (const field of ["compatibility_date", "compatibility_flags", "durable_objects", "migrations"] as const) {
      expect(theirs[field], field).toEqual(ours[field]);
    }
  });

  it("refuses a folder that is not empty, and writes nothing", async () => {
    const before = await readFile(join(project, "package.json"), "utf8");
    const failure = await run(process.execPath, [cli, "init", project]).then(
      () => undefined,
      (error: { code: number; stderr: string }) => error,
    );
    expect(failure?.code).toBe(1);
    expect(failure?.stderr).toMatch(/^sluice: .*my-gateway is not empty \(.*\): give a new or empty folder, nothing was written\n$/);
    expect(await readFile(join(project, "package.json"), "utf8")).toBe(before);
  });

  it("`wrangler dev` serves the gateway: 200s, then a 429 with the IETF fields; the dashboard comes built", async () => {
    const origin = await startOrigin();
    const [port, inspector] = [await freePort(), await freePort()];
    const vars = { ORIGIN_URL: origin.url, LIMITER_CAPACITY: "3", LIMITER_REFILL_RATE: "0.001", LIMITER_KEY: "header:x-api-key", LIMITER_METRICS_TOKEN: "a-metrics-token-of-32-characters" };
    const wrangler = spawn(
      join(project, "node_modules/.bin/wrangler"),
      ["dev", "--ip", "127.0.0.1", "--port", String(port), "--inspector-port", String(inspector), ...Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}:${v}`])],
      { cwd: project, env: QUIET, stdio: ["ignore", "pipe", "pipe"], detached: true },
    );
    let log = "";
    wrangler.stdout?.on("data", (chunk) => (log += chunk));
    wrangler.stderr?.on("data", (chunk) => (log += chunk));
    try {
      await waitForReady(`http://127.0.0.1:${port}`, wrangler, () => log);
      const answers = [];
      for (let i = 0; i < 4; i++) {
        const response = await fetch(`http://127.0.0.1:${port}/echo`, { headers: { "x-api-key": "stranger" } });
        answers.push({
          status: response.status,
          policy: response.headers.get("RateLimit-Policy"),
          rateLimit: response.headers.get("RateLimit"),
          type: response.headers.get("Content-Type"),
          body: await response.text(),
        });
      }
      expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 429]);
      expect(JSON.parse(answers[0]?.body ?? "{}")).toMatchObject({ method: "GET", path: "/echo" });
      expect(answers[3]).toMatchObject({ policy: '"default";q=3;w=3000', type: "application/problem+json" });
      expect(answers[3]?.rateLimit).toMatch(/^"default";r=0;t=\d+$/);
      expect(JSON.parse(answers[3]?.body ?? "{}")).toMatchObject({ status: 429, "violated-policies": ["default"] });
      // The dashboard's script and uPlot's stylesheet are inside the package: the project built nothing of sluice's.
      const dashboard = await fetch(`http://127.0.0.1:${port}/__limiter/dashboard`);
      const html = await dashboard.text();
      expect(dashboard.status).toBe(200);
      expect(html).toMatch(/<style>[^<]*\.uplot/);
      expect(html.match(/<script>([\s\S]*?)<\/script>/)?.[1]?.length ?? 0).toBeGreaterThan(10_000);
    } finally {
      await stop(wrangler);
      await origin.close();
    }
  }, 90_000);

  it("`wrangler deploy --dry-run` bundles it with both Durable Object bindings", async () => {
    const outdir = await mkdtemp(join(tmpdir(), "sluice-init-dry-"));
    const { stdout } = await run(join(project, "node_modules/.bin/wrangler"), ["deploy", "--dry-run", "--outdir", outdir], { cwd: project, env: QUIET });
    expect(stdout).toContain("env.LIMITER_BUCKETS (ClientBuckets)");
    expect(stdout).toContain("env.LIMITER_METRICS_STORE (GatewayMetrics)");
    expect(await readdir(outdir)).toContain("index.js");
  }, 60_000);

  it("type-checks with its own tsc and @cloudflare/workers-types; a class the package lacks does not", async () => {
    const tsc = join(project, "node_modules/.bin/tsc");
    await expect(run(tsc, ["-p", "."], { cwd: project })).resolves.toBeDefined();
    const entry = join(project, "src/index.ts");
    const good = await readFile(entry, "utf8");
    await writeFile(entry, good.replace("GatewayMetrics", "GatewayMetric"));
    try {
      const failure = await run(tsc, ["-p", "."], { cwd: project }).then(
        () => "",
        (error: { stdout: string }) => error.stdout,
      );
      expect(failure).toMatch(/src\/index\.ts.*error TS\d+.*GatewayMetric/);
    } finally {
      await writeFile(entry, good);
    }
  }, 60_000);

  it("an upgrade that adds a Durable Object class: `sluice init --check` prints the block to append, then passes", async () => {
    const path = join(project, "wrangler.toml");
    const current = await readFile(path, "utf8");
    // The project as an older sluice wrote it: no GatewayMetrics binding, no v2 migration.
    const older = current
      .replace(/# one object that adds up[^\n]*\n\[\[durable_objects\.bindings\]\]\nname = "LIMITER_METRICS_STORE"\nclass_name = "GatewayMetrics"\n/, "")
      .replace(/\n\[\[migrations\]\]\ntag = "v2"\nnew_sqlite_classes = \["GatewayMetrics"\]\n/, "");
    expect(older).not.toContain("GatewayMetrics");
    await writeFile(path, older);
    try {
      const sluice = join(project, "node_modules/.bin/sluice");
      const failure = await run(sluice, ["init", "--check", "."], { cwd: project }).then(
        () => undefined,
        (error: { code: number; stderr: string }) => error,
      );
      expect(failure?.code).toBe(1);
      expect(failure?.stderr).toContain("lacks Durable Object class(es) sluice 0.1.0 exports: GatewayMetrics.");
      expect(failure?.stderr).toContain("never edit or remove a [[migrations]] entry already deployed");
      expect(failure?.stderr).toContain('[[migrations]]\ntag = "v2"\nnew_sqlite_classes = ["GatewayMetrics"]');
      // Following the instruction (the same text, from --json for a script) makes the project whole.
      const json = await run(sluice, ["init", "--check", ".", "--json"], { cwd: project }).catch((error: { stdout: string }) => error);
      await appendFile(path, `\n${JSON.parse(json.stdout).append}`);
      await expect(run(sluice, ["init", "--check", "."], { cwd: project })).resolves.toMatchObject({ stdout: expect.stringContaining("creates and binds every Durable Object class") });
      const outdir = await mkdtemp(join(tmpdir(), "sluice-init-dry-"));
      const { stdout } = await run(join(project, "node_modules/.bin/wrangler"), ["deploy", "--dry-run", "--outdir", outdir], { cwd: project, env: QUIET });
      expect(stdout).toContain("env.LIMITER_METRICS_STORE (GatewayMetrics)");
    } finally {
      await writeFile(path, current);
    }
  }, 60_000);
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function waitForReady(url: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited ${child.exitCode}:\n${log()}`);
    const ok = await fetch(`${url}/__limiter/health`).then(
      (response) => response.arrayBuffer().then(() => true),
      () => false,
    );
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`wrangler dev did not answer within 60 s:\n${log()}`);
}

/** Stops wrangler dev and the workerd it started (its own process group). */
async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.pid === undefined) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  process.kill(-child.pid, "SIGINT");
  const timer = setTimeout(() => child.pid !== undefined && process.kill(-child.pid, "SIGKILL"), 5_000);
  await exited;
  clearTimeout(timer);
}
