import { describe, expect, it } from "vitest";
import { gatewayWith, randomIp } from "../support/gateway";

const TOKEN = "metrics-token-0123456789";
const scrape = async (gateway: ReturnType<typeof gatewayWith>, token = TOKEN) => gateway("/__limiter/metrics", { headers: { authorization: `Bearer ${token}` } });

/** Every sample of a Prometheus text body: series → value. */
function samples(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    values.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return values;
}

describe("metrics across isolates", () => {
  it("after N requests spread over three isolates, the totals add up to N, per rule and outcome", async () => {
    const rule = `m${crypto.randomUUID().slice(0, 8)}`;
    const vars = { LIMITER_METRICS_TOKEN: TOKEN, LIMITER_RULES: JSON.stringify([{ name: rule, key: "header:x-client", capacity: 4, rate: "1/1h" }]) };
    // Three env objects: three gateways, each with its own counters, flushing to one metrics object.
    const isolates = [gatewayWith(vars), gatewayWith(vars), gatewayWith(vars)];
    const client = `c-${crypto.randomUUID()}`;
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) statuses.push((await isolates[i % 3]!("/echo", { headers: { "x-client": client } })).status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(4);

    const values = samples(await (await scrape(isolates[0]!)).text());
    expect(values.get(`sluice_rule_decisions_total{rule="${rule}",outcome="allowed"}`)).toBe(4);
    expect(values.get(`sluice_rule_decisions_total{rule="${rule}",outcome="refused"}`)).toBe(26);
    expect(values.get(`sluice_tokens_charged_total{rule="${rule}"}`)).toBe(4);
    // Each isolate asked the store until its deny cache knew the client was empty.
    const fromCache = values.get(`sluice_rule_decision_sources_total{rule="${rule}",source="deny_cache"}`) ?? 0;
    const fromStore = values.get(`sluice_rule_decision_sources_total{rule="${rule}",source="backend"}`) ?? 0;
    expect(fromCache + fromStore).toBe(30);
    expect(fromCache).toBeGreaterThanOrEqual(20);
    expect(values.get('sluice_backend_calls_total{result="ok"}')).toBeGreaterThan(0);
    expect(values.get('sluice_origin_responses_total{class="2xx"}')).toBeGreaterThanOrEqual(4);
    expect(values.get("sluice_decision_duration_seconds_count")).toBeGreaterThanOrEqual(30);
  });

  it("is a 404 without any token configured, and a 401 without the right one", async () => {
    expect((await gatewayWith()("/__limiter/metrics")).status).toBe(404);
    expect((await gatewayWith()("/__limiter/dashboard")).status).toBe(404);
    const gateway = gatewayWith({ LIMITER_METRICS_TOKEN: TOKEN });
    const refused = await scrape(gateway, "wrong-token-0123456789");
    expect(refused.status).toBe(401);
    expect(refused.headers.get("WWW-Authenticate")).toMatch(/^Bearer/);
    expect((await gateway("/__limiter/dashboard/data")).status).toBe(401);
    // The admin token opens them when it is the only one set.
    const admin = gatewayWith({ LIMITER_ADMIN_TOKEN: TOKEN });
    expect((await scrape(admin)).headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    expect((await gatewayWith({ LIMITER_METRICS_TOKEN: TOKEN, LIMITER_METRICS: "off" })("/__limiter/metrics")).status).toBe(404);
  });

  it("serves one self-contained dashboard page, and its data behind the token", async () => {
    const gateway = gatewayWith({ LIMITER_METRICS_TOKEN: TOKEN });
    const page = await gateway("/__limiter/dashboard");
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain(".uplot"); // the charting library's stylesheet, inline
    expect(html.length).toBeGreaterThan(30_000); // and its script
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+href=/); // nothing loaded from elsewhere
    const data = await gateway("/__limiter/dashboard/data", { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(await data.json()).toMatchObject({ slotMs: 10_000, totals: { requests: expect.any(Number) }, backend: { ok: true }, isolate: { breaker: "closed" } });
  });
});

describe("the dashboard page's headers", () => {
  // It shares an origin with proxied content: no framing, no Referer, no cached copy, nothing
  // loaded or posted elsewhere (issue 16, finding 14).
  it("forbid framing, referrers, caching and any other source", async () => {
    const page = await gatewayWith({ LIMITER_METRICS_TOKEN: TOKEN })("/__limiter/dashboard");
    expect(page.status).toBe(200);
    const csp = page.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("connect-src 'self'");
    expect(page.headers.get("x-frame-options")).toBe("DENY");
    expect(page.headers.get("referrer-policy")).toBe("no-referrer");
    expect(page.headers.get("cache-control")).toBe("no-store");
    // The script keeps the token in memory: nothing in the page touches web storage.
    expect(await page.text()).not.toMatch(/sessionStorage|localStorage/);
  });
});

describe("Analytics Engine", () => {
  it("gets one data point per decision, in the documented schema", async () => {
    const points: AnalyticsEngineDataPoint[] = [];
    const dataset: AnalyticsEngineDataset = { writeDataPoint: (point) => void points.push(point ?? {}) };
    const rule = `a${crypto.randomUUID().slice(0, 8)}`;
    const gateway = gatewayWith({ LIMITER_RULES: JSON.stringify([{ name: rule, capacity: 1, rate: "1/1h" }]) }, { LIMITER_ANALYTICS: dataset });
    const ip = randomIp();
    await gateway("/", { ip });
    await gateway("/", { ip });
    expect(points).toHaveLength(2);
    const [allowed, refused] = points;
    expect(allowed).toMatchObject({ blobs: ["allowed", rule, expect.stringMatching(/^ip:[0-9a-f]{64}$/), "ok", "backend"], doubles: [expect.any(Number), 1, 0] });
    expect(refused).toMatchObject({ blobs: ["refused", rule, allowed?.blobs?.[2], "none", "deny_cache"], doubles: [expect.any(Number), 0, expect.any(Number)] });
    expect(refused?.indexes).toEqual([allowed?.blobs?.[2]]);
  });
});
