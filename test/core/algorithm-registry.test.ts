import { describe, expect, it } from "vitest";
import { LUA_ALGORITHMS } from "../../src/backends/upstash/algorithms/index";
import { TOKEN_BUCKET_LUA } from "../../src/backends/upstash/token-bucket-script";
import { ALGORITHMS, DEFAULT_ALGORITHM, algorithmOf, refundTokens, take } from "../../src/core/algorithms/index";
import { takeTokens, tokenBucket, type BucketPolicy } from "../../src/core/token-bucket";

/** The ids the assembled Upstash script defines, in order. */
const scriptIds = [...TOKEN_BUCKET_LUA.matchAll(/\bdefine\('([^']+)'/g)].map((match) => match[1]);

describe("the algorithm registry", () => {
  it("registers every algorithm in TypeScript and in Lua under the same ids, and the script defines each exactly once", () => {
    const ids = Object.keys(ALGORITHMS).sort();
    expect(Object.keys(LUA_ALGORITHMS).sort()).toEqual(ids);
    expect([...scriptIds].sort()).toEqual(ids);
    for (const [id, twin] of Object.entries(LUA_ALGORITHMS)) expect(twin.lua).toContain(`define('${id}'`);
  });

  it("gives a policy without an algorithm the token bucket, and refuses an unknown one", () => {
    const policy: BucketPolicy = { capacity: 3, refillTokens: 1, refillPeriodMs: 1000 };
    expect(DEFAULT_ALGORITHM).toBe("token-bucket");
    expect(algorithmOf(policy)).toBe(tokenBucket);
    expect(algorithmOf({ ...policy, algorithm: "token-bucket" })).toBe(tokenBucket);
    expect(() => algorithmOf({ ...policy, algorithm: "no-such" as "token-bucket" })).toThrow(/no-such/);
  });

  it("decides through the registry exactly as the algorithm does", () => {
    const policy: BucketPolicy = { capacity: 3, refillTokens: 1, refillPeriodMs: 1000, blockForMs: 5000 };
    let viaRegistry = take(undefined, policy, 2, 0, 7);
    let direct = takeTokens(undefined, policy, 2, 0, 7);
    expect(viaRegistry).toEqual(direct);
    viaRegistry = take(viaRegistry.next, policy, 2, 10, 8);
    direct = takeTokens(direct.next, policy, 2, 10, 8);
    expect(viaRegistry).toEqual(direct); // a refusal that starts a block
    const charged = takeTokens(undefined, policy, 1, 0, 9).next!;
    expect(refundTokens(charged, policy, 1, charged, 100)).toEqual(tokenBucket.refund(charged, policy, 1, charged, 100));
  });
});
