import fc from "fast-check";
import { createClient } from "redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRedis } from "../../dev/redis-server.mjs";
import { decodeReply, overrideArgs, resetArgs, scriptArgs, scriptKeys, storedValues } from "../../src/backends/upstash/wire";
import { TOKEN_BUCKET_LUA, TOKEN_BUCKET_SHA1 } from "../../src/backends/upstash/token-bucket-script";
import { expiresInMs, refundTokens, take, takeBuckets, type RateState } from "../../src/core/algorithms/index";
import type { FixedWindowState } from "../../src/core/algorithms/fixed-window";
import type { SlidingWindowState } from "../../src/core/algorithms/sliding-window";
import type { BucketPolicy } from "../../src/core/token-bucket";

/**
 * The window algorithms' TypeScript modules and their Lua twins agree step for step, through the
 * registry and the one script, on a real redis-server: charge, peek, refund, reset, override,
 * block, wrong hints, several buckets; every key expires when its state stops mattering.
 * (The token bucket's own property test is test/backends/lua-equivalence.test.ts.)
 */

let redisServer: Awaited<ReturnType<typeof startRedis>>;
let redis: ReturnType<typeof createClient>;

beforeAll(async () => {
  redisServer = await startRedis();
  redis = createClient({ url: redisServer.url });
  await redis.connect();
  await redis.scriptLoad(TOKEN_BUCKET_LUA);
});
afterAll(async () => {
  await redis?.quit();
  await redisServer?.stop();
});

type WindowAlgorithm = "fixed-window" | "sliding-window";

/** A window policy of `limit` per `windowMs`, as rules.ts compiles it (the rate limit/window, reduced). */
function windowPolicy(algorithm: WindowAlgorithm, limit: number, windowMs: number, blockForMs = 0, queueMs = 0): BucketPolicy {
  let [a, b] = [limit, windowMs];
  while (b !== 0) [a, b] = [b, a % b];
  return { algorithm, capacity: limit, refillTokens: limit / a, refillPeriodMs: windowMs / a, ...(blockForMs > 0 && { blockForMs }), ...(queueMs > 0 && { queueMs }) };
}

/** The state text the twin stores, then "|" and the override's text; null when neither. */
function stored(state: RateState | undefined, expiresAtMs: number | undefined, override?: BucketPolicy): string | null {
  let value = "";
  if (state?.algorithm === "fixed-window") {
    value = `fw:${state.windowStartMs}:${state.used}:${state.generation}:${expiresAtMs}`;
    if (state.blockedUntilMs !== undefined) value += `:${state.blockedUntilMs}`;
  } else if (state?.algorithm === "sliding-window") {
    const base = state.log[0]?.atMs ?? 0;
    value = `sw:${state.generation}:${expiresAtMs}:${state.blockedUntilMs ?? 0}:${base}:${state.log.map(({ atMs, units }) => `${atMs - base}/${units}`).join(",")}`;
  } else if (state !== undefined) {
    throw new Error("a window test stored a token bucket");
  }
  if (override !== undefined) value += `|${override.capacity}:${override.refillTokens}:${override.refillPeriodMs}`;
  return value === "" ? null : value;
}

/** What a reply's `charged` text carries of the state a charge wrote. */
function chargedOf(state: RateState | null, cost: number): RateState | null {
  if (state === null) return null;
  if (state.algorithm === "fixed-window") return { algorithm: "fixed-window", windowStartMs: state.windowStartMs, used: state.used, generation: state.generation };
  if (state.algorithm === "sliding-window") return { algorithm: "sliding-window", log: [{ atMs: state.log.at(-1)!.atMs, units: cost }], generation: state.generation };
  return state;
}

/** A wrong hint close to `value`: one unit more in the used count (or the log's first), or an override added or changed. */
function nearHint(value: string | null): string {
  if (value === null) return "|7:7:1000";
  const [state = "", override] = value.split("|");
  if (override !== undefined) return `${state}|${override.replace(/^\d+/, (c) => String(Number(c) + 1))}`;
  if (state.startsWith("fw:")) return state.replace(/^fw:(\d+):(\d+)/, (_, s, u) => `fw:${s}:${Number(u) + 1}`);
  return state.replace(/\/(\d+)/, (_, u) => `/${Number(u) + 1}`);
}

