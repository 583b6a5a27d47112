// @ts-check
/**
 * Turns the measurements into the comparisons (ratios taken in the same run), the targets
 * (PASS / MISS / N/A, with the figure), and the text table printed on stdout.
 */

import { bindingPolicy } from "./limiters.mjs";
import { costPerMillion, LEFT_OUT, PRICES, PRICES_READ_ON } from "./prices.mjs";
import { formatIssue19 } from "./upstash-targets.mjs";
// Issue 18: the windows scenario's lines.
import { formatWindows } from "./windows.mjs";

/** @typedef {import("./scenarios.mjs").ThroughputRow} ThroughputRow */
/** @typedef {import("./scenarios.mjs").AccuracyResult & { spread?: string }} AccuracyResult */
/** @typedef {import("./hot-key.mjs").HotKeyResult} HotKeyResult */
/** @typedef {{ target: string, status: "PASS" | "MISS" | "N/A", figure: string }} TargetResult */

/**
 * @param {{ bareRuns: ThroughputRow[], rows: ThroughputRow[], accuracy: AccuracyResult[], hotKey?: HotKeyResult }} measured
 */
export function compare({ bareRuns, rows, accuracy, hotKey }) {
  const bareRps = bareRuns.reduce((a, r) => a + r.rps, 0) / bareRuns.length;
  const row = (/** @type {string} */ limiter, /** @type {string} */ scenario) => rows.find((r) => r.limiter === limiter && r.scenario === scenario);
  const ratio = (/** @type {number | null | undefined} */ a, /** @type {number | null | undefined} */ b) => (a == null || b == null || b === 0 ? null : a / b);

  /** @type {Record<string, Record<string, number | null>>} */
  const ratios = {};
  for (const r of rows) ratios[`${r.limiter} ${r.scenario} ÷ bare req/s`] = { value: ratio(r.rps, bareRps) };
  for (const peer of ["upstash-ratelimit", "hono-rate-limiter"]) {
    for (const scenario of ["allowed", "flood"]) {
      const sluice = row("sluice-upstash", scenario);
      const other = row(peer, scenario);
      ratios[`sluice-upstash ÷ ${peer}, ${scenario}`] = {
        rps: ratio(sluice?.rps, other?.rps),
        p50: ratio(sluice?.p50Ms, other?.p50Ms),
        p99: ratio(sluice?.p99Ms, other?.p99Ms),
        redisCommandsPerDecision: ratio(sluice?.redisCommandsPerDecision, other?.redisCommandsPerDecision),
      };
    }
  }

  /** @type {TargetResult[]} */
  const targets = [];
  const check = (/** @type {string} */ target, /** @type {boolean | null} */ ok, /** @type {string} */ figure) => targets.push({ target, status: ok === null ? "N/A" : ok ? "PASS" : "MISS", figure });
  const x = (/** @type {number | null} */ v) => (v === null ? "n/a" : `${v.toFixed(2)}×`);

  const doAllowed = ratio(row("sluice-do", "allowed")?.rps, bareRps);
  // Issue 19: 0.8 × (or the reason, written in docs/profile.md).
  check("sluice allowed path ≥ 0.8 × bare req/s (Durable Object; if missed, the reason is in docs/profile.md)", doAllowed === null ? null : doAllowed >= 0.8, x(doAllowed));
  for (const [id, name] of [
    ["sluice-do", "Durable Object"],
    ["sluice-upstash", "Upstash"],
  ]) {
    const flood = row(id ?? "", "flood");
    const r = ratio(flood?.rps, bareRps);
    check(`refused path under a flood ≥ 0.9 × bare req/s (${name})`, r === null ? null : r >= 0.9, x(r));
    const calls = flood?.backendCallsPerRequest ?? null;
    check(`refused path backend calls per request ≤ 0.05 (${name})`, calls === null ? null : calls <= 0.05, calls === null ? "n/a" : calls.toFixed(3));
  }
  // Metrics on (the default) against off, same run: the recording and flushing must cost no more than noise.
  for (const scenario of ["allowed", "flood"]) {
    const r = ratio(row("sluice-do", scenario)?.rps, row("sluice-do-no-metrics", scenario)?.rps);
    check(`metrics cost within noise: req/s with metrics ≥ 0.9 × without (Durable Object, ${scenario})`, r === null ? null : r >= 0.9, x(r));
  }
  for (const [id, name] of [
    ["sluice-do", "Durable Object"],
    ["sluice-upstash", "Upstash"],
  ]) {
    const a = accuracy.find((r) => r.limiter === id);
    check(`no over-admission in the accuracy scenario (${name})`, a ? a.overAdmission === 0 : null, a ? `${a.allowed} allowed, max ${a.theoreticalMax}, over by ${a.overAdmission}` : "not run");
  }
  check(
    `hot key: calls to the Durable Object per request ≤ 0.2 (one client over ${hotKey?.isolates ?? "?"} isolates, budget above the load)`,
    hotKey ? hotKey.callsPerRequest <= 0.2 : null,
    hotKey ? `${hotKey.callsPerRequest.toFixed(3)} (${hotKey.objectCalls} calls, ${hotKey.requests} requests)` : "not run",
  );
  check(
    "hot key: no over-admission (Durable Object)",
    hotKey ? hotKey.overAdmission === 0 : null,
    hotKey ? `${hotKey.allowed} allowed, max ${hotKey.theoreticalMax}, over by ${hotKey.overAdmission}` : "not run",
  );
  for (const scenario of ["allowed", "flood"]) {
    const sluice = row("sluice-upstash", scenario);
    const peer = row("upstash-ratelimit", scenario);
    const s = sluice?.redisCommandsPerDecision ?? null;
    const p = peer?.redisCommandsPerDecision ?? null;
    check(
      `Redis commands per decision below @upstash/ratelimit's (${scenario === "allowed" ? "allowed path" : "flood"})`,
      // "Below" means by more than the 2 % that stray commands (warm-up stragglers, health checks) add.
      s === null || p === null ? null : s < p * 0.98,
      `${s?.toFixed(2) ?? "n/a"} vs ${p?.toFixed(2) ?? "n/a"}`,
    );
  }
  return { bareRps, ratios, targets };
}

