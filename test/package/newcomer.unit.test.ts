import { readFile } from "node:fs/promises";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { missingPrograms, requirementsMessage } from "../support/requirements.global";

/**
 * What a newcomer's first `npm test` / `npm run dev` says on a machine that is not ready: the
 * Node check (dev/check-node.mjs, run as plain script with the `process` of an older Node) and the
 * message of the tests' requirements check.
 */
const checkNode = await readFile(new URL("../../dev/check-node.mjs", import.meta.url).pathname, "utf8");

function runCheckNode(version: string): { exitCode: number | undefined; stderr: string } {
  let stderr = "";
  let exitCode: number | undefined;
  const stop = new Error("exit");
  const fakeProcess = {
    versions: { node: version },
    stderr: { write: (text: string) => (stderr += text) },
    exit: (code: number) => {
      exitCode = code;
      throw stop;
    },
  };
  try {
    runInNewContext(checkNode, { process: fakeProcess });
  } catch (error) {
    if (error !== stop) throw error;
  }
  return { exitCode, stderr };
}

describe("dev/check-node.mjs", () => {
  it.each(["14.21.3", "18.20.4", "20.20.2", "22.11.0"])("Node %s: one line naming the version needed, exit 1", (version) => {
    const { exitCode, stderr } = runCheckNode(version);
    expect(exitCode).toBe(1);
    expect(stderr).toBe(`sluice needs Node 22.12 or newer; this is Node ${version}. Install a current one (e.g. \`nvm install 22\`, or https://nodejs.org) and run the command again.\n`);
  });

  it.each(["22.12.0", "23.0.0", "24.4.1", "100.0.0"])("Node %s: says nothing", (version) => {
    expect(runCheckNode(version)).toEqual({ exitCode: undefined, stderr: "" });
  });
});

describe("the tests' requirements", () => {
  it("a PATH without them: each program named, and the one apt-get line that installs them", () => {
    const missing = missingPrograms("/nonexistent");
    expect(missing).toEqual(["redis-server", "prometheus", "promtool", "chromium"]);
    expect(requirementsMessage(missing)).toBe(
      "npm test needs redis-server, prometheus, promtool, chromium, not found on PATH. Install them with: sudo apt-get install -y redis-server prometheus chromium" +
        "   (or run .ci/run, which installs everything and runs the tests; `npm run test:unit` runs the unit tests without them)",
    );
    expect(requirementsMessage(["chromium"])).toMatch(/^npm test needs chromium, not found on PATH\. Install it with: sudo apt-get install -y chromium /);
  });
});
