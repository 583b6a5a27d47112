import type { HeaderMode } from "../limiter/headers";
import type { IdentityOptions } from "../limiter/identity";
import type { FailMode, Rule } from "../limiter/rules";
import { MAX_SAFE_UNITS } from "../limiter/token-bucket";
import type { Env, VarValue } from "./env";
import { parseRatePerSecond } from "./rate";
import { parseKeyPart, parseRules } from "./rules";

/** Where bucket state lives. */
export type BackendKind = "durable-object" | "upstash";

/** What a request lacking its configured key gets: one shared bucket, or a 401/400. */
export type MissingKeyMode = "anonymous" | "reject";

/** The gateway's whole configuration, parsed and checked. */
export interface GatewayConfig {
  readonly originUrl: URL;
  readonly originTimeoutMs: number;
  readonly backend: BackendKind;
  /** From `LIMITER_RULES`, or the one `default` rule the single-policy vars describe. */
  readonly rules: readonly Rule[];
  readonly identity: IdentityOptions;
  readonly missingKey: MissingKeyMode;
  readonly timeoutMs: number;
  readonly headers: HeaderMode;
  /** Entries of the per-isolate deny cache; 0 turns it off. */
  readonly denyCacheSize: number;
  readonly breaker: { readonly failureThreshold: number; readonly cooldownMs: number };
  readonly upstash: { readonly url: string; readonly token: string; readonly keyPrefix: string } | undefined;
}

/** One variable that did not parse: its name, the value as given, and what was expected. */
export interface ConfigError {
  readonly variable: string;
  readonly value: string | undefined;
  readonly message: string;
}

export type ConfigResult =
  | { readonly ok: true; readonly config: GatewayConfig }
  | { readonly ok: false; readonly errors: readonly ConfigError[] };

/** Defaults, documented in the README. */
export const DEFAULTS = {
  backend: "durable-object",
  capacity: "60",
  refillRate: "1",
  key: "ip",
  failMode: "open",
  timeoutMs: "1000",
  originTimeoutMs: "30000",
  headers: "all",
  keyPrefix: "sluice",
  ipHeader: "cf-connecting-ip",
  ipv6Prefix: "64",
  missingKey: "anonymous",
  denyCacheSize: "10000",
  breakerThreshold: "5",
  breakerCooldownMs: "5000",
} as const;

const HEADER_MODES: readonly HeaderMode[] = ["all", "ietf", "legacy", "none"];

type Field = { variable: keyof Env; raw: string | undefined; text: string | undefined };

/**
 * Parses the wrangler vars into a {@link GatewayConfig}, collecting every error.
 * Nothing falls back to a default in silence: an unset variable takes its documented
 * default, a set one must parse.
 *
 * @example
 * const result = parseGatewayConfig({ ORIGIN_URL: "https://api.example.com", LIMITER_CAPACITY: "abc" } as Env);
 * // { ok: false, errors: [{ variable: "LIMITER_CAPACITY", value: "abc", message: "must be an integer from 1 to 1000000000" }] }
 */