/**
 * The report printed on stdout.
 * @param {{ mode: string, machine: Record<string, unknown>, profile: import("./scenarios.mjs").Profile,
 *   bareRuns: ThroughputRow[], rows: ThroughputRow[], accuracy: AccuracyResult[], hotKey?: HotKeyResult, labels: Record<string, string>,
 *   bareRps: number, ratios: Record<string, Record<string, number | null>>, targets: TargetResult[], durationS: number,
 *   extras?: ReturnType<typeof compareExtras>, hotKeyUpstash?: HotKeyResult, hotClients?: import("./hot-client.mjs").HotClientResult[],
 *   scale?: Awaited<ReturnType<typeof import("./scale.mjs").measureScale>>, windows?: Awaited<ReturnType<typeof import("./windows.mjs").measureWindows>> }} report
 * @returns {string}
 */
export function formatReport(report) {
  const { machine: m, profile, labels, bareRps } = report;
  const lines = [
    `sluice benchmark (${report.mode}, ${report.durationS.toFixed(0)} s): ${m.cpuCount} × ${m.cpuModel}, ${m.memoryGiB} GiB, ${m.os}`,
    `node ${m.node}, redis ${m.redis}, workerd ${m.workerd} (miniflare ${m.miniflare}), autocannon ${m.autocannon}`,
    "",
    `Throughput: ${profile.connections} connections, ${throughputRuns(profile)} after a ${profile.warmupS} s warm-up; ` +
      `allowed = each connection its own client with a huge budget, flood = one client over capacity 10 at 1/s`,
  ];
  const header = ["scenario", "limiter", "req/s", "÷bare", "p50 ms", "p99 ms", "2xx", "429", "other", "redis cmd/dec", "calls/req", ...(profile.rounds > 1 ? ["each run's req/s"] : [])];
  const table = [...report.bareRuns.map((r, i) => ({ ...r, scenario: `ceiling ${i + 1}` })), ...report.rows].map((r) => [
    r.scenario,
    labels[r.limiter] ?? r.limiter,
    r.rps.toFixed(0),
    (r.rps / bareRps).toFixed(2),
    r.p50Ms.toFixed(1),
    r.p99Ms.toFixed(1),
    String(r.allowed),
    String(r.refused),
    String(r.other + r.errors),
    r.redisCommandsPerDecision === null ? "—" : r.redisCommandsPerDecision.toFixed(2),
    r.backendCallsPerRequest === null ? "—" : r.backendCallsPerRequest.toFixed(3),
    ...(profile.rounds > 1 ? [r.roundsRps?.map((rps) => rps.toFixed(0)).join(" / ") ?? ""] : []),
  ]);
  lines.push(...columns([header, ...table]), `(÷bare: against the mean of the ${report.bareRuns.length} ceiling runs, ${bareRps.toFixed(0)} req/s)`, "");

  const policy = report.accuracy[0]?.policy;
  lines.push(`Accuracy: one client, capacity ${policy?.capacity}, ${policy?.rate}/s, offered ${report.accuracy[0]?.offeredRps ?? "?"} req/s over 3 streams for ${profile.accuracyS} s`);
  lines.push(
    ...columns([
      ["limiter", "spread", "elapsed s", "allowed", "max", "over", "429", "other", "allowed per stream"],
      ...report.accuracy.map((a) => [
        labels[a.limiter] ?? a.limiter,
        a.spread ?? (a.processes === a.instances ? `${a.processes} processes` : `${a.instances} streams → 1 process*`),
        a.elapsedS.toFixed(2),
        String(a.allowed),
        String(a.theoreticalMax),
        String(a.overAdmission),
        String(a.refused),
        String(a.other),
        a.allowedByStream.join(" / "),
      ]),
    ]),
  );
  const single = report.accuracy.find((a) => a.processes !== a.instances);
  if (single) lines.push(`* ${single.note}`);
  lines.push("(max = capacity + rate × elapsed, rounded down; over = allowed beyond it)", "");

  const hot = report.hotKey;
  if (hot) {
    lines.push(
      `Hot key: one client (capacity ${hot.policy.capacity}, ${hot.policy.rate}/s: above the load) over ${hot.isolates} gateway isolates sharing one Durable Object namespace`,
      ...columns([
        ["req/s", "÷bare", "p50 ms", "p99 ms", "requests", "allowed", "max", "over", "other", "object calls", "calls/req", "allowed per isolate"],
        [
          hot.rps.toFixed(0),
          (hot.rps / bareRps).toFixed(2),
          hot.p50Ms.toFixed(1),
          hot.p99Ms.toFixed(1),
          String(hot.requests),
          String(hot.allowed),
          String(hot.theoreticalMax),
          String(hot.overAdmission),
          String(hot.other),
          String(hot.objectCalls),
          hot.callsPerRequest.toFixed(3),
          hot.allowedByIsolate.join(" / "),
        ],
      ]),
      "",
    );
  }

  lines.push("Same-run ratios, sluice (Upstash) ÷ peer:");
  for (const [name, values] of Object.entries(report.ratios)) {
    if (!name.includes("÷ ")) continue;
    if (!("rps" in values)) continue;
    const f = (/** @type {number | null | undefined} */ v) => (v == null ? "n/a" : `${v.toFixed(2)}×`);
    lines.push(`  ${name}: req/s ${f(values.rps)}, p50 ${f(values.p50)}, p99 ${f(values.p99)}, redis cmd/decision ${f(values.redisCommandsPerDecision)}`);
  }
  if (report.extras) lines.push(...formatExtras(report.extras, labels));
  if (report.hotClients && report.scale) lines.push(...formatIssue19({ hotKeyUpstash: report.hotKeyUpstash, hotClients: report.hotClients, scale: report.scale, bareRps }, labels));
  // Issue 18: the windows scenario's table (bench/windows.mjs).
  if (report.windows) lines.push(...formatWindows(report.windows));
  lines.push("", "Targets:");
  for (const t of report.targets) lines.push(`  ${t.status.padEnd(4)}  ${t.target}: ${t.figure}`);
  return lines.join("\n");
}

