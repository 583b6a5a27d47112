// @ts-check
/**
 * Instructions per request of the benchmark's limiters, counted by valgrind's callgrind in the
 * whole workerd process: `node dev/ab-instructions.mjs` with env
 *   AB_IDS       limiters, e.g. `sluice-upstash,upstash-ratelimit` (bench/limiters.mjs ids)
 *   AB_SCENARIO  `flood` (default: one client over capacity 10 at 1/s) or `allowed` (a client per
 *                request slot, a budget far above the load)
 *   AB_REQUESTS  requests counted (default 2,000), after AB_WARMUP (default 1,500) not counted
 *   AB_BUNDLE    another build of sluice (e.g. the commit before a change) as `sluice-base`
 *   AB_RATE      the flood's refill, tokens/s (default the benchmark's 1); sluice alone takes 0.0003, so
 *                that no request of the window is allowed (each allowed one goes to the store and
 *                the origin, millions of instructions, and their number depends on wall time)
 *
 * Why: on a shared host, req/s and CPU profiles of the same build drift by 20–45 % between runs
 * (docs/profile.md); an instruction count does not (the same total twice, whatever the other core
 * does), so a change of a few per cent on the flood path shows. Instructions are not time (a cache
 * miss costs more than an add) and the count includes workerd's own work for each request, alike
 * for every worker: a ratio here is a lower bound on what the change does to time. workerd runs
 * under valgrind (~50× slower), requests go one at a time over 4 keep-alive connections, loopback
 * only, bounded by AB_REQUESTS.
 *
 * @example
 * AB_IDS=sluice-upstash,upstash-ratelimit node dev/ab-instructions.mjs
 * // {"scenario":"flood","requests":2000,"instructionsPerRequest":{"sluice-upstash":…,"upstash-ratelimit":…}}
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { prepareLimiters } from "../bench/limiters.mjs";
import { FLOOD_POLICY } from "../bench/scenarios.mjs";
import { startStackProcess } from "../bench/stack.mjs";
import { sluiceUpstashVariant } from "./ab-variant.mjs";

const ids = (process.env.AB_IDS ?? "sluice-upstash,upstash-ratelimit").split(",").filter(Boolean);
const scenario = process.env.AB_SCENARIO === "allowed" ? "allowed" : "flood";
const counted = Number(process.env.AB_REQUESTS ?? 2_000);
const warmup = Number(process.env.AB_WARMUP ?? 1_500);
const ALLOWED_POLICY = { capacity: 1_000_000_000, rate: 1_000_000 };

// Miniflare starts `MINIFLARE_WORKERD_PATH` when set: here, workerd under callgrind with counting off.
const outDir = mkdtempSync(join(tmpdir(), "sluice-callgrind-"));
const workerd = createRequire(import.meta.url)("workerd").default;
const wrapper = join(outDir, "workerd-callgrind.sh");
writeFileSync(wrapper, `#!/bin/sh\nexec valgrind --tool=callgrind --instr-atstart=no --smc-check=all-non-file --callgrind-out-file=${outDir}/cg.%p ${workerd} "$@"\n`, { mode: 0o755 });
process.env.MINIFLARE_WORKERD_PATH = wrapper;

/** The pid of the newest valgrind process started from the wrapper. */
function newestValgrindPid() {
  const pids = execFileSync("pgrep", ["-n", "-f", `callgrind-out-file=${outDir}`])
    .toString()
    .trim();
  return Number(pids);
}

/**
 * Sends `count` requests in 4 lanes, one at a time each (Node's fetch keeps the connections alive); returns their statuses.
 * @param {string} url
 * @param {number} count
 * @param {(i: number) => Record<string, string>} headersOf
 */
async function send(url, count, headersOf) {
  /** @type {Map<number, number>} */
  const statuses = new Map();
  let next = 0;
  const lane = async () => {
    while (next < count) {
      const i = next++;
      const response = await fetch(url, { headers: headersOf(i), signal: AbortSignal.timeout(60_000) });
      await response.arrayBuffer();
      statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
    }
  };
  await Promise.all([lane(), lane(), lane(), lane()]);
  return Object.fromEntries(statuses);
}

/** Total instructions (Ir) of a callgrind dump file. @param {string} file */
function totalInstructions(file) {
  const text = readFileSync(file, "utf8");
  const line = text.split("\n").find((l) => l.startsWith("totals:") || l.startsWith("summary:"));
  if (line === undefined) throw new Error(`no totals in ${file}`);
  return Number(line.split(/\s+/)[1]);
}

const stack = await startStackProcess();
try {
  const limiters = await prepareLimiters(stack);
  if (process.env.AB_BUNDLE !== undefined) {
    const base = limiters.find((l) => l.id === "sluice-upstash");
    if (base === undefined) throw new Error("no sluice-upstash limiter");
    limiters.push(sluiceUpstashVariant(base, stack, { id: "sluice-base", scriptPath: process.env.AB_BUNDLE }));
  }
  /** @type {Record<string, number>} */
  const perRequest = {};
  for (const id of ids) {
    const limiter = limiters.find((l) => l.id === id);
    if (limiter === undefined) throw new Error(`unknown limiter ${id}`);
    const floodPolicy = { ...FLOOD_POLICY, rate: Number(process.env.AB_RATE ?? FLOOD_POLICY.rate) };
    const instance = await limiter.start(scenario === "flood" ? floodPolicy : ALLOWED_POLICY);
    try {
      const pid = newestValgrindPid();
      const run = `${id}-${Date.now()}`;
      const headersOf = scenario === "flood" ? (/** @type {number} */ _i) => ({ "x-api-key": `flood-${run}` }) : (/** @type {number} */ i) => ({ "x-api-key": `allowed-${run}-${i}` });
      await send(`${instance.url}/`, warmup, headersOf);
      execFileSync("callgrind_control", ["-i", "on", String(pid)], { stdio: "pipe" });
      const statuses = await send(`${instance.url}/`, counted, (i) => headersOf(i + warmup));
      execFileSync("callgrind_control", ["-d", String(pid)], { stdio: "pipe" });
      execFileSync("callgrind_control", ["-i", "off", String(pid)], { stdio: "pipe" });
      const dumps = readdirSync(outDir).filter((name) => name.startsWith(`cg.${pid}.`));
      const dump = dumps.sort().at(-1);
      if (dump === undefined) throw new Error(`no callgrind dump for ${id}`);
      // A count of the wrong answers (a configuration error's 500s) would measure another path.
      const expected = scenario === "flood" ? 429 : 200;
      if ((statuses[expected] ?? 0) < counted * 0.9) throw new Error(`${id}: expected mostly ${expected}, got ${JSON.stringify(statuses)}`);
      perRequest[id] = Math.round(totalInstructions(join(outDir, dump)) / counted);
      console.error(`${id}: ${perRequest[id].toLocaleString("en")} instructions per request`, statuses);
    } finally {
      await instance.dispose();
    }
  }
  console.log(JSON.stringify({ scenario, requests: counted, instructionsPerRequest: perRequest }));
} finally {
  await stack.stop();
}
