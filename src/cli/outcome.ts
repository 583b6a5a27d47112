import type { ExitCode } from "./exit-codes";

/** What a command ends with: the exit code, the answer for `--json`, and the text for people. */
export interface Outcome {
  readonly code: ExitCode;
  /** Printed with `--json`: the gateway's own answer, unchanged. */
  readonly json: unknown;
  /** Printed otherwise. */
  readonly text: string;
}
