import { DEFAULTS } from "../core/defaults";
import type { HeaderMode } from "../core/headers";
import type { IdentityOptions } from "../core/identity";
import { isHeaderName, keySpec, parseKeyPart } from "../core/key-parts";
import type { MissingKeyMode } from "../core/limiter";
import { parseRatePerSecond } from "../core/rate";
import { describeRuleError, parseRulesJson, type FailMode, type RuleSpec } from "../core/rules";
import { MAX_SAFE_UNITS } from "../core/token-bucket";
import type { Env, VarName, VarValue } from "./env";

/** Where bucket state lives, with the settings that kind needs. */
export type BackendConfig =
  | { readonly kind: "durable-object" }
  | { readonly kind: "upstash"; readonly url: string; readonly token: string; readonly keyPrefix: string }
  /** One isolate's memory: local experiments only, nothing is shared. */
  | { readonly kind: "memory" };

/** The limiter's settings, every one resolved (the `Limiter` takes them as they are, plus a backend). */
export interface LimiterSettings {
  /** From `LIMITER_RULES`, or the one `default` rule the single-policy vars describe. */
  readonly rules: readonly RuleSpec[];
  readonly failMode: FailMode;
  readonly localFraction: number;
  readonly identity: IdentityOptions;
  readonly missingKey: MissingKeyMode;
  readonly timeoutMs: number;
  readonly headers: HeaderMode;
  readonly denyCacheSize: number;
  readonly breaker: { readonly failureThreshold: number; readonly cooldownMs: number };
}

/** The admin API: off (every admin route is a 404), or on behind a bearer token. */
export type AdminConfig = { readonly kind: "off" } | { readonly kind: "on"; readonly token: string };

/** Metrics: counted per isolate and flushed to the metrics object every `flushMs`, or off; read with `token`, if any. */
export type MetricsConfig = { readonly kind: "off" } | { readonly kind: "on"; readonly flushMs: number; readonly token: string | undefined };

/** The gateway's whole configuration, parsed and checked. */
export interface GatewayConfig {
  readonly origin: { readonly url: URL; readonly timeoutMs: number };
  readonly backend: BackendConfig;
  readonly limiter: LimiterSettings;
  readonly admin: AdminConfig;
  readonly metrics: MetricsConfig;
}

/** One variable that did not parse: its name, the value as given, and what was expected. */
export interface ConfigError {
  readonly variable: VarName;
  readonly value: string | undefined;
  readonly message: string;
}

export type ConfigResult = { readonly ok: true; readonly config: GatewayConfig } | { readonly ok: false; readonly errors: readonly ConfigError[] };

/** Defaults of the vars that only the gateway has; the limiter's own come from the core's `DEFAULTS`. */
export const GATEWAY_DEFAULTS = {
  originTimeoutMs: 30_000,
  backend: "durable-object",
  /** The single-policy vars' rule: 60 tokens, 1 per second, per client IP. */
  capacity: 60,
  refillRate: "1",
  key: DEFAULTS.rule.key,
  keyPrefix: "sluice",
  metrics: "on",
  metricsFlushMs: 5_000,
} as const;

const BACKEND_KINDS: readonly BackendConfig["kind"][] = ["durable-object", "upstash", "memory"];
const HEADER_MODES: readonly HeaderMode[] = ["all", "ietf", "legacy", "none"];
/** Address headers a proxy sets to one address (never a list): `LIMITER_TRUSTED_PROXIES` must be 1 with them. */
const SINGLE_ADDRESS_HEADERS: readonly string[] = [DEFAULTS.identity.ipHeader, "x-real-ip", "true-client-ip"];

type Field = { readonly variable: VarName; readonly raw: string | undefined; readonly text: string | undefined };

/** Reads vars with their defaults; every failure is collected in `errors` and yields undefined. */
interface VarReader {
  read(variable: VarName, fallback?: string | number): Field;
  fail(field: Pick<Field, "variable" | "raw">, message: string): undefined;
  integer(variable: VarName, fallback: number, min: number, max: number): number | undefined;
  oneOf<T extends string>(variable: VarName, fallback: T, allowed: readonly T[]): T | undefined;
}

