import { createHash } from "node:crypto";
import fc from "fast-check";
import { createClient } from "redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRedis } from "../../dev/redis-server.mjs";
import { decodeGrant, decodeReply, overrideArgs, resetArgs, scriptArgs, scriptKeys, storedValues } from "../../src/backends/upstash/wire";
import { giveBackLease, grantLease, leasedExpiresAtMs, liveLeases, refundLeased, resetLeased, takeLeased, underLeases, type LeasedBucket } from "../../src/core/leases";
import { TOKEN_BUCKET_LUA, TOKEN_BUCKET_SHA1, TOKEN_BUCKET_UPSTASH_LUA, TOKEN_BUCKET_UPSTASH_SHA1, UPSTASH_FLAGS_LINE } from "../../src/backends/upstash/token-bucket-script";
import { SLOTS_LUA, SLOTS_UPSTASH_LUA, SLOTS_UPSTASH_SHA1 } from "../../src/backends/upstash/slots-script";
import { parseRatePerSecond } from "../../src/core/rate";
import type { Taken } from "../../src/core/algorithms/algorithm";
import { take } from "../../src/core/algorithms/index";
import { refundTokens, stateExpiresInMs, takeBuckets, type BucketPolicy, type BucketState } from "../../src/core/token-bucket";
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
  /** Sometimes a charge is given back instead (a response a `count` rule does not count): often the last, else an earlier one (before a reset, say). */
  refund: fc.integer({ min: 0, max: 3 }).map((n) => n === 0),
  refundOf: fc.oneof(fc.constant(0), fc.nat({ max: 30 })),
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
  return state.replace(/^-?\d+/, (l) => String(Number(l) + 1));
}

type Step = typeof step extends fc.Arbitrary<infer T> ? T : never;

/**
 * A bucket's key as the script stores it: the state with its generation and the time it stops
 * mattering (`expiresAtMs`, under the charge's own policy), then "|" and the exact override if
 * any; null when neither.
 */
function stored(state: BucketState | undefined, expiresAtMs: number | undefined, override?: BucketPolicy): string | null {
  let value = "";
  if (state !== undefined) value = `${state.level}:${state.unitsPerToken}:${state.updatedAtMs}:${state.generation}:${expiresAtMs}`;
  if (state?.blockedUntilMs !== undefined) value += `:${state.blockedUntilMs}`;
  if (override !== undefined) value += `|${override.capacity}:${override.refillTokens}:${override.refillPeriodMs}`;
  return value === "" ? null : value;
}

/**
 * Simulated time runs ahead of Redis's real clock, so after each step the test gives every key
 * that has an expiry this one instead (far longer than any bucket's), so none expires in real
 * time between steps. A TTL below half of it was therefore set by the script in this step.
 */
const KEEP_ALIVE_MS = 10 ** 15;
/** Atomically: the value and its TTL; then a key without override gets the keep-alive expiry (one with an override keeps none). */
const READ_AND_KEEP_ALIVE = `
local value = redis.call('GET', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if value and not string.find(value, '|', 1, true) then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return { value or '', ttl }`;

/** The value the script left in a key and its TTL (ms; -1 none, -2 no key); the key then lives on (see {@link KEEP_ALIVE_MS}). */
async function readKey(key: string): Promise<{ value: string | null; ttl: number }> {
  const [value, ttl] = (await redis.eval(READ_AND_KEEP_ALIVE, { keys: [key], arguments: [String(KEEP_ALIVE_MS)] })) as [string, number];
  return { value: value === "" ? null : value, ttl };
}

/**
 * Every key expires no later than its state stops mattering: a key holding an override (configuration)
 * has no expiry; any other has one, and one the script wrote in this step (a TTL not the test's
 * keep-alive) ends exactly when its state stops mattering (`expiresAtMs`, less the real time the step took).
 */
function expectExpiry(value: string, ttl: number, expiresAtMs: number | undefined, nowMs: number, realMs: number): void {
  if (value.includes("|")) {
    expect(ttl).toBe(-1);
    return;
  }
  // Never none (-1); 0 when it is about to go (a 1 ms TTL: the bucket is full).
  expect(ttl).toBeGreaterThanOrEqual(0);
  if (ttl >= KEEP_ALIVE_MS / 2) return;
  expect(expiresAtMs).toBeDefined();
  const leftMs = expiresAtMs! - nowMs;
  expect(ttl).toBeLessThanOrEqual(leftMs);
  expect(ttl).toBeGreaterThanOrEqual(leftMs - Math.ceil(realMs) - 1);
}

