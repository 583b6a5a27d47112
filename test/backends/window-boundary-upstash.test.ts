import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LOCAL_UPSTASH_TOKEN, startLocalStack } from "../../dev/local-stack.mjs";
import { upstashBackend } from "../../src/backends/upstash";
import { BOUNDARY_L, boundarySchedule, proceeding, provenWorst } from "../support/boundary-schedule";

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

const backend = () => upstashBackend({ url: stack.bridge.url, token: LOCAL_UPSTASH_TOKEN, keyPrefix: "boundary" });

describe("adversarial boundary schedules on Upstash (bridge, real redis-server, 3 isolates)", () => {
  it("sliding window: no L + 1 units admitted within any W", async () => {
    const admitted = await boundarySchedule(backend, "sliding-window");
    const worst = provenWorst(admitted);
    console.log(`upstash sliding window: ${admitted.length} admissions, worst proven trailing-window count ${worst} (L = ${BOUNDARY_L})`);
    expect(admitted.length).toBeGreaterThan(0);
    expect(worst).toBeLessThanOrEqual(BOUNDARY_L);
  }, 30_000);

  it("sliding window with a queue: no L + 1 units proceed within any W, queued ones counted at the time they proceed (send + wait to answer + wait)", async () => {
    const admitted = await boundarySchedule(backend, "sliding-window", { maxWait: "1s" });
    const queued = admitted.filter(({ waitMs }) => waitMs > 0);
    const worst = provenWorst(proceeding(admitted));
    console.log(`upstash sliding window with a queue: ${admitted.length} admissions (${queued.length} queued), worst proven trailing-window count ${worst} (L = ${BOUNDARY_L})`);
    expect(queued.length).toBeGreaterThan(0);
    expect(worst).toBeLessThanOrEqual(BOUNDARY_L);
  }, 30_000);

  it("fixed window: no 2L + 1 units admitted within any W (the same schedule shows more than L: the edge burst it allows)", async () => {
    const admitted = await boundarySchedule(backend, "fixed-window");
    const worst = provenWorst(admitted);
    console.log(`upstash fixed window: ${admitted.length} admissions, worst proven trailing-window count ${worst} (L = ${BOUNDARY_L}, bound 2L = ${2 * BOUNDARY_L})`);
    expect(worst).toBeLessThanOrEqual(2 * BOUNDARY_L);
    expect(worst).toBeGreaterThan(BOUNDARY_L);
  }, 30_000);
});
