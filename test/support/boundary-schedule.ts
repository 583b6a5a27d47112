import type { LimiterBackend } from "../../src/core/backend";
import { Limiter } from "../../src/core/limiter";
import type { RuleSpec } from "../../src/core/rules";
import type { RequestSubject } from "../../src/core/subject";
import { sleep } from "./helpers";

/** The window of the boundary schedules (1 s) and the limit their rules set. */
export const BOUNDARY_W = 1_000;
export const BOUNDARY_L = 3;

/** One admission: when it was sent and answered (isolate clock), its units, and its queue wait. */
export interface Admission {
  readonly sentMs: number;
  readonly answeredMs: number;
  readonly units: number;
  readonly waitMs: number;
}

const request = (key: string): RequestSubject => ({ kind: "request", method: "GET", path: "/", headers: new Headers({ "x-api-key": key }) });

/**
 * The adversarial boundary schedule in real time: three isolates (limiters, each with its own
 * backend from `backendFor`) fire bursts of costs 1–2 just before and just after each second's
 * edge, four rounds. Returns every admission.
 *
 * @example
 * const admitted = await boundarySchedule(() => upstashBackend(options), "sliding-window");
 */
export async function boundarySchedule(backendFor: () => LimiterBackend, algorithm: "fixed-window" | "sliding-window", queue?: { maxWait: string }): Promise<Admission[]> {
  const rules: RuleSpec[] = [{ name: "edge", key: "header:x-api-key", algorithm, limit: BOUNDARY_L, window: "1s", ...(queue && { queue }) }];
  const isolates = [0, 1, 2].map(() => new Limiter({ rules, backend: backendFor(), log: () => {} }));
  const client = crypto.randomUUID();
  const admitted: Admission[] = [];
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
    // Just before the next second's edge and just after it (the store's clock is this machine's).
    const edge = Math.ceil((Date.now() + 200) / BOUNDARY_W) * BOUNDARY_W;
    for (const offset of [-150, 2]) {
      await sleep(Math.max(0, edge + offset - Date.now()));
      await burst();
    }
  }
  return admitted;
}

/**
 * The most admitted units whose span (first send to last answer) is shorter than W: a sound lower
 * bound on the worst trailing-window count (each admission's store time lies in its span).
 *
 * @example
 * expect(provenWorst(admitted)).toBeLessThanOrEqual(BOUNDARY_L);
 */
export function provenWorst(admitted: readonly Pick<Admission, "sentMs" | "answeredMs" | "units">[]): number {
  let worst = 0;
  const sorted = [...admitted].sort((a, b) => a.sentMs - b.sentMs);
  for (let i = 0; i < sorted.length; i++) {
    let units = 0;
    let last = 0;
    for (let j = i; j < sorted.length; j++) {
      last = Math.max(last, sorted[j]!.answeredMs);
      if (last - sorted[i]!.sentMs >= BOUNDARY_W) break;
      units += sorted[j]!.units;
    }
    worst = Math.max(worst, units);
  }
  return worst;
}

/** A queued admission counted when it proceeds (send and answer shifted by its wait). */
export const proceeding = (admitted: readonly Admission[]) => admitted.map(({ sentMs, answeredMs, units, waitMs }) => ({ sentMs: sentMs + waitMs, answeredMs: answeredMs + waitMs, units }));