export function parseGatewayConfig(env: Env): ConfigResult {
  const errors: ConfigError[] = [];
  const read = (variable: keyof Env, fallback?: string): Field => {
    const value = env[variable] as VarValue | object;
    // A TOML table or array var arrives as an object: show it as JSON, not "[object Object]".
    const raw = value === undefined ? undefined : typeof value === "object" ? JSON.stringify(value) : String(value);
    return { variable, raw, text: raw ?? fallback };
  };
  const fail = (field: Pick<Field, "variable" | "raw">, message: string) => {
    errors.push({ variable: field.variable, value: field.raw, message });
    return undefined;
  };
  const integer = (variable: keyof Env, fallback: string, min: number, max: number) => {
    const field = read(variable, fallback);
    const text = (field.text ?? "").trim();
    const value = /^\d{1,10}$/.test(text) ? Number(text) : NaN;
    if (!(value >= min && value <= max)) return fail(field, `must be an integer from ${min} to ${max}`);
    return value;
  };
  const oneOf = <T extends string>(variable: keyof Env, fallback: string, allowed: readonly T[]) => {
    const field = read(variable, fallback);
    const value = field.text?.trim();
    if (!allowed.includes(value as T)) return fail(field, `must be one of ${allowed.join(", ")}`);
    return value as T;
  };

  const originField = read("ORIGIN_URL");
  const originUrl =
    originField.text === undefined || originField.text.trim() === ""
      ? fail(originField, "is required: the base URL requests are forwarded to, e.g. https://api.example.com")
      : parseHttpUrl(originField.text) ?? fail(originField, "must be an absolute http(s) URL, e.g. https://api.example.com");
  const originTimeoutMs = integer("ORIGIN_TIMEOUT_MS", DEFAULTS.originTimeoutMs, 1, 600_000);
  const backend = oneOf<BackendKind>("LIMITER_BACKEND", DEFAULTS.backend, ["durable-object", "upstash"]);
  const failMode = oneOf<FailMode>("LIMITER_FAIL_MODE", DEFAULTS.failMode, ["open", "closed"]);
  const timeoutMs = integer("LIMITER_TIMEOUT_MS", DEFAULTS.timeoutMs, 1, 60_000);
  const headers = oneOf<HeaderMode>("LIMITER_HEADERS", DEFAULTS.headers, HEADER_MODES);
  const missingKey = oneOf<MissingKeyMode>("LIMITER_MISSING_KEY", DEFAULTS.missingKey, ["anonymous", "reject"]);
  const denyCacheSize = integer("LIMITER_DENY_CACHE_SIZE", DEFAULTS.denyCacheSize, 0, 1_000_000);
  const failureThreshold = integer("LIMITER_BREAKER_THRESHOLD", DEFAULTS.breakerThreshold, 1, 1_000);
  const cooldownMs = integer("LIMITER_BREAKER_COOLDOWN_MS", DEFAULTS.breakerCooldownMs, 1, 3_600_000);
  const ipv6PrefixLength = integer("LIMITER_IPV6_PREFIX", DEFAULTS.ipv6Prefix, 1, 128);
  const ipHeaderField = read("LIMITER_IP_HEADER", DEFAULTS.ipHeader);
  const ipHeader = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(ipHeaderField.text ?? "")
    ? ipHeaderField.text!.toLowerCase()
    : fail(ipHeaderField, "must be a header name, e.g. cf-connecting-ip");

  // The single-policy vars are checked even when LIMITER_RULES replaces them: a typo is never silent.
  const capacity = integer("LIMITER_CAPACITY", DEFAULTS.capacity, 1, 1_000_000_000);
  const rateField = read("LIMITER_REFILL_RATE", DEFAULTS.refillRate);
  const rate =
    parseRatePerSecond(rateField.text ?? "") ??
    fail(rateField, "must be a number of tokens per second greater than 0, at most 6 decimals (e.g. 10 or 0.5)");
  if (capacity !== undefined && rate !== undefined && capacity * rate.refillPeriodMs > MAX_SAFE_UNITS) {
    fail(rateField, `with LIMITER_CAPACITY=${capacity} this rate is too fine-grained to compute exactly; use fewer decimals or a smaller capacity`);
  }
  const keyField = read("LIMITER_KEY", DEFAULTS.key);
  const key = parseKeyPart(keyField.text ?? "") ?? fail(keyField, "must be ip, bearer, route, or header:<header-name> (e.g. header:x-api-key)");

  let rules: Rule[] | undefined;
  const rulesField = read("LIMITER_RULES");
  if (rulesField.text !== undefined && rulesField.text.trim() === "") {
    fail(rulesField, "is empty: unset it to use the single-policy vars, or give a JSON list of rules");
  } else if (rulesField.text !== undefined) {
    const parsed = parseRules(rulesField.text, failMode ?? DEFAULTS.failMode);
    if (parsed.ok) rules = parsed.rules;
    else {
      const shown = rulesField.raw!.length > 120 ? `${rulesField.raw!.slice(0, 117)}...` : rulesField.raw;
      for (const e of parsed.errors) fail({ variable: "LIMITER_RULES", raw: shown }, `rule ${e.rule}: field "${e.field}" ${e.message}`);
    }
  } else if (capacity !== undefined && rate !== undefined && key !== undefined && failMode !== undefined) {
    rules = [{ name: "default", match: {}, key: [key], policy: { name: "default", capacity, ...rate, cost: 1 }, mode: "enforce", failMode }];
  }

  let upstash: GatewayConfig["upstash"];
  if (backend === "upstash") {
    const urlField = read("UPSTASH_REDIS_REST_URL");
    const tokenField = read("UPSTASH_REDIS_REST_TOKEN");
    const url = urlField.text && parseHttpUrl(urlField.text) ? urlField.text.trim() : fail(urlField, "must be the https URL of the Upstash REST endpoint when LIMITER_BACKEND=upstash");
    // The token is a secret: name it, never echo it.
    const token = tokenField.text?.trim() ? tokenField.text.trim() : fail({ ...tokenField, raw: tokenField.raw && "(set)" }, "must be set (wrangler secret put UPSTASH_REDIS_REST_TOKEN) when LIMITER_BACKEND=upstash");
    const prefixField = read("LIMITER_KEY_PREFIX", DEFAULTS.keyPrefix);
    const keyPrefix = /^[A-Za-z0-9_.:-]{1,64}$/.test(prefixField.text ?? "")
      ? prefixField.text!
      : fail(prefixField, "must be 1 to 64 characters of letters, digits, _ . : -");
    if (url !== undefined && token !== undefined && keyPrefix !== undefined) upstash = { url, token, keyPrefix };
  }

  if (errors.length > 0) return { ok: false, errors };
  return {
    ok: true,
    config: {
      originUrl: originUrl!,
      originTimeoutMs: originTimeoutMs!,
      backend: backend!,
      rules: rules!,
      identity: { ipHeader: ipHeader!, ipv6PrefixLength: ipv6PrefixLength! },
      missingKey: missingKey!,
      timeoutMs: timeoutMs!,
      headers: headers!,
      denyCacheSize: denyCacheSize!,
      breaker: { failureThreshold: failureThreshold!, cooldownMs: cooldownMs! },
      upstash,
    },
  };
}

/** Formats config errors as one line each, naming the variable and the value. */
export function describeConfigErrors(errors: readonly ConfigError[]): string[] {
  return errors.map((e) =>
    e.value === undefined ? `${e.variable} (unset) ${e.message}` : `${e.variable}=${JSON.stringify(e.value)} ${e.message}`,
  );
}

function parseHttpUrl(text: string): URL | undefined {
  try {
    const url = new URL(text.trim());
    return url.protocol === "http:" || url.protocol === "https:" ? url : undefined;
  } catch {
    return undefined;
  }
}
