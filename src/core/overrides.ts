import { isObject } from "./units";
import type { OverrideRecord } from "./backend";
import { namedKeyValue, parseAddress, type IdentityOptions } from "./identity";
import { keySpec, type KeyPart } from "./key-parts";
import { compileRules, type Rule } from "./rules";
import type { BucketPolicy } from "./token-bucket";

/** One key part of an override: a whole value, or a prefix (written with a trailing `*`). */
export type PartMatch = { readonly kind: "exact"; readonly value: string } | { readonly kind: "prefix"; readonly prefix: string };

/** An override checked against its rule: ready to match clients, and to store. */
export interface CompiledOverride {
  readonly record: OverrideRecord;
  readonly rule: Rule;
  /** The override's capacity and refill (the rule's cost stays). */
  readonly policy: BucketPolicy;
  /** One per key part of the rule, in the rule's order. */
  readonly parts: readonly PartMatch[];
  /** `exact` when every part is a whole value: then it is stored beside the bucket. */
  readonly kind: "exact" | "prefix";
  /** Characters of literal text: among prefixes that match, the longest wins. */
  readonly length: number;
}

export type OverrideResult = { readonly ok: true; readonly override: CompiledOverride } | { readonly ok: false; readonly field: string; readonly message: string };

/**
 * Checks an override an operator wrote (`{ rule, client, capacity, rate }`) against the rules:
 * the rule exists, the client names exactly its key parts with values of the right kind (one may
 * end in `*`), and capacity and rate pass the same validation as in `LIMITER_RULES` (so a cost
 * above the new capacity is refused up front).
 *
 * @example
 * compileOverride(rules, { rule: "api", client: { "header:x-api-key": "ent_*" }, capacity: 1000, rate: "1000/1m" }, identity);
 * // { ok: true, override: { kind: "prefix", … } }
 */
export function compileOverride(rules: readonly Rule[], input: unknown, identity: IdentityOptions): OverrideResult {
  const fail = (field: string, message: string): OverrideResult => ({ ok: false, field, message });
  if (!isObject(input)) return fail("(body)", "must be a JSON object with rule, client, capacity and rate");
  for (const field of Object.keys(input)) {
    if (!["rule", "client", "capacity", "rate"].includes(field)) return fail(field, "is not an override field (known: rule, client, capacity, rate)");
  }
  const rule = findRule(rules, input.rule);
  if (!rule.ok) return rule;
  const client = parseClient(rule.rule, input.client, identity, { prefixes: true });
  if (!client.ok) return client;
  if (input.capacity === undefined) return fail("capacity", "is missing");
  if (input.rate === undefined) return fail("rate", "is missing");
  // Every algorithm's override is written as capacity and rate (for a window or a calendar quota:
  // the limit, and the limit per window or period), so it checks as a bucket rule with the rule's cost.
  const { algorithm: _algorithm, limit: _limit, window: _window, period: _period, timeZone: _timeZone, weekStart: _weekStart, ...shared } = rule.rule.spec;
  const compiled = compileRules([{ ...shared, capacity: input.capacity, rate: input.rate }]);
  if (!compiled.ok) {
    const [error] = compiled.errors;
    return fail(error?.field ?? "(override)", error?.message ?? "does not check");
  }
  const [checked] = compiled.rules;
  if (checked === undefined) return fail("(override)", "does not check");
  const { capacity, refillTokens, refillPeriodMs } = checked.policy;
  const rate = typeof input.rate === "number" ? input.rate : String(input.rate);
  const kind = client.parts.every((part) => part.kind === "exact") ? "exact" : "prefix";
  const record: OverrideRecord = { id: overrideId(rule.rule.name, client.canonical), rule: rule.rule.name, client: client.canonical, capacity, rate };
  const length = client.parts.reduce((sum, part) => sum + (part.kind === "exact" ? part.value.length : part.prefix.length), 0);
  return { ok: true, override: { record, rule: rule.rule, policy: { capacity, refillTokens, refillPeriodMs }, parts: client.parts, kind, length } };
}

/**
 * The identity of an override: its rule and its client, canonical, so the same client written
 * twice (`"POST //login"`, `"post /login"`) is one override.
 *
 * @example
 * overrideId("api", { "header:x-api-key": "ent_*" }); // 'api {"header:x-api-key":"ent_*"}'
 */
export function overrideId(rule: string, client: Readonly<Record<string, string>>): string {
  return `${rule} ${JSON.stringify(Object.fromEntries(Object.entries(client).sort(([a], [b]) => a.localeCompare(b))))}`;
}

/**
 * The answer to naming a concurrency rule where a bucket rule is meant (peek, reset, check, overrides).
 *
 * @example
 * concurrencyRuleNamed("inflight"); // { ok: false, field: "rule", message: '"inflight" is a concurrency rule: …' }
 */
