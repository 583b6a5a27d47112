#!/usr/bin/env node
import { parseInvocation, type Command, type Invocation } from "./args";
import { CliError, EXIT, type ExitCode } from "./exit-codes";
import { HELP } from "./help";
import { GatewayClient } from "./http";
import type { Outcome } from "./outcome";
import { check, peek, reset } from "./verbs/client";
import { init } from "./verbs/init";
import { listOverrides, removeOverride, setOverride } from "./verbs/overrides";
import { status } from "./verbs/status";

/** Every command and the function that runs it (`init` belongs to the scaffold: its own module). */
const COMMANDS: Record<Command, (invocation: Invocation, gateway: GatewayClient) => Promise<Outcome>> = {
  peek,
  reset,
  check,
  "overrides list": listOverrides,
  "overrides set": setOverride,
  "overrides remove": removeOverride,
  status,
  init,
  help: async () => ({ code: EXIT.ok, json: undefined, text: HELP.trimEnd() }),
};

/**
 * Runs one `sluice` command line: prints the answer (a table, or JSON with `--json`) on stdout,
 * a one-line error on stderr, and returns the exit code (see `EXIT`).
 *
 * @example
 * process.exitCode = await main(["peek", "--rule", "api", "--client", "header:x-api-key=abc"], process.env);
 */
async function main(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): Promise<ExitCode> {
  let json = argv.includes("--json");
  try {
    const invocation = parseInvocation(argv, env);
    json = invocation.json;
    const gateway = new GatewayClient(invocation.url, env.SLUICE_ADMIN_TOKEN?.trim() || undefined);
    const outcome = await COMMANDS[invocation.command](invocation, gateway);
    process.stdout.write(`${json ? JSON.stringify(outcome.json, null, 2) : outcome.text}\n`);
    return outcome.code;
  } catch (error) {
    if (!(error instanceof CliError)) {
      // An answer of a shape this version does not know (a newer or older gateway), or a bug: still one line.
      process.stderr.write(`sluice: unexpected answer or internal error: ${error instanceof Error ? error.message : String(error)}\n`);
      return EXIT.unavailable;
    }
    if (json && error.body !== undefined) process.stdout.write(`${JSON.stringify(error.body, null, 2)}\n`);
    process.stderr.write(`sluice: ${error.message}\n`);
    return error.code;
  }
}

process.exitCode = await main(process.argv.slice(2), process.env);