const KEEP_ALIVE_MS = 10 ** 15;
const READ_AND_KEEP_ALIVE = `
local value = redis.call('GET', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if value and not string.find(value, '|', 1, true) then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return { value or '', ttl }`;

async function readKey(key: string): Promise<{ value: string | null; ttl: number }> {
  const [value, ttl] = (await redis.eval(READ_AND_KEEP_ALIVE, { keys: [key], arguments: [String(KEEP_ALIVE_MS)] })) as [string, number];
  return { value: value === "" ? null : value, ttl };
}

/** A key without override has a TTL ending when its state stops mattering; one with an override none. */
function expectExpiry(value: string, ttl: number, expiresAtMs: number | undefined, nowMs: number, realMs: number): void {
  if (value.includes("|")) {
    expect(ttl).toBe(-1);
    return;
  }
  expect(ttl).toBeGreaterThanOrEqual(0);
  if (ttl >= KEEP_ALIVE_MS / 2) return;
  expect(expiresAtMs).toBeDefined();
  const leftMs = expiresAtMs! - nowMs;
  expect(ttl).toBeLessThanOrEqual(leftMs);
  expect(ttl).toBeGreaterThanOrEqual(leftMs - Math.ceil(realMs) - 1);
}

const windowText = fc.oneof(fc.constantFrom(1_000, 2_000, 5_000, 60_000), fc.integer({ min: 1_000, max: 120_000 }));

const step = (maxCost: number, maxElapsed: number) =>
  fc.record({
    elapsedMs: fc.oneof(
      fc.integer({ min: 0, max: 20 }),
      fc.integer({ min: 0, max: maxElapsed }),
      fc.integer({ min: 0, max: 10 ** 8 }),
      fc.integer({ min: -3_000, max: 0 }),
      // Exactly a window (or half of one) later: an admission frees, a window turns, at this very millisecond.
      fc.constantFrom(500, 1_000, 2_000, 5_000, 60_000),
    ),
    cost: fc.integer({ min: 1, max: maxCost }),
    peek: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
    refund: fc.integer({ min: 0, max: 3 }).map((n) => n === 0),
    refundOf: fc.oneof(fc.constant(0), fc.nat({ max: 30 })),
    admin: fc.option(
      fc.oneof(
        fc.record({ kind: fc.constant("override" as const), limit: fc.integer({ min: 1, max: 12 }), windowMs: windowText }),
        fc.constant({ kind: "clear" as const }),
        fc.constant({ kind: "reset" as const }),
      ),
      { freq: 6 },
    ),
    hint: fc.constantFrom("right" as const, "none" as const, "stale" as const, "near" as const),
  });

type Step = ReturnType<typeof step> extends fc.Arbitrary<infer T> ? T : never;

