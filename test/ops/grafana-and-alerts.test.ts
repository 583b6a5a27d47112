import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startGatewayProcess } from "../support/processes";
import { freePort } from "../support/ports";
import { sleep } from "../support/helpers";

/**
 * The operators' files in ops/ against the real tools: the alerting rules through `promtool`
 * (checked, and unit-tested with ops/prometheus/sluice-alerts.test.yml), then a real Prometheus
 * that loads those rules and scrapes two real gateways, a healthy one and one whose bucket store
 * (Upstash, at a loopback port nobody listens on) fails. After traffic, every PromQL query of the
 * Grafana dashboard must parse and return data, and every rule must evaluate without error, with
 * the store and breaker alerts active for the failing gateway only.
 */
const root = new URL("../..", import.meta.url).pathname;
const RULES = join(root, "ops/prometheus/sluice-alerts.yml");
const RULE_TESTS = join(root, "ops/prometheus/sluice-alerts.test.yml");
const DASHBOARD = join(root, "ops/grafana/sluice-dashboard.json");
const TOKEN = "grafana-scrape-token-0123";
const run = promisify(execFile);

describe("promtool", () => {
  it("checks the alerting rules", async () => {
    const { code, output } = await promtool("check", "rules", RULES);
    expect(code, output).toBe(0);
    expect(output).toMatch(/SUCCESS: \d+ rules found/);
  });

  it("passes the rules' unit tests (alerts fire, and stay quiet, as sluice-alerts.test.yml says)", async () => {
    const { code, output } = await promtool("test", "rules", RULE_TESTS);
    expect(code, output).toBe(0);
  });
});

/** Runs Debian's `promtool` (it comes with the `prometheus` package). */
async function promtool(...args: string[]): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await run("promtool", args);
    return { code: 0, output: `${stdout}${stderr}` };
  } catch (error) {
    const failed = error as { code?: number | string; stdout?: string; stderr?: string; message: string };
    return { code: typeof failed.code === "number" ? failed.code : -1, output: `${failed.stdout ?? ""}${failed.stderr ?? failed.message}` };
  }
}

type Panel = { type: string; title: string; id: number; gridPos: { x: number; w: number }; datasource?: { uid: string }; targets?: { expr: string; refId: string; datasource: { uid: string } }[] };
type Dashboard = { schemaVersion: number; uid: string; panels: Panel[]; templating: { list: { name: string; type: string; query: unknown; definition?: string }[] } };

describe("the Grafana dashboard's JSON", () => {
  it("is importable as is: a datasource variable, the rule variable from label_values, panels on that datasource", async () => {
    const dashboard = JSON.parse(await readFile(DASHBOARD, "utf8")) as Dashboard;
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(39);
    expect(dashboard.uid).toMatch(/^[a-zA-Z0-9_-]{1,40}$/);
    const variables = Object.fromEntries(dashboard.templating.list.map((v) => [v.name, v]));
    expect(variables.DS_PROMETHEUS).toMatchObject({ type: "datasource", query: "prometheus" });
    expect(variables.rule).toMatchObject({ type: "query", definition: expect.stringMatching(/^label_values\(sluice_rule_decisions_total.*, rule\)$/) });
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const panel of dashboard.panels) {
      expect(panel.gridPos.x + panel.gridPos.w, panel.title).toBeLessThanOrEqual(24);
      if (panel.type === "row") continue;
      // Grafana's own variable syntax, not a template literal.
      const datasource = ["$", "{DS_PROMETHEUS}"].join("");
      expect(panel.datasource?.uid, panel.title).toBe(datasource);
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
      for (const target of panel.targets ?? []) expect(target.datasource.uid, panel.title).toBe(datasource);
    }
  });
});

