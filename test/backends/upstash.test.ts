import { createClient } from "redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LOCAL_UPSTASH_TOKEN, startLocalStack } from "../../dev/local-stack.mjs";
import { bucketKey, upstashBackend } from "../../src/backends/upstash";
import { policy as perSecond } from "../support/helpers";

let stack: Awaited<ReturnType<typeof startLocalStack>>;
let redis: ReturnType<typeof createClient>;
let backend: ReturnType<typeof upstashBackend>;

beforeAll(async () => {
  stack = await startLocalStack();
  redis = createClient({ url: stack.redis.url });
  await redis.connect();
  backend = upstashBackend({ url: stack.bridge.url, token: LOCAL_UPSTASH_TOKEN, keyPrefix: "sluice-test" });
});
afterAll(async () => {
  await redis?.quit();
  await stack?.stop();
});

const policy = perSecond(2, "1");
const take = async (clientKey: string) =>
  (await backend.take([{ clientKey, bucket: "default", policy, cost: 1, enforced: true }], new AbortController().signal))[0]!.decision;

/** Calls per command since the last CONFIG RESETSTAT, from INFO commandstats. */
async function commandCalls(): Promise<Record<string, number>> {
  const info = await redis.info("commandstats");
  const calls: Record<string, number> = {};
  for (const match of info.matchAll(/^cmdstat_(\w+(?:\|\w+)?):calls=(\d+)/gm)) {
    // Redis counts the CONFIG RESETSTAT that started the measurement too.
    if (match[1] !== "config|resetstat") calls[match[1]!] = Number(match[2]);
  }
  return calls;
}

describe("Upstash backend on a real Redis through the REST bridge", () => {
  it("after SCRIPT FLUSH the next call still succeeds, with one extra round trip only", async () => {
    await take(`warm-${crypto.randomUUID()}`);
    await redis.scriptFlush();
    await redis.configResetStat();
    expect((await take(`flushed-${crypto.randomUUID()}`)).outcome).toBe("allowed");
    const afterFlush = await commandCalls();
    expect(afterFlush.evalsha).toBe(1); // answered NOSCRIPT
    expect(afterFlush.eval).toBe(1); // loads and runs the script in the same call
    expect(afterFlush.script).toBeUndefined(); // never a separate SCRIPT LOAD

    await redis.configResetStat();
    await take(`cached-${crypto.randomUUID()}`);
    const cached = await commandCalls();
    expect(cached.evalsha).toBe(1);
    expect(cached.eval).toBeUndefined();
  });

  it("costs EVALSHA + TIME + MGET + SET (4 commands) per allowed decision and 3 per refusal", async () => {
    const client = `count-${crypto.randomUUID()}`;
    await take(client); // script cached, bucket created
    await redis.configResetStat();
    expect((await take(client)).outcome).toBe("allowed");
    const allowed = await commandCalls();
    expect(allowed).toEqual({ evalsha: 1, time: 1, mget: 1, set: 1 });

    await redis.configResetStat();
    expect((await take(client)).outcome).toBe("denied");
    const refused = await commandCalls();
    expect(refused).toEqual({ evalsha: 1, time: 1, mget: 1 });
  });

  it("namespaces keys by prefix, bucket and client, and expires them when the bucket is full", async () => {
    const client = `ns-${crypto.randomUUID()}`;
    await take(client);
    const key = bucketKey("sluice-test", { bucket: "default", clientKey: client });
    expect(key).toBe(`sluice-test:default:${client}`);
    const ttl = await redis.pTTL(key);
    expect(ttl).toBeGreaterThan(900);
    expect(ttl).toBeLessThanOrEqual(1000); // one token at 1/s: full again in 1 s
  });

  it("an aborted call rejects instead of yielding a decision", async () => {
    stack.bridge.setLatency(500);
    try {
      const controller = new AbortController();
      const pending = backend.take([{ clientKey: `abort-${crypto.randomUUID()}`, bucket: "default", policy, cost: 1, enforced: true }], controller.signal);
      setTimeout(() => controller.abort(new Error("deadline")), 50);
      await expect(pending).rejects.toThrow();
    } finally {
      stack.bridge.setLatency(0);
    }
  });
});
