import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

/**
 * The programs the `node` and `workers` test projects run for real, and the Debian package of each.
 * (promtool comes with prometheus; the `unit` project needs none of them.)
 */
export const REQUIRED_PROGRAMS = [
  { program: "redis-server", debianPackage: "redis-server" },
  { program: "prometheus", debianPackage: "prometheus" },
  { program: "promtool", debianPackage: "prometheus" },
  { program: "chromium", alternatives: ["chromium-browser"], debianPackage: "chromium" },
] as const;

/**
 * The required programs not found on `path` (a PATH value).
 *
 * @example
 * missingPrograms("/usr/bin"); // [] on a provisioned machine, ["redis-server", …] elsewhere
 */
export function missingPrograms(path: string): string[] {
  const dirs = path.split(delimiter).filter((dir) => dir !== "");
  const found = (name: string) => dirs.some((dir) => isExecutable(join(dir, name)));
  return REQUIRED_PROGRAMS.filter((r) => ![r.program, ...("alternatives" in r ? r.alternatives : [])].some(found)).map((r) => r.program);
}

/**
 * The one message for a machine that lacks some: what is missing and the one command that installs it.
 *
 * @example
 * requirementsMessage(["redis-server"]);
 * // "npm test needs redis-server, not found on PATH. Install it with: sudo apt-get install -y redis-server …"
 */
export function requirementsMessage(missing: readonly string[]): string {
  const packages = [...new Set(REQUIRED_PROGRAMS.filter((r) => missing.includes(r.program)).map((r) => r.debianPackage))];
  return (
    `npm test needs ${missing.join(", ")}, not found on PATH. Install ${packages.length > 1 ? "them" : "it"} with: ` +
    `sudo apt-get install -y ${packages.join(" ")}   (or run .ci/run, which installs everything and runs the tests; ` +
    "`npm run test:unit` runs the unit tests without them)"
  );
}

/** Vitest global setup of the `node` and `workers` projects: stops the run at once, with one message, when a program is missing. */
export default function checkRequirements(): void {
  const missing = missingPrograms(process.env.PATH ?? "");
  if (missing.length === 0) return;
  process.stderr.write(`\n${requirementsMessage(missing)}\n\n`);
  process.exit(1);
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
