import { spawn } from "node:child_process";
import { mkdtemp, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

/**
 * A newcomer's machine with Node and nothing else (no redis-server, prometheus or chromium on
 * PATH): the test command stops within seconds with one message, and the unit tests still run.
 */
const repo = new URL("../..", import.meta.url).pathname;

async function vitestWithOnlyNode(args: string[]): Promise<{ code: number | null; output: string; ms: number }> {
  const bin = await mkdtemp(join(tmpdir(), "sluice-only-node-"));
  await symlink(process.execPath, join(bin, "node"));
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(repo, "node_modules/vitest/vitest.mjs"), "run", ...args], {
      cwd: repo,
      env: { PATH: bin, HOME: process.env.HOME ?? "/tmp", VITE_CONFIG_NATIVE_IGNORE_WARNING: "true", NO_COLOR: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk) => (output += chunk));
    child.stderr.on("data", (chunk) => (output += chunk));
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("error", reject);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, output, ms: Date.now() - started });
    });
  });
}

describe("npm test on a machine without the test programs", () => {
  it("stops within seconds with one message naming what is missing and the command that installs it", async () => {
    const { code, output, ms } = await vitestWithOnlyNode(["--project", "node", "test/dev/build-dashboard.test.ts"]);
    expect(code).toBe(1);
    expect(ms).toBeLessThan(20_000);
    const lines = output.split("\n").filter((line) => line.includes("npm test needs"));
    expect(lines).toEqual([
      expect.stringMatching(/^npm test needs redis-server, prometheus, promtool, chromium, not found on PATH\. Install them with: sudo apt-get install -y redis-server prometheus chromium /),
    ]);
    expect(output).not.toMatch(/\n\s+at /); // no stack trace
  }, 60_000);

  it("`npm run test:unit`'s configuration needs none of them", async () => {
    const { code, output } = await vitestWithOnlyNode(["--config", "vitest.unit.config.ts", "test/package/newcomer.unit.test.ts"]);
    expect(output).not.toContain("npm test needs");
    expect(code).toBe(0);
  }, 60_000);
});
