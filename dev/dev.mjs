// @ts-check
/**
 * `npm run dev`: the demo origin on :8788 and the gateway (`wrangler dev`) on :8787 in front of it,
 * with the Durable Object backend.
 * `npm run dev:upstash`: the same with the Upstash backend, on a local redis-server and the
 * Upstash REST bridge (:8079), so no Upstash account is needed.
 * Other arguments go to wrangler, e.g. `npm run dev -- --var LIMITER_CAPACITY:100`.
 */
import { spawn } from "node:child_process";
import { LOCAL_UPSTASH_TOKEN, startLocalStack, upstashVars } from "./local-stack.mjs";
import { startOrigin } from "./origin.mjs";

const useUpstash = process.argv.includes("--upstash");
const wranglerArgs = process.argv.slice(2).filter((arg) => arg !== "--upstash");

/** @type {{ stop: () => Promise<void> }} */
let running;
/** @type {Record<string, string>} */
let vars;
if (useUpstash) {
  const stack = await startLocalStack({ bridgePort: 8079, originPort: 8788 });
  console.log(`redis-server on ${stack.redis.url}, Upstash REST bridge on ${stack.bridge.url} (token ${LOCAL_UPSTASH_TOKEN})`);
  running = stack;
  vars = upstashVars(stack);
} else {
  const origin = await startOrigin({ port: 8788 });
  running = { stop: origin.close };
  vars = { ORIGIN_URL: origin.url };
}
console.log(`demo origin on ${vars.ORIGIN_URL}`);

// A small bucket, so a few curls show 200s turning into 429s.
vars = { LIMITER_CAPACITY: "5", LIMITER_REFILL_RATE: "1", ...vars };
const wrangler = spawn("npx", ["wrangler", "dev", "--port", "8787", "--ip", "127.0.0.1", ...Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}:${v}`]), ...wranglerArgs], { stdio: "inherit" });
const stop = () => wrangler.kill("SIGINT");
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
wrangler.on("exit", async (code) => {
  await running.stop();
  process.exit(code ?? 0);
});
