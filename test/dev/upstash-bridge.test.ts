// The local Upstash stand-in, driven by the real @upstash/redis client against a real redis-server.
import { createHash } from "node:crypto";
import { Redis } from "@upstash/redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRedis } from "../../dev/redis-server.mjs";
import { startUpstashBridge } from "../../dev/upstash-bridge.mjs";
import { sleep } from "../support/helpers";

const TOKEN = "test-token";

let redisServer: Awaited<ReturnType<typeof startRedis>>;
let bridge: Awaited<ReturnType<typeof startUpstashBridge>>;
// @upstash/redis auto-pipelines by default: commands travel as POST /pipeline batches.
let redis: Redis;
// One command per request: POST / with a single command array.
let direct: Redis;

beforeAll(async () => {
  redisServer = await startRedis();
  bridge = await startUpstashBridge({ redisUrl: redisServer.url, token: TOKEN });
  const options = { url: bridge.url, token: TOKEN, automaticDeserialization: false, enableTelemetry: false };
  redis = new Redis(options);
  direct = new Redis({ ...options, enableAutoPipelining: false });
});

afterAll(async () => {
  await bridge?.close();
  await redisServer?.stop();
});

/** One raw request, to see the wire format rather than what the client makes of it. */
async function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${bridge.url}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as unknown };
}

