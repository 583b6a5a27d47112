import type { BucketCharge, BucketRef, SlotClaim } from "./backend";
import { hashedClientKey, requestKeyValue, type IdentityOptions } from "./identity";
import { keySpec } from "./key-parts";
import { concurrencyRuleNamed, findRule, parseClient } from "./overrides";
import { normalizePath } from "./path";
import { ruleMatches, type ConcurrencyRule, type Rule } from "./rules";
import type { RuleClaim } from "./slot-keeper";
import type { ClientSubject, RequestSubject } from "./subject";
import type { Verdict } from "./verdict";

/** What a request lacking its rule's key gets: one shared `anonymous` bucket, or refused (401/400). */
export type MissingKeyMode = "anonymous" | "reject";

/** One rule's charge in a check: the rule beside what the backend is asked. */
export interface RuleCharge {
  readonly rule: Rule;
  readonly charge: BucketCharge;
  /** The client's key-part values (canonical), for prefix overrides; none for a caller's client id. */
  readonly values: readonly string[] | undefined;
}

/** A named client's bucket under one rule: what reset, peek and overrides address. */
export interface NamedBucket {
  readonly rule: Rule;
  readonly ref: BucketRef;
  /** The key-part values, canonical, by key part as rules spell them. */
  readonly client: Readonly<Record<string, string>>;
  /** The same values in the rule's key order (what prefix overrides match). */
  readonly values: readonly string[];
}

/** What a subject comes to: the rules that apply with their charges and slot claims, or a verdict already. */
export type Resolution =
  | { readonly kind: "charges"; readonly rules: readonly Rule[]; readonly charges: readonly RuleCharge[]; readonly claims: readonly RuleClaim[] }
  | { readonly kind: "verdict"; readonly verdict: Verdict };

/** A client as one rule's key reads it: hashed, with its canonical values. */
type ResolvedKey = { readonly clientKey: string; readonly values: readonly string[] | undefined } | undefined;

/**
 * Turns what the limiter is asked about into charges: the rules a request matches and the client
 * each one's key names (hashed; rules with the same key parts share one hash), or a client named
 * by rule and key values, canonical and hashed as traffic is, so both reach the same bucket.
 *
 * @example
 * const resolution = await resolver.request({ kind: "request", method: "GET", path: "/", headers }, undefined);
 * if (resolution.kind === "charges") for (const { charge } of resolution.charges) console.log(charge.bucket);
 */
export class SubjectResolver {
  constructor(
    private readonly rules: readonly Rule[],
    private readonly concurrencyRules: readonly ConcurrencyRule[],
    private readonly identity: IdentityOptions,
    private readonly missingKey: MissingKeyMode,
  ) {}

  async request(subject: RequestSubject, cost: number | undefined): Promise<Resolution> {
    const pathname = normalizePath(subject.path);
    const host = (subject.host ?? subject.headers.get("host") ?? "").replace(/:\d+$/, "");
    const request = { method: subject.method, pathname, headers: subject.headers, host };
    const rules = this.rules.filter((rule) => ruleMatches(rule, request));
    const concurrent = this.concurrencyRules.filter((rule) => ruleMatches(rule, request));
    if (rules.length === 0 && concurrent.length === 0) return { kind: "verdict", verdict: { kind: "unmatched" } };
    const keys = new Map<string, Promise<ResolvedKey>>();
    const charges: RuleCharge[] = [];
    const claims: RuleClaim[] = [];
    for (const rule of concurrent.length === 0 ? rules : [...rules, ...concurrent]) {
      const keyName = subject.clientId === undefined ? rule.keyName : "client";
      let key = keys.get(keyName);
      if (key === undefined) keys.set(keyName, (key = this.requestKey(subject, rule)));
      const client = await key;
      if (client === undefined && this.missingKey === "reject") return { kind: "verdict", verdict: { kind: "missing-key", rule } };
      const clientKey = client?.clientKey ?? `${keyName}:anonymous`;
      if ("limit" in rule) claims.push({ rule, claim: claimFor(rule, clientKey) });
      else charges.push({ rule, charge: chargeFor(rule, clientKey, cost), values: client?.values });
    }
    return { kind: "charges", rules, charges, claims };
  }

  async client(subject: ClientSubject, cost: number | undefined): Promise<Resolution> {
    const named = await this.findBuckets(subject.rule, subject.client);
    if (!named.ok) return { kind: "verdict", verdict: { kind: "invalid-subject", field: named.field, message: named.message } };
    const charges = named.buckets.map(({ rule, ref, values }) => ({ rule, charge: chargeFor(rule, ref.clientKey, cost), values }));
    return { kind: "charges", rules: charges.map(({ rule }) => rule), charges, claims: [] };
  }

  /**
   * The buckets of a client named by key-part values, under `rule` or, when it is left out,
   * under every rule keyed on exactly those parts.
   *
   * @example
   * await resolver.findBuckets("api", { "header:x-api-key": "abc" }); // { ok: true, buckets: [{ rule, ref, client, values }] }
   */
  async findBuckets(ruleName: unknown, client: unknown): Promise<{ ok: true; buckets: NamedBucket[] } | { ok: false; field: string; message: string }> {
    let rules: readonly Rule[];
    if (ruleName === undefined) {
      const given = typeof client === "object" && client !== null ? Object.keys(client).sort().join(",") : "";
      rules = this.rules.filter((rule) => rule.key.map(keySpec).sort().join(",") === given);
      if (rules.length === 0)
        return { ok: false, field: "client", message: `matches no rule's key parts (rules key on: ${[...new Set(this.rules.map((r) => r.key.map(keySpec).join("+")))].join("; ")})` };
    } else if (this.concurrencyRules.some((rule) => rule.name === ruleName)) {
      return concurrencyRuleNamed(String(ruleName));
    } else {
      const found = findRule(this.rules, ruleName);
      if (!found.ok) return found;
      rules = [found.rule];
    }
    const buckets: NamedBucket[] = [];
    for (const rule of rules) {
      const parsed = parseClient(rule, client, this.identity, { prefixes: false });
      if (!parsed.ok) return parsed;
      const values = rule.key.map((part) => parsed.canonical[keySpec(part)] ?? "");
      buckets.push({ rule, ref: { clientKey: await hashedClientKey(rule.keyName, values, this.identity.hashKey), rule: rule.name }, client: parsed.canonical, values });
    }
    return { ok: true, buckets };
  }

  private async requestKey(subject: RequestSubject, rule: Pick<Rule, "key" | "keyName">): Promise<ResolvedKey> {
    if (subject.clientId !== undefined) {
      return subject.clientId === "" ? undefined : { clientKey: await hashedClientKey("client", [subject.clientId], this.identity.hashKey), values: undefined };
    }
    const values: string[] = [];
    for (const part of rule.key) {
      const value = requestKeyValue(subject, part, this.identity);
      if (value === undefined) return undefined;
      values.push(value);
    }
    return { clientKey: await hashedClientKey(rule.keyName, values, this.identity.hashKey), values };
  }
}

function claimFor(rule: ConcurrencyRule, clientKey: string): SlotClaim {
  return { clientKey, rule: rule.name, id: crypto.randomUUID(), limit: rule.limit, leaseMs: rule.leaseMs, enforced: rule.mode === "enforce" };
}

function chargeFor(rule: Rule, clientKey: string, cost: number | undefined): BucketCharge {
  return { clientKey, rule: rule.name, policy: rule.policy, cost: cost ?? rule.policy.cost, enforced: rule.mode === "enforce" };
}