export function concurrencyRuleNamed(name: string): { ok: false; field: string; message: string } {
  return { ok: false, field: "rule", message: `"${name}" is a concurrency rule: peek, reset, check and overrides address bucket rules` };
}

/**
 * The rule a body names, or why not.
 *
 * @example
 * findRule(rules, "api"); // { ok: true, rule }
 */
export function findRule(rules: readonly Rule[], name: unknown): { ok: true; rule: Rule } | { ok: false; field: string; message: string } {
  if (typeof name !== "string") return { ok: false, field: "rule", message: name === undefined ? "is missing" : "must be a rule name" };
  const rule = rules.find((r) => r.name === name);
  return rule === undefined ? { ok: false, field: "rule", message: `"${name}" is not a rule (known: ${rules.map((r) => r.name).join(", ")})` } : { ok: true, rule };
}

/**
 * A named client's key-part values for a rule, canonical as traffic produces them (so they reach
 * the same bucket); with `prefixes`, a value may end in `*`. Errors name the field.
 *
 * @example
 * parseClient(rule, { ip: "2001:db8::7" }, identity, { prefixes: false });
 * // { ok: true, parts: [{ kind: "exact", value: "2001:db8:0:0:0:0:0:0/64" }], canonical: { ip: "2001:db8:0:0:0:0:0:0/64" } }
 */
export function parseClient(
  rule: Rule,
  client: unknown,
  identity: IdentityOptions,
  { prefixes }: { readonly prefixes: boolean },
): { ok: true; parts: PartMatch[]; canonical: Record<string, string> } | { ok: false; field: string; message: string } {
  const specs = rule.key.map(keySpec);
  if (!isObject(client)) return { ok: false, field: "client", message: `must be an object with a value for each of ${specs.join(", ")}` };
  for (const name of Object.keys(client)) {
    if (!(specs as string[]).includes(name)) return { ok: false, field: `client.${name}`, message: `is not a key part of rule "${rule.name}" (its key: ${specs.join(", ")})` };
  }
  const parts: PartMatch[] = [];
  const canonical: Record<string, string> = {};
  for (const part of rule.key) {
    const spec = keySpec(part);
    const text = client[spec];
    if (text === undefined) return { ok: false, field: `client.${spec}`, message: `is missing: rule "${rule.name}" keys on ${specs.join(", ")}` };
    if (typeof text !== "string") return { ok: false, field: `client.${spec}`, message: `must be a string, not ${JSON.stringify(text)}` };
    const starred = text.endsWith("*");
    const literal = starred ? text.slice(0, -1) : text;
    if (literal.includes("*")) return { ok: false, field: `client.${spec}`, message: "may hold one * only, at the end" };
    if (starred && !prefixes) return { ok: false, field: `client.${spec}`, message: `${JSON.stringify(text)} names many clients: name one` };
    // A prefix is brought to the spelling traffic's values have, or refused if no value could start with it.
    const match = part.kind === "ip" ? addressMatch(literal, starred, prefixes, identity) : starred ? textPrefix(part, literal) : exactValue(part, literal, identity);
    if (typeof match === "string") return { ok: false, field: `client.${spec}`, message: `${JSON.stringify(text)} ${match}` };
    parts.push(match);
    canonical[spec] = match.kind === "prefix" ? `${match.prefix}*` : match.value;
  }
  return { ok: true, parts, canonical };
}

function exactValue(part: KeyPart, text: string, identity: IdentityOptions): PartMatch | string {
  const value = namedKeyValue(part, text, identity);
  return value === undefined ? `is not a valid ${keySpec(part)} value` : { kind: "exact", value };
}

/**
 * An `ip` value: one address (any spelling), or with prefixes allowed a network, written in CIDR
 * (`2001:db8::/32`, `203.0.113.0/24`) or as whole groups then `*` (`2001:db8:*`, `203.0.113.*`),
 * on a group boundary (IPv4 /8, /16, /24; IPv6 a multiple of 16) no longer than the IPv6
 * grouping. Its canonical spelling is the `*` form in the spelling traffic has (lower-case hex,
 * no leading zeros, no `::`), so the text prefix matches exactly the network's clients.
 */
