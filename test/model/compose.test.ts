import { createHash } from "node:crypto";
import { appendFileSync } from "node:fs";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { commandsFor, Envelope, expiryViolations, RunModel } from "./commands";
import type { Violation } from "./envelope";
import { runtimeDeliversDisconnects } from "./runtime-probe";
import { startModelStack, type BackendName, type ModelStack } from "./stack";

/**
 * Issue 16, "Prove that the features compose": a model-based test. fast-check generates
 * sequences of operations (requests of several clients through several isolates, with costs,
 * statuses for a `count` rule, slow responses and disconnects for a concurrency rule, bursts at
 * the edges of a fixed and a sliding window (issue 18: each algorithm in the model), queued token
 * bucket and sliding-window rules (issue 18's queue: counted at the origin's arrivals, clients
 * leaving while they wait, a queued rule beside another enforced one), real time
 * passing, exact and prefix overrides set and removed, resets, peeks, and on Upstash the store
 * frozen and thawed and one client's bucket broken) and runs each against the real stack; after
 * every step the reference model (envelope.ts) checks the promise. A failure prints the shrunk
 * command list, the violation and the run's log.
 *
 *   npm test                                   fixed seeds, a few short runs per backend
 *   MODEL_RUNS=200 npx vitest run test/model   a longer run (random seeds unless MODEL_SEED is set)
 *   MODEL_SURVEY=1                             collect every violation instead of stopping at the first
 *   MODEL_LOG=/tmp/model.log                   append every run's log (each step and its answers) to that file
 *   MODEL_WINDOW_OVERRIDES=0                   leave out overrides of the window rules (see rules.ts WINDOW_OVERRIDES)
 */
const LONG_RUNS = Number(process.env.MODEL_RUNS ?? "0");
const SURVEY = process.env.MODEL_SURVEY === "1";
const SEED = process.env.MODEL_SEED === undefined ? undefined : Number(process.env.MODEL_SEED);
/** Whether this workerd tells a Worker that its client left (checked once): only then must a leaving client's queued request never reach the origin. */
let disconnectsDelivered: Promise<boolean> | undefined;

interface Config {
  readonly name: string;
  readonly backend: BackendName;
  readonly isolates: number;
  readonly vars: Readonly<Record<string, string>>;
  readonly seed: number;
}

const CONFIGS: readonly Config[] = [
  // The defaults: deny cache on, leases on (Durable Objects and Upstash), Upstash hints on.
  { name: "durable-object, 3 isolates on one namespace, defaults", backend: "durable-object", isolates: 3, vars: {}, seed: 16_001 },
  { name: "upstash, 2 gateway processes on one redis-server, defaults", backend: "upstash", isolates: 2, vars: {}, seed: 16_002 },
  { name: "memory, one gateway, defaults", backend: "memory", isolates: 1, vars: {}, seed: 16_003 },
  // What a user tunes: no deny cache, a short store budget and breaker cool-down, a larger local share.
  {
    name: "upstash, 2 gateway processes, deny cache off, short timeouts, local share 0.5",
    backend: "upstash",
    isolates: 2,
    vars: { LIMITER_DENY_CACHE_SIZE: "0", LIMITER_TIMEOUT_MS: "300", LIMITER_BREAKER_COOLDOWN_MS: "1000", LIMITER_LOCAL_FRACTION: "0.5" },
    seed: 16_004,
  },
];

/** Runs per configuration in `npm test`, and commands per run: bounded well under a minute per backend. */
const QUICK_RUNS = 5;
const MAX_COMMANDS = LONG_RUNS > 0 ? 40 : 22;
const TIME_LIMIT_MS = LONG_RUNS > 0 ? 60 * 60_000 : 45_000;

