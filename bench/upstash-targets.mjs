// @ts-check
/**
 * Issue 19's targets for sluice on Upstash against the current `@upstash/ratelimit` (and the
 * other Redis limiters), from one run: speed, added latency, commands per decision hot and cold,
 * the hot key over 3 isolates, the scale scenario and the cost per million allowed decisions;
 * and the report's lines for the measurements that only they use.
 */
import { formatScale } from "./scale.mjs";

/** @typedef {import("./report.mjs").TargetResult} TargetResult */
/** @typedef {import("./hot-key.mjs").HotKeyResult} HotKeyResult */
/** @typedef {import("./hot-client.mjs").HotClientResult} HotClientResult */
/** @typedef {Awaited<ReturnType<typeof import("./scale.mjs").measureScale>>} ScaleResult */

const PEER = "upstash-ratelimit";
const REDIS_LIMITERS = ["sluice-upstash", "upstash-ratelimit", "hono-rate-limiter"];

/**
 * @param {{ rows: import("./scenarios.mjs").ThroughputRow[], extras: ReturnType<typeof import("./report.mjs").compareExtras>,
 *   hotKeyUpstash: HotKeyResult, hotClients: HotClientResult[], scale: ScaleResult, labels: Record<string, string> }} measured
 * @returns {{ targets: TargetResult[] }}
 * @example
 * comparison.targets.push(...compareIssue19({ rows, extras, hotKeyUpstash, hotClients, scale, labels }).targets);
 */
export function compareIssue19({ rows, extras, hotKeyUpstash, hotClients, scale, labels }) {
  /** @type {TargetResult[]} */
  const targets = [];
  const check = (/** @type {string} */ target, /** @type {boolean | null} */ ok, /** @type {string} */ figure) => targets.push({ target, status: ok === null ? "N/A" : ok ? "PASS" : "MISS", figure });
  const peer = labels[PEER] ?? PEER;
  const row = (/** @type {string} */ id, /** @type {string} */ scenario) => rows.find((r) => r.limiter === id && r.scenario === scenario);

  for (const [scenario, atLeast] of /** @type {const} */ ([
    ["allowed", 1.2],
    ["flood", 1.0],
  ])) {
    const s = row("sluice-upstash", scenario)?.rps;
    const p = row(PEER, scenario)?.rps;
    const r = s === undefined || p === undefined || p === 0 ? null : s / p;
    // Under the flood, beside it: the two 429s served with no limiter at all, the floor of the ratio.
    const answerS = row("answer-sluice", scenario)?.rps;
    const answerP = row("answer-peer", scenario)?.rps;
    const floor =
      answerS === undefined || answerP === undefined || answerP === 0 ? "" : `; the answers alone, no limiter: ${answerS.toFixed(0)} vs ${answerP.toFixed(0)} (${(answerS / answerP).toFixed(2)}×)`;
    check(
      `sluice on Upstash req/s ≥ ${atLeast.toFixed(1)} × ${peer}'s (${scenario === "allowed" ? "allowed path" : "flood, default headers and problem body"})`,
      r === null ? null : r >= atLeast,
      r === null ? "not run" : `${s?.toFixed(0)} vs ${p?.toFixed(0)} (${r.toFixed(2)}×)${floor}`,
    );
  }

  const added = (/** @type {string} */ id) => extras.limiters.find((l) => l.limiter === id);
  const mine = added("sluice-upstash");
  const theirs = added(PEER);
  for (const q of /** @type {const} */ (["addedP50Ms", "addedP99Ms"])) {
    const a = mine?.[q] ?? null;
    const b = theirs?.[q] ?? null;
    const name = q === "addedP50Ms" ? "p50" : "p99";
    check(
      `added ${name} at ${extras.bareFixedRate.rps} req/s below ${peer}'s (sluice on Upstash)`,
      a === null || b === null ? null : a < b,
      a === null || b === null ? "not run" : `${sign(a)} ms vs ${sign(b)} ms`,
    );
  }

  const sluiceClient = hotClients.find((h) => h.limiter === "sluice-upstash");
  const perDecision = (/** @type {import("./hot-client.mjs").ClientCommands | undefined} */ c) =>
    c?.commandsPerDecision == null
      ? "not run"
      : `${c.commandsPerDecision.toFixed(3)} (${c.commands} commands, ${c.decisions} decisions; + ${c.registryReads} override-registry reads, not per decision)`;
  check(
    `Redis commands per allowed decision ≤ 1.0, one client at ${sluiceClient?.rps ?? "?"} req/s to one isolate (sluice on Upstash)`,
    sluiceClient?.hot.commandsPerDecision == null ? null : sluiceClient.hot.commandsPerDecision <= 1 + 1e-9,
    perDecision(sluiceClient?.hot),
  );
  check(
    "Redis commands per allowed decision ≤ 3, a new client per request (sluice on Upstash)",
    sluiceClient?.cold.commandsPerDecision == null ? null : sluiceClient.cold.commandsPerDecision <= 3 + 1e-9,
    perDecision(sluiceClient?.cold),
  );

  const hot = hotKeyUpstash;
  check(
    `Upstash hot key: script calls per request ≤ 0.2 (one client over ${hot.isolates} isolates, budget above the load)`,
    hot.scriptCallsPerRequest === null ? null : hot.scriptCallsPerRequest <= 0.2,
    `${hot.scriptCallsPerRequest?.toFixed(3) ?? "n/a"} (${hot.scriptCalls} script calls, ${hot.requests} requests; the gateways counted ${hot.objectCalls} backend calls)`,
  );
  check("Upstash hot key: no over-admission", hot.overAdmission === 0, `${hot.allowed} allowed, max ${hot.theoreticalMax}, over by ${hot.overAdmission}`);

  for (const r of scale.redis) {
    const name = labels[r.limiter] ?? r.limiter;
    check(
      `scale: every key expires, within the policy's longest TTL (${name})`,
      r.keysWithoutTtl === 0 && r.maxTtlS <= r.policyTtlS + 1,
      `${r.keys} keys for ${r.clients} clients, ${r.keysWithoutTtl} without a TTL, longest ${r.maxTtlS.toFixed(0)} s (policy ${r.policyTtlS.toFixed(0)} s); ${r.bytesPerClient.toFixed(0)} bytes per client`,
    );
    check(
      `scale: 0 keys left after the longest TTL (${name})`,
      r.expiry === null ? null : r.expiry.keysLeft === 0,
      r.expiry === null ? "not run" : `${r.expiry.keysLeft} left of ${r.expiry.clients} clients' keys, ${r.expiry.waitedS.toFixed(1)} s after (longest TTL ${r.expiry.maxTtlS.toFixed(1)} s)`,
    );
  }

  // Lowest cost per million allowed decisions among the Redis limiters, under both ways of billing a script.
  const costs = REDIS_LIMITERS.map((id) => ({ id, cost: added(id)?.costAllowed ?? null })).filter((c) => c.cost !== null);
  const own = costs.find((c) => c.id === "sluice-upstash")?.cost;
  for (const [bound, field] of /** @type {const} */ ([
    ["commands sent over REST billed", "storeUsdPerMillion"],
    ["every command a script runs billed", "storeUsdPerMillionHigh"],
  ])) {
    const others = costs.filter((c) => c.id !== "sluice-upstash");
    // Strictly: a tie is not the lowest.
    const lowest = own != null && others.every((c) => (own[field] ?? Infinity) < (c.cost?.[field] ?? Infinity) - 1e-9);
    check(
      `cost per million allowed decisions on Upstash the lowest of the Redis limiters, ties not counted (${bound})`,
      own == null ? null : lowest,
      costs.map((c) => `${labels[c.id] ?? c.id} $${(c.cost?.[field] ?? Number.NaN).toFixed(2)}`).join(", "),
    );
  }
  return { targets };
}

