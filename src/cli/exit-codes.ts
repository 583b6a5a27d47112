/**
 * The exit codes of `sluice`, for scripts: one per kind of outcome, so a caller can tell "the
 * gateway said no" from "my token is wrong" from "the gateway is down" without parsing text.
 */
export const EXIT = {
  /** Done; `check` allowed; the gateway is healthy. */
  ok: 0,
  /** The command line is wrong, or the gateway answered 400 naming the field it could not use. */
  usage: 1,
  /** The answer is no: `check` refused, `status --path` would be refused, or a 429. */
  refused: 2,
  /** 401: SLUICE_ADMIN_TOKEN is unset or is not the gateway's LIMITER_ADMIN_TOKEN. */
  unauthorized: 3,
  /** 404: the admin API is off (no LIMITER_ADMIN_TOKEN on the gateway), or no sluice gateway at --url. */
  notFound: 4,
  /** The gateway is unreachable, timed out, answered 5xx (store down, invalid configuration) or something unexpected. */
  unavailable: 5,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/**
 * A failure that ends the command: one line for stderr and the exit code. `body` is the gateway's
 * answer, when there was one (printed to stdout with `--json`).
 *
 * @example
 * throw new CliError(EXIT.usage, "--rule is required for check");
 */
export class CliError extends Error {
  override readonly name = "CliError";
  constructor(
    readonly code: ExitCode,
    message: string,
    readonly body?: unknown,
  ) {
    super(message);
  }
}
