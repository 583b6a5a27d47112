// @ts-check
/**
 * `npm run dev`: the demo origin on :8788 and the gateway (`wrangler dev`) on :8787 in front of it.
 * Extra arguments go to wrangler, e.g. `npm run dev -- --var LIMITER_CAPACITY:100`.
 */
import { spawn } from "node:child_process";
import { startOrigin } from "./origin.mjs";

const origin = await startOrigin({ port: 8788 });
console.log(`demo origin on ${origin.url}`);

const wrangler = spawn(
  "npx",
  [
    "wrangler", "dev", "--port", "8787", "--ip", "127.0.0.1",
    "--var", `ORIGIN_URL:${origin.url}`,
    // A small bucket, so a few curls show 200s turning into 429s.
    "--var", "LIMITER_CAPACITY:5",
    "--var", "LIMITER_REFILL_RATE:1",
    ...process.argv.slice(2),
  ],
  { stdio: "inherit" },
);
const stop = () => wrangler.kill("SIGINT");
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
wrangler.on("exit", async (code) => {
  await origin.close();
  process.exit(code ?? 0);
});