/** Runs one sequence through the TypeScript bucket and the script, step by step, and compares everything. */
async function checkSequence(capacity: number, rate: string, steps: readonly Step[], startMs: number, blockForMs: number, queueMs: number): Promise<void> {
  const ref = { clientKey: `equivalence:${crypto.randomUUID()}`, rule: "b" };
  const [key = ""] = scriptKeys("p", [ref]);
  const withBlock = (p: BucketPolicy): BucketPolicy => ({ ...p, ...(blockForMs > 0 && { blockForMs }), ...(queueMs > 0 && { queueMs }) });
  let policy: BucketPolicy = withBlock(perSecond(capacity, rate));
  let override: BucketPolicy | undefined;
  let state: BucketState | undefined;
  /** When `state` stops mattering under the policy of the charge that wrote it (the override left out): what the key carries. */
  let expiresAtMs: number | undefined;
  let nowMs = startMs;
  /** Charges not given back yet, the last first; and the generation the next take that starts a bucket gets. */
  const charges: { charged: BucketState; cost: number }[] = [];
  let generation = 0;
  let previous: string | null = null;
  const wrote = (next: BucketState) => {
    state = next;
    expiresAtMs = nowMs + stateExpiresInMs(next, policy, nowMs);
  };
  /**
   * The key after a step: the model's value, with its expiry. The store may have forgotten a
   * state that no longer matters: deleted when put back or uncovered past its expiry (the model
   * forgets it too), or expired in real time when the script gave it a TTL shorter than the step
   * took (then the test puts it back for the next simulated step).
   */
  const checkKey = async (sentAt: number, ttlSetMs: number | undefined) => {
    const { value, ttl } = await readKey(key);
    const realMs = performance.now() - sentAt;
    const expected = stored(state, expiresAtMs, override);
    if (value === null && expected !== null && override === undefined && expiresAtMs !== undefined && expiresAtMs <= nowMs) {
      state = undefined;
      expiresAtMs = undefined;
    } else if (value === null && expected !== null && override === undefined && ttlSetMs !== undefined && ttlSetMs <= realMs + 1) {
      await redis.set(key, expected, { PX: KEEP_ALIVE_MS });
    } else {
      expect(value).toBe(expected);
      if (value !== null) expectExpiry(value, ttl, expiresAtMs, nowMs, realMs);
    }
  };
  for (const { elapsedMs, cost: stepCost, newRate, peek, admin, refund, refundOf, hint: hintKind } of steps) {
    nowMs += elapsedMs;
    if (newRate !== null) policy = withBlock(perSecond(capacity, newRate));
    // The operator's action, as the backend does it (the script's reset and override modes).
    if (admin !== null) {
      if (admin.kind === "reset") state = undefined;
      else if (admin.kind === "override")
        override = perSecond(admin.capacity, admin.rate); // capacity and refill only: the block period stays the rule's
      else {
        override = undefined;
        // Back to the rule: a state past its expiry is forgotten, as its TTL would have.
        if (expiresAtMs !== undefined && expiresAtMs <= nowMs) state = undefined;
      }
      if (state === undefined) expiresAtMs = undefined;
      const sentAt = performance.now();
      const reply = await redis.evalSha(TOKEN_BUCKET_SHA1, { keys: [key], arguments: admin.kind === "reset" ? resetArgs() : overrideArgs(override ?? null, nowMs) });
      expect(storedValues(reply, 1)).toEqual([stored(state, expiresAtMs, override) ?? ""]);
      await checkKey(sentAt, undefined);
    }
    const right = stored(state, expiresAtMs, override);
    const hint = { right, none: null, stale: previous, near: nearHint(right) }[hintKind] ?? "";
    previous = right;
    const inForce = override === undefined ? policy : { ...policy, ...override };
    if (refund && charges.length > 0) {
      // The script's refund mode against refundTokens: what the charge still withholds comes back
      // (nothing after a reset: the bucket is of another generation).
      const [last] = charges.splice(refundOf % charges.length, 1) as [(typeof charges)[number]];
      const refunded = refundTokens(state, inForce, last.cost, last.charged, nowMs) as BucketState | undefined;
      if (refunded !== state && refunded !== undefined) wrote(refunded);
      const sentAt = performance.now();
      const reply = await redis.evalSha(TOKEN_BUCKET_SHA1, { keys: [key], arguments: scriptArgs([{ ...ref, policy, cost: last.cost, enforced: true }], false, nowMs, [last.charged]) });
      expect(storedValues(reply, 1)).toEqual([stored(state, expiresAtMs, override) ?? ""]);
      await checkKey(sentAt, state === undefined ? undefined : stateExpiresInMs(state, inForce, nowMs));
      continue;
    }
    // A peek may ask about 0 tokens: the bucket as it stands.
    const cost = peek && stepCost % 2 === 0 ? 0 : stepCost;
    generation += 1;
    // Through the algorithm seam: the registry dispatches on the policy's algorithm.
    const taken = take(state, inForce, cost, nowMs, generation) as Taken<BucketState>;
    const expected = peek ? { decision: taken.decision, next: undefined, expiresInMs: 0 } : taken;
    if (expected.next !== undefined) wrote(expected.next);

    const charge = { ...ref, policy, cost, enforced: true };
    const sentAt = performance.now();
    const reply = await redis.evalSha(TOKEN_BUCKET_SHA1, { keys: [key], arguments: scriptArgs([charge], !peek, nowMs, undefined, [hint], generation) });
    const { capacity: c, refillTokens, refillPeriodMs } = inForce;
    const charged = !peek && expected.decision.outcome === "allowed" ? (expected.next ?? null) : null;
    expect(decodeReply(reply)).toEqual([{ decision: expected.decision, policy: { capacity: c, refillTokens, refillPeriodMs }, charged }]);
    if (charged !== null) charges.unshift({ charged, cost });
    expect(storedValues(reply)).toEqual([stored(state, expiresAtMs, override) ?? ""]);
    // Nothing written still rewrites the key when a wrong hint made the script put the value back,
    // with the expiry the value carries (possibly a millisecond).
    await checkKey(sentAt, expected.next !== undefined ? expected.expiresInMs : expiresAtMs === undefined ? undefined : expiresAtMs - nowMs);
  }
  await redis.del(key);
}