function varReader(env: Env, errors: ConfigError[]): VarReader {
  const read = (variable: VarName, fallback?: string | number): Field => {
    const value = env[variable] as VarValue | object;
    // A TOML table or array var arrives as an object: show it as JSON, not "[object Object]".
    const raw = value === undefined ? undefined : typeof value === "object" ? JSON.stringify(value) : String(value);
    return { variable, raw, text: raw ?? (fallback === undefined ? undefined : String(fallback)) };
  };
  const fail = (field: Pick<Field, "variable" | "raw">, message: string): undefined => {
    errors.push({ variable: field.variable, value: field.raw, message });
    return undefined;
  };
  return {
    read,
    fail,
    integer(variable, fallback, min, max) {
      const field = read(variable, fallback);
      const text = (field.text ?? "").trim();
      const value = /^\d{1,10}$/.test(text) ? Number(text) : NaN;
      return value >= min && value <= max ? value : fail(field, `must be an integer from ${min} to ${max}`);
    },
    oneOf(variable, fallback, allowed) {
      const field = read(variable, fallback);
      return allowed.find((option) => option === field.text?.trim()) ?? fail(field, `must be one of ${allowed.join(", ")}`);
    },
  };
}

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
  const vars = varReader(env, errors);
  const { read, fail, integer, oneOf } = vars;

  const originField = read("ORIGIN_URL");
  const originUrl =
    originField.text === undefined || originField.text.trim() === ""
      ? fail(originField, "is required: the base URL requests are forwarded to, e.g. https://api.example.com")
      : originUrlOf(originField.text, (message) => fail(originField, message));
  const originTimeoutMs = integer("ORIGIN_TIMEOUT_MS", GATEWAY_DEFAULTS.originTimeoutMs, 1, 600_000);
  const backendKind = oneOf("LIMITER_BACKEND", GATEWAY_DEFAULTS.backend, BACKEND_KINDS);
  const failMode = oneOf<FailMode>("LIMITER_FAIL_MODE", DEFAULTS.failMode, ["open", "closed", "local"]);
  const fractionField = read("LIMITER_LOCAL_FRACTION", DEFAULTS.localFraction);
  const fractionText = (fractionField.text ?? "").trim();
  const fraction = /^(0(\.\d{1,2})?|1(\.0{1,2})?)$/.test(fractionText) ? Number(fractionText) : NaN;
  const localFraction =
    fraction >= 0.01 && fraction <= 1 ? fraction : fail(fractionField, "must be a decimal from 0.01 to 1 with at most 2 decimals (the share of a rule each isolate enforces alone during an outage)");
  const timeoutMs = integer("LIMITER_TIMEOUT_MS", DEFAULTS.timeoutMs, 1, 60_000);
  const headers = oneOf("LIMITER_HEADERS", DEFAULTS.headers, HEADER_MODES);
  const missingKey = oneOf<MissingKeyMode>("LIMITER_MISSING_KEY", DEFAULTS.missingKey, ["anonymous", "reject"]);
  const denyCacheSize = integer("LIMITER_DENY_CACHE_SIZE", DEFAULTS.denyCacheSize, 0, 1_000_000);
  const failureThreshold = integer("LIMITER_BREAKER_THRESHOLD", DEFAULTS.breaker.failureThreshold, 1, 1_000);
  const cooldownMs = integer("LIMITER_BREAKER_COOLDOWN_MS", DEFAULTS.breaker.cooldownMs, 1, 3_600_000);
  const ipv6PrefixLength = integer("LIMITER_IPV6_PREFIX", DEFAULTS.identity.ipv6PrefixLength, 1, 128);
  const ipHeaderField = read("LIMITER_IP_HEADER", DEFAULTS.identity.ipHeader);
  const ipHeaderText = ipHeaderField.text ?? "";
  const ipHeader = isHeaderName(ipHeaderText) ? ipHeaderText.toLowerCase() : fail(ipHeaderField, "must be a header name, e.g. cf-connecting-ip");
  const trustedHops = integer("LIMITER_TRUSTED_PROXIES", DEFAULTS.identity.trustedHops, 1, 32);
  // More hops than a one-address header holds would name nobody: every client would share one bucket.
  if (trustedHops !== undefined && trustedHops > 1 && ipHeader !== undefined && SINGLE_ADDRESS_HEADERS.includes(ipHeader))
    fail(read("LIMITER_TRUSTED_PROXIES"), `counts proxies that append to a list header such as x-forwarded-for (LIMITER_IP_HEADER); ${ipHeader} holds one address, so it must be 1`);
  const rules = parseRuleVars(vars, failMode);
  const backend = backendKind === undefined ? undefined : parseBackend(backendKind, vars);
  const admin = parseAdmin(vars);
  const metrics = parseMetrics(vars, admin);

  const breaker = failureThreshold !== undefined && cooldownMs !== undefined ? { failureThreshold, cooldownMs } : undefined;
  const hashKey = parseToken(vars, "LIMITER_HASH_KEY", "unset it to turn keyed hashing of client keys off");
  const identity =
    ipHeader !== undefined && ipv6PrefixLength !== undefined && trustedHops !== undefined && hashKey !== undefined
      ? { ipHeader, ipv6PrefixLength, trustedHops, ...(hashKey !== null && { hashKey }) }
      : undefined;
  const limiter = allDefined({ rules, failMode, localFraction, identity, missingKey, timeoutMs, headers, denyCacheSize, breaker });
  const origin = originUrl !== undefined && originTimeoutMs !== undefined ? { url: originUrl, timeoutMs: originTimeoutMs } : undefined;
  if (errors.length > 0 || limiter === undefined || origin === undefined || backend === undefined || admin === undefined || metrics === undefined) {
    return { ok: false, errors };
  }
  return { ok: true, config: { origin, backend, limiter, admin, metrics } };
}

