import { createHash } from "node:crypto";
import fc from "fast-check";
import { createClient } from "redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRedis } from "../../dev/redis-server.mjs";
import { decodeReply, overrideKey, scriptArgs, scriptKeys } from "../../src/backends/upstash";
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
});

/** A bucket state as the script stores it. */
function stored(state: BucketState | undefined): string | null {
  if (state === undefined) return null;
  const value = `${state.level}:${state.unitsPerToken}:${state.updatedAtMs}`;
  return state.blockedUntilMs === undefined ? value : `${value}:${state.blockedUntilMs}`;
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
        async (capacity, rate, steps, startMs, blockForMs) => {
          const ref = { clientKey: `equivalence:${crypto.randomUUID()}`, bucket: "b" };
          const [key = "", overrideKeyName = ""] = scriptKeys("p", [ref]);
          expect(overrideKeyName).toBe(overrideKey("p", ref));
          const withBlock = (p: BucketPolicy): BucketPolicy => (blockForMs > 0 ? { ...p, blockForMs } : p);
          let policy: BucketPolicy = withBlock(perSecond(capacity, rate));
          let override: BucketPolicy | undefined;
          let state: BucketState | undefined;
          let nowMs = startMs;
          let last: { charged: BucketState; cost: number } | undefined;
          for (const { elapsedMs, cost: stepCost, newRate, peek, admin, refund } of steps) {
            nowMs += elapsedMs;
            if (newRate !== null) policy = withBlock(perSecond(capacity, newRate));
            // The operator's action, as the backend writes it (reset: DEL; override: SET beside the bucket).
            if (admin?.kind === "reset") {
              state = undefined;
              await redis.del(key);
            } else if (admin?.kind === "override") {
              override = perSecond(admin.capacity, admin.rate); // capacity and refill only: the block period stays the rule's
              await redis.set(overrideKeyName, `${override.capacity}:${override.refillTokens}:${override.refillPeriodMs}`);
            } else if (admin?.kind === "clear") {
              override = undefined;
              await redis.del(overrideKeyName);
            }
            const inForce = override === undefined ? policy : { ...policy, ...override };
            if (refund && last !== undefined) {
              // The script's refund mode against refundTokens: what the charge still withholds comes back.
              state = refundTokens(state, inForce, last.cost, last.charged, nowMs);
              const sentAt = performance.now();
              await redis.evalSha(TOKEN_BUCKET_SHA1, { keys: [key, overrideKeyName], arguments: scriptArgs([{ ...ref, policy, cost: last.cost, enforced: true }], false, nowMs, [last.charged]) });
              const [value] = (await redis.multi().get(key).persist(key).exec()) as unknown as [string | null];
              const expectedValue = stored(state);
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
            const reply = await redis.evalSha(TOKEN_BUCKET_SHA1, { keys: [key, overrideKeyName], arguments: scriptArgs([charge], !peek, nowMs) });
            const { capacity: c, refillTokens, refillPeriodMs } = inForce;
            const charged = !peek && expected.decision.outcome === "allowed" ? (expected.next ?? null) : null;
            expect(decodeReply(reply)).toEqual([{ decision: expected.decision, policy: { capacity: c, refillTokens, refillPeriodMs }, charged }]);
            if (charged !== null) last = { charged, cost };

            const expectedValue = stored(state);
            // Atomically: read the state and its TTL, then drop the TTL. Simulated time runs ahead of
            // Redis's real clock, so the key must not expire in real time between steps.
            const [value, ttl] = (await redis.multi().get(key).pTTL(key).persist(key).exec()) as unknown as [string | null, number];
            const realMs = performance.now() - sentAt;
            if (value === null && expectedValue !== null && expected.expiresInMs <= realMs + 1) {
              // The key's TTL (real time) ran out before we looked: put the state back for the
              // next simulated step.
              await redis.set(key, expectedValue);
            } else {
              expect(value).toBe(expectedValue);
            }
            if (expected.next !== undefined && value !== null) {
              // The key lives exactly until the bucket is full and any block is over (minus the real
              // time this step took), counted from its own stamp when the clock stepped back.
              expect(ttl).toBeLessThanOrEqual(expected.expiresInMs);
              expect(ttl).toBeGreaterThanOrEqual(expected.expiresInMs - Math.ceil(realMs) - 1);
            }
          }
          await redis.del([key, overrideKeyName]);
        },
      ),
      { numRuns: 500 },
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
          for (const { elapsedMs, costs, peek } of steps) {
            nowMs += elapsedMs;
            const entries = buckets.map((b, i) => ({ state: states[i], policy: policies[i]!, cost: costs[i]!, enforced: b.enforced }));
            const taken = takeBuckets(entries, nowMs);
            const { results } = taken;
            // A peek: the same decisions, nothing written.
            const expected = { decisions: results.map((r) => r.decision), next: results.map((r) => (peek ? undefined : r.next)) };
            expected.next.forEach((state, i) => state && (states[i] = state));

            const charges = entries.map((e, i) => ({ ...refs[i]!, policy: e.policy, cost: e.cost, enforced: e.enforced }));
            const sentAt = performance.now();
            const reply = await redis.evalSha(TOKEN_BUCKET_SHA1, { keys: scriptKeys("p", charges), arguments: scriptArgs(charges, !peek, nowMs) });
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
              // time to full, sometimes 1 ms): then put the expected state back.
              const expiredInRealTime = value === null && expected.next[i] !== undefined && (results[i]?.expiresInMs ?? 0) <= realMs + 1;
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