describe("the Lua script and the TypeScript bucket agree (through the algorithm registry)", () => {
  it("pins the script's SHA-1 (EVALSHA calls it by this name)", () => {
    expect(createHash("sha1").update(TOKEN_BUCKET_LUA).digest("hex")).toBe(TOKEN_BUCKET_SHA1);
  });

  it("sends both scripts to Upstash with the allow-key-locking flag, pinned, and every key they touch is passed in KEYS", () => {
    expect(UPSTASH_FLAGS_LINE).toBe("#!lua flags=allow-key-locking\n");
    expect(TOKEN_BUCKET_UPSTASH_LUA).toBe(UPSTASH_FLAGS_LINE + TOKEN_BUCKET_LUA);
    expect(SLOTS_UPSTASH_LUA).toBe(UPSTASH_FLAGS_LINE + SLOTS_LUA);
    expect(createHash("sha1").update(TOKEN_BUCKET_UPSTASH_LUA).digest("hex")).toBe(TOKEN_BUCKET_UPSTASH_SHA1);
    expect(createHash("sha1").update(SLOTS_UPSTASH_LUA).digest("hex")).toBe(SLOTS_UPSTASH_SHA1);
    // Every key a command names is KEYS[…], an unpacked list of them, or a local holding one (no name built in the script).
    for (const lua of [TOKEN_BUCKET_LUA, SLOTS_LUA]) {
      for (const [, command, key] of lua.matchAll(/redis\.call\('(\w+)',\s*([^,)]+)/g)) {
        if (command === "TIME") continue;
        expect(key, `${command} ${key}`).toMatch(/^(KEYS\[[^\]]+\]|unpack\((KEYS|names)|key)$/);
      }
    }
  });

  it("on random sequences of (time step, cost, capacity, rate, take, peek or refund, override, reset): same decision, policy, state, generation, block and expiry at every step; every key expires when its state stops mattering", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 1_000 }),
        rateText,
        fc.array(step, { minLength: 1, maxLength: 25 }),
        fc.integer({ min: 1_600_000_000_000, max: 1_900_000_000_000 }),
        // Often no block period; else one from a millisecond to a day.
        fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 5_000 }), fc.integer({ min: 1, max: 86_400_000 })),
        fc.constant(0),
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
      refundOf: fc.oneof(fc.constant(0), fc.nat({ max: 30 })),
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
        fc.constant(0),
        checkSequence,
      ),
      { numRuns: 300 },
    );
  }, 90_000);

  it("with a queue (queueMs): queued charges (a wait, a level below zero), refunds of them, overrides and resets: the same", async () => {
    // Small slow buckets and short steps, so most charges queue or are refused beyond the queue.
    const queuedStep = fc.record({
      elapsedMs: fc.oneof(fc.integer({ min: 0, max: 1_500 }), fc.integer({ min: -1_000, max: 0 })),
      cost: fc.integer({ min: 1, max: 4 }),
      newRate: fc.option(fc.constantFrom("0.5", "1", "3", "0.3"), { freq: 10 }),
      peek: fc.integer({ min: 0, max: 6 }).map((n) => n === 0),
      refund: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
      refundOf: fc.oneof(fc.constant(0), fc.nat({ max: 30 })),
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
        fc.array(queuedStep, { minLength: 1, maxLength: 30 }),
        fc.integer({ min: 1_600_000_000_000, max: 1_900_000_000_000 }),
        // Mostly no block (a queued rule has none; the algorithm lets a block win if both are given).
        fc.oneof(fc.constant(0), fc.constant(0), fc.constant(0), fc.integer({ min: 1, max: 10_000 })),
        fc.oneof(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1, max: 10_000 }), fc.integer({ min: 1, max: 60_000 })),
        checkSequence,
      ),
      { numRuns: 300 },
    );
  }, 90_000);

  it("on several buckets at once (take or peek, with blocks and queues): the same all-or-nothing decisions and writes", async () => {
    const bucket = fc.record({
      capacity: fc.integer({ min: 1, max: 50 }),
      rate: rateText,
      enforced: fc.boolean(),
      blockForMs: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 10_000 })),
      queueMs: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 60_000 })),
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
          const refs = buckets.map(() => ({ clientKey: `multi:${crypto.randomUUID()}`, rule: "b" }));
          const keys = refs.map((ref) => scriptKeys("p", [ref])[0] ?? "");
          const policies: BucketPolicy[] = buckets.map((b) => ({
            ...perSecond(b.capacity, b.rate),
            ...(b.blockForMs > 0 && { blockForMs: b.blockForMs }),
            ...(b.queueMs > 0 && { queueMs: b.queueMs }),
          }));
          const states: (BucketState | undefined)[] = buckets.map(() => undefined);
          const expiries: (number | undefined)[] = buckets.map(() => undefined);
          const value = (i: number) => stored(states[i], expiries[i]);
          let nowMs = 1_800_000_000_000;
          let generation = 0;
          const previous: (string | null)[] = buckets.map(() => null);
          for (const { elapsedMs, costs, peek, hints: hintKinds } of steps) {
            nowMs += elapsedMs;
            const hints = states.map((_, i) => {
              const right = value(i);
              const hint = { right, none: null, stale: previous[i] ?? null, near: nearHint(right) }[hintKinds[i]!] ?? "";
              previous[i] = right;
              return hint;
            });
            const entries = buckets.map((b, i) => ({ state: states[i], policy: policies[i]!, cost: costs[i]!, enforced: b.enforced }));
            generation += 1;
            const taken = takeBuckets(entries, nowMs, generation);
            const { results } = taken;
            // A peek: the same decisions, nothing written.
            const expected = { decisions: results.map((r) => r.decision), next: results.map((r) => (peek ? undefined : (r.next as BucketState | undefined))) };
            expected.next.forEach((state, i) => {
              if (state === undefined) return;
              states[i] = state;
              expiries[i] = nowMs + stateExpiresInMs(state, policies[i]!, nowMs);
            });

            const charges = entries.map((e, i) => ({ ...refs[i]!, policy: e.policy, cost: e.cost, enforced: e.enforced }));
            const sentAt = performance.now();
            const reply = await redis.evalSha(TOKEN_BUCKET_SHA1, { keys: scriptKeys("p", charges), arguments: scriptArgs(charges, !peek, nowMs, undefined, hints, generation) });
            expect(storedValues(reply)).toEqual(states.map((_, i) => value(i) ?? ""));
            expect(decodeReply(reply)).toEqual(
              expected.decisions.map((decision, i) => {
                const { capacity, refillTokens, refillPeriodMs } = entries[i]!.policy;
                const charged = !peek && !taken.refused && decision.outcome === "allowed" ? (results[i]?.next ?? null) : null;
                return { decision, policy: { capacity, refillTokens, refillPeriodMs }, charged };
              }),
            );
            const read = await Promise.all(keys.map((key) => readKey(key)));
            const realMs = performance.now() - sentAt;
            for (const [i, { value: found, ttl }] of read.entries()) {
              const expectedValue = value(i);
              // A key written this step may already have expired in real time (its TTL is the
              // time to full, sometimes 1 ms): then put the expected state back. A key a wrong
              // hint made the script write and put back takes back the expiry its state carries
              // (deleted if that has come: then the model forgets it too), so it too may have
              // expired in real time when that expiry was within the step's real time.
              const ttlMs = expected.next[i] !== undefined ? (results[i]?.expiresInMs ?? 0) : (expiries[i] ?? Infinity) - nowMs;
              if (found === null && expectedValue !== null && expiries[i]! <= nowMs) {
                states[i] = undefined;
                expiries[i] = undefined;
              } else if (found === null && expectedValue !== null && ttlMs <= realMs + 1) {
                await redis.set(keys[i]!, expectedValue, { PX: KEEP_ALIVE_MS });
              } else {
                expect(found).toBe(expectedValue);
                if (found !== null) expectExpiry(found, ttl, expiries[i], nowMs, realMs);
              }
            }
          }
          await redis.del(keys);
        },
      ),
      { numRuns: 200 },
    );
  }, 60_000);

  it("with leases (Upstash): take with a lease asked, give-backs of leases' rests (spent or not), refunds, resets, overrides, peeks: the same decisions, grants, states, leases out and expiries as src/core/leases.ts", async () => {
    const leaseStep = fc.record({
      elapsedMs: fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 3_000 }), fc.integer({ min: -500, max: 0 })),
      cost: fc.integer({ min: 1, max: 3 }),
      want: fc.oneof(fc.constant(0), fc.constantFrom(1, 4, 16, 64)),
      /** Give back one lease's rest: which, and how many of its charges are left (0: all spent, a release). */
      giveBack: fc.option(fc.record({ which: fc.nat({ max: 20 }), left: fc.nat({ max: 64 }) }), { freq: 3 }),
      kind: fc.constantFrom("take" as const, "take" as const, "take" as const, "peek" as const, "refund" as const),
      refundOf: fc.nat({ max: 30 }),
      admin: fc.option(
        fc.oneof(
          fc.record({ kind: fc.constant("override" as const), capacity: fc.integer({ min: 1, max: 300 }), rate: fc.constantFrom("1", "10", "100") }),
          fc.constant({ kind: "clear" as const }),
          fc.constant({ kind: "reset" as const }),
        ),
        { freq: 8 },
      ),
      hint: fc.constantFrom("right" as const, "none" as const, "stale" as const),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 300 }),
        fc.constantFrom("1", "5", "50", "1000"),
        fc.array(leaseStep, { minLength: 1, maxLength: 30 }),
        fc.integer({ min: 1_600_000_000_000, max: 1_900_000_000_000 }),
        fc.oneof(fc.constant(0), fc.constant(0), fc.constant(0), fc.integer({ min: 1, max: 5_000 })),
        checkLeaseSequence,
      ),
      { numRuns: 300 },
    );
    // The property exercised what it is about: leases granted, rests given back, capped buckets, resets with leases out.
    expect(leaseCoverage.granted).toBeGreaterThan(100);
    expect(leaseCoverage.givenBack).toBeGreaterThan(20);
    expect(leaseCoverage.capped).toBeGreaterThan(20);
    expect(leaseCoverage.resetWithLeases).toBeGreaterThan(5);
  }, 120_000);
});

