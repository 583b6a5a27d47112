import { Hono, type Context, type MiddlewareHandler } from "hono";
import { quantile, type Histogram, type MetricsDelta } from "./metrics";
import { notFoundProblem, unauthorizedProblem } from "../core/problems";
import { bearerMatches } from "./bearer";
import { DASHBOARD_HEADERS, DASHBOARD_HTML } from "./dashboard-page";
import type { GatewayEnv } from "./gateway";
import type { MetricsSnapshot } from "./metrics-object";
import { PROMETHEUS_CONTENT_TYPE, prometheusText } from "./prometheus";

/**
 * `/__limiter/metrics` (Prometheus text) and `/__limiter/dashboard` (one self-contained page;
 * its data at `/__limiter/dashboard/data`). Both read the metrics object's totals, after this
 * isolate has flushed its own counts. The data needs `Authorization: Bearer` with
 * `LIMITER_METRICS_TOKEN` (or the admin token when that is the only one set); with neither, or
 * with metrics off, these routes are 404. The page itself holds no data: it asks for the token
 * and keeps it in its script's memory only (no storage, no URL), and may not be framed.
 *
 * @example
 * limiterRoutes.route("/", metricsRoutes);
 */
export const metricsRoutes = new Hono<GatewayEnv>();

// Off, these routes are 404 whatever the method: a 405 for another method would say they exist.
const whileAvailable: MiddlewareHandler<GatewayEnv> = async (c, next) => {
  const why = unavailable(c);
  if (why === undefined) return next();
  const path = new URL(c.req.url).pathname;
  return notFoundProblem(path, `${path} is not available: ${why}.`);
};
for (const path of ["/metrics", "/dashboard", "/dashboard/*"]) metricsRoutes.use(path, whileAvailable);

metricsRoutes.get("/metrics", async (c) => {
  const snapshot = await readSnapshot(c);
  if (snapshot instanceof Response) return snapshot;
  return new Response(prometheusText(snapshot), { headers: { "Content-Type": PROMETHEUS_CONTENT_TYPE, "Cache-Control": "no-store" } });
});

metricsRoutes.get("/dashboard", (c) => c.html(DASHBOARD_HTML, 200, DASHBOARD_HEADERS));

metricsRoutes.get("/dashboard/data", async (c) => {
  const snapshot = await readSnapshot(c);
  if (snapshot instanceof Response) return snapshot;
  const { limiter, health } = c.var.gateway;
  const backend = await health.read();
  return c.json({ ...dashboardData(snapshot), isolate: limiter.isolateState(), backend: { name: limiter.backend.name, ...backend } }, 200, { "Cache-Control": "no-store" });
});

/** Why the metrics routes do not exist here, if they do not. */
function unavailable(c: Context<GatewayEnv>): string | undefined {
  const { config, metricsStore } = c.var.gateway;
  if (config.metrics.kind === "off") return "metrics are off (LIMITER_METRICS=off)";
  if (config.metrics.token === undefined) return "no LIMITER_METRICS_TOKEN or LIMITER_ADMIN_TOKEN is set";
  if (metricsStore === undefined) return "the LIMITER_METRICS_STORE Durable Object binding is missing";
  return undefined;
}

async function readSnapshot(c: Context<GatewayEnv>): Promise<MetricsSnapshot | Response> {
  const { config, metrics, metricsStore } = c.var.gateway;
  const path = new URL(c.req.url).pathname;
  const why = unavailable(c);
  if (why !== undefined || config.metrics.kind === "off" || config.metrics.token === undefined || metricsStore === undefined) {
    return notFoundProblem(path, `${path} is not available: ${why}.`);
  }
  if (!(await bearerMatches(c.req.raw.headers, config.metrics.token))) return unauthorizedProblem("The metrics endpoint");
  await metrics.flush();
  return metricsStore().snapshot();
}

/** The dashboard shows this much history, one point per slot (slots without traffic are zeros). */
const DASHBOARD_WINDOW_MS = 15 * 60_000;

/** What the dashboard draws: per-slot series for the last 15 minutes, and the last hour's top refused clients. */
function dashboardData(snapshot: MetricsSnapshot) {
  const rules = new Set<string>();
  for (const slot of snapshot.history)
    for (const series of Object.keys(slot.delta.counters)) {
      const rule = /^sluice_rule_decisions_total\{rule="([^"]+)"/.exec(series)?.[1];
      if (rule !== undefined) rules.add(rule);
    }
  const nowMs = Date.now();
  const lastSlot = nowMs - (nowMs % snapshot.slotMs);
  const bySlot = new Map(snapshot.history.map((slot) => [slot.atMs, slot.delta]));
  const slots = Array.from({ length: DASHBOARD_WINDOW_MS / snapshot.slotMs }, (_, i) => lastSlot - (DASHBOARD_WINDOW_MS / snapshot.slotMs - 1 - i) * snapshot.slotMs);
  const deltas = slots.map((atMs) => bySlot.get(atMs));
  const count = (delta: MetricsDelta | undefined, rule: string, outcome: string) => delta?.counters[`sluice_rule_decisions_total{rule="${rule}",outcome="${outcome}"}`] ?? 0;
  const ms = (histogram: Histogram | undefined, q: number) => {
    const seconds = histogram === undefined ? undefined : quantile(histogram, q);
    return seconds === undefined ? null : Math.round(seconds * 100_000) / 100;
  };
  return {
    slotMs: snapshot.slotMs,
    times: slots.map((atMs) => atMs / 1000),
    rules: [...rules].sort().map((rule) => ({
      rule,
      allowed: deltas.map((delta) => count(delta, rule, "allowed")),
      refused: deltas.map((delta) => count(delta, rule, "refused")),
    })),
    latency: {
      decisionP50: deltas.map((delta) => ms(delta?.histograms.sluice_decision_duration_seconds, 0.5)),
      decisionP99: deltas.map((delta) => ms(delta?.histograms.sluice_decision_duration_seconds, 0.99)),
      originP50: deltas.map((delta) => ms(delta?.histograms.sluice_origin_duration_seconds, 0.5)),
      originP99: deltas.map((delta) => ms(delta?.histograms.sluice_origin_duration_seconds, 0.99)),
    },
    totals: {
      requests: Object.entries(snapshot.totals.counters)
        .filter(([series]) => series.startsWith("sluice_requests_total"))
        .reduce((sum, [, v]) => sum + v, 0),
      refused: snapshot.totals.counters['sluice_requests_total{outcome="refused"}'] ?? 0,
      breakerOpenings: snapshot.totals.counters.sluice_breaker_openings_total ?? 0,
    },
    clients: snapshot.clients,
    topRefused: snapshot.topRefused,
  };
}
