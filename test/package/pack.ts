import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readdir, rmdir, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
const repo = new URL("../..", import.meta.url).pathname;
/** One `npm pack` at a time: each rebuilds (and first empties) this repository's dist/, and test files run in parallel. */
const LOCK = join(repo, ".wrangler", "npm-pack.lock");

/**
 * Packs this repository as `npm pack` does for a release (prepack builds dist/), into a scratch
 * folder, and answers the tarball's path. Test files in parallel pack one after the other.
 *
 * @example
 * const tarball = await packSluice(); // "/tmp/sluice-pack-…/sluice-0.1.0.tgz"
 */
export async function packSluice(): Promise<string> {
  await acquire();
  try {
    const packed = await mkdtemp(join(tmpdir(), "sluice-pack-"));
    await run("npm", ["pack", "--silent", "--pack-destination", packed], { cwd: repo });
    const [tarball] = (await readdir(packed)).filter((name) => name.endsWith(".tgz"));
    if (tarball === undefined) throw new Error("npm pack made no tarball");
    return join(packed, tarball);
  } finally {
    await rmdir(LOCK).catch(() => undefined);
  }
}

async function acquire(): Promise<void> {
  await mkdir(join(LOCK, ".."), { recursive: true });
  const deadline = Date.now() + 180_000;
  for (;;) {
    try {
      await mkdir(LOCK);
      return;
    } catch {
      // A lock older than any pack is a crashed run's: take it over.
      const age = await stat(LOCK).then(
        (s) => Date.now() - s.mtimeMs,
        () => 0,
      );
      if (age > 120_000) await rmdir(LOCK).catch(() => undefined);
      if (Date.now() > deadline) throw new Error(`another npm pack held ${LOCK} for 3 minutes`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}
