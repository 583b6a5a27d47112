import { CliError, EXIT } from "../exit-codes";
import type { Outcome } from "../outcome";

/**
 * `sluice init <dir>`: will scaffold a gateway project (issue 20, "The gateway as a package").
 * Its place in the dispatch is kept; until then it says so and exits 1.
 *
 * @example
 * await init(); // throws CliError(1, "sluice init is not available yet …")
 */
export async function init(): Promise<Outcome> {
  throw new CliError(EXIT.usage, "sluice init is not available yet: clone the repository and follow the Deploy section of docs/operations.md");
}
