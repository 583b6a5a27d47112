import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { durableObjectBackend } from "../../src/backends/durable-object";
import { BOUNDARY_L, boundarySchedule, proceeding, provenWorst } from "../support/boundary-schedule";

/**
 * The adversarial boundary test on Durable Objects, in the Workers runtime and real time: three
 * isolates (limiters, each with its own backend and batcher) on one namespace fire bursts of costs
 * 1–2 just before and just after each second's edge (the schedule of
 * `test/backends/window-boundary-upstash.test.ts`, in `test/support/boundary-schedule.ts`). The
 * object's clock decides; each admission's object time lies between its send and its answer.
 */
const backend = () => durableObjectBackend(env.LIMITER_BUCKETS);

describe("adversarial boundary schedules on Durable Objects (3 isolates on one namespace)", () => {
  it("sliding window: no L + 1 units admitted within any W", async () => {
    const admitted = await boundarySchedule(backend, "sliding-window");
    const worst = provenWorst(admitted);
    console.log(`durable-object sliding window: ${admitted.length} admissions, worst proven trailing-window count ${worst} (L = ${BOUNDARY_L})`);
    expect(admitted.length).toBeGreaterThan(0);
    expect(worst).toBeLessThanOrEqual(BOUNDARY_L);
  }, 30_000);

  it("sliding window with a queue: no L + 1 units proceed within any W, queued ones counted when they proceed", async () => {
    const admitted = await boundarySchedule(backend, "sliding-window", { maxWait: "1s" });
    const worst = provenWorst(proceeding(admitted));
    console.log(`durable-object sliding window with a queue: ${admitted.length} admissions, worst proven trailing-window count ${worst} (L = ${BOUNDARY_L})`);
    expect(admitted.some(({ waitMs }) => waitMs > 0)).toBe(true);
    expect(worst).toBeLessThanOrEqual(BOUNDARY_L);
  }, 30_000);

  it("fixed window: no 2L + 1 units admitted within any W (the same schedule shows more than L: the edge burst it allows)", async () => {
    const admitted = await boundarySchedule(backend, "fixed-window");
    const worst = provenWorst(admitted);
    console.log(`durable-object fixed window: ${admitted.length} admissions, worst proven trailing-window count ${worst} (L = ${BOUNDARY_L}, bound 2L = ${2 * BOUNDARY_L})`);
    expect(worst).toBeLessThanOrEqual(2 * BOUNDARY_L);
    expect(worst).toBeGreaterThan(BOUNDARY_L);
  }, 30_000);
});