for (const config of CONFIGS) {
  describe(`model: the features compose (${config.name})`, () => {
    let stack: ModelStack;
    /** Fail-mode answers are excused until then: an earlier run's outage (or broken bucket) may keep a breaker open. */
    let degradedUntil = 0;
    const surveyed: Violation[] = [];

    beforeAll(async () => {
      stack = await startModelStack(config.backend, inject("gatewayBundle"), config.vars, config.isolates);
      disconnectsDelivered ??= runtimeDeliversDisconnects();
    }, 60_000);
    afterAll(async () => {
      await stack?.dispose();
      if (SURVEY) printSurvey(config.name, surveyed);
    });

    it(
      "admitted ≤ the model's bound for every rule and client, blocks hold, slots hold, degraded shares hold, headers agree, keys expire",
      async () => {
        let runs = 0;
        const property = fc.asyncProperty(fc.commands(commandsFor(stack), { maxCommands: MAX_COMMANDS, size: "max" }), async (commands) => {
          const tag = `m${Date.now().toString(36)}${(runs++).toString(36)}`;
          const grace = stack.settings.breakerCooldownMs + stack.settings.timeoutMs + 500;
          const envelope = new Envelope({
            // Leases (Durable Objects and Upstash): leased tokens beyond a lowered limit may be spent for a lease's second.
            exactLagMs: config.backend === "memory" ? 0 : 1_000,
            timeoutMs: stack.settings.timeoutMs,
            thawGraceMs: grace,
            localFraction: stack.settings.localFraction,
            degradedUntil,
            arrivalOf: (id) => stack.origin.arrivals.get(id)?.at,
            disconnectsDelivered: await disconnectsDelivered,
          });
          const model = new RunModel(tag, envelope, SURVEY, []);
          try {
            await fc.asyncModelRun(() => ({ model, real: stack }), commands);
            for (const open of model.open) open.abort();
            if (model.frozen) {
              stack.freeze?.(false);
              model.frozen = false;
            }
            // Background work (refunds, releases) settles; then every key the run wrote must expire.
            await new Promise((resolve) => setTimeout(resolve, 300));
            model.verify(await expiryViolations(stack, model));
          } finally {
            for (const open of model.open) open.abort();
            if (model.frozen) stack.freeze?.(false);
            if (model.poisoned || envelope.freezes.length > 0) degradedUntil = performance.now() + grace;
            if (process.env.MODEL_LOG) appendFileSync(process.env.MODEL_LOG, `--- ${config.name} run ${tag}\n${model.log.join("\n")}\n`);
            surveyed.push(...envelope.violations.map((v) => ({ ...v, message: `${v.message}\n      in: ${commands.toString()}` })));
          }
        });
        const result = await fc.check(property, {
          numRuns: LONG_RUNS > 0 ? LONG_RUNS : QUICK_RUNS,
          ...(LONG_RUNS > 0 ? (SEED === undefined ? {} : { seed: SEED }) : { seed: config.seed }),
          interruptAfterTimeLimit: TIME_LIMIT_MS,
          endOnFailure: SURVEY,
        });
        if (result.failed) {
          const cause = result.errorInstance instanceof Error ? result.errorInstance.message : String(result.errorInstance);
          throw new Error(`${fc.defaultReportMessage(result) ?? "model run failed"}\n${cause}`);
        }
        expect(result.numRuns).toBeGreaterThan(0);
      },
      TIME_LIMIT_MS + 60_000,
    );

    if (config.backend === "upstash") {
      it("ran with leases on (the default): a busy client's bucket key records a lease", async () => {
        const client = `lease-probe-${crypto.randomUUID()}`;
        for (let i = 0; i < 6; i++) await fetch(`${stack.urls[0]}/bulk/x`, { headers: { "x-api-key": client } }).then((r) => r.arrayBuffer());
        const hash = createHash("sha256").update(client).digest("hex");
        const key = (await stack.redisKeys?.())?.find((k) => k.key.endsWith(hash));
        expect(key?.value).toMatch(/#[\w.]+:\d+:\d+/);
      });
    }
  });
}

function printSurvey(name: string, violations: readonly Violation[]): void {
  const byKind = new Map<string, Violation[]>();
  for (const v of violations) byKind.set(v.kind, [...(byKind.get(v.kind) ?? []), v]);
  const lines = [`model survey (${name}): ${violations.length} violations`];
  for (const [kind, list] of byKind) lines.push(`  ${kind}: ${list.length}`, ...list.slice(0, 3).map((v) => `    - ${v.message}`));
  console.log(lines.join("\n"));
}