async function checkSequence(algorithm: WindowAlgorithm, limit: number, windowMs: number, steps: readonly Step[], startMs: number, blockForMs: number, queueMs = 0): Promise<void> {
  const ref = { clientKey: `windows:${crypto.randomUUID()}`, rule: "w" };
  const [key = ""] = scriptKeys("p", [ref]);
  const policy = windowPolicy(algorithm, limit, windowMs, blockForMs, queueMs);
  let override: BucketPolicy | undefined;
  let state: RateState | undefined;
  let expiresAtMs: number | undefined;
  let nowMs = startMs;
  const charges: { charged: RateState; cost: number }[] = [];
  let generation = 0;
  let previous: string | null = null;
  const wrote = (next: RateState) => {
    state = next;
    expiresAtMs = nowMs + expiresInMs(next, policy, nowMs);
  };
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
  for (const { elapsedMs, cost: stepCost, peek, admin, refund, refundOf, hint: hintKind } of steps) {
    nowMs += elapsedMs;
    if (admin !== null) {
      if (admin.kind === "reset") state = undefined;
      else if (admin.kind === "override") override = windowPolicy(algorithm, admin.limit, admin.windowMs);
      else {
        override = undefined;
        if (expiresAtMs !== undefined && expiresAtMs <= nowMs) state = undefined;
      }
      if (state === undefined) expiresAtMs = undefined;
      const sentAt = performance.now();
      const shape = override === undefined ? null : { capacity: override.capacity, refillTokens: override.refillTokens, refillPeriodMs: override.refillPeriodMs };
      const reply = await redis.evalSha(TOKEN_BUCKET_SHA1, { keys: [key], arguments: admin.kind === "reset" ? resetArgs() : overrideArgs(shape, nowMs) });
      expect(storedValues(reply, 1)).toEqual([stored(state, expiresAtMs, override) ?? ""]);
      await checkKey(sentAt, undefined);
    }
    const right = stored(state, expiresAtMs, override);
    const hint = { right, none: null, stale: previous, near: nearHint(right) }[hintKind] ?? "";
    previous = right;
    const inForce = override === undefined ? policy : { ...policy, capacity: override.capacity, refillTokens: override.refillTokens, refillPeriodMs: override.refillPeriodMs };
    if (refund && charges.length > 0) {
      const [last] = charges.splice(refundOf % charges.length, 1) as [(typeof charges)[number]];
      const refunded = refundTokens(state, inForce, last.cost, last.charged, nowMs);
      if (refunded !== state && refunded !== undefined) wrote(refunded);
      const sentAt = performance.now();
      const reply = await redis.evalSha(TOKEN_BUCKET_SHA1, { keys: [key], arguments: scriptArgs([{ ...ref, policy, cost: last.cost, enforced: true }], false, nowMs, [last.charged]) });
      expect(storedValues(reply, 1)).toEqual([stored(state, expiresAtMs, override) ?? ""]);
      await checkKey(sentAt, state === undefined ? undefined : expiresInMs(state, inForce, nowMs));
      continue;
    }
    const cost = peek && stepCost % 2 === 0 ? 0 : stepCost;
    generation += 1;
    const taken = take(state, inForce, cost, nowMs, generation);
    const expected = peek ? { decision: taken.decision, next: undefined, expiresInMs: 0 } : taken;
    if (expected.next !== undefined) wrote(expected.next);
    const sentAt = performance.now();
    const reply = await redis.evalSha(TOKEN_BUCKET_SHA1, { keys: [key], arguments: scriptArgs([{ ...ref, policy, cost, enforced: true }], !peek, nowMs, undefined, [hint], generation) });
    const { capacity, refillTokens, refillPeriodMs } = inForce;
    const charged = !peek && expected.decision.outcome === "allowed" ? (expected.next ?? null) : null;
    expect(decodeReply(reply)).toEqual([{ decision: expected.decision, policy: { algorithm, capacity, refillTokens, refillPeriodMs }, charged: chargedOf(charged, cost) }]);
    // A refund of this charge, as each backend would send it: the memory and Durable Object
    // backends with the whole state, Upstash with what its reply carried.
    if (charged !== null) charges.unshift({ charged: generation % 2 === 0 ? charged : chargedOf(charged, cost)!, cost });
    expect(storedValues(reply)).toEqual([stored(state, expiresAtMs, override) ?? ""]);
    // Nothing written still rewrites the key when a wrong hint made the script put the value back,
    // with the expiry the value carries (possibly a millisecond).
    await checkKey(sentAt, expected.next !== undefined ? expected.expiresInMs : expiresAtMs === undefined ? undefined : expiresAtMs - nowMs);
  }
  await redis.del(key);
}

