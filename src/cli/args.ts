import { parseArgs } from "node:util";
import { CliError, EXIT } from "./exit-codes";

/** Where `sluice` looks for the gateway when neither `--url` nor `SLUICE_URL` says: `npm run dev`'s address. */
export const DEFAULT_URL = "http://localhost:8787";

/** The flags each command takes besides the global ones (`--url`, `--json`, `--help`). */
const COMMAND_FLAGS = {
  peek: ["rule", "client"],
  reset: ["rule", "client"],
  check: ["rule", "client", "cost"],
  "overrides list": [],
  "overrides set": ["rule", "client", "capacity", "rate"],
  "overrides remove": ["rule", "client"],
  status: ["path", "method", "header"],
  init: ["sluice-version", "check"],
  help: [],
} as const satisfies Record<string, readonly string[]>;

export type Command = keyof typeof COMMAND_FLAGS;

/** A parsed command line: the command, where the gateway is, and the command's own flags, typed. */
export interface Invocation {
  readonly command: Command;
  readonly url: string;
  readonly json: boolean;
  readonly rule?: string;
  /** `--client PART=VALUE`, repeated: the client as the rule names it. */
  readonly client?: Record<string, string>;
  readonly cost?: number;
  readonly capacity?: number;
  readonly rate?: string | number;
  readonly path?: string;
  readonly method?: string;
  /** `--header NAME=VALUE`, repeated: how `status --path` identifies the caller. */
  readonly headers: Record<string, string>;
  /** `init --sluice-version SPEC`: the dependency written for sluice (a version, range or `file:` tarball). */
  readonly sluiceVersion?: string;
  /** `init --check <dir>`: check an existing project's wrangler.toml instead of writing one. */
  readonly check?: boolean;
  /** Operands after the command, for commands that take them (`init <dir>`). */
  readonly operands: readonly string[];
}

const OPTIONS = {
  url: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  rule: { type: "string" },
  client: { type: "string", multiple: true },
  cost: { type: "string" },
  capacity: { type: "string" },
  rate: { type: "string" },
  path: { type: "string" },
  method: { type: "string" },
  header: { type: "string", multiple: true },
  "sluice-version": { type: "string" },
  check: { type: "boolean" },
} as const;

/**
 * Parses `sluice`'s arguments; a mistake is a {@link CliError} with exit code 1 that says what to write.
 *
 * @example
 * parseInvocation(["peek", "--rule", "api", "--client", "header:x-api-key=abc"], {});
 * // { command: "peek", url: "http://localhost:8787", json: false, rule: "api", client: { "header:x-api-key": "abc" }, headers: {}, operands: [] }
 */
export function parseInvocation(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): Invocation {
  if (argv.some((arg) => arg === "--token" || arg.startsWith("--token="))) {
    throw usage("there is no --token flag: the token is read from SLUICE_ADMIN_TOKEN only (flags show in ps and shell history)");
  }
  let parsed: ReturnType<typeof parseArgs<{ args: string[]; options: typeof OPTIONS; strict: true; allowPositionals: true }>>;
  try {
    parsed = parseArgs({ args: [...argv], options: OPTIONS, strict: true, allowPositionals: true });
  } catch (error) {
    throw usage(error instanceof Error ? (error.message.split("\n")[0] ?? error.message) : String(error));
  }
  const { values, positionals } = parsed;
  const url = gatewayUrl(values.url ?? env.SLUICE_URL ?? DEFAULT_URL);
  // `sluice --help`, `sluice peek --help`: the one help text, whatever else is on the line.
  if (values.help === true) return { command: "help", url, json: false, headers: {}, operands: [] };
  const command = commandOf(positionals);
  const operands = command === "init" ? positionals.slice(1) : [];
  const allowed: readonly string[] = COMMAND_FLAGS[command];
  for (const flag of Object.keys(values)) {
    if (flag !== "url" && flag !== "json" && flag !== "help" && !allowed.includes(flag)) {
      throw usage(`--${flag} is not a flag of "sluice ${command}"${allowed.length > 0 ? ` (it takes ${allowed.map((f) => `--${f}`).join(", ")})` : ""}`);
    }
  }
  return {
    command,
    url,
    json: values.json === true,
    ...(values.rule !== undefined && { rule: values.rule }),
    ...(values.client !== undefined && { client: pairs("--client", values.client, "PART=VALUE, e.g. header:x-api-key=abc or ip=203.0.113.7") }),
    ...(values.cost !== undefined && { cost: number("--cost", values.cost) }),
    ...(values.capacity !== undefined && { capacity: number("--capacity", values.capacity) }),
    // A bare number is tokens per second, as in LIMITER_RULES; "1000/1m" stays text.
    ...(values.rate !== undefined && { rate: /^\d+(\.\d+)?$/.test(values.rate) ? Number(values.rate) : values.rate }),
    ...(values.path !== undefined && { path: values.path }),
    ...(values.method !== undefined && { method: values.method }),
    ...(values["sluice-version"] !== undefined && { sluiceVersion: values["sluice-version"] }),
    ...(values.check === true && { check: true }),
    headers: values.header === undefined ? {} : pairs("--header", values.header, "NAME=VALUE, e.g. x-api-key=abc"),
    operands,
  };
}

