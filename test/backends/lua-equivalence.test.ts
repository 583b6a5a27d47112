import { createHash } from "node:crypto";
import fc from "fast-check";
import { createClient } from "redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRedis } from "../../dev/redis-server.mjs";
import { decodeReply, overrideArgs, resetArgs, scriptArgs, scriptKeys, storedValues } from "../../src/backends/upstash";
import { TOKEN_BUCKET_LUA, TOKEN_BUCKET_SHA1 } from "../../src/backends/upstash/token-bucket-script";
import { parseRatePerSecond } from "../../src/core/rate";
import { ceilDiv, refundTokens, takeBuckets, takeTokens, type BucketPolicy, type BucketState } from "../../src/core/token-bucket";
import { policy as perSecond } from "../support/helpers";

let redisServer: Awaited<ReturnType<typeof startRedis>>;
let redis: ReturnType<typeof createClient>;

beforeAll(async () => {
  redisServer = await startRedis();
  redis = createClient({ url: redisServer.url });
  await redis.connect();
  // The property test calls EVALSHA directly (node-redis, explicit times): load the script once.
  await redis.scriptLoad(TOKEN_BUCKET_LUA);
});
afterAll(async () => {
  await redis?.quit();
  await redisServer?.stop();
});

/** A tokens-per-second decimal with up to 6 decimals, as LIMITER_REFILL_RATE accepts. */
const rateText = fc
  .tuple(fc.integer({ min: 1, max: 2_000_000 }), fc.integer({ min: 0, max: 6 }))
  .map(([digits, decimals]) => {
    const text = String(digits).padStart(decimals + 1, "0");
    return decimals === 0 ? text : `${text.slice(0, -decimals)}.${text.slice(-decimals)}`;
  })
  .filter((text) => parseRatePerSecond(text) !== undefined);

const step = fc.record({
  elapsedMs: fc.oneof(
    fc.integer({ min: 0, max: 20 }),
    fc.integer({ min: 0, max: 5_000 }),
    fc.integer({ min: 0, max: 10 ** 9 }),
    // The store's clock can step back (failover to a replica with another clock).
    fc.integer({ min: -3_000, max: 0 }),
  ),
  cost: fc.oneof(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 1_200 })),
  /** Sometimes the operator changes the rate between requests. */
  newRate: fc.option(rateText, { freq: 10 }),
  /** Sometimes only a look (an admin peek, of the rule's cost or of 0): the same decision, nothing written. */
  peek: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
  /** Sometimes the last charge is given back instead (a response a `count` rule does not count). */
  refund: fc.integer({ min: 0, max: 3 }).map((n) => n === 0),
  /** Sometimes an operator acts first: an exact override set or removed, or a reset. */
  admin: fc.option(
    fc.oneof(
      fc.record({ kind: fc.constant("override" as const), capacity: fc.integer({ min: 1, max: 1_200 }), rate: rateText }),
      fc.constant({ kind: "clear" as const }),
      fc.constant({ kind: "reset" as const }),
    ),
    { freq: 6 },
  ),
  /**
   * The hint the isolate sends: the value the key holds, none, an older value (another isolate
   * wrote since), or a value close to the right one (level or override off by one). Only the
   * number of commands may depend on it, never the decision or what is stored.
   */
  hint: fc.constantFrom("right" as const, "none" as const, "stale" as const, "near" as const),
});

/** A wrong hint close to `value`: one unit more in the first number, or an override added or changed. */
function nearHint(value: string | null): string {
  if (value === null) return "|7:1:1000";
  const [state = "", override] = value.split("|");
  if (override !== undefined) return `${state}|${override.replace(/^\d+/, (c) => String(Number(c) + 1))}`;
  return state.replace(/^\d+/, (l) => String(Number(l) + 1));
}

type Step = typeof step extends fc.Arbitrary<infer T> ? T : never;

/** A bucket's key as the script stores it: the state, then "|" and the exact override if any; null when neither. */
function stored(state: BucketState | undefined, override?: BucketPolicy): string | null {
  let value = "";
  if (state !== undefined) value = `${state.level}:${state.unitsPerToken}:${state.updatedAtMs}`;
  if (state?.blockedUntilMs !== undefined) value += `:${state.blockedUntilMs}`;
  if (override !== undefined) value += `|${override.capacity}:${override.refillTokens}:${override.refillPeriodMs}`;
  return value === "" ? null : value;
}

