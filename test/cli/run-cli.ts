import { spawn } from "node:child_process";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build, type UserConfig } from "tsdown";
import configs from "../../tsdown.config";

/** What one run of the command printed and how it exited. */
export interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Builds `sluice` with the package's own tsdown configuration for it (as `npm pack` does) into a
 * scratch folder, and answers the path of the built command.
 *
 * @example
 * const cli = await buildCli(); // "/tmp/sluice-cli-…/cli.js"
 */
export async function buildCli(): Promise<string> {
  const cli = (configs as UserConfig[]).find((config) => typeof config.entry === "object" && config.entry !== null && "cli" in config.entry);
  if (cli === undefined) throw new Error("tsdown.config.ts builds no cli entry");
  const outDir = await mkdtemp(join(tmpdir(), "sluice-cli-"));
  await build({ ...cli, config: false, outDir, logLevel: "silent" });
  return join(outDir, "cli.js");
}

/**
 * Runs the built command as a user's shell would (a child process, its own environment: only
 * PATH and what `env` adds), and collects its output.
 *
 * @example
 * const { code, stdout } = await runCli(cli, ["status", "--url", gateway.url]);
 */
export function runCli(cli: string, args: readonly string[], env: Record<string, string> = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { env: { PATH: process.env.PATH ?? "", ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr }));
  });
}