/**
 * Left-aligned text columns.
 * @param {string[][]} rows
 */
function columns(rows) {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length))) ?? [];
  return rows.map((r) =>
    r
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd(),
  );
}

/**
 * @typedef {object} ExtrasInput
 * @property {import("./scenarios.mjs").FixedRateRow[]} fixedRate  bare runs among them
 * @property {ThroughputRow[]} rows
 * @property {AccuracyResult[]} accuracy
 * @property {Record<string, "none" | "durable-object" | "redis" | "rate-limiting-binding">} stores  limiter id → store
 * @property {number} bareRps
 */

/**
 * @typedef {object} LimiterExtras
 * @property {string} limiter
 * @property {number | null} p50Ms            at the fixed rate
 * @property {number | null} p99Ms
 * @property {number | null} addedP50Ms       minus the bare proxy's (mean of its fixed-rate runs)
 * @property {number | null} addedP99Ms
 * @property {number | null} senderLateMs     the load generator's worst lag behind its schedule (counted in the latency)
 * @property {import("./prices.mjs").DecisionCost | null} costAllowed   from the allowed throughput run
 * @property {import("./prices.mjs").DecisionCost | null} costRefused   from the flood run
 */

/**
 * The issue's additions: added latency at a fixed moderate rate against the bare proxy, cost per
 * million decisions from the run's measured operations and published prices, and the Rate
 * Limiting binding peer's throughput and accuracy; with their targets.
 * @param {ExtrasInput} input
 */
