import type { KeyPart } from "../limiter/identity";
import type { FailMode, Rule } from "../limiter/rules";
import { MAX_SAFE_UNITS } from "../limiter/token-bucket";
import { parseRatePerSecond, parseRateShorthand, type RefillRate } from "./rate";

/** A rule that did not parse: which rule (name or position), which field, and why. */
export interface RuleError {
  readonly rule: string;
  readonly field: string;
  readonly message: string;
}

const RULE_FIELDS = ["name", "match", "key", "capacity", "rate", "cost", "mode", "failMode"] as const;
const MATCH_FIELDS = ["path", "methods"] as const;
const NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const METHOD = /^[A-Z]{1,16}$/;

/**
 * Parses `LIMITER_RULES`: a JSON list of rules. Every problem is reported with the rule and
 * the field it is in; nothing is guessed.
 *
 * @example
 * parseRules('[{"name":"login","match":{"path":"/login","methods":["POST"]},"key":"ip","capacity":5,"rate":"5/1m"}]', "open");
 * // { ok: true, rules: [{ name: "login", … }] }
 */
export function parseRules(
  text: string,
  defaultFailMode: FailMode,
): { ok: true; rules: Rule[] } | { ok: false; errors: RuleError[] } {
  const errors: RuleError[] = [];
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return { ok: false, errors: [{ rule: "(all)", field: "(json)", message: `is not valid JSON: ${(error as Error).message}` }] };
  }
  if (!Array.isArray(json) || json.length === 0) {
    return { ok: false, errors: [{ rule: "(all)", field: "(json)", message: "must be a non-empty JSON list of rules" }] };
  }

  const rules: Rule[] = [];
  const seen = new Set<string>();
  json.forEach((raw: unknown, index) => {
    const label = isObject(raw) && typeof raw.name === "string" ? `"${raw.name}" (#${index + 1})` : `#${index + 1}`;
    const fail = (field: string, message: string) => {
      errors.push({ rule: label, field, message });
      return undefined;
    };
    if (!isObject(raw)) return fail("(rule)", "must be an object");
    for (const field of Object.keys(raw)) {
      if (!(RULE_FIELDS as readonly string[]).includes(field)) fail(field, `is not a rule field (known: ${RULE_FIELDS.join(", ")})`);
    }

    const name = typeof raw.name === "string" && NAME.test(raw.name) ? raw.name : fail("name", "must be 1-64 characters of letters, digits, _ . -");
    if (name !== undefined && seen.has(name)) fail("name", "is used by another rule");
    if (name !== undefined) seen.add(name);

    const match = parseMatch(raw.match, fail);
    const key = raw.key === undefined ? [{ kind: "ip" } as const] : parseKeyParts(raw.key) ?? fail("key", "must be ip, bearer, route, header:<name>, or a list of them");
    const capacity = isInteger(raw.capacity, 1, 1_000_000_000)
      ? raw.capacity
      : fail("capacity", raw.capacity === undefined ? "is missing" : "must be an integer from 1 to 1000000000");
    const rate =
      raw.rate === undefined
        ? fail("rate", "is missing")
        : parseRuleRate(raw.rate) ?? fail("rate", 'must be tokens per second > 0 (e.g. 10 or 0.5) or "N/period" (e.g. "100/1m", "5/30s", "10000/1d")');
    const cost = raw.cost === undefined ? 1 : isInteger(raw.cost, 1, 1_000_000_000) ? raw.cost : fail("cost", "must be an integer ≥ 1");
    if (capacity !== undefined && cost !== undefined && cost > capacity) fail("cost", `${cost} exceeds capacity ${capacity}: no request could ever pass`);
    if (capacity !== undefined && rate !== undefined && capacity * rate.refillPeriodMs > MAX_SAFE_UNITS) {
      fail("rate", "is too fine-grained for this capacity to compute exactly");
    }
    const mode = raw.mode === undefined ? "enforce" : raw.mode === "enforce" || raw.mode === "shadow" ? raw.mode : fail("mode", "must be enforce or shadow");
    const failMode =
      raw.failMode === undefined ? defaultFailMode : raw.failMode === "open" || raw.failMode === "closed" ? raw.failMode : fail("failMode", "must be open or closed");

    if (name && match && key && capacity && rate && cost && mode && failMode) {
      rules.push({ name, match, key, policy: { name, capacity, ...rate, cost }, mode, failMode });
    }
    return undefined;
  });
  return errors.length > 0 ? { ok: false, errors } : { ok: true, rules };
}

/**
 * Parses one key part: `ip`, `bearer`, `route`, or `header:<name>`.
 *
 * @example
 * parseKeyPart("header:X-API-Key"); // { kind: "header", name: "x-api-key" }
 */
export function parseKeyPart(text: string): KeyPart | undefined {
  const trimmed = text.trim();
  if (trimmed === "ip" || trimmed === "bearer" || trimmed === "route") return { kind: trimmed };
  const header = /^header:([!#$%&'*+.^_`|~0-9A-Za-z-]+)$/.exec(trimmed);
  return header ? { kind: "header", name: header[1]!.toLowerCase() } : undefined;
}

function parseKeyParts(value: unknown): KeyPart[] | undefined {
  const texts = typeof value === "string" ? [value] : Array.isArray(value) && value.length > 0 ? value : undefined;
  if (texts === undefined) return undefined;
  const parts = texts.map((text) => (typeof text === "string" ? parseKeyPart(text) : undefined));
  return parts.every((part) => part !== undefined) ? (parts as KeyPart[]) : undefined;
}

function parseRuleRate(value: unknown): RefillRate | undefined {
  if (typeof value === "number") return Number.isFinite(value) ? parseRatePerSecond(String(value)) : undefined;
  if (typeof value !== "string") return undefined;
  return value.includes("/") ? parseRateShorthand(value) : parseRatePerSecond(value);
}

function parseMatch(value: unknown, fail: (field: string, message: string) => undefined): Rule["match"] | undefined {
  if (value === undefined) return {};
  if (!isObject(value)) return fail("match", "must be an object with path and/or methods");
  for (const field of Object.keys(value)) {
    if (!(MATCH_FIELDS as readonly string[]).includes(field)) fail(`match.${field}`, "is not a match field (known: path, methods)");
  }
  let path: string | undefined;
  if (value.path !== undefined) {
    if (typeof value.path !== "string" || !value.path.startsWith("/")) return fail("match.path", "must be a path pattern starting with /");
    try {
      new URLPattern({ pathname: value.path });
      path = value.path;
    } catch (error) {
      return fail("match.path", `does not parse as a URL pattern: ${(error as Error).message}`);
    }
  }
  let methods: string[] | undefined;
  if (value.methods !== undefined) {
    const list = Array.isArray(value.methods) ? value.methods : [];
    if (list.length === 0 || !list.every((m) => typeof m === "string" && METHOD.test(m.toUpperCase()))) {
      return fail("match.methods", 'must be a non-empty list of HTTP methods, e.g. ["GET", "POST"]');
    }
    methods = list.map((m: string) => m.toUpperCase());
  }
  return { ...(path !== undefined && { path }), ...(methods !== undefined && { methods }) };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isInteger(value: unknown, min: number, max: number): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= min && value <= max;
}