/** Runs one sequence through the TypeScript bucket and the script, step by step, and compares everything. */
async function checkSequence(capacity: number, rate: string, steps: readonly Step[], startMs: number, blockForMs: number): Promise<void> {
  const ref = { clientKey: `equivalence:${crypto.randomUUID()}`, bucket: "b" };
  const [key = ""] = scriptKeys("p", [ref]);
  const withBlock = (p: BucketPolicy): BucketPolicy => (blockForMs > 0 ? { ...p, blockForMs } : p);
  let policy: BucketPolicy = withBlock(perSecond(capacity, rate));
  let override: BucketPolicy | undefined;
  let state: BucketState | undefined;
  let nowMs = startMs;
  let last: { charged: BucketState; cost: number } | undefined;
  let previous: string | null = null;
  for (const { elapsedMs, cost: stepCost, newRate, peek, admin, refund, hint: hintKind } of steps) {
    nowMs += elapsedMs;
    if (newRate !== null) policy = withBlock(perSecond(capacity, newRate));
    // The operator's action, as the backend does it (the script's reset and override modes).
    if (admin !== null) {
      if (admin.kind === "reset") state = undefined;
      else if (admin.kind === "override") override = perSecond(admin.capacity, admin.rate); // capacity and refill only: the block period stays the rule's
      else override = undefined;
      const reply = await redis.evalSha(TOKEN_BUCKET_SHA1, { keys: [key], arguments: admin.kind === "reset" ? resetArgs() : overrideArgs(override ?? null) });
      expect(storedValues(reply, 1)).toEqual([stored(state, override) ?? ""]);
      // A key holding an override never expires; one without keeps no expiry until the next charge.
      const [value, ttl] = (await redis.multi().get(key).pTTL(key).persist(key).exec()) as unknown as [string | null, number];
      expect(value).toBe(stored(state, override));
      expect(ttl).toBeLessThan(0);
    }
    const right = stored(state, override);
    const hint = { right, none: null, stale: previous, near: nearHint(right) }[hintKind] ?? "";
    previous = right;
    const inForce = override === undefined ? policy : { ...policy, ...override };
    if (refund && last !== undefined) {
      // The script's refund mode against refundTokens: what the charge still withholds comes back.
      state = refundTokens(state, inForce, last.cost, last.charged, nowMs);
      const sentAt = performance.now();
      const reply = await redis.evalSha(TOKEN_BUCKET_SHA1, { keys: [key], arguments: scriptArgs([{ ...ref, policy, cost: last.cost, enforced: true }], false, nowMs, [last.charged]) });
      const [value] = (await redis.multi().get(key).persist(key).exec()) as unknown as [string | null];
      const expectedValue = stored(state, override);
      expect(storedValues(reply, 1)).toEqual([expectedValue ?? ""]);
      const fullInMs = state === undefined ? 0 : state.updatedAtMs - nowMs + ceilDiv(inForce.capacity * inForce.refillPeriodMs - state.level, inForce.refillTokens);
      if (value === null && expectedValue !== null && fullInMs <= performance.now() - sentAt + 1) await redis.set(key, expectedValue);
      else expect(value).toBe(expectedValue);
      last = undefined;
      continue;
    }
    // A peek may ask about 0 tokens: the bucket as it stands.
    const cost = peek && stepCost % 2 === 0 ? 0 : stepCost;
    const taken = takeTokens(state, inForce, cost, nowMs);
    const expected = peek ? { decision: taken.decision, next: undefined, expiresInMs: 0 } : taken;
    state = expected.next ?? state;

    const charge = { ...ref, policy, cost, enforced: true };
    const sentAt = performance.now();
    const reply = await redis.evalSha(TOKEN_BUCKET_SHA1, { keys: [key], arguments: scriptArgs([charge], !peek, nowMs, undefined, [hint]) });
    const { capacity: c, refillTokens, refillPeriodMs } = inForce;
    const charged = !peek && expected.decision.outcome === "allowed" ? (expected.next ?? null) : null;
    expect(decodeReply(reply)).toEqual([{ decision: expected.decision, policy: { capacity: c, refillTokens, refillPeriodMs }, charged }]);
    if (charged !== null) last = { charged, cost };

    const expectedValue = stored(state, override);
    expect(storedValues(reply)).toEqual([expectedValue ?? ""]);
    // Atomically: read the state and its TTL, then drop the TTL. Simulated time runs ahead of
    // Redis's real clock, so the key must not expire in real time between steps.
    const [value, ttl] = (await redis.multi().get(key).pTTL(key).persist(key).exec()) as unknown as [string | null, number];
    const realMs = performance.now() - sentAt;
    // A key with nothing written may have been written and put back (a wrong hint): with no expiry.
    if (value === null && expectedValue !== null && override === undefined && expected.next !== undefined && expected.expiresInMs <= realMs + 1) {
      // The key's TTL (real time) ran out before we looked: put the state back for the
      // next simulated step.
      await redis.set(key, expectedValue);
    } else {
      expect(value).toBe(expectedValue);
    }
    if (expected.next !== undefined && value !== null && override !== undefined) {
      expect(ttl).toBe(-1); // the key holds an override: no expiry
    } else if (expected.next !== undefined && value !== null) {
      // The key lives exactly until the bucket is full and any block is over (minus the real
      // time this step took), counted from its own stamp when the clock stepped back.
      expect(ttl).toBeLessThanOrEqual(expected.expiresInMs);
      expect(ttl).toBeGreaterThanOrEqual(expected.expiresInMs - Math.ceil(realMs) - 1);
    } else if (value !== null) {
      // Nothing written (the test dropped the key's TTL after the last step): a wrong hint that
      // made the script write puts the old value back with no expiry, whatever policy it has
      // (an expiry from this call's policy could end the key before the bucket is full under another).
      expect(ttl).toBe(-1);
    }
  }
  await redis.del(key);
}