export function compareExtras({ fixedRate, rows, accuracy, stores, bareRps }) {
  const bare = fixedRate.filter((r) => r.limiter === "bare");
  const mean = (/** @type {number[]} */ v) => (v.length === 0 ? null : v.reduce((a, b) => a + b, 0) / v.length);
  const bareP50 = mean(bare.map((r) => r.p50Ms));
  const bareP99 = mean(bare.map((r) => r.p99Ms));
  // Neither the bare proxy nor the flood's answers alone (`answer-*`, bench/workers/answer.ts) is a limiter with costs.
  const ids = [...new Set([...fixedRate.map((r) => r.limiter), ...rows.map((r) => r.limiter)])].filter((id) => id !== "bare" && !id.startsWith("answer-"));
  /** @type {LimiterExtras[]} */
  const limiters = ids.map((id) => {
    const fixed = fixedRate.find((r) => r.limiter === id);
    const row = (/** @type {string} */ scenario) => rows.find((r) => r.limiter === id && r.scenario === scenario);
    const store = stores[id] ?? "none";
    const allowedRow = row("allowed");
    const floodRow = row("flood");
    return {
      limiter: id,
      p50Ms: fixed?.p50Ms ?? null,
      p99Ms: fixed?.p99Ms ?? null,
      addedP50Ms: fixed && bareP50 !== null ? fixed.p50Ms - bareP50 : null,
      addedP99Ms: fixed && bareP99 !== null ? fixed.p99Ms - bareP99 : null,
      senderLateMs: fixed?.maxLateMs ?? null,
      costAllowed: allowedRow ? costPerMillion(store, allowedRow) : null,
      costRefused: floodRow ? costPerMillion(store, floodRow) : null,
    };
  });

  const bindingAccuracy = accuracy.find((a) => a.limiter === "rl-binding");
  const own = bindingAccuracy ? bindingPolicy(bindingAccuracy.policy) : null;
  // Its windows are aligned to the clock, not to the run: a run of e seconds touches at most ⌈e / period⌉ + 1 of them.
  const ownMax = own && bindingAccuracy ? own.limit * (Math.ceil(bindingAccuracy.elapsedS / own.period) + 1) : null;
  const bindingPeer = {
    allowedRps: rows.find((r) => r.limiter === "rl-binding" && r.scenario === "allowed")?.rps ?? null,
    floodRps: rows.find((r) => r.limiter === "rl-binding" && r.scenario === "flood")?.rps ?? null,
    accuracy: bindingAccuracy
      ? {
          allowed: bindingAccuracy.allowed,
          theoreticalMax: bindingAccuracy.theoreticalMax,
          overAdmission: bindingAccuracy.overAdmission,
          allowedOfMax: bindingAccuracy.allowed / bindingAccuracy.theoreticalMax,
          ownPolicy: own,
          ownMaxAtMost: ownMax,
          overOwnMax: ownMax === null ? null : Math.max(0, bindingAccuracy.allowed - ownMax),
        }
      : null,
  };

  // Rows written per allowed decision: derived for the deployed bundle, counted by the wrapper.
  const countedRow = rows.find((r) => r.limiter === "sluice-do-counted" && r.scenario === "allowed");
  const counted = countedRow?.storageOps;
  const rowsWrittenCheck =
    countedRow && counted && countedRow.allowed > 0
      ? {
          countedPerAllowed: ((counted.put ?? 0) + (counted.delete ?? 0) + (counted.setAlarm ?? 0) + (counted.deleteAll ?? 0)) / countedRow.allowed,
          // The deployed bundle's own row: at most one write per object call.
          derivedPerAllowed: rows.find((r) => r.limiter === "sluice-do" && r.scenario === "allowed")?.backendCallsPerRequest ?? null,
          storageOps: counted,
          allowed: countedRow.allowed,
        }
      : null;

  /** @type {TargetResult[]} */
  const targets = [];
  const bareRuns = bare.map((r) => ({ p50Ms: r.p50Ms, p99Ms: r.p99Ms, senderLateMs: r.maxLateMs }));
  return { bareFixedRate: { p50Ms: bareP50, p99Ms: bareP99, rps: fixedRate[0]?.rps ?? null, runs: bareRuns }, limiters, bindingPeer, rowsWrittenCheck, bareRps, targets };
}