/** The rules: `LIMITER_RULES` when set, else one `default` rule from the single-policy vars (checked either way). */
function parseRuleVars({ read, fail, integer }: VarReader, failMode: FailMode | undefined): RuleSpec[] | undefined {
  // The single-policy vars are checked even when LIMITER_RULES replaces them: a typo is never silent.
  const capacity = integer("LIMITER_CAPACITY", GATEWAY_DEFAULTS.capacity, 1, 1_000_000_000);
  const rateField = read("LIMITER_REFILL_RATE", GATEWAY_DEFAULTS.refillRate);
  const rateText = (rateField.text ?? "").trim();
  const rate = parseRatePerSecond(rateText) ?? fail(rateField, "must be a number of tokens per second greater than 0, at most 6 decimals (e.g. 10 or 0.5)");
  if (capacity !== undefined && rate !== undefined && capacity * rate.refillPeriodMs > MAX_SAFE_UNITS) {
    fail(rateField, `with LIMITER_CAPACITY=${capacity} this rate is too fine-grained to compute exactly; use fewer decimals or a smaller capacity`);
  }
  const keyField = read("LIMITER_KEY", GATEWAY_DEFAULTS.key);
  const key = parseKeyPart(keyField.text ?? "") ?? fail(keyField, "must be ip, bearer, route, or header:<header-name> (e.g. header:x-api-key)");

  const rulesField = read("LIMITER_RULES");
  if (rulesField.text !== undefined && rulesField.text.trim() === "") {
    return fail(rulesField, "is empty: unset it to use the single-policy vars, or give a JSON list of rules");
  }
  if (rulesField.text !== undefined) {
    const parsed = parseRulesJson(rulesField.text, failMode ?? DEFAULTS.failMode);
    if (parsed.ok) return [...parsed.rules, ...parsed.concurrency].map((rule) => rule.spec);
    const shown = rulesField.text.length > 120 ? `${rulesField.text.slice(0, 117)}...` : rulesField.text;
    for (const error of parsed.errors) fail({ variable: "LIMITER_RULES", raw: shown }, describeRuleError(error));
    return undefined;
  }
  if (capacity === undefined || rate === undefined || key === undefined || failMode === undefined) return undefined;
  return [{ name: "default", key: keySpec(key), capacity, rate: rateText, failMode }];
}

function parseBackend(kind: BackendConfig["kind"], { read, fail }: VarReader): BackendConfig | undefined {
  // Checked with every backend, so a typo shows now, not on a later switch to Upstash.
  const prefixField = read("LIMITER_KEY_PREFIX", GATEWAY_DEFAULTS.keyPrefix);
  const prefixText = prefixField.text ?? "";
  const keyPrefix = /^[A-Za-z0-9_.:-]{1,64}$/.test(prefixText) ? prefixText : fail(prefixField, "must be 1 to 64 characters of letters, digits, _ . : -");
  if (kind !== "upstash") return keyPrefix === undefined ? undefined : { kind };
  const urlField = read("UPSTASH_REDIS_REST_URL");
  const tokenField = read("UPSTASH_REDIS_REST_TOKEN");
  const url = urlField.text && parseHttpUrl(urlField.text) ? urlField.text.trim() : fail(urlField, "must be the https URL of the Upstash REST endpoint when LIMITER_BACKEND=upstash");
  // The token is a secret: name it, never echo it.
  const tokenText = tokenField.text?.trim();
  const token = tokenText ? tokenText : fail({ ...tokenField, raw: tokenField.raw && "(set)" }, "must be set (wrangler secret put UPSTASH_REDIS_REST_TOKEN) when LIMITER_BACKEND=upstash");
  return url !== undefined && token !== undefined && keyPrefix !== undefined ? { kind, url, token, keyPrefix } : undefined;
}

