import { BackendConfigError, type OverrideRecord } from "../core/backend";
import type { Limiter, NamedBucket } from "../core/limiter";
import { compileOverride, concurrencyRuleNamed, overrideId, PrefixOverrides } from "../core/overrides";
import type { Verdict } from "../core/verdict";

/**
 * Run-time control of a limiter, framework-free: what the admin API and the service-binding RPC
 * both call. Inputs are untrusted JSON; every answer is typed, and a bad input names its field.
 */

/** The store could not answer an operation that needs it (answered with 503). */
export class StoreUnavailableError extends Error {
  override readonly name = "StoreUnavailableError";
}

/**
 * A control operation's call to the store: any failure but a misconfiguration becomes a
 * {@link StoreUnavailableError} (503), so an error of the control code itself (a bug) is told
 * apart from the store's (500).
 */
async function fromStore<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    if (error instanceof BackendConfigError || error instanceof StoreUnavailableError) throw error;
    throw new StoreUnavailableError(error instanceof Error ? `${error.name}: ${error.message}` : String(error), { cause: error });
  }
}

/** A bad input: the field and what is wrong with it (answered with 400). */
export interface ControlError {
  readonly ok: false;
  readonly field: string;
  readonly message: string;
}

/** One bucket of a client as it stands. */
export interface BucketStatus {
  readonly rule: string;
  readonly client: Readonly<Record<string, string>>;
  /** Whole tokens in the bucket now. */
  readonly remaining: number;
  readonly capacity: number;
  /** Refill as `"<tokens>/<ms>ms"`, exact. */
  readonly rate: string;
  /** Until the bucket is full again. */
  readonly fullInMs: number;
  /** The override in force for this client, if any (an exact one wins over prefixes). */
  readonly override: (OverrideRecord & { readonly kind: "exact" | "prefix" }) | null;
}

/** What a check through control answers: the decision, in plain data. */
export type CheckResult =
  | { readonly ok: true; readonly allowed: true; readonly rule: string; readonly remaining: number; readonly limit: number; readonly resetMs: number }
  | { readonly ok: true; readonly allowed: false; readonly rule: string; readonly remaining: number; readonly limit: number; readonly retryAfterMs: number }
  | { readonly ok: true; readonly allowed: boolean; readonly rule: string; readonly failure: string };

/**
 * The bucket(s) of a named client as they stand, consuming nothing: `{ rule?, client }`.
 *
 * @example
 * await peekClient(limiter, { rule: "api", client: { "header:x-api-key": "abc" } });
 * // { ok: true, buckets: [{ rule: "api", remaining: 4, capacity: 5, rate: "1/60000ms", fullInMs: 60000, override: null, … }] }
 */
export async function peekClient(limiter: Limiter, body: unknown): Promise<{ ok: true; buckets: BucketStatus[] } | ControlError> {
  const input = asObject(body, ["rule", "client"]);
  if (!input.ok) return input;
  const named = await limiter.findBuckets(input.value.rule, input.value.client);
  if (!named.ok) return { ...named, ok: false };
  const records = await fromStore(() => limiter.store.send((signal) => limiter.backend.overrides.list(signal)));
  const buckets: BucketStatus[] = [];
  for (const bucket of named.buckets) {
    const verdict = await limiter.check({ kind: "client", rule: bucket.rule.name, client: bucket.client }, { mode: "peek", cost: 0 });
    // The bucket lives in the store: when the store cannot answer, neither can a peek (503, not a guess).
    if (verdict.kind === "backend-misconfigured") throw new BackendConfigError(verdict.variable, verdict.message);
    if (verdict.kind === "fail-open" || verdict.kind === "fail-closed" || ((verdict.kind === "allowed" || verdict.kind === "refused") && verdict.degraded)) {
      throw new StoreUnavailableError(`the store could not be read for "${bucket.rule.name}"`);
    }
    const outcome = verdict.kind === "allowed" || verdict.kind === "refused" ? verdict.outcomes[0] : undefined;
    if (outcome === undefined) return failure("client", verdict);
    const { policy, decision } = outcome;
    buckets.push({
      rule: bucket.rule.name,
      client: bucket.client,
      remaining: decision.remaining,
      capacity: policy.capacity,
      rate: `${policy.refillTokens}/${policy.refillPeriodMs}ms`,
      fullInMs: decision.resetMs,
      override: overrideInForce(limiter, records, bucket),
    });
  }
  return { ok: true, buckets };
}

