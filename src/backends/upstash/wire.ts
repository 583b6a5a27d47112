import type { BucketAnswer, BucketCharge, BucketRef, SlotClaim } from "../../core/backend";
import type { SlotDecision } from "../../core/slots";
import type { RateState } from "../../core/algorithms/index";
import { newGeneration, type BucketDecision, type BucketPolicy, type BucketState } from "../../core/token-bucket";
import type { LeaseAsk, LeaseGiveBack } from "../../core/leases";
import { luaAlgorithmById, luaAlgorithmOf } from "./algorithms/index";

/**
 * What the Upstash backend sends its scripts and reads back: key names, argument lists and reply
 * decoding, in one module (the backend and the TS ≡ Lua property tests share it; the package
 * does not export it).
 */

const OUTCOMES = { 1: "allowed", 0: "denied", 2: "cost_exceeds_capacity" } as const;

/**
 * The Redis key of one bucket: prefix, bucket (policy) name, hashed client key.
 *
 * @example
 * bucketKey("sluice", { rule: "default", clientKey: "ip:3f2a…" }); // "sluice:default:ip:3f2a…"
 */
export function bucketKey(prefix: string, ref: BucketRef): string {
  return `${prefix}:${ref.rule}:${ref.clientKey}`;
}

/** The script's KEYS for some charges: each bucket's key (its exact override lives in the same key). */
export function scriptKeys(prefix: string, refs: readonly BucketRef[]): string[] {
  return refs.map((ref) => bucketKey(prefix, ref));
}

/**
 * The script's arguments for a request's charges: `charge` false only looks (a peek); `nowMs`
 * only in tests (production uses Redis's clock); `refunds`, per charge, the state its take wrote
 * (a refund); `hints`, per charge, the value the caller last saw in the bucket's key ("" or
 * absent: none), which saves the script a read when it is right; `generation`, that of a bucket
 * this charge starts from none (default: a new one); `lease`, for a charge of one token bucket,
 * a lease to ask for and a lease's rest to give back (see `src/core/leases.ts`). Each charge's
 * algorithm (its policy's) and policy are written by the algorithm's Lua twin.
 *
 * @example
 * scriptArgs([charge], true); // ["", "1", "<generation>", "token-bucket", "60:1:1000:0", "1", "1", "", "", "", ""]
 */
export function scriptArgs(
  charges: readonly BucketCharge[],
  charge: boolean,
  nowMs?: number,
  refunds?: readonly RateState[],
  hints?: readonly string[],
  generation?: number,
  lease?: LeaseArgs,
): string[] {
  const mode = refunds !== undefined ? "2" : charge ? "1" : "0";
  const args = [nowMs === undefined ? "" : String(nowMs), mode, mode === "1" ? String(generation ?? newGeneration()) : "0"];
  for (const [index, { policy, cost, enforced }] of charges.entries()) {
    const [id, twin] = luaAlgorithmOf(policy);
    const charged = refunds?.[index];
    args.push(id, twin.policyArg(policy), String(cost), enforced ? "1" : "0", charged === undefined ? "" : twin.chargedArg(charged), hints?.[index] ?? "");
    const ask = index === 0 && charges.length === 1 && mode === "1" ? lease?.ask : undefined;
    const giveBack = index === 0 && charges.length === 1 && mode === "1" ? lease?.giveBack : undefined;
    args.push(ask === undefined ? "" : `${ask.id}:${ask.want}:${ask.ttlMs}`, giveBack === undefined ? "" : `${giveBack.id}:${giveBack.cost}:${chargedText(giveBack.charged)}`);
  }
  return args;
}

/** A lease to ask for and a lease's rest to give back, with a charge of one token bucket. */
export interface LeaseArgs {
  readonly ask?: LeaseAsk;
  readonly giveBack?: LeaseGiveBack;
}

/** A lease as the script granted it (the bucket after it: remaining whole tokens, time until full). */
export interface GrantReply {
  readonly granted: number;
  readonly remaining: number;
  readonly resetMs: number;
  readonly charged: BucketState;
}

const chargedText = (state: BucketState) => `${state.level}:${state.unitsPerToken}:${state.updatedAtMs}:${state.generation}`;

/**
 * The lease the script granted with a charge of one bucket, if any.
 *
 * @example
 * decodeGrant([..., "4:27:3000:27000:1000:1700000000000:42", ...]); // { granted: 4, remaining: 27, resetMs: 3000, charged: { level: 27000, … } }
 */
export function decodeGrant(reply: unknown): GrantReply | undefined {
  if (!Array.isArray(reply) || reply.length !== REPLY_WIDTH) return undefined;
  const field = text(reply[7]);
  if (field === "") return undefined;
  const parts = field.split(":").map(Number);
  if (parts.length !== 7 || !parts.every(Number.isSafeInteger)) throw new Error(`unexpected lease reply: ${JSON.stringify(field)}`);
  const [granted = 0, remaining = 0, resetMs = 0, level = 0, unitsPerToken = 0, updatedAtMs = 0, generation = 0] = parts;
  return { granted, remaining, resetMs, charged: { level, unitsPerToken, updatedAtMs, generation } };
}

/**
 * The script's arguments to reset buckets: their state is forgotten, their overrides stay, and so
 * do the leases still out of a token bucket (it holds its capacity less them until they end);
 * `nowMs` only in tests.
 *
 * @example
 * resetArgs(); // ["", "3"]
 */
