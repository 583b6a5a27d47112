// @ts-check
/**
 * What the shape of a refusal costs by itself: `node dev/answer-shape.mjs [rounds] [seconds]`.
 *
 * Two workers with no limiter and no framework answer every request with a fixed 429: one with
 * sluice's answer under the default headers (7 headers, the 207-byte problem+json body), one with
 * the benchmark's `@upstash/ratelimit` worker's (4 headers, a 42-byte JSON body). They are loaded
 * alternately as the benchmark's flood loads a limiter (autocannon, 16 connections, on the same
 * machine), so their ratio is what the answer alone costs the runtime that writes it and the
 * client that reads it: the floor under sluice ÷ peer in the benchmark's flood. Loopback only,
 * bounded in time and count.
 *
 * @example
 * node dev/answer-shape.mjs 5 3
 * // {"rounds":5,"rps":{"sluice-answer":[…],"peer-answer":[…]},"ratioOfSums":0.97}
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runLoad } from "../bench/load.mjs";
import { startWorkerd } from "./workerd.mjs";

const rounds = Number(process.argv[2] ?? 5);
const seconds = Number(process.argv[3] ?? 3);

const SLUICE_BODY = JSON.stringify({
  type: "https://iana.org/assignments/http-problem-types#quota-exceeded",
  title: "Too Many Requests",
  status: 429,
  detail: 'Rate limit "default" exceeded: retry in 1 s.',
  "violated-policies": ["default"],
});
const ANSWERS = {
  "sluice-answer": {
    body: SLUICE_BODY,
    headers: {
      "Content-Type": "application/problem+json",
      "Retry-After": "1",
      "RateLimit-Policy": '"default";q=10;w=10',
      RateLimit: '"default";r=0;t=1',
      "X-RateLimit-Limit": "10",
      "X-RateLimit-Remaining": "0",
      "X-RateLimit-Reset": "1",
    },
  },
  "peer-answer": {
    body: JSON.stringify({ title: "Too Many Requests", status: 429 }),
    headers: { "Content-Type": "application/json", "Retry-After": "1", "X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "0" },
  },
};

const dir = mkdtempSync(join(tmpdir(), "sluice-answer-shape-"));
/** @type {Record<string, string>} */
const scripts = {};
for (const [name, { body, headers }] of Object.entries(ANSWERS)) {
  const path = join(dir, `${name}.mjs`);
  writeFileSync(
    path,
    `const headers = ${JSON.stringify(headers)};\nexport default { fetch() { return new Response(${JSON.stringify(body)}, { status: 429, headers }); } };\n`,
  );
  scripts[name] = path;
}

/** @type {Record<string, number[]>} */
const rps = {};
for (let round = 1; round <= rounds; round++) {
  for (const [name, scriptPath] of Object.entries(scripts)) {
    const worker = await startWorkerd({ scriptPath, vars: {}, direct: true });
    try {
      const url = `${worker.url}/`;
      await runLoad({ url, connections: 16, durationS: 1, maxRequests: 100_000 });
      const load = await runLoad({ url, connections: 16, durationS: seconds, maxRequests: 200_000 });
      if (load.refused < load.responses) throw new Error(`${name}: not every answer was a 429`);
      (rps[name] ??= []).push(Math.round(load.rps));
      console.error(`round ${round}: ${name} ${Math.round(load.rps)} req/s`);
    } finally {
      await worker.dispose();
    }
  }
}
const sum = (/** @type {number[]} */ values) => values.reduce((a, b) => a + b, 0);
console.log(JSON.stringify({ rounds, rps, ratioOfSums: Number((sum(rps["sluice-answer"] ?? []) / sum(rps["peer-answer"] ?? [])).toFixed(3)) }));