describe("upstash bridge", () => {
  it("round-trips strings through SET/GET, with and without base64 responses", async () => {
    const plain = new Redis({ url: bridge.url, token: TOKEN, automaticDeserialization: false, enableAutoPipelining: false, responseEncoding: false });
    const values = {
      ascii: "hello",
      unicode: "héllo wörld, 日本語 🚀",
      binaryish: '\u0000\u0001\u0002\u007f\u0080\u00ff\t\r\n"\\',
      // Valid base64 text: a bridge that forgot to encode would hand the client "test" instead.
      looksEncoded: "dGVzdA==",
    };
    for (const [name, value] of Object.entries(values)) {
      expect(await redis.set(`str:${name}`, value)).toBe("OK");
      expect(await redis.get(`str:${name}`), name).toBe(value);
      expect(await direct.get(`str:${name}`), name).toBe(value);
      expect(await plain.get(`str:${name}`), name).toBe(value);
    }
    expect(await redis.get("str:missing")).toBeNull();
    expect(await direct.get("str:missing")).toBeNull();
  });

  it("base64-encodes every string on the wire except a top-level OK", async () => {
    const b64 = { "upstash-encoding": "base64" };
    expect(await post("/", ["SET", "wire", "日本"], b64)).toEqual({ status: 200, body: { result: "OK" } });
    expect(await post("/", ["GET", "wire"], b64)).toEqual({ status: 200, body: { result: Buffer.from("日本").toString("base64") } });
    expect(await post("/", ["GET", "wire"])).toEqual({ status: 200, body: { result: "日本" } });
    expect(await post("/", ["EVAL", "return {7, 'OK', false}", "0"], b64)).toEqual({
      status: 200,
      body: { result: [7, Buffer.from("OK").toString("base64"), null] },
    });
  });

  it("returns INCR results as numbers", async () => {
    expect(await direct.incr("counter")).toBe(1);
    expect(await redis.incrby("counter", 41)).toBe(42);
  });

  it("runs a pipeline, keeping a failed command's error in its own entry", async () => {
    const p = redis.pipeline();
    p.set("pipe:s", "text");
    p.incr("pipe:n");
    p.incr("pipe:s"); // not an integer
    p.get("pipe:s");
    const results = await p.exec({ keepErrors: true });
    expect(results.map((r) => r.result)).toEqual(["OK", 1, undefined, "text"]);
    expect(results[2]?.error).toMatch(/^ERR value is not an integer/);
  });

  it("runs a multi-exec transaction", async () => {
    const tx = redis.multi();
    tx.set("tx:n", "1");
    tx.incrby("tx:n", 5);
    tx.get("tx:n");
    expect(await tx.exec()).toEqual(["OK", 6, "6"]);
  });

  it("keeps concurrent transactions and single commands apart on the shared connection", async () => {
    const txs = Array.from({ length: 20 }, (_, i) => redis.multi().set(`iso:${i}`, `v${i}`).get(`iso:${i}`).exec());
    const incrs = Array.from({ length: 20 }, () => redis.incr("iso:counter"));
    const [txResults, counts] = await Promise.all([Promise.all(txs), Promise.all(incrs)]);
    for (const [i, result] of txResults.entries()) expect(result).toEqual(["OK", `v${i}`]);
    expect([...counts].sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
  });

  it("returns nested arrays of integers and strings from EVAL, and EVALSHA of a loaded script", async () => {
    const script = "return {tonumber(ARGV[1]) + 1, KEYS[1], {2, ARGV[2], {3}}}";
    const expected = [42, "a-key", [2, "wörd", [3]]];
    expect(await redis.eval(script, ["a-key"], ["41", "wörd"])).toEqual(expected);
    expect(await direct.eval(script, ["a-key"], ["41", "wörd"])).toEqual(expected);
    const sha = await direct.scriptLoad(script);
    expect(await redis.evalsha(sha, ["a-key"], ["41", "wörd"])).toEqual(expected);
  });

  it("accepts Upstash's script flags as Upstash does (Redis itself refuses them), under the SHA-1 of the script as sent", async () => {
    const script = "#!lua flags=allow-key-locking\nreturn redis.call('INCR', KEYS[1])";
    const key = `flags-${crypto.randomUUID()}`;
    expect(await direct.eval(script, [key], [])).toBe(1);
    const sha = createHash("sha1").update(script).digest("hex");
    expect(await direct.evalsha(sha, [key], [])).toBe(2); // known under the caller's SHA-1
    const loaded = "#!lua flags=allow-key-locking,no-writes\nreturn redis.call('GET', KEYS[1])";
    expect(await direct.scriptLoad(loaded)).toBe(createHash("sha1").update(loaded).digest("hex"));
    expect(await direct.evalsha(createHash("sha1").update(loaded).digest("hex"), [key], [])).toBe("2");
  });

  it("turns Redis errors, in scripts too, into UpstashErrors carrying Redis's message", async () => {
    const unknownSha = "0".repeat(40);
    // Auto-pipelined, the client reports "Command failed: NOSCRIPT …"; one by one, "NOSCRIPT …".
    await expect(redis.evalsha(unknownSha, [], [])).rejects.toMatchObject({ name: "UpstashError", message: expect.stringContaining("NOSCRIPT") });
    await expect(direct.evalsha(unknownSha, [], [])).rejects.toMatchObject({ name: "UpstashError", message: expect.stringMatching(/^NOSCRIPT/) });
    await redis.set("err:s", "text");
    await expect(redis.eval("return redis.call('INCR', KEYS[1])", ["err:s"], [])).rejects.toThrow(/not an integer/);
    await expect(direct.eval("return redis.error_reply('ERR custom')", [], [])).rejects.toThrow(/^ERR custom/);
    expect(await post("/", ["EVALSHA", "0".repeat(40), "0"])).toMatchObject({ status: 400, body: { error: expect.stringMatching(/^NOSCRIPT/) } });
  });

  it("rejects a missing or wrong token with 401", async () => {
    for (const enableAutoPipelining of [true, false]) {
      const wrong = new Redis({ url: bridge.url, token: "wrong-token", enableTelemetry: false, enableAutoPipelining });
      await expect(wrong.get("str:ascii")).rejects.toThrow(/WRONGPASS/);
    }
    expect((await post("/", ["PING"], { authorization: "Bearer wrong-token" })).status).toBe(401);
    const res = await fetch(bridge.url, { method: "POST", body: JSON.stringify(["PING"]) });
    expect(res.status).toBe(401);
  });

  it("delays answers with setLatency and never answers with setHang", async () => {
    bridge.setLatency(300);
    let started = Date.now();
    expect(await redis.ping()).toBe("PONG");
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    bridge.setLatency(0);

    bridge.setHang(true);
    started = Date.now();
    const hung = fetch(bridge.url, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify(["PING"]),
      signal: AbortSignal.timeout(300),
    });
    await expect(hung).rejects.toMatchObject({ name: "TimeoutError" });
    bridge.setHang(false);
    expect(await redis.ping()).toBe("PONG");
  });

  it("fails fast while Redis is down and recovers when it is back on the same port", { timeout: 10_000 }, async () => {
    await redisServer.stop();
    const started = Date.now();
    await expect(redis.get("str:ascii")).rejects.toThrow(/Redis unavailable/);
    await expect(direct.get("str:ascii")).rejects.toThrow(/Redis unavailable/);
    expect(Date.now() - started).toBeLessThan(2000);
    expect((await post("/pipeline", [["PING"]])).status).toBe(503);

    await redisServer.start();
    const deadline = Date.now() + 5000;
    for (;;) {
      try {
        await redis.ping();
        break;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await sleep(50);
      }
    }
    expect(await redis.set("after", "outage")).toBe("OK");
    expect(await direct.get("after")).toBe("outage");
  });
});
