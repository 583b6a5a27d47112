import { LATENCY_BUCKETS_S, type Histogram } from "./metrics";
import type { MetricsSnapshot } from "./metrics-object";

/** What each metric means, for `# HELP` (the metrics table of docs/operations.md says the same). */
const HELP: Record<string, [type: "counter" | "gauge" | "histogram", help: string]> = {
  sluice_requests_total: ["counter", "Decisions on requests, by outcome (each request counted once)."],
  sluice_rule_decisions_total: ["counter", "Decisions per applying rule, by outcome."],
  sluice_rule_decision_sources_total: ["counter", "Decisions per rule answered from the isolate's deny cache or by the store."],
  sluice_tokens_charged_total: ["counter", "Tokens charged per rule."],
  sluice_peeks_total: ["counter", "Looks at buckets that charged nothing (status endpoint, admin peek)."],
  sluice_backend_calls_total: ["counter", "Calls to the bucket store, by result (ok, error, timeout, breaker_open, misconfigured)."],
  sluice_breaker_openings_total: ["counter", "Times an isolate's circuit breaker opened."],
  sluice_origin_responses_total: ["counter", "Responses from the origin, by status class."],
  sluice_decision_duration_seconds: ["histogram", "Time to decide a request, seconds."],
  sluice_backend_call_duration_seconds: ["histogram", "Time of one call to the bucket store, seconds."],
  sluice_origin_duration_seconds: ["histogram", "Time until the origin's response headers, seconds."],
  sluice_queued_requests_total: ["counter", "Requests a rule's queue admitted to go on after a wait."],
  sluice_queue_wait_seconds: ["histogram", "How long queued requests waited before going on, seconds."],
  sluice_clients_last_minute: ["gauge", "Distinct clients in the last minute (HyperLogLog estimate, about 3 % error)."],
  sluice_clients_last_hour: ["gauge", "Distinct clients in the last hour (HyperLogLog estimate, about 3 % error)."],
};

/**
 * The Prometheus text exposition (version 0.0.4) of the gateway's totals.
 *
 * @example
 * new Response(prometheusText(snapshot), { headers: { "Content-Type": PROMETHEUS_CONTENT_TYPE } });
 */
export function prometheusText(snapshot: MetricsSnapshot): string {
  const lines: string[] = [];
  const byName = new Map<string, [string, number][]>();
  for (const [series, value] of Object.entries(snapshot.totals.counters)) {
    const name = series.split("{")[0] ?? series;
    byName.set(name, [...(byName.get(name) ?? []), [series, value]]);
  }
  for (const [name, [type, help]] of Object.entries(HELP)) {
    const header = [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`];
    if (type === "counter") {
      lines.push(...header, ...(byName.get(name) ?? [[name, 0]]).sort(([a], [b]) => a.localeCompare(b)).map(([series, value]) => `${series} ${value}`));
    } else if (type === "histogram") {
      lines.push(...header, ...histogramLines(name, snapshot.totals.histograms[name]));
    } else {
      lines.push(...header, `${name} ${name === "sluice_clients_last_minute" ? snapshot.clients.lastMinute : snapshot.clients.lastHour}`);
    }
  }
  return `${lines.join("\n")}\n`;
}

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

function histogramLines(name: string, histogram: Histogram | undefined): string[] {
  const buckets = histogram?.buckets ?? [];
  let cumulative = 0;
  const lines = LATENCY_BUCKETS_S.map((bound, i) => {
    cumulative += buckets[i] ?? 0;
    return `${name}_bucket{le="${bound}"} ${cumulative}`;
  });
  return [...lines, `${name}_bucket{le="+Inf"} ${histogram?.count ?? 0}`, `${name}_sum ${histogram?.sum ?? 0}`, `${name}_count ${histogram?.count ?? 0}`];
}
