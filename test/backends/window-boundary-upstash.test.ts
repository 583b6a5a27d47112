import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LOCAL_UPSTASH_TOKEN, startLocalStack } from "../../dev/local-stack.mjs";
import { upstashBackend } from "../../src/backends/upstash";
import { Limiter } from "../../src/core/limiter";
import type { RuleSpec } from "../../src/core/rules";
import type { RequestSubject } from "../../src/core/subject";
import { sleep } from "../support/helpers";

/**
 * The adversarial boundary test on Upstash, through the bridge to a real redis-server, in real
 * time (the store's clock is Redis's `TIME`): three isolates (limiters, each with its own
 * backend client) fire bursts of costs 1–2 just before and just after each second's edge.
 * Each admission's store time lies between its send and its answer, so L + 1 admitted units whose
 * whole span (first send to last answer) is shorter than W prove an over-admission; the test finds
 * none for the sliding window (and none of 2L + 1 for the fixed window).
 * A calendar boundary (a local midnight) cannot be waited for in a test; its 3-isolate schedule
 * runs on the script with the store's time injected: test/backends/calendar-equivalence.test.ts.
 */
let stack: Awaited<ReturnType<typeof startLocalStack>>;
beforeAll(async () => {
  stack = await startLocalStack();
});
afterAll(async () => {
  await stack?.stop();
});

const W = 1_000;
const L = 3;
const request = (key: string): RequestSubject => ({ kind: "request", method: "GET", path: "/", headers: new Headers({ "x-api-key": key }) });

async function schedule(algorithm: "fixed-window" | "sliding-window", queue?: { maxWait: string }): Promise<{ sentMs: number; answeredMs: number; units: number; waitMs: number }[]> {
  const rules: RuleSpec[] = [{ name: "edge", key: "header:x-api-key", algorithm, limit: L, window: "1s", ...(queue && { queue }) }];
  const isolates = [0, 1, 2].map(() => new Limiter({ rules, backend: upstashBackend({ url: stack.bridge.url, token: LOCAL_UPSTASH_TOKEN, keyPrefix: "boundary" }), log: () => {} }));
  const client = crypto.randomUUID();
  const admitted: { sentMs: number; answeredMs: number; units: number; waitMs: number }[] = [];
  const burst = () =>
    Promise.all(
      [0, 1, 2, 0, 1, 2].map(async (isolate, i) => {
        const cost = 1 + (i % 2);
        const sentMs = Date.now();
        const verdict = await isolates[isolate]!.check(request(client), { cost });
        if (verdict.kind === "allowed") admitted.push({ sentMs, answeredMs: Date.now(), units: cost, waitMs: verdict.waitMs ?? 0 });
      }),
    );
  for (let round = 0; round < 4; round++) {
    // Just before the next second's edge and just after it (Redis's clock is this machine's).
    const edge = Math.ceil((Date.now() + 200) / W) * W;
    for (const offset of [-150, 2]) {
      await sleep(Math.max(0, edge + offset - Date.now()));
      await burst();
    }
  }
  return admitted;
}

/** The most admitted units whose span (first send to last answer) is shorter than W: a sound lower bound on the worst trailing-window count. */
function provenWorst(admitted: { sentMs: number; answeredMs: number; units: number }[]): number {
  let worst = 0;
  const sorted = [...admitted].sort((a, b) => a.sentMs - b.sentMs);
  for (let i = 0; i < sorted.length; i++) {
    let units = 0;
    let last = 0;
    for (let j = i; j < sorted.length; j++) {
      last = Math.max(last, sorted[j]!.answeredMs);
      if (last - sorted[i]!.sentMs >= W) break;
      units += sorted[j]!.units;
    }
    worst = Math.max(worst, units);
  }
  return worst;
}

describe("adversarial boundary schedules on Upstash (bridge, real redis-server, 3 isolates)", () => {
  it("sliding window: no L + 1 units admitted within any W", async () => {
    const admitted = await schedule("sliding-window");
    const worst = provenWorst(admitted);
    console.log(`upstash sliding window: ${admitted.length} admissions, worst proven trailing-window count ${worst} (L = ${L})`);
    expect(admitted.length).toBeGreaterThan(0);
    expect(worst).toBeLessThanOrEqual(L);
  }, 30_000);

  it("sliding window with a queue: no L + 1 units proceed within any W, queued ones counted at the time they proceed (send + wait to answer + wait)", async () => {
    const admitted = await schedule("sliding-window", { maxWait: "1s" });
    const queued = admitted.filter(({ waitMs }) => waitMs > 0);
    const proceeding = admitted.map(({ sentMs, answeredMs, units, waitMs }) => ({ sentMs: sentMs + waitMs, answeredMs: answeredMs + waitMs, units }));
    const worst = provenWorst(proceeding);
    console.log(`upstash sliding window with a queue: ${admitted.length} admissions (${queued.length} queued), worst proven trailing-window count ${worst} (L = ${L})`);
    expect(queued.length).toBeGreaterThan(0);
    expect(worst).toBeLessThanOrEqual(L);
  }, 30_000);

  it("fixed window: no 2L + 1 units admitted within any W (the same schedule shows more than L: the edge burst it allows)", async () => {
    const admitted = await schedule("fixed-window");
    const worst = provenWorst(admitted);
    console.log(`upstash fixed window: ${admitted.length} admissions, worst proven trailing-window count ${worst} (L = ${L}, bound 2L = ${2 * L})`);
    expect(worst).toBeLessThanOrEqual(2 * L);
    expect(worst).toBeGreaterThan(L);
  }, 30_000);
});