/** What the lease property saw, so a test that never leases cannot pass. */
const leaseCoverage = { granted: 0, givenBack: 0, capped: 0, resetWithLeases: 0 };

/** A leased bucket's key as the script stores it: the state (with its expiry), its leases, then "|" and the override; null when none. */
function storedLeased(bucket: LeasedBucket | undefined, expiresAtMs: number | undefined, override?: BucketPolicy): string | null {
  let value = "";
  if (bucket?.state !== undefined) value = stored(bucket.state, expiresAtMs) ?? "";
  for (const lease of bucket?.leases ?? []) value += `#${lease.id}:${lease.tokens}:${lease.untilMs}`;
  if (override !== undefined) value += `|${override.capacity}:${override.refillTokens}:${override.refillPeriodMs}`;
  return value === "" ? null : value;
}

/** Runs one sequence of leased charges through src/core/leases.ts and the script, step by step, and compares everything. */
async function checkLeaseSequence(capacity: number, rate: string, steps: readonly (typeof leaseStepType)[], startMs: number, blockForMs: number): Promise<void> {
  const ref = { clientKey: `lease:${crypto.randomUUID()}`, rule: "b" };
  const [key = ""] = scriptKeys("p", [ref]);
  const policy: BucketPolicy = { ...perSecond(capacity, rate), ...(blockForMs > 0 && { blockForMs }) };
  let override: BucketPolicy | undefined;
  let bucket: LeasedBucket | undefined;
  let expiresAtMs: number | undefined;
  let nowMs = startMs;
  let generation = 0;
  let previous: string | null = null;
  const leases: { id: string; cost: number; granted: number; charged: BucketState }[] = [];
  const charges: { charged: BucketState; cost: number }[] = [];
  let seq = 0;
  const wrote = (next: LeasedBucket | undefined) => {
    bucket = next;
    expiresAtMs = next === undefined ? undefined : leasedExpiresAtMs(next, policy, nowMs);
  };
  const check = async () => {
    const { value, ttl } = await readKey(key);
    const expected = storedLeased(bucket, expiresAtMs, override);
    if (value === null && expected !== null && override === undefined) {
      // Gone at its expiry (the model forgets it too), or expired in real time after a TTL of a few ms: put back.
      const end = bucket?.state === undefined ? Math.max(...(bucket?.leases ?? []).map((l) => l.untilMs)) : expiresAtMs;
      if (end !== undefined && end <= nowMs) wrote(undefined);
      else await redis.set(key, expected, { PX: KEEP_ALIVE_MS });
      return;
    }
    expect(value).toBe(expected);
    if (value?.includes("|")) expect(ttl).toBe(-1);
    else if (value !== null) expect(ttl).toBeGreaterThanOrEqual(0);
  };
  for (const { elapsedMs, cost, want, giveBack, kind, refundOf, admin, hint: hintKind } of steps) {
    nowMs += elapsedMs;
    if (admin !== null) {
      if (admin.kind === "reset") {
        wrote(bucket === undefined ? undefined : resetLeased(bucket, nowMs));
        if (bucket !== undefined) leaseCoverage.resetWithLeases += 1;
      } else if (admin.kind === "override") override = perSecond(admin.capacity, admin.rate);
      else {
        override = undefined;
        const end = bucket?.state === undefined ? Math.max(...(bucket?.leases ?? []).map((l) => l.untilMs)) : expiresAtMs;
        if (end !== undefined && end <= nowMs) wrote(undefined);
      }
      const reply = await redis.evalSha(TOKEN_BUCKET_SHA1, { keys: [key], arguments: admin.kind === "reset" ? resetArgs(nowMs) : overrideArgs(override ?? null, nowMs) });
      expect(storedValues(reply, 1)).toEqual([storedLeased(bucket, expiresAtMs, override) ?? ""]);
      await check();
    }
    const inForce = override === undefined ? policy : { ...policy, ...override };
    const right = storedLeased(bucket, expiresAtMs, override);
    const hint = { right, none: null, stale: previous }[hintKind] ?? "";
    previous = right;
    const charge = { ...ref, policy, cost, enforced: true };
    if (kind === "refund" && charges.length > 0) {
      const [last] = charges.splice(refundOf % charges.length, 1) as [(typeof charges)[number]];
      const refunded = bucket === undefined ? undefined : refundLeased(bucket, inForce, last.cost, last.charged, nowMs);
      if (refunded !== undefined) wrote(refunded);
      const reply = await redis.evalSha(TOKEN_BUCKET_SHA1, { keys: [key], arguments: scriptArgs([{ ...charge, cost: last.cost }], false, nowMs, [last.charged]) });
      expect(storedValues(reply, 1)).toEqual([storedLeased(bucket, expiresAtMs, override) ?? ""]);
      await check();
      continue;
    }
    generation += 1;
    const empty: LeasedBucket = { state: undefined, leases: [] };
    if (kind === "peek") {
      const { decision } = takeLeased(bucket ?? empty, inForce, cost, nowMs, generation);
      const reply = await redis.evalSha(TOKEN_BUCKET_SHA1, { keys: [key], arguments: scriptArgs([charge], false, nowMs, undefined, [hint], generation) });
      expect(decodeReply(reply).map((a) => a.decision)).toEqual([decision]);
      await check();
      continue;
    }
    // A charge: a lease's rest given back first, then the take, then (allowed) the lease asked for.
    const returned = giveBack === null || leases.length === 0 ? undefined : leases.splice(giveBack.which % leases.length, 1)[0];
    // Sometimes more than the lease took (the store gives back at most what its record says).
    const back = returned === undefined ? undefined : { id: returned.id, cost: (giveBack?.left ?? 0) * returned.cost, charged: returned.charged };
    const ask = want > 0 ? { id: `i1.${(++seq).toString(36)}`, want, cost, ttlMs: 1_000 } : undefined;
    let current = bucket ?? empty;
    let given: LeasedBucket | undefined;
    if (back !== undefined) {
      given = giveBackLease(current, inForce, back, nowMs);
      if (given !== undefined) current = given;
    }
    const taken = takeLeased(current, inForce, cost, nowMs, generation);
    const grant = taken.next !== undefined && taken.decision.outcome === "allowed" && ask !== undefined ? grantLease(taken.next, inForce, ask, nowMs) : undefined;
    const next = grant?.bucket ?? taken.next ?? given;
    if (next !== undefined) wrote(next);
    const reply = await redis.evalSha(TOKEN_BUCKET_SHA1, {
      keys: [key],
      arguments: scriptArgs([charge], true, nowMs, undefined, [hint], generation, { ...(ask !== undefined && { ask }), ...(back !== undefined && { giveBack: back }) }),
    });
    const charged = taken.decision.outcome === "allowed" ? (taken.next?.state ?? null) : null;
    expect(decodeReply(reply)).toEqual([{ decision: taken.decision, policy: { capacity: inForce.capacity, refillTokens: inForce.refillTokens, refillPeriodMs: inForce.refillPeriodMs }, charged }]);
    expect(decodeGrant(reply)).toEqual(grant === undefined ? undefined : { granted: grant.granted, remaining: grant.remaining, resetMs: grant.resetMs, charged: grant.charged });
    if (charged !== null) charges.unshift({ charged, cost });
    if (given !== undefined) leaseCoverage.givenBack += 1;
    if (current.leases.length > 0 && underLeases(current.state, liveLeases(current.leases, nowMs), inForce, nowMs, generation) !== current.state) leaseCoverage.capped += 1;
    if (grant !== undefined) leaseCoverage.granted += 1;
    if (grant !== undefined && ask !== undefined) leases.push({ id: ask.id, cost, granted: grant.granted, charged: grant.charged });
    expect(storedValues(reply)).toEqual([storedLeased(bucket, expiresAtMs, override) ?? ""]);
    await check();
  }
  await redis.del(key);
}

/** One step of the lease property (its type). */
declare const leaseStepType: {
  elapsedMs: number;
  cost: number;
  want: number;
  giveBack: { which: number; left: number } | null;
  kind: "take" | "peek" | "refund";
  refundOf: number;
  admin: { kind: "override"; capacity: number; rate: string } | { kind: "clear" } | { kind: "reset" } | null;
  hint: "right" | "none" | "stale";
};