describe.each(["fixed-window", "sliding-window"] as const)("the %s's Lua twin and TypeScript module agree (through the registry and the one script)", (algorithm) => {
  it("on random sequences (time step, cost, take, peek or refund, override, reset, block, right and wrong hints): same decision, policy, state, block and expiry at every step", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 12 }),
        windowText,
        fc.array(step(4, 3_000), { minLength: 1, maxLength: 30 }),
        fc.integer({ min: 1_600_000_000_000, max: 1_900_000_000_000 }),
        fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 5_000 }), fc.integer({ min: 1, max: 86_400_000 })),
        fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 60_000 })),
        (limit, windowMs, steps, startMs, blockForMs, queueMs) => checkSequence(algorithm, limit, windowMs, steps, startMs, blockForMs, queueMs),
      ),
      { numRuns: 300 },
    );
  }, 120_000);

  it("where refusals are common (short steps within one window, costs up to the limit): the same", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 5 }),
        fc.constantFrom(1_000, 2_000),
        fc.array(step(5, 400), { minLength: 1, maxLength: 40 }),
        fc.integer({ min: 1_600_000_000_000, max: 1_900_000_000_000 }),
        fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 3_000 })),
        // A queue (sliding windows; the fixed window's twin ignores it, as its module does), alone or beside a block.
        fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 4_000 })),
        (limit, windowMs, steps, startMs, blockForMs, queueMs) =>
          checkSequence(
            algorithm,
            limit,
            windowMs,
            steps.map((s) => ({ ...s, cost: Math.min(s.cost, limit + 1) })),
            startMs,
            queueMs > 0 && queueMs % 3 !== 0 ? 0 : blockForMs,
            queueMs,
          ),
      ),
      { numRuns: 200 },
    );
  }, 120_000);

  it("on several buckets at once, mixed with a token bucket: the same all-or-nothing decisions and writes", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ limit: fc.integer({ min: 1, max: 6 }), windowMs: fc.constantFrom(1_000, 3_000), enforced: fc.boolean() }), { minLength: 1, maxLength: 3 }),
        fc.array(fc.record({ elapsedMs: fc.integer({ min: 0, max: 1_500 }), costs: fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 4, maxLength: 4 }), peek: fc.boolean() }), {
          minLength: 1,
          maxLength: 20,
        }),
        async (buckets, steps) => {
          // The last bucket is a token bucket: the script decides every algorithm in one call.
          const policies: BucketPolicy[] = [...buckets.map((b) => windowPolicy(algorithm, b.limit, b.windowMs)), { capacity: 3, refillTokens: 1, refillPeriodMs: 1_000 }];
          const enforced = [...buckets.map((b) => b.enforced), true];
          const refs = policies.map(() => ({ clientKey: `multi:${crypto.randomUUID()}`, rule: "w" }));
          const keys = scriptKeys("p", refs);
          const states: (RateState | undefined)[] = policies.map(() => undefined);
          const expiries: (number | undefined)[] = policies.map(() => undefined);
          let nowMs = 1_800_000_000_000;
          let generation = 0;
          for (const { elapsedMs, costs, peek } of steps) {
            nowMs += elapsedMs;
            generation += 1;
            const entries = policies.map((policy, i) => ({ state: states[i], policy, cost: costs[i]!, enforced: enforced[i]! }));
            const { results, refused } = takeBuckets(entries, nowMs, generation);
            const hints = await Promise.all(keys.map(async (key) => (await redis.get(key)) ?? ""));
            const charges = entries.map((e, i) => ({ ...refs[i]!, policy: e.policy, cost: e.cost, enforced: e.enforced }));
            const reply = await redis.evalSha(TOKEN_BUCKET_SHA1, { keys, arguments: scriptArgs(charges, !peek, nowMs, undefined, hints, generation) });
            const answers = decodeReply(reply);
            expect(answers.map((a) => a.decision)).toEqual(results.map((r) => r.decision));
            for (const [i, r] of results.entries()) {
              const charged = !peek && !refused && r.decision.outcome === "allowed" ? (r.next ?? null) : null;
              expect(answers[i]!.charged).toEqual(i === policies.length - 1 ? charged : chargedOf(charged, costs[i]!));
              if (!peek && r.next !== undefined) {
                states[i] = r.next;
                expiries[i] = nowMs + r.expiresInMs;
              }
            }
            // Windows' stored texts carry their expiry (when written, under the rule's policy).
            const values = storedValues(reply);
            for (let i = 0; i < buckets.length; i += 1) expect(values[i]).toBe(stored(states[i], expiries[i]) ?? "");
            // Keys written in this step may expire in real time before the next: keep them alive.
            for (const key of keys) await redis.pExpire(key, KEEP_ALIVE_MS);
          }
          await redis.del(keys);
        },
      ),
      { numRuns: 100 },
    );
  }, 120_000);
});

describe("window states", () => {
  it("never parse as another algorithm's (the script reads a state by whichever twin recognises it)", () => {
    const fixed: FixedWindowState = { algorithm: "fixed-window", windowStartMs: 60_000, used: 3, generation: 7 };
    const sliding: SlidingWindowState = { algorithm: "sliding-window", log: [{ atMs: 1_000, units: 2 }], generation: 7 };
    expect(stored(fixed, 120_000)).toMatch(/^fw:/);
    expect(stored(sliding, 61_000)).toMatch(/^sw:/);
    // The token bucket's pattern starts with digits; each window's with its own prefix.
    expect(TOKEN_BUCKET_LUA).toContain("'^fw:(%d+)");
    expect(TOKEN_BUCKET_LUA).toContain("'^sw:(%d+)");
  });
});