/**
 * Makes a named client's bucket(s) full again: `{ rule?, client }`.
 *
 * @example
 * await resetClient(limiter, { rule: "login", client: { ip: "203.0.113.7" } }); // { ok: true, reset: ["login"] }
 */
export async function resetClient(limiter: Limiter, body: unknown): Promise<{ ok: true; reset: string[] } | ControlError> {
  const input = asObject(body, ["rule", "client"]);
  if (!input.ok) return input;
  const named = await limiter.findBuckets(input.value.rule, input.value.client);
  if (!named.ok) return { ...named, ok: false };
  await fromStore(() => limiter.reset(named.buckets));
  return { ok: true, reset: named.buckets.map((b) => b.rule.name) };
}

/**
 * Charges a named client like traffic and answers the decision: `{ rule, client, cost? }`.
 *
 * @example
 * await checkClient(limiter, { rule: "api", client: { "header:x-api-key": "abc" }, cost: 2 });
 * // { ok: true, allowed: true, rule: "api", remaining: 3, limit: 5, resetMs: 120000 }
 */
export async function checkClient(limiter: Limiter, body: unknown): Promise<CheckResult | ControlError> {
  const input = asObject(body, ["rule", "client", "cost"]);
  if (!input.ok) return input;
  const { rule, client, cost } = input.value;
  if (rule === undefined) return { ok: false, field: "rule", message: "is missing" };
  if (cost !== undefined && typeof cost !== "number") return { ok: false, field: "cost", message: "must be an integer from 1 to 1000000000" };
  const verdict = await limiter.check({ kind: "client", rule: String(rule), client: (client ?? {}) as Record<string, string> }, cost === undefined ? {} : { cost });
  switch (verdict.kind) {
    case "allowed": {
      const [outcome] = verdict.outcomes;
      if (outcome === undefined) return failure("rule", verdict);
      return { ok: true, allowed: true, rule: outcome.rule.name, remaining: outcome.decision.remaining, limit: outcome.policy.capacity, resetMs: outcome.decision.resetMs };
    }
    case "refused": {
      const [outcome] = verdict.outcomes;
      if (outcome === undefined) return failure("rule", verdict);
      return { ok: true, allowed: false, rule: outcome.rule.name, remaining: outcome.decision.remaining, limit: outcome.policy.capacity, retryAfterMs: verdict.retryAfterMs };
    }
    case "fail-open":
      return { ok: true, allowed: true, rule: String(rule), failure: verdict.reason };
    case "fail-closed":
      return { ok: true, allowed: false, rule: verdict.rule.name, failure: verdict.reason };
    case "invalid-subject":
      return { ok: false, field: verdict.field, message: verdict.message };
    case "cost-exceeds-capacity":
      return { ok: false, field: "cost", message: `is more than the "${verdict.rule.name}" bucket holds (${verdict.rule.policy.capacity})` };
    case "backend-misconfigured":
      throw new BackendConfigError(verdict.variable, verdict.message);
    default:
      return failure("client", verdict);
  }
}

/**
 * Sets an override: `{ rule, client, capacity, rate }`. An exact one is written beside the
 * client's bucket (the next request everywhere sees it); a prefix one (a value ending in `*`)
 * reaches every isolate within 10 s. Either keeps the client's tokens.
 *
 * @example
 * await putOverride(limiter, { rule: "api", client: { "header:x-api-key": "ent_*" }, capacity: 1000, rate: "1000/1m" });
 */
export async function putOverride(limiter: Limiter, body: unknown): Promise<{ ok: true; override: OverrideRecord & { kind: "exact" | "prefix" } } | ControlError> {
  const concurrency = concurrencyRuleOf(limiter, body);
  if (concurrency !== undefined) return concurrency;
  const compiled = compileOverride(limiter.rules, body, limiter.identity);
  if (!compiled.ok) return { ...compiled, ok: false };
  const { override } = compiled;
  if (override.kind === "exact") {
    const named = await limiter.findBuckets(override.rule.name, override.record.client);
    if (!named.ok) return { ...named, ok: false };
    // Beside the bucket first, then listed: the list never shows an override not in force.
    for (const { ref } of named.buckets) await fromStore(() => limiter.store.send((signal) => limiter.backend.setOverride(ref, override.policy, signal)));
    limiter.forget(named.buckets);
  }
  await fromStore(() => limiter.store.send((signal) => limiter.backend.overrides.put(override.record, signal)));
  limiter.forgetPrefixOverrides();
  return { ok: true, override: { ...override.record, kind: override.kind } };
}