/** @param {number} v */
function sign(v) {
  return `${v >= 0 ? "+" : ""}${v.toFixed(2)}`;
}

/**
 * The report's lines for the Upstash hot key, hot and cold clients and the scale scenario.
 * @param {{ hotKeyUpstash?: HotKeyResult, hotClients: HotClientResult[], scale: ScaleResult, bareRps: number }} measured
 * @param {Record<string, string>} labels
 * @returns {string[]}
 */
export function formatIssue19({ hotKeyUpstash: hot, hotClients, scale, bareRps }, labels) {
  const lines = [];
  if (hot) {
    lines.push(
      "",
      `Hot key on Upstash: one client (capacity ${hot.policy.capacity}, ${hot.policy.rate}/s: above the load) over ${hot.isolates} gateway isolates sharing the bridge: ` +
        `${hot.rps.toFixed(0)} req/s (${(hot.rps / bareRps).toFixed(2)}× bare), p50 ${hot.p50Ms.toFixed(1)} ms, p99 ${hot.p99Ms.toFixed(1)} ms, ${hot.requests} requests, ` +
        `${hot.scriptCalls} script calls (${hot.scriptCallsPerRequest?.toFixed(3)} per request), ${hot.allowed} allowed of max ${hot.theoreticalMax}, over by ${hot.overAdmission}, other ${hot.other}`,
    );
  }
  lines.push("", "Redis commands per decision, one client to one isolate at a steady rate (hot, after a warm-up) and a new client per request (cold), leases given back counted:");
  for (const h of hotClients) {
    const f = (/** @type {import("./hot-client.mjs").ClientCommands} */ c) =>
      `${c.commandsPerDecision?.toFixed(3) ?? "n/a"} commands, ${c.scriptCallsPerDecision?.toFixed(3) ?? "n/a"} script calls per decision (${c.decisions} decisions, ${c.other} other; ${Object.entries(
        c.byCommand,
      )
        .map(([k, v]) => `${k} ${v}`)
        .join(", ")})`;
    lines.push(`  ${labels[h.limiter] ?? h.limiter} at ${h.rps} req/s: hot ${f(h.hot)}; cold ${f(h.cold)}`);
  }
  lines.push(...formatScale(scale, labels));
  return lines;
}
