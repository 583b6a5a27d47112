// @ts-check
/**
 * Turns the measurements into the comparisons (ratios taken in the same run), the targets
 * (PASS / MISS / N/A, with the figure), and the text table printed on stdout.
 */

/** @typedef {import("./scenarios.mjs").ThroughputRow} ThroughputRow */
/** @typedef {import("./scenarios.mjs").AccuracyResult & { spread?: string }} AccuracyResult */
/** @typedef {import("./hot-key.mjs").HotKeyResult} HotKeyResult */
/** @typedef {{ target: string, status: "PASS" | "MISS" | "N/A", figure: string }} TargetResult */

/**
 * @param {{ bareRuns: ThroughputRow[], rows: ThroughputRow[], accuracy: AccuracyResult[], hotKey?: HotKeyResult }} measured
 */
export function compare({ bareRuns, rows, accuracy, hotKey }) {
  const bareRps = bareRuns.reduce((a, r) => a + r.rps, 0) / bareRuns.length;
  const row = (/** @type {string} */ limiter, /** @type {string} */ scenario) =>
    rows.find((r) => r.limiter === limiter && r.scenario === scenario);
  const ratio = (/** @type {number | null | undefined} */ a, /** @type {number | null | undefined} */ b) =>
    a == null || b == null || b === 0 ? null : a / b;

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
  const check = (/** @type {string} */ target, /** @type {boolean | null} */ ok, /** @type {string} */ figure) =>
    targets.push({ target, status: ok === null ? "N/A" : ok ? "PASS" : "MISS", figure });
  const x = (/** @type {number | null} */ v) => (v === null ? "n/a" : `${v.toFixed(2)}×`);

  const doAllowed = ratio(row("sluice-do", "allowed")?.rps, bareRps);
  check("sluice allowed path ≥ 0.6 × bare req/s (Durable Object)", doAllowed === null ? null : doAllowed >= 0.6, x(doAllowed));
  for (const [id, name] of [["sluice-do", "Durable Object"], ["sluice-upstash", "Upstash"]]) {
    const flood = row(id ?? "", "flood");
    const r = ratio(flood?.rps, bareRps);
    check(`refused path under a flood ≥ 0.9 × bare req/s (${name})`, r === null ? null : r >= 0.9, x(r));
    const calls = flood?.backendCallsPerRequest ?? null;
    check(
      `refused path backend calls per request ≤ 0.05 (${name})`,
      calls === null ? null : calls <= 0.05,
      calls === null ? "n/a" : calls.toFixed(3),
    );
  }
  // Metrics on (the default) against off, same run: the recording and flushing must cost no more than noise.
  for (const scenario of ["allowed", "flood"]) {
    const r = ratio(row("sluice-do", scenario)?.rps, row("sluice-do-no-metrics", scenario)?.rps);
    check(`metrics cost within noise: req/s with metrics ≥ 0.9 × without (Durable Object, ${scenario})`, r === null ? null : r >= 0.9, x(r));
  }
  for (const [id, name] of [["sluice-do", "Durable Object"], ["sluice-upstash", "Upstash"]]) {
    const a = accuracy.find((r) => r.limiter === id);
    check(
      `no over-admission in the accuracy scenario (${name})`,
      a ? a.overAdmission === 0 : null,
      a ? `${a.allowed} allowed, max ${a.theoreticalMax}, over by ${a.overAdmission}` : "not run",
    );
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
    const r = ratio(sluice?.rps, peer?.rps);
    check(
      `req/s at or above @upstash/ratelimit's (${scenario === "allowed" ? "allowed path" : "flood"})`,
      r === null ? null : r >= 1,
      `${sluice?.rps.toFixed(0) ?? "n/a"} vs ${peer?.rps.toFixed(0) ?? "n/a"} (${x(r)})`,
    );
  }
  return { bareRps, ratios, targets };
}

/**
 * The report printed on stdout.
 * @param {{ mode: string, machine: Record<string, unknown>, profile: import("./scenarios.mjs").Profile,
 *   bareRuns: ThroughputRow[], rows: ThroughputRow[], accuracy: AccuracyResult[], hotKey?: HotKeyResult, labels: Record<string, string>,
 *   bareRps: number, ratios: Record<string, Record<string, number | null>>, targets: TargetResult[], durationS: number }} report
 * @returns {string}
 */
export function formatReport(report) {
  const { machine: m, profile, labels, bareRps } = report;
  const lines = [
    `sluice benchmark (${report.mode}, ${report.durationS.toFixed(0)} s): ${m.cpuCount} × ${m.cpuModel}, ${m.memoryGiB} GiB, ${m.os}`,
    `node ${m.node}, redis ${m.redis}, workerd ${m.workerd} (miniflare ${m.miniflare}), autocannon ${m.autocannon}`,
    "",
    `Throughput: ${profile.connections} connections, ~${profile.measureS} s per run after a ${profile.warmupS} s warm-up; ` +
      `allowed = each connection its own client with a huge budget, flood = one client over capacity 10 at 1/s`,
  ];
  const header = ["scenario", "limiter", "req/s", "÷bare", "p50 ms", "p99 ms", "2xx", "429", "other", "redis cmd/dec", "calls/req"];
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
  ]);
  lines.push(...columns([header, ...table]), `(÷bare: against the mean of the ${report.bareRuns.length} ceiling runs, ${bareRps.toFixed(0)} req/s)`, "");

  const policy = report.accuracy[0]?.policy;
  lines.push(
    `Accuracy: one client, capacity ${policy?.capacity}, ${policy?.rate}/s, offered ${report.accuracy[0]?.offeredRps ?? "?"} req/s over 3 streams for ${profile.accuracyS} s`,
  );
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
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join("  ").trimEnd());
}
