import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { devDependencies, version } from "../../../package.json";
import type { Invocation } from "../args";
import { CliError, EXIT } from "../exit-codes";
import { checkWranglerToml } from "../init/check";
import { projectFiles } from "../init/templates";
import type { Outcome } from "../outcome";

/** The scaffold's dev dependencies, at the ranges this sluice is built and tested with. */
const DEV_DEPENDENCIES = ["wrangler", "@cloudflare/workers-types", "typescript"] as const;

/**
 * `sluice init <dir>`: writes a gateway project (wrangler.toml, src/index.ts, package.json, …)
 * into a new or empty folder. `--sluice-version SPEC` sets the dependency (default: this
 * version); `--check` checks an existing project's wrangler.toml instead.
 *
 * @example
 * await init({ command: "init", operands: ["my-gateway"], … }); // { code: 0, text: "Wrote my-gateway: …" }
 */
export async function init(invocation: Invocation): Promise<Outcome> {
  const [dir, extra] = invocation.operands;
  if (dir === undefined) throw new CliError(EXIT.usage, `"sluice init" needs a folder, e.g. sluice init my-gateway${invocation.check === true ? " (with --check: the project's folder, e.g. .)" : ""}`);
  if (extra !== undefined) throw new CliError(EXIT.usage, `"sluice init" takes one folder; "${extra}" is one too many`);
  return invocation.check === true ? check(dir) : scaffold(dir, invocation.sluiceVersion ?? `^${version}`);
}

async function scaffold(dir: string, sluiceSpec: string): Promise<Outcome> {
  const root = resolve(dir);
  const present = existsSync(root) ? await readdir(root).catch(() => null) : [];
  if (present === null) throw new CliError(EXIT.usage, `${dir} exists and is not a folder: give a new or empty folder`);
  if (present.length > 0) throw new CliError(EXIT.usage, `${dir} is not empty (${present.slice(0, 3).join(", ")}${present.length > 3 ? ", …" : ""}): give a new or empty folder, nothing was written`);
  const name = workerName(basename(root));
  const files = projectFiles({ name, sluiceSpec, devDependencies: Object.fromEntries(DEV_DEPENDENCIES.map((d) => [d, devDependencies[d]])) });
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), content, { flag: "wx" });
  }
  const text = [
    `Wrote a sluice gateway (sluice ${sluiceSpec}) in ${dir}: ${Object.keys(files).join(", ")}`,
    "Next:",
    `  cd ${dir}`,
    "  npm install",
    "  (set ORIGIN_URL and your limits in wrangler.toml)",
    "  npx wrangler dev      # the gateway on http://localhost:8787",
    "  npm run deploy        # checks wrangler.toml, then wrangler deploy",
  ].join("\n");
  return { code: EXIT.ok, json: { dir: root, name, sluice: sluiceSpec, files: Object.keys(files) }, text };
}

async function check(dir: string): Promise<Outcome> {
  const path = join(resolve(dir), "wrangler.toml");
  const text = await readFile(path, "utf8").catch(() => {
    throw new CliError(EXIT.usage, `no wrangler.toml in ${dir}: give the folder of a project made by sluice init`);
  });
  const found = checkWranglerToml(text);
  if (found.append === "") {
    return { code: EXIT.ok, json: { ok: true, wrangler: path }, text: `${path} creates and binds every Durable Object class of sluice ${version}` };
  }
  const missing = [...new Set([...found.unmigrated, ...found.unbound])].join(", ");
  const message = [
    `${path} lacks Durable Object class(es) sluice ${version} exports: ${missing}.`,
    "Append this to wrangler.toml (never edit or remove a [[migrations]] entry already deployed), then deploy:",
    "",
    found.append.trimEnd(),
  ].join("\n");
  throw new CliError(EXIT.usage, message, { ok: false, wrangler: path, unmigrated: found.unmigrated, unbound: found.unbound, append: found.append });
}

/** A Worker name from a folder name: lower case letters, digits and dashes (wrangler's rule). */
function workerName(folder: string): string {
  const name = folder
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 63);
  return name === "" ? "sluice-gateway" : name;
}