/**
 * Every override, exact and prefix.
 *
 * @example
 * await listOverrides(limiter); // { ok: true, overrides: [{ id, rule: "api", client: { … }, capacity: 1000, rate: "1000/1m", kind: "prefix" }] }
 */
export async function listOverrides(limiter: Limiter): Promise<{ ok: true; overrides: (OverrideRecord & { kind: "exact" | "prefix" })[] }> {
  const records = await fromStore(() => limiter.store.send((signal) => limiter.backend.overrides.list(signal)));
  return { ok: true, overrides: records.map((record) => ({ ...record, kind: Object.values(record.client).some((v) => v.endsWith("*")) ? "prefix" : "exact" })) };
}

/**
 * Removes an override: `{ rule, client }` as it was set. The client keeps its tokens.
 *
 * @example
 * await deleteOverride(limiter, { rule: "api", client: { "header:x-api-key": "ent_*" } }); // { ok: true, removed: true }
 */
export async function deleteOverride(limiter: Limiter, body: unknown): Promise<{ ok: true; removed: boolean } | ControlError> {
  const input = asObject(body, ["rule", "client"]);
  if (!input.ok) return input;
  const concurrency = concurrencyRuleOf(limiter, body);
  if (concurrency !== undefined) return concurrency;
  // The same checks as setting one (capacity and rate are not asked for: the rule's own pass them,
  // whatever its cost).
  const rule = limiter.rules.find(({ name }) => name === input.value.rule);
  const compiled = compileOverride(limiter.rules, { ...input.value, capacity: rule?.spec.capacity ?? 1, rate: rule?.spec.rate ?? 1 }, limiter.identity);
  if (!compiled.ok) return { ...compiled, ok: false };
  const { override } = compiled;
  if (override.kind === "exact") {
    const named = await limiter.findBuckets(override.rule.name, override.record.client);
    if (!named.ok) return { ...named, ok: false };
    for (const { ref } of named.buckets) await fromStore(() => limiter.store.send((signal) => limiter.backend.setOverride(ref, null, signal)));
    limiter.forget(named.buckets);
  }
  const removed = await fromStore(() => limiter.store.send((signal) => limiter.backend.overrides.remove(override.record.id, signal)));
  limiter.forgetPrefixOverrides();
  return { ok: true, removed };
}

function overrideInForce(limiter: Limiter, records: readonly OverrideRecord[], bucket: NamedBucket): BucketStatus["override"] {
  const exact = records.find((record) => record.id === overrideId(bucket.rule.name, bucket.client));
  if (exact !== undefined) return { ...exact, kind: "exact" };
  const prefix = PrefixOverrides.from(records, limiter.rules, limiter.identity).overrideFor(bucket.rule, bucket.values);
  return prefix === undefined ? null : { ...prefix.record, kind: "prefix" };
}

function failure(field: string, verdict: Verdict): ControlError {
  return { ok: false, field, message: `cannot be decided (${verdict.kind}${"message" in verdict ? `: ${verdict.message}` : ""})` };
}

function asObject(body: unknown, fields: readonly string[]): { ok: true; value: Record<string, unknown> } | ControlError {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return { ok: false, field: "(body)", message: `must be a JSON object with ${fields.join(", ")}` };
  const unknown = Object.keys(body).find((field) => !fields.includes(field));
  if (unknown !== undefined) return { ok: false, field: unknown, message: `is not a field here (known: ${fields.join(", ")})` };
  return { ok: true, value: body as Record<string, unknown> };
}

/** The error for a body naming a concurrency rule (overrides address bucket rules), else undefined. */
function concurrencyRuleOf(limiter: Limiter, body: unknown): ControlError | undefined {
  const rule = typeof body === "object" && body !== null && "rule" in body ? body.rule : undefined;
  return limiter.concurrencyRules.some(({ name }) => name === rule) ? concurrencyRuleNamed(String(rule)) : undefined;
}