export function resetArgs(nowMs?: number): string[] {
  return [nowMs === undefined ? "" : String(nowMs), "3"];
}

/**
 * The script's arguments to set one bucket's exact override (stored in the bucket's key, beside
 * its state, which it keeps; written by the policy's algorithm's Lua twin), or to remove it with
 * `null` (the state then expires when it stops mattering under the rule's policy); `nowMs` only in tests.
 *
 * @example
 * overrideArgs({ capacity: 100, refillTokens: 1, refillPeriodMs: 600 }); // ["", "4", "100:1:600"]
 */
export function overrideArgs(policy: BucketPolicy | null, nowMs?: number): string[] {
  const now = nowMs === undefined ? "" : String(nowMs);
  return [now, "4", policy === null ? "" : luaAlgorithmOf(policy)[1].overrideArg(policy)];
}

const SLOT_OPERATIONS = { acquire: "1", release: "0", renew: "2" } as const;

/** What a slots script call does. */
export type SlotOperation = keyof typeof SLOT_OPERATIONS;

/**
 * The slots script's arguments; `nowMs` only in tests.
 *
 * @example
 * slotArgs([{ clientKey, rule: "inflight", id: "r1", limit: 2, leaseMs: 30000, enforced: true }], "acquire"); // ["", "1", "r1", "2", "30000", "1"]
 */
export function slotArgs(claims: readonly SlotClaim[], operation: keyof typeof SLOT_OPERATIONS, nowMs?: number): string[] {
  return [nowMs === undefined ? "" : String(nowMs), SLOT_OPERATIONS[operation], ...claims.flatMap(({ id, limit, leaseMs, enforced }) => [id, String(limit), String(leaseMs), enforced ? "1" : "0"])];
}

/**
 * Decodes the slots script's reply (2 integers per claim).
 *
 * @example
 * decodeSlotReply([1, 2]); // [{ granted: true, inFlight: 2 }]
 */
export function decodeSlotReply(reply: unknown): SlotDecision[] {
  if (!Array.isArray(reply) || reply.length % 2 !== 0) throw new Error(`unexpected slots reply: ${JSON.stringify(reply)}`);
  const decisions: SlotDecision[] = [];
  for (let i = 0; i < reply.length; i += 2) decisions.push({ granted: Number(reply[i]) === 1, inFlight: Number(reply[i + 1]) });
  return decisions;
}

/** Values per bucket in a charge's or peek's reply. */
const REPLY_WIDTH = 9;

/** A reply's value as text (Redis answers integers as numbers, strings as strings). */
const text = (value: unknown) => (typeof value === "string" ? value : String(value));

/**
 * Decodes the script's reply (9 values per bucket) into answers: the decision, the policy in
 * force, and the state a charge wrote (the texts as the bucket's algorithm's Lua twin reads them).
 *
 * @example
 * decodeReply(["token-bucket", 1, 9, 1000, 0, "10:1:1000", "9000:1000:1700000000000:42", "9000:1000:1700000000000:42:1700000001000"]);
 * // [{ decision: { outcome: "allowed", remaining: 9, resetMs: 1000 }, policy: { capacity: 10, … }, charged: { level: 9000, … } }]
 */
export function decodeReply(reply: unknown): BucketAnswer[] {
  if (!Array.isArray(reply) || reply.length % REPLY_WIDTH !== 0) throw new Error(`unexpected script reply: ${JSON.stringify(reply)}`);
  const answers: BucketAnswer[] = [];
  for (let i = 0; i < reply.length; i += REPLY_WIDTH) {
    const twin = luaAlgorithmById(text(reply[i]));
    const [code, remaining, resetMs, retryAfterMs] = reply.slice(i + 1, i + 5).map(Number) as [number, number, number, number];
    const outcome = OUTCOMES[code as keyof typeof OUTCOMES];
    if (outcome === undefined) throw new Error(`unexpected outcome code ${code}`);
    // An allowed reply's retryAfterMs is a queued charge's wait (0: go now).
    const decision: BucketDecision =
      outcome === "denied"
        ? { outcome, remaining, resetMs, retryAfterMs }
        : outcome === "allowed" && retryAfterMs > 0
          ? { outcome, remaining, resetMs, waitMs: retryAfterMs }
          : { outcome, remaining, resetMs };
    const charged = text(reply[i + 6]);
    answers.push({ decision, policy: twin.policyOfReply(text(reply[i + 5])), charged: charged === "" ? null : twin.chargedOfReply(charged) });
  }
  return answers;
}

/**
 * The value each bucket's key holds after the call ("" for none), from a charge's or peek's reply
 * (`width` 9) or a refund's, reset's or override's (`width` 1): the next call's hints.
 *
 * @example
 * storedValues(["token-bucket", 1, 9, 1000, 0, "10:1:1000", "9000:1000:1700000000000:42", "", "9000:1000:1700000000000:42:1700000001000"]);
 * // ["9000:1000:1700000000000:42:1700000001000"]
 */
export function storedValues(reply: unknown, width = REPLY_WIDTH): string[] {
  if (!Array.isArray(reply)) return [];
  return reply.filter((_, i) => i % width === width - 1).map((value) => (typeof value === "string" ? value : ""));
}