/**
 * Checks that the flags a command needs are there, naming the first one missing.
 *
 * @example
 * requireFlags(invocation, ["rule", "client"]); // throws "sluice check needs --rule"
 */
export function requireFlags(invocation: Invocation, flags: readonly ("rule" | "client" | "capacity" | "rate" | "path")[]): void {
  const missing = flags.find((flag) => invocation[flag] === undefined);
  if (missing !== undefined) throw usage(`"sluice ${invocation.command}" needs --${missing}${missing === "client" ? " PART=VALUE (e.g. --client header:x-api-key=abc)" : ""}`);
}

function commandOf(positionals: readonly string[]): Command {
  const [verb, sub, ...rest] = positionals;
  if (verb === undefined || verb === "help") return "help";
  const command = verb === "overrides" ? `overrides ${sub ?? ""}` : verb;
  const extra = verb === "overrides" ? rest : [sub, ...rest].filter((p) => p !== undefined);
  if (verb === "overrides" && sub === undefined) throw usage('"sluice overrides" needs list, set or remove');
  if (!(command in COMMAND_FLAGS)) {
    throw usage(verb === "overrides" ? `"overrides ${sub}" is not a command (list, set, remove)` : `"${verb}" is not a command (peek, reset, check, overrides, status, init; sluice --help)`);
  }
  // `init <dir>` takes operands; every other command takes flags only.
  if (extra.length > 0 && command !== "init") throw usage(`unexpected argument "${extra[0]}" (values go after flags, e.g. --rule api)`);
  return command as Command;
}

function gatewayUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw usage(`--url (or SLUICE_URL) "${text}" is not a URL, e.g. https://gateway.example.com`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw usage(`--url (or SLUICE_URL) "${text}" must be http or https`);
  return url.href.replace(/\/+$/, "");
}

function pairs(flag: string, items: readonly string[], shape: string): Record<string, string> {
  const result: Record<string, string> = {};
  for (const item of items) {
    const at = item.indexOf("=");
    if (at <= 0) throw usage(`${flag} "${item}" must be ${shape}`);
    const name = item.slice(0, at);
    if (Object.hasOwn(result, name)) throw usage(`${flag} ${name} is given twice`);
    result[name] = item.slice(at + 1);
  }
  return result;
}

function number(flag: string, text: string): number {
  // Any number goes to the gateway, which judges it (and names the field); words stop here.
  if (!/^-?\d+(\.\d+)?$/.test(text.trim())) throw usage(`${flag} "${text}" must be a whole number, e.g. ${flag} 2`);
  return Number(text);
}

function usage(message: string): CliError {
  return new CliError(EXIT.usage, message.includes("--help") ? message : `${message} (sluice --help)`);
}
