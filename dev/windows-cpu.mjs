// @ts-check
/**
 * Where a window decision's CPU goes when sluice runs as a library in Node (as the benchmark's
 * windows scenario runs it): `node dev/windows-cpu.mjs [seconds] [variant…]`, variants alternated
 * over `WINDOWS_CPU_ROUNDS` rounds (default 3). Each run is the benchmark's speed loop (16 loops,
 * 64 clients, 3 instances, a budget above the load) for `seconds` (default 5) against the local
 * stack (the Upstash REST bridge and redis-server in a child process, so this process's CPU is the
 * library's and its REST client's alone), and prints decisions/s and this process's CPU µs per
 * decision.
 *
 * Variants: `fixed-window`, `sliding-window` (sluice's `Limiter` on its Upstash backend);
 * `memory` (the same `Limiter` on the in-memory backend: the core alone, a `setImmediate` per
 * decision); `eval` (a one-line `INCR` script through `@upstash/redis`, no signal: the REST
 * client's floor); `eval-signal` (the same through sluice's `UpstashClient.send` under an
 * `AbortSignal.timeout`, as every decision is sent); `peer` (`@upstash/ratelimit`'s slidingWindow,
 * auto-pipelining off: one REST request per decision, as sluice sends them). Loopback only,
 * bounded by `seconds`.
 *
 * @example
 * node dev/windows-cpu.mjs 5 eval eval-signal fixed-window peer
 * // {"variant":"eval","round":1,"decisionsPerS":2096,"cpuUsPerDecision":509} …
 */
import { randomUUID } from "node:crypto";
import { startStackProcess } from "../bench/stack.mjs";
import { importBundled, WINDOWS_LIBRARY_EXPORTS } from "../bench/windows.mjs";
import { LOCAL_UPSTASH_TOKEN } from "./local-stack.mjs";

const seconds = Number(process.argv[2] ?? 5);
const variants = process.argv.length > 3 ? process.argv.slice(3) : ["eval", "eval-signal", "memory", "fixed-window", "sliding-window", "peer"];
const rounds = Number(process.env.WINDOWS_CPU_ROUNDS ?? 3);
const LOOPS = 16;
const CLIENTS = 64;
const INSTANCES = 3;
const BUDGET = 1_000;

const lib = await importBundled([...WINDOWS_LIBRARY_EXPORTS, 'export { memoryBackend } from "./src/core/memory-backend";', 'export { UpstashClient } from "./src/backends/upstash/client";']);

const stack = await startStackProcess();
try {
  const store = { url: stack.bridgeUrl, token: LOCAL_UPSTASH_TOKEN };
  const clientOptions = { url: store.url, token: store.token, enableTelemetry: false, enableAutoPipelining: false };
  const INCR = "return redis.call('INCR', KEYS[1])";
  const subject = (/** @type {string} */ client) => ({ kind: "request", method: "GET", path: "/", headers: new Headers({ "x-api-key": client }) });
  /** @type {Record<string, () => (client: string) => Promise<unknown>>} */
  const makers = {
    "fixed-window": () => sluice("fixed-window", lib.upstashBackend({ ...store, keyPrefix: "windows-cpu" })),
    "sliding-window": () => sluice("sliding-window", lib.upstashBackend({ ...store, keyPrefix: "windows-cpu" })),
    memory: () => {
      const check = sluice("fixed-window", lib.memoryBackend());
      return async (client) => {
        await new Promise((resolve) => setImmediate(resolve));
        return check(client);
      };
    },
    eval: () => {
      const redis = new lib.Redis(clientOptions);
      return (client) => redis.eval(INCR, [`windows-cpu:${client}`], []);
    },
    "eval-signal": () => {
      const redis = new lib.UpstashClient(clientOptions);
      return (client) => redis.send(AbortSignal.timeout(1_000), (/** @type {any} */ r) => r.eval(INCR, [`windows-cpu:${client}`], []));
    },
    peer: () => {
      const limiter = new lib.Ratelimit({ redis: new lib.Redis(clientOptions), limiter: lib.Ratelimit.slidingWindow(BUDGET, "1 s"), prefix: "windows-cpu-peer" });
      return (client) => limiter.limit(client);
    },
  };
  /** @param {string} algorithm @param {unknown} backend */
  function sluice(algorithm, backend) {
    const limiter = new lib.Limiter({ rules: [{ name: "w", key: "header:x-api-key", algorithm, limit: BUDGET, window: "1s" }], backend, log: () => {} });
    return (/** @type {string} */ client) => limiter.check(subject(client));
  }
  for (let round = 1; round <= rounds; round++) {
    for (const variant of variants) {
      const make = makers[variant];
      if (make === undefined) throw new Error(`no variant ${variant} (${Object.keys(makers).join(", ")})`);
      const instances = Array.from({ length: INSTANCES }, make);
      const clients = Array.from({ length: CLIENTS }, () => `c-${randomUUID()}`);
      let decisions = 0;
      const startedMs = performance.now();
      const endMs = startedMs + seconds * 1000;
      const cpuBefore = process.cpuUsage();
      await Promise.all(
        Array.from({ length: LOOPS }, async (_, loop) => {
          for (let i = loop; performance.now() < endMs; i += LOOPS) {
            await instances[i % INSTANCES]?.(clients[i % CLIENTS] ?? "");
            decisions += 1;
          }
        }),
      );
      const cpu = process.cpuUsage(cpuBefore);
      const elapsedS = (performance.now() - startedMs) / 1000;
      console.log(JSON.stringify({ variant, round, decisionsPerS: Math.round(decisions / elapsedS), cpuUsPerDecision: Math.round((cpu.user + cpu.system) / decisions) }));
    }
  }
} finally {
  await stack.stop();
}