function addressMatch(text: string, starred: boolean, prefixes: boolean, identity: IdentityOptions): PartMatch | string {
  const usage = "must be an address, or a network such as 203.0.113.0/24, 203.0.113.*, 2001:db8::/32 or 2001:db8:*";
  const trimmed = text.trim();
  let family: 4 | 6;
  let groups: number[];
  let length: number;
  if (starred) {
    const v4 = /^(\d{1,3}\.){1,3}$/.test(trimmed);
    const v6 = /^([0-9a-f]{1,4}:){1,7}$/i.test(trimmed);
    if (!v4 && !v6) return `${usage} (a * prefix is whole groups, each followed by its separator)`;
    family = v4 ? 4 : 6;
    groups = trimmed
      .slice(0, -1)
      .split(v4 ? "." : ":")
      .map((group) => parseInt(group, v4 ? 10 : 16));
    if (v4 && groups.some((byte) => byte > 255)) return usage;
    length = groups.length * (v4 ? 8 : 16);
  } else {
    const parsed = parseAddress(trimmed, identity);
    if (parsed === undefined) return usage;
    if (parsed.kind === "address") return { kind: "exact", value: parsed.value };
    ({ family, length } = parsed);
    groups = parsed.groups.slice(0, length / (family === 4 ? 8 : 16));
    if (!prefixes) return "is a network of many clients: name one address";
    if (!Number.isInteger(length / (family === 4 ? 8 : 16)) || length === 0) {
      return `is not on a group boundary: a network override covers whole groups (IPv4 /8, /16 or /24; IPv6 a multiple of 16, e.g. /32 or /48)`;
    }
  }
  if (family === 6 && length > identity.ipv6PrefixLength) {
    return `can never match: IPv6 clients are grouped by /${identity.ipv6PrefixLength} (LIMITER_IPV6_PREFIX), so a longer prefix names less than one client`;
  }
  const separator = family === 4 ? "." : ":";
  return { kind: "prefix", prefix: groups.map((group) => group.toString(family === 4 ? 10 : 16)).join(separator) + separator };
}

/**
 * A prefix of a header, bearer or route value. A route prefix is brought to the spelling route
 * values have (method upper-case, path lower-case, single slashes); one holding what route values
 * never do (`;`, `%2F`) is refused.
 */
function textPrefix(part: KeyPart, text: string): PartMatch | string {
  const value = text.trim();
  if (value === "") return "is not a prefix: write some characters before the *";
  if (part.kind !== "route") return { kind: "prefix", prefix: value };
  const [, method = "", space, path = ""] = /^([A-Za-z]{1,16})(\s+)?(\/\S*)?$/.exec(value) ?? [];
  if (method === "" || (space === undefined && path !== "") || (space !== undefined && path === "")) {
    return 'must start with a method, then optionally a space and a path, e.g. "POST /api/*" or "GET *"';
  }
  if (/;|%2f/i.test(path)) return "can never match: route values drop matrix parameters (;) and decode %2F";
  const upper = method.toUpperCase();
  const canonicalMethod = space === undefined ? upper : upper === "HEAD" ? "GET" : upper;
  return { kind: "prefix", prefix: space === undefined ? canonicalMethod : `${canonicalMethod} ${path.replace(/\/{2,}/g, "/").toLowerCase()}` };
}

/**
 * Prefix overrides as one isolate knows them, compiled from the registry's records: which one,
 * if any, applies to a client's values under a rule (the longest prefix wins). Exact overrides
 * are left to the store, which applies them in the same call as the take.
 *
 * @example
 * const prefixes = PrefixOverrides.from(records, rules, identity);
 * prefixes.policyFor(rule, ["ent_abc"]); // the ent_* override's policy, or undefined
 */
export class PrefixOverrides {
  private constructor(private readonly byRule: ReadonlyMap<string, readonly CompiledOverride[]>) {}

  static readonly none = new PrefixOverrides(new Map());

  /** Records that no longer check against the rules (a rule renamed, say) are skipped. */
  static from(records: readonly OverrideRecord[], rules: readonly Rule[], identity: IdentityOptions): PrefixOverrides {
    const byRule = new Map<string, CompiledOverride[]>();
    for (const record of records) {
      const compiled = compileOverride(rules, { rule: record.rule, client: record.client, capacity: record.capacity, rate: record.rate }, identity);
      if (!compiled.ok || compiled.override.kind !== "prefix") continue;
      const list = byRule.get(record.rule) ?? [];
      list.push(compiled.override);
      byRule.set(
        record.rule,
        list.sort((a, b) => b.length - a.length),
      );
    }
    return new PrefixOverrides(byRule);
  }

  /** The policy of the longest prefix override matching `values` (the rule's key parts, canonical). */
  policyFor(rule: Rule, values: readonly string[]): BucketPolicy | undefined {
    return this.overrideFor(rule, values)?.policy;
  }

  /** The longest prefix override matching `values`. */
  overrideFor(rule: Rule, values: readonly string[]): CompiledOverride | undefined {
    return this.byRule.get(rule.name)?.find((override) => matches(override.parts, values));
  }

  get size(): number {
    let count = 0;
    for (const list of this.byRule.values()) count += list.length;
    return count;
  }
}

function matches(parts: readonly PartMatch[], values: readonly string[]): boolean {
  return parts.every((part, i) => {
    const value = values[i];
    return value !== undefined && (part.kind === "exact" ? value === part.value : value.startsWith(part.prefix));
  });
}