describe("a real Prometheus with the rules, scraping a healthy and a failing gateway", () => {
  let healthy: Awaited<ReturnType<typeof startGatewayProcess>> | undefined;
  let failing: Awaited<ReturnType<typeof startGatewayProcess>> | undefined;
  let prometheus: ChildProcess | undefined;
  let prometheusUrl: string;

  beforeAll(async () => {
    const deadStore = await freePort(); // nobody listens there: every store call fails
    [healthy, failing] = await Promise.all([
      startGatewayProcess(inject("gatewayBundle"), {
        LIMITER_METRICS_TOKEN: TOKEN,
        LIMITER_METRICS_FLUSH_MS: "50",
        LIMITER_RULES: JSON.stringify([
          { name: "api", match: { methods: ["GET"] }, key: "header:x-api-key", capacity: 5, rate: "1/1h" },
          // PUTs queue (no other enforced rule covers them: a request two rules cover is never queued).
          { name: "queued", match: { methods: ["PUT"] }, key: "ip", algorithm: "sliding-window", limit: 1, window: "1s", queue: { maxWait: "2s" } },
          { name: "login", match: { path: "/login" }, key: "ip", capacity: 2, rate: "1/1h" },
          { name: "candidate", key: "ip", capacity: 2, rate: "1/1h", mode: "shadow" },
        ]),
      }),
      startGatewayProcess(inject("gatewayBundle"), {
        LIMITER_METRICS_TOKEN: TOKEN,
        LIMITER_METRICS_FLUSH_MS: "50",
        LIMITER_BACKEND: "upstash",
        UPSTASH_REDIS_REST_URL: `http://127.0.0.1:${deadStore}`,
        UPSTASH_REDIS_REST_TOKEN: "no-store-here",
        LIMITER_TIMEOUT_MS: "200",
        LIMITER_BREAKER_THRESHOLD: "2",
        LIMITER_BREAKER_COOLDOWN_MS: "100",
      }),
    ]);
    const dir = await mkdtemp(join(tmpdir(), "sluice-ops-"));
    const port = await freePort();
    await writeFile(
      join(dir, "prometheus.yml"),
      [
        "global: { scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s }",
        `rule_files: ["${RULES}"]`,
        "scrape_configs:",
        "  - job_name: sluice",
        "    metrics_path: /__limiter/metrics",
        `    authorization: { type: Bearer, credentials: ${TOKEN} }`,
        `    static_configs: [{ targets: ["${new URL(healthy.gateway.url).host}", "${new URL(failing.gateway.url).host}"] }]`,
      ].join("\n"),
    );
    prometheus = spawn("prometheus", [`--config.file=${join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${join(dir, "data")}`, `--web.listen-address=127.0.0.1:${port}`], {
      stdio: "ignore",
    });
    prometheusUrl = `http://127.0.0.1:${port}`;
    // Traffic only once both gateways have been scraped: rates then see the counters rise.
    const scraped = await until(async () => (await query(prometheusUrl, 'up{job="sluice"} == 1')).length === 2);
    if (!scraped) throw new Error(`Prometheus did not scrape both gateways: ${JSON.stringify(await (await fetch(`${prometheusUrl}/api/v1/targets`)).json())}`);
  }, 90_000);

  afterAll(async () => {
    prometheus?.kill("SIGTERM");
    await Promise.all([healthy?.stop(), failing?.stop()]);
  });

  it("answers every panel's query with data after allowed and refused traffic, and evaluates every rule", async () => {
    const send = async (base: string, path: string, headers: Record<string, string>, method = "GET") => {
      const response = await fetch(`${base}${path}`, { headers, method });
      await response.arrayBuffer();
      return response.status;
    };
    const statuses: number[] = [];
    // Three waves a few scrapes apart, fresh clients each time: every counter rises between scrapes.
    for (let wave = 0; wave < 3; wave++) {
      const a = healthy!.gateway.url;
      const headers = { "x-api-key": `key-${wave}`, "cf-connecting-ip": `203.0.113.${wave + 1}` };
      for (let i = 0; i < 7; i++) statuses.push(await send(a, "/echo", headers)); // api: 5 allowed, 2 refused
      for (let i = 0; i < 3; i++) statuses.push(await send(a, "/login", { ...headers, "x-api-key": `login-${wave}` })); // login: 2 allowed, 1 refused
      statuses.push(await send(a, "/status/503", { ...headers, "x-api-key": `origin-${wave}` })); // a 5xx from the origin
      statuses.push(await send(a, "/__limiter/status?path=/echo", headers)); // a peek
      for (let i = 0; i < 2; i++) statuses.push(await send(a, "/echo", { "cf-connecting-ip": `192.0.2.${wave + 1}` }, "PUT")); // the second queues ~1 s
      for (let i = 0; i < 6; i++) await send(failing!.gateway.url, "/echo", { "cf-connecting-ip": `198.51.100.${wave + 1}` }); // store errors, breaker
      await sleep(2_500);
    }
    expect(statuses).toContain(200);
    expect(statuses).toContain(429);

    const dashboard = JSON.parse(await readFile(DASHBOARD, "utf8")) as Dashboard;
    const queries = dashboard.panels.flatMap((panel) => (panel.targets ?? []).map((target) => ({ name: `${panel.title} [${target.refId}]`, expr: concrete(target.expr) })));
    expect(queries.length).toBeGreaterThan(20);
    const answers = new Map<string, { error?: string; values: string[] }>();
    await until(async () => {
      for (const { name, expr } of queries) answers.set(name, await tryQuery(prometheusUrl, expr));
      return [...answers.values()].every((a) => a.error === undefined && a.values.some((v) => Number.isFinite(Number(v))));
    });
    for (const { name, expr } of queries) {
      const answer = answers.get(name)!;
      expect(answer.error, `${name}: ${expr}`).toBeUndefined();
      expect(answer.values.length, `${name} has no data: ${expr}`).toBeGreaterThan(0);
      expect(
        answer.values.some((v) => Number.isFinite(Number(v))),
        `${name} is only NaN: ${expr}`,
      ).toBe(true);
    }

    // The template variables' label_values, as Grafana asks for them.
    const rules = (await (await fetch(`${prometheusUrl}/api/v1/label/rule/values?match[]=${encodeURIComponent('sluice_rule_decisions_total{instance=~".+"}')}`)).json()) as { data: string[] };
    expect(rules.data).toEqual(expect.arrayContaining(["api", "login", "candidate"]));

    // Every recording and alerting rule has been evaluated, without error.
    await until(async () => (await ruleHealth(prometheusUrl)).every((r) => r.evaluated));
    const health = await ruleHealth(prometheusUrl);
    expect(health.length).toBeGreaterThanOrEqual(12);
    for (const rule of health) expect(rule).toEqual({ name: rule.name, health: "ok", lastError: "", evaluated: true });

    // The failing gateway's store and breaker alerts are active (pending: their `for` has not
    // passed); the healthy gateway has none of them.
    const failingInstance = new URL(failing!.gateway.url).host;
    const storeAlerts = ["SluiceBreakerOpened", "SluiceStoreErrors", "SluiceStoreDown", "SluiceBreakerHeldOpen"];
    await until(async () => {
      const active = await activeAlerts(prometheusUrl);
      return storeAlerts.every((name) => active.some((a) => a.name === name && a.instance === failingInstance));
    });
    const active = await activeAlerts(prometheusUrl);
    for (const name of storeAlerts) expect(active.filter((a) => a.name === name).map((a) => a.instance)).toEqual([failingInstance]);
    expect(active.filter((a) => a.name.startsWith("SluiceMetrics"))).toEqual([]);
  }, 90_000);
});

