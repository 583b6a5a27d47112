import { createHash } from "node:crypto";
import fc from "fast-check";
import { createClient } from "redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRedis } from "../../dev/redis-server.mjs";
import { decodeSlotReply, slotArgs } from "../../src/backends/upstash/wire";
import { SLOTS_LUA, SLOTS_SHA1 } from "../../src/backends/upstash/slots-script";
import type { SlotClaim } from "../../src/core/backend";
import { acquireSlots, releaseSlot, renewSlot, type SlotState } from "../../src/core/slots";

let redisServer: Awaited<ReturnType<typeof startRedis>>;
let redis: ReturnType<typeof createClient>;

beforeAll(async () => {
  redisServer = await startRedis();
  redis = createClient({ url: redisServer.url });
  await redis.connect();
  await redis.scriptLoad(SLOTS_LUA);
});
afterAll(async () => {
  await redis?.quit();
  await redisServer?.stop();
});

const step = fc.record({
  elapsedMs: fc.oneof(fc.integer({ min: 0, max: 50 }), fc.integer({ min: 0, max: 12_000 })),
  /** Which of a few lease ids (requests) acts: a held id renews. */
  ids: fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 1, maxLength: 3 }),
  operation: fc.constantFrom("acquire" as const, "acquire" as const, "renew" as const, "release" as const),
  limit: fc.integer({ min: 1, max: 4 }),
  // Redis expires a whole set by its real clock while this test steps a clock of its own: leases
  // stay long enough that a run ends before any set's TTL does (in production both are one clock).
  leaseMs: fc.integer({ min: 3_000, max: 10_000 }),
  /** Which claims are shadow (never refuse). */
  shadow: fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }),
});

describe("the slots script and the TypeScript slots agree", () => {
  it("pins the script's SHA-1 (EVALSHA calls it by this name)", () => {
    expect(createHash("sha1").update(SLOTS_LUA).digest("hex")).toBe(SLOTS_SHA1);
  });

  it("on random sequences of acquire, renew and release over several sets (all or nothing, expiry): the same decisions and the same live leases and expiries", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 40 }), async (steps) => {
        const prefix = `slots-${crypto.randomUUID()}`;
        const sets = [0, 1, 2].map((i) => `${prefix}:${i}`);
        const model = new Map<string, SlotState>();
        const firstNowMs = 1_700_000_000_000;
        let nowMs = firstNowMs;
        for (const { elapsedMs, ids, operation, limit, leaseMs, shadow } of steps) {
          nowMs += elapsedMs;
          // Claim i goes to set i: one request, several concurrency rules.
          const claims: SlotClaim[] = ids.map((id, i) => ({ clientKey: "c", rule: sets[i]!, id: `r${id}`, limit, leaseMs, enforced: !shadow[i] }));
          const keys = claims.map((claim) => claim.rule);
          if (operation === "release") {
            await redis.evalSha(SLOTS_SHA1, { keys, arguments: slotArgs(claims, "release", nowMs) });
            for (const claim of claims) model.set(claim.rule, releaseSlot(model.get(claim.rule), claim.id, nowMs));
          } else if (operation === "renew") {
            // A renewal never takes a slot: an id that holds none (released, lapsed) changes nothing.
            await redis.evalSha(SLOTS_SHA1, { keys, arguments: slotArgs(claims, "renew", nowMs) });
            for (const claim of claims) model.set(claim.rule, renewSlot(model.get(claim.rule), claim, nowMs));
          } else {
            const reply = decodeSlotReply(await redis.evalSha(SLOTS_SHA1, { keys, arguments: slotArgs(claims, "acquire", nowMs) }));
            const { decisions, writes } = acquireSlots(
              claims.map((claim) => ({ claim, enforced: claim.enforced, state: model.get(claim.rule) })),
              nowMs,
            );
            for (const { entry, next } of writes) model.set(entry.claim.rule, next);
            expect(reply).toEqual(decisions);
          }
          // Live leases: what the next decision sees (expired ones may linger in either until then).
          for (const key of sets) {
            const stored = await redis.zRangeWithScores(key, 0, -1);
            const live = (leases: { id: string; expiresAtMs: number }[]) => leases.filter((l) => l.expiresAtMs > nowMs).sort((x, y) => x.id.localeCompare(y.id));
            expect(live(stored.map(({ value, score }) => ({ id: value, expiresAtMs: score })))).toEqual(live([...(model.get(key) ?? [])]));
            // Every set expires: never a set without expiry, and never later than its last lease.
            if (stored.length > 0) {
              const ttl = await redis.pTTL(key);
              expect(ttl).toBeGreaterThanOrEqual(0);
              expect(ttl).toBeLessThanOrEqual(Math.max(...stored.map(({ score }) => score)) - firstNowMs);
            }
          }
        }
      }),
      { numRuns: 200 },
    );
  });
});