/**
 * The lines `compareExtras` adds to the printed report.
 * @param {ReturnType<typeof compareExtras>} extras
 * @param {Record<string, string>} labels
 * @returns {string[]}
 */
export function formatExtras(extras, labels) {
  const ms = (/** @type {number | null} */ v, signed = false) => (v === null ? "—" : `${signed && v >= 0 ? "+" : ""}${v.toFixed(2)}`);
  // Cents for most; the refused path's fractions of a cent keep one significant digit.
  const usd = (/** @type {number | undefined} */ v) => (v === undefined ? "—" : v === 0 || v >= 0.01 ? `$${v.toFixed(2)}` : `$${v.toPrecision(1)}`);
  const range = (/** @type {import("./prices.mjs").DecisionCost | null} */ c) =>
    c === null ? "—" : c.storeUsdPerMillionHigh > c.storeUsdPerMillion + 1e-9 ? `${usd(c.storeUsdPerMillion)}–${usd(c.storeUsdPerMillionHigh)}` : usd(c.storeUsdPerMillion);
  const { bareFixedRate: bare } = extras;
  const lines = [
    "",
    `Added latency at a fixed ${bare.rps} req/s (evenly spaced, all allowed), against the bare proxy's p50 ${ms(bare.p50Ms)} ms / p99 ${ms(bare.p99Ms)} ms in the same run`,
    `(${bare.runs.length > 2 ? "each limiter's p50 and p99 the medians of its runs, interleaved with the bare proxy's; " : ""}the bare proxy's mean over its runs: p50 ${bare.runs.map((r) => ms(r.p50Ms)).join(" / ")} ms, p99 ${bare.runs.map((r) => ms(r.p99Ms)).join(" / ")} ms, sender late ≤ ${bare.runs.map((r) => ms(r.senderLateMs)).join(" / ")} ms);`,
    `cost per million decisions from the allowed and flood runs' operations at published prices (${PRICES_READ_ON}; store only, + the Workers request $${(PRICES.workersRequest.usd * 1e6).toFixed(2)} in the last column)`,
  ];
  lines.push(
    ...columns([
      ["limiter", "p50 ms", "p99 ms", "+p50 ms", "+p99 ms", "late ms", "$/M allowed", "$/M refused", "ops per allowed decision", "$/M allowed + Workers"],
      ...extras.limiters.map((l) => [
        labels[l.limiter] ?? l.limiter,
        ms(l.p50Ms),
        ms(l.p99Ms),
        ms(l.addedP50Ms, true),
        ms(l.addedP99Ms, true),
        ms(l.senderLateMs),
        range(l.costAllowed),
        range(l.costRefused),
        l.costAllowed === null
          ? "—"
          : Object.entries(l.costAllowed.operationsPerDecision)
              .map(([k, v]) => `${k} ${v.toFixed(2)}`)
              .join(", ") || "none",
        usd(l.costAllowed?.totalUsdPerMillion),
      ]),
    ]),
    "(late ms: how far the load generator fell behind its schedule at worst; that lag is in the latency, so where it is more than a few ms the machine was busy and the p99 says more about it than about the limiter)",
    "($a–$b: Upstash's pages do not say how commands inside a Lua script are billed: a = the commands sent over REST, b = every command Redis ran)",
    extras.rowsWrittenCheck
      ? `Durable Object rows written per allowed decision: derived ≤ ${(extras.rowsWrittenCheck.derivedPerAllowed ?? NaN).toFixed(3)} (at most one write per object call); counted by the storage wrapper ${extras.rowsWrittenCheck.countedPerAllowed.toFixed(3)} ` +
          `(${Object.entries(extras.rowsWrittenCheck.storageOps)
            .map(([k, v]) => `${k} ${v}`)
            .join(", ")} for ${extras.rowsWrittenCheck.allowed} allowed)`
      : "Durable Object rows written per allowed decision: derived 1.00 (one put per allowance); not counted in this run",
    `Left out of the cost: ${LEFT_OUT.map((s) => s.split(" (")[0]).join("; ")}.`,
  );
  const b = extras.bindingPeer;
  const f = (/** @type {number | null} */ v) => (v === null ? "n/a" : `${v.toFixed(0)} req/s (${(v / extras.bareRps).toFixed(2)}× bare)`);
  lines.push(
    "",
    `Workers Rate Limiting binding, as Miniflare runs it: allowed ${f(b.allowedRps)}, flood ${f(b.floodRps)}; accuracy ` +
      (b.accuracy
        ? `${b.accuracy.allowed} allowed against the bucket policy's maximum of ${b.accuracy.theoreticalMax} (${(b.accuracy.allowedOfMax * 100).toFixed(0)} %, over by ${b.accuracy.overAdmission}); ` +
          `its own policy (${b.accuracy.ownPolicy?.limit} per ${b.accuracy.ownPolicy?.period} s window) allows at most ${b.accuracy.ownMaxAtMost}: over that by ${b.accuracy.overOwnMax}`
        : "not run") +
      ".",
    "  Its only policy is a fixed window of 10 or 60 s: capacity 50 at 20/s becomes 200 per 10 s (same rate, 4× the burst), capacity 10 at 1/s 10 per 10 s.",
    "  Miniflare counts in one local object, exactly, and its three accuracy streams hit one process; Cloudflare documents the binding as per",
    "  location, permissive and eventually consistent (counters cached on each machine, synced in the background): there it can admit more.",
    "  Its speed here is Miniflare's too (each limit() is a call to a local object), not Cloudflare's (a counter cached on the machine).",
  );
  return lines;
}

/**
 * How the throughput rows were measured, in words.
 * @param {import("./scenarios.mjs").Profile} profile
 * @returns {string}
 */
function throughputRuns({ measureS, rounds }) {
  if (rounds <= 1) return `~${measureS} s per run`;
  return `${rounds} runs of ~${(measureS / rounds).toFixed(1)} s per limiter, interleaved with the others' and the bare proxy's, the median run shown (the ceilings: every bare run, first, interleaved, last)`;
}