/** A panel's PromQL as Grafana would send it with "All" selected: variables filled in. */
function concrete(expr: string): string {
  const filled = expr.replaceAll("$__rate_interval", "1m").replaceAll("$__range", "5m").replaceAll("$instance", ".+").replaceAll("$rule", ".+");
  expect(filled, "a variable the test does not fill").not.toContain("$");
  return filled;
}

type QueryResult = { metric: Record<string, string>; value: [number, string] }[];

async function tryQuery(base: string, expr: string): Promise<{ error?: string; values: string[] }> {
  const response = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(expr)}`);
  const body = (await response.json()) as { status: string; error?: string; data?: { resultType: string; result: QueryResult } };
  if (body.status !== "success") return { error: body.error ?? `HTTP ${response.status}`, values: [] };
  return { values: (body.data?.result ?? []).map((r) => r.value[1]) };
}

async function query(base: string, expr: string): Promise<QueryResult> {
  const body = (await (await fetch(`${base}/api/v1/query?query=${encodeURIComponent(expr)}`)).json()) as { data: { result: QueryResult } };
  return body.data.result;
}

async function ruleHealth(base: string) {
  const body = (await (await fetch(`${base}/api/v1/rules`)).json()) as {
    data: { groups: { rules: { name: string; health: string; lastError?: string; lastEvaluation: string }[] }[] };
  };
  return body.data.groups.flatMap((g) => g.rules).map((r) => ({ name: r.name, health: r.health, lastError: r.lastError ?? "", evaluated: !r.lastEvaluation.startsWith("0001-") }));
}

async function activeAlerts(base: string) {
  const body = (await (await fetch(`${base}/api/v1/alerts`)).json()) as { data: { alerts: { labels: Record<string, string>; state: string }[] } };
  return body.data.alerts.map((a) => ({ name: a.labels.alertname ?? "", instance: a.labels.instance ?? "", state: a.state }));
}

/**
 * Polls `check` (errors count as "not yet": Prometheus may still be starting) for up to 40 s and
 * says whether it came true; the assertions after it say what is missing.
 */
async function until(check: () => Promise<boolean>): Promise<boolean> {
  const deadline = Date.now() + 40_000;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return true;
    await sleep(500);
  }
  return false;
}