/** The admin token: a secret, so an error names it and never echoes it. */
function parseAdmin(vars: VarReader): AdminConfig | undefined {
  const token = parseToken(vars, "LIMITER_ADMIN_TOKEN", "unset it to turn the admin API off");
  return token === null ? { kind: "off" } : token === undefined ? undefined : { kind: "on", token };
}

/** Metrics: on unless `LIMITER_METRICS=off`; read with the metrics token, else the admin token. */
function parseMetrics(vars: VarReader, admin: AdminConfig | undefined): MetricsConfig | undefined {
  const enabled = vars.oneOf("LIMITER_METRICS", GATEWAY_DEFAULTS.metrics, ["on", "off"]);
  const flushMs = vars.integer("LIMITER_METRICS_FLUSH_MS", GATEWAY_DEFAULTS.metricsFlushMs, 10, 60_000);
  const token = parseToken(vars, "LIMITER_METRICS_TOKEN", "unset it and LIMITER_ADMIN_TOKEN reads the metrics and dashboard (with neither set, they are off)");
  if (enabled === undefined || flushMs === undefined || token === undefined) return undefined;
  if (enabled === "off") return { kind: "off" };
  return { kind: "on", flushMs, token: token ?? (admin?.kind === "on" ? admin.token : undefined) };
}

/** A secret: null when unset, undefined when it does not do (the error names the variable, never the value, and says what unsetting it does). */
function parseToken({ read, fail }: VarReader, variable: "LIMITER_ADMIN_TOKEN" | "LIMITER_METRICS_TOKEN" | "LIMITER_HASH_KEY", whenUnset: string): string | null | undefined {
  const field = read(variable);
  if (field.text === undefined) return null;
  const token = field.text.trim();
  if (token.length >= MIN_TOKEN_LENGTH && /^[\x21-\x7e]+$/.test(token)) return token;
  return fail({ ...field, raw: "(set)" }, `must be at least ${MIN_TOKEN_LENGTH} visible ASCII characters (e.g. openssl rand -hex 32), set with wrangler secret put ${variable}; ${whenUnset}`);
}

/** A bearer token shorter than this is refused: the admin API changes every client's limits. */
export const MIN_TOKEN_LENGTH = 16;

/**
 * Formats config errors as one line each, naming the variable and the value.
 *
 * @example
 * describeConfigErrors([{ variable: "LIMITER_CAPACITY", value: "abc", message: "must be …" }]); // ['LIMITER_CAPACITY="abc" must be …']
 */
export function describeConfigErrors(errors: readonly ConfigError[]): string[] {
  return errors.map((e) => (e.value === undefined ? `${e.variable} (unset) ${e.message}` : `${e.variable}=${JSON.stringify(e.value)} ${e.message}`));
}

/** The record when every field parsed, else undefined (its errors are already collected). */
function allDefined<T extends Record<string, unknown>>(fields: T): { [K in keyof T]: Exclude<T[K], undefined> } | undefined {
  return Object.values(fields).every((value) => value !== undefined) ? (fields as { [K in keyof T]: Exclude<T[K], undefined> }) : undefined;
}

/** `ORIGIN_URL`: an absolute http(s) URL without a query or fragment (each request's own query is sent; a configured one would be dropped unseen). */
function originUrlOf(text: string, fail: (message: string) => undefined): URL | undefined {
  const url = parseHttpUrl(text);
  if (url === undefined) return fail("must be an absolute http(s) URL, e.g. https://api.example.com");
  if (url.search !== "" || url.hash !== "" || /[?#]/.test(text)) return fail("must have no query or fragment: each request's own query is sent to the origin as it came");
  return url;
}

function parseHttpUrl(text: string): URL | undefined {
  try {
    const url = new URL(text.trim());
    return url.protocol === "http:" || url.protocol === "https:" ? url : undefined;
  } catch {
    return undefined;
  }
}
