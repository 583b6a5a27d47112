import { describe, expect, it } from "vitest";
import { Limiter, type DecisionEvent } from "../../src/core/limiter";
import { memoryBackend } from "../../src/core/memory-backend";
import { emptyDelta, emptyHistogram, estimateClients, mergeDelta, MetricsRecorder, quantile } from "../../src/gateway/metrics";
import { prometheusText } from "../../src/gateway/prometheus";

const request = (key: string) => ({ kind: "request", method: "GET", path: "/", headers: new Headers({ "x-api-key": key }) }) as const;

describe("MetricsRecorder", () => {
  it("counts each decision once per request and per rule, in Prometheus series", async () => {
    const recorder = new MetricsRecorder();
    const limiter = new Limiter({
      backend: memoryBackend(),
      rules: [
        { name: "api", key: "header:x-api-key", capacity: 2, rate: "1/1h" },
        { name: "dark", key: "header:x-api-key", capacity: 1, rate: "1/1h", mode: "shadow" },
      ],
      onDecision: (event) => recorder.recordDecision(event),
    });
    for (let i = 0; i < 5; i++) await limiter.check(request("k"));
    await limiter.check(request("k"), { mode: "peek" });
    const delta = recorder.take();
    expect(delta?.counters).toMatchObject({
      'sluice_requests_total{outcome="allowed"}': 2,
      'sluice_requests_total{outcome="refused"}': 3,
      'sluice_rule_decisions_total{rule="api",outcome="allowed"}': 2,
      'sluice_rule_decisions_total{rule="api",outcome="refused"}': 3,
      'sluice_rule_decisions_total{rule="dark",outcome="allowed"}': 1,
      'sluice_rule_decisions_total{rule="dark",outcome="shadow_refused"}': 1,
      'sluice_tokens_charged_total{rule="api"}': 2,
      sluice_peeks_total: 1,
    });
    expect(delta?.histograms.sluice_decision_duration_seconds?.count).toBe(5);
    expect(Object.values(delta?.refusedClients ?? {})).toEqual([3]);
    expect(recorder.take()).toBeUndefined(); // taken: nothing pending
  });

  it("counts queued requests and how long they waited", async () => {
    const recorder = new MetricsRecorder();
    const now = 1_000_000;
    const limiter = new Limiter({
      backend: memoryBackend({ clock: () => now }),
      rules: [{ name: "api", key: "header:x-api-key", capacity: 1, rate: "1/1s", queue: { maxWait: "2s" } }],
      clock: () => now,
      onDecision: (event) => recorder.recordDecision(event),
    });
    for (let i = 0; i < 3; i++) await limiter.check(request("q")); // now, then queued 1 s and 2 s
    const delta = recorder.take();
    expect(delta?.counters).toMatchObject({ sluice_queued_requests_total: 2 });
    expect(delta?.histograms.sluice_queue_wait_seconds).toMatchObject({ count: 2, sum: 3 });
    const text = prometheusText({ totals: delta ?? emptyDelta(), history: [], slotMs: 10_000, clients: { lastMinute: 1, lastHour: 1 }, topRefused: [] });
    expect(text).toContain("# TYPE sluice_queued_requests_total counter");
    expect(text).toContain("# TYPE sluice_queue_wait_seconds histogram");
  });

  it("gives a failed flush's counts back, to go with the next one", () => {
    const recorder = new MetricsRecorder();
    recorder.recordOrigin(200, 12);
    const delta = recorder.take();
    if (delta === undefined) throw new Error("nothing recorded");
    recorder.recordOrigin(503, 40);
    recorder.restore(delta);
    expect(recorder.take()?.counters).toEqual({ 'sluice_origin_responses_total{class="2xx"}': 1, 'sluice_origin_responses_total{class="5xx"}': 1 });
  });

  it("estimates distinct clients within a few percent, and merging sketches is a union", () => {
    const [a, b] = [new MetricsRecorder(), new MetricsRecorder()];
    const event = (clientKey: string): DecisionEvent => ({
      verdict: { kind: "unmatched" },
      mode: "charge",
      durationMs: 1,
      backendCall: undefined,
      breakerOpened: false,
      clients: [{ rule: "r", clientKey }],
    });
    for (let i = 0; i < 6_000; i++) a.recordDecision(event(`ip:${i}`));
    for (let i = 3_000; i < 10_000; i++) b.recordDecision(event(`ip:${i}`));
    const total = emptyDelta();
    for (const recorder of [a, b]) mergeDelta(total, recorder.take() ?? emptyDelta());
    const estimate = estimateClients(total.clients);
    expect(Math.abs(estimate - 10_000) / 10_000).toBeLessThan(0.08);
    expect(estimateClients(emptyDelta().clients)).toBe(0);
  });

  it("quantiles interpolate within buckets like histogram_quantile", () => {
    const histogram = emptyHistogram();
    histogram.buckets[3] = 100; // all in (0.005, 0.01]
    histogram.count = 100;
    expect(quantile(histogram, 0.5)).toBeCloseTo(0.0075, 6);
    expect(quantile(emptyHistogram(), 0.5)).toBeUndefined();
  });

  it("writes the Prometheus text exposition with HELP, TYPE, cumulative buckets and every counter", () => {
    const totals = emptyDelta();
    totals.counters['sluice_requests_total{outcome="allowed"}'] = 7;
    totals.histograms.sluice_origin_duration_seconds = { buckets: [1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], sum: 20.5, count: 4 };
    const text = prometheusText({ totals, history: [], slotMs: 10_000, clients: { lastMinute: 3, lastHour: 9 }, topRefused: [] });
    expect(text).toContain("# TYPE sluice_requests_total counter\n");
    expect(text).toContain('sluice_requests_total{outcome="allowed"} 7\n');
    expect(text).toContain("sluice_breaker_openings_total 0\n"); // present even before the first
    expect(text).toContain('sluice_origin_duration_seconds_bucket{le="0.0025"} 3\n');
    expect(text).toContain('sluice_origin_duration_seconds_bucket{le="+Inf"} 4\n');
    expect(text).toContain("sluice_clients_last_hour 9\n");
    expect(text.endsWith("\n")).toBe(true);
  });
});
