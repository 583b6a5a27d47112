import { bindingBlock, DURABLE_OBJECTS, migrationBlock } from "./templates";

/** What `sluice init --check` found in a project's wrangler.toml. */
export interface WranglerCheck {
  /** Classes sluice exports that no `[[migrations]]` entry creates. */
  readonly unmigrated: readonly string[];
  /** Classes sluice reads through a binding that wrangler.toml does not declare (top level). */
  readonly unbound: readonly string[];
  /** What to append to wrangler.toml, empty when nothing is missing. */
  readonly append: string;
}

/**
 * Checks a wrangler.toml against the Durable Object classes this sluice exports: each must be
 * created by a `[[migrations]]` entry and bound under its name. A missing class gets a new tag
 * after the highest `vN` in the file, never an edit of an applied one. (A light reading of the
 * TOML: the quoted names in `new_sqlite_classes`/`new_classes` arrays and in `class_name` keys.)
 *
 * @example
 * checkWranglerToml(text).append; // '[[migrations]]\ntag = "v3"\nnew_sqlite_classes = ["GatewayMetrics"]\n…'
 */
export function checkWranglerToml(text: string): WranglerCheck {
  const toml = text
    .split("\n")
    .map((line) => line.replace(/^\s*#.*$/, ""))
    .join("\n");
  const migrated = new Set([...toml.matchAll(/^\s*new(?:_sqlite)?_classes\s*=\s*\[([^\]]*)\]/gm)].flatMap((m) => quoted(m[1] ?? "")));
  // Only top-level bindings: environments ([env.x]) repeat them, and the top level is what `wrangler deploy` uses.
  const topLevel = toml.split(/^\s*\[+env\./m)[0] ?? "";
  const bound = new Set([...topLevel.matchAll(/^\s*class_name\s*=\s*"([^"]+)"/gm)].map((m) => m[1] ?? ""));
  const tags = [...toml.matchAll(/^\s*tag\s*=\s*"v(\d+)"/gm)].map((m) => Number(m[1]));
  const unmigrated = DURABLE_OBJECTS.filter((o) => !migrated.has(o.className)).map((o) => o.className);
  const unbound = DURABLE_OBJECTS.filter((o) => !bound.has(o.className));
  const next = `v${Math.max(0, ...tags) + 1}`;
  const append = [...(unmigrated.length > 0 ? [migrationBlock(next, unmigrated)] : []), ...unbound.map((o) => bindingBlock(o.binding, o.className))].join("\n");
  return { unmigrated, unbound: unbound.map((o) => o.className), append };
}

function quoted(list: string): string[] {
  return [...list.matchAll(/"([^"]+)"|'([^']+)'/g)].map((m) => m[1] ?? m[2] ?? "");
}