describe("the Lua script and the TypeScript bucket agree", () => {
  it("pins the script's SHA-1 (EVALSHA calls it by this name)", () => {
    expect(createHash("sha1").update(TOKEN_BUCKET_LUA).digest("hex")).toBe(TOKEN_BUCKET_SHA1);
  });

  it("on random sequences of (time step, cost, capacity, rate, take, peek or refund, override, reset): same decision, policy, state, block and expiry at every step", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 1_000 }),
        rateText,
        fc.array(step, { minLength: 1, maxLength: 25 }),
        fc.integer({ min: 1_600_000_000_000, max: 1_900_000_000_000 }),
        // Often no block period; else one from a millisecond to a day.
        fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 5_000 }), fc.integer({ min: 1, max: 86_400_000 })),
        checkSequence,
      ),
      { numRuns: 500 },
    );
  }, 90_000);

  it("where refusals and blocks are common (small, slow buckets, short steps), with right and wrong hints: the same", async () => {
    // The main property's rates and steps mostly refill the bucket between steps: here a wrong
    // hint often claims tokens the bucket does not have, so the script must write, find the
    // real value, and put it back with the expiry it had (a block's end included).
    const slowStep = fc.record({
      elapsedMs: fc.oneof(fc.integer({ min: 0, max: 1_500 }), fc.integer({ min: -1_000, max: 0 })),
      cost: fc.integer({ min: 1, max: 3 }),
      newRate: fc.constant(null),
      peek: fc.integer({ min: 0, max: 6 }).map((n) => n === 0),
      refund: fc.integer({ min: 0, max: 6 }).map((n) => n === 0),
      admin: fc.option(
        fc.oneof(
          fc.record({ kind: fc.constant("override" as const), capacity: fc.integer({ min: 1, max: 5 }), rate: fc.constantFrom("0.5", "1", "3") }),
          fc.constant({ kind: "clear" as const }),
          fc.constant({ kind: "reset" as const }),
        ),
        { freq: 12 },
      ),
      hint: fc.constantFrom("right" as const, "none" as const, "stale" as const, "near" as const),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 5 }),
        fc.constantFrom("0.5", "1", "2", "10"),
        fc.array(slowStep, { minLength: 1, maxLength: 30 }),
        fc.integer({ min: 1_600_000_000_000, max: 1_900_000_000_000 }),
        fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 60_000 })),
        checkSequence,
      ),
      { numRuns: 300 },
    );
  }, 90_000);

  it("on several buckets at once (take or peek, with blocks): the same all-or-nothing decisions and writes", async () => {
    const bucket = fc.record({
      capacity: fc.integer({ min: 1, max: 50 }),
      rate: rateText,
      enforced: fc.boolean(),
      blockForMs: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 10_000 })),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.array(bucket, { minLength: 1, maxLength: 4 }),
        fc.array(
          fc.record({
            elapsedMs: fc.integer({ min: 0, max: 3_000 }),
            costs: fc.array(fc.integer({ min: 1, max: 60 }), { minLength: 4, maxLength: 4 }),
            peek: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
            hints: fc.array(fc.constantFrom("right" as const, "none" as const, "stale" as const, "near" as const), { minLength: 4, maxLength: 4 }),
          }),
          {
            minLength: 1,
            maxLength: 20,
          },
        ),
        async (buckets, steps) => {
          const refs = buckets.map(() => ({ clientKey: `multi:${crypto.randomUUID()}`, bucket: "b" }));
          const keys = refs.map((ref) => scriptKeys("p", [ref])[0] ?? "");
          const policies: BucketPolicy[] = buckets.map((b) => (b.blockForMs > 0 ? { ...perSecond(b.capacity, b.rate), blockForMs: b.blockForMs } : perSecond(b.capacity, b.rate)));
          const states: (BucketState | undefined)[] = buckets.map(() => undefined);
          let nowMs = 1_800_000_000_000;
          const previous: (string | null)[] = buckets.map(() => null);
          for (const { elapsedMs, costs, peek, hints: hintKinds } of steps) {
            nowMs += elapsedMs;
            const hints = states.map((state, i) => {
              const right = stored(state);
              const hint = { right, none: null, stale: previous[i] ?? null, near: nearHint(right) }[hintKinds[i]!] ?? "";
              previous[i] = right;
              return hint;
            });
            const entries = buckets.map((b, i) => ({ state: states[i], policy: policies[i]!, cost: costs[i]!, enforced: b.enforced }));
            const taken = takeBuckets(entries, nowMs);
            const { results } = taken;
            // A peek: the same decisions, nothing written.
            const expected = { decisions: results.map((r) => r.decision), next: results.map((r) => (peek ? undefined : r.next)) };
            expected.next.forEach((state, i) => state && (states[i] = state));

            const charges = entries.map((e, i) => ({ ...refs[i]!, policy: e.policy, cost: e.cost, enforced: e.enforced }));
            const sentAt = performance.now();
            const reply = await redis.evalSha(TOKEN_BUCKET_SHA1, { keys: scriptKeys("p", charges), arguments: scriptArgs(charges, !peek, nowMs, undefined, hints) });
            expect(storedValues(reply)).toEqual(states.map((state) => stored(state) ?? ""));
            expect(decodeReply(reply)).toEqual(
              expected.decisions.map((decision, i) => {
                const { capacity, refillTokens, refillPeriodMs } = entries[i]!.policy;
                const charged = !peek && !taken.refused && decision.outcome === "allowed" ? (results[i]?.next ?? null) : null;
                return { decision, policy: { capacity, refillTokens, refillPeriodMs }, charged };
              }),
            );
            const values = await Promise.all(keys.map(async (key) => (await redis.multi().get(key).persist(key).exec())[0] as unknown as string | null));
            const realMs = performance.now() - sentAt;
            for (const [i, value] of values.entries()) {
              const state = states[i];
              const expectedValue = stored(state);
              // A key written this step may already have expired in real time (its TTL is the
              // time to full, sometimes 1 ms): then put the expected state back. One a wrong hint
              // made the script write and then put back keeps no expiry.
              const ttlMs = expected.next[i] !== undefined ? (results[i]?.expiresInMs ?? 0) : Infinity;
              const expiredInRealTime = value === null && expectedValue !== null && ttlMs <= realMs + 1;
              if (expiredInRealTime) await redis.set(keys[i]!, expectedValue!);
              else expect(value).toBe(expectedValue);
            }
          }
          await redis.del(keys);
        },
      ),
      { numRuns: 200 },
    );
  }, 60_000);
});
