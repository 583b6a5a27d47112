import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startGatewayProcess } from "../support/processes";
import { freePort } from "../support/ports";
import { sleep } from "../support/helpers";

/**
 * A real Prometheus server (Debian's `prometheus`) scrapes a running gateway's metrics endpoint
 * with the bearer token; its query API must then hold exactly the decisions this test caused.
 */
const TOKEN = "prometheus-scrape-token-0123";
let stack: Awaited<ReturnType<typeof startGatewayProcess>> | undefined;
let gateway: Awaited<ReturnType<typeof startGatewayProcess>>["gateway"];
let prometheus: ChildProcess | undefined;
let prometheusUrl: string;

beforeAll(async () => {
  stack = await startGatewayProcess(inject("gatewayBundle"), {
    LIMITER_METRICS_TOKEN: TOKEN,
    LIMITER_METRICS_FLUSH_MS: "50",
    LIMITER_RULES: JSON.stringify([
      { name: "api", key: "header:x-api-key", capacity: 5, rate: "1/1h" },
      { name: "login", match: { path: "/login" }, key: "ip", capacity: 2, rate: "1/1h" },
    ]),
  });
  gateway = stack.gateway;
  const dir = await mkdtemp(join(tmpdir(), "sluice-prometheus-"));
  const port = await freePort();
  const target = new URL(gateway.url).host;
  await writeFile(
    join(dir, "prometheus.yml"),
    [
      "global: { scrape_interval: 1s, scrape_timeout: 1s }",
      "scrape_configs:",
      "  - job_name: sluice",
      "    metrics_path: /__limiter/metrics",
      `    authorization: { type: Bearer, credentials: ${TOKEN} }`,
      `    static_configs: [{ targets: ["${target}"] }]`,
    ].join("\n"),
  );
  prometheus = spawn("prometheus", [`--config.file=${join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${join(dir, "data")}`, `--web.listen-address=127.0.0.1:${port}`], {
    stdio: "ignore",
  });
  prometheusUrl = `http://127.0.0.1:${port}`;
}, 60_000);

afterAll(async () => {
  prometheus?.kill("SIGTERM");
  await stack?.stop();
});

describe("Prometheus scraping the gateway", () => {
  it("finds the totals equal to the requests sent, per rule and outcome", async () => {
    const send = async (path: string, headers: Record<string, string>) => {
      const response = await fetch(`${gateway.url}${path}`, { headers });
      await response.arrayBuffer();
      return response.status;
    };
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push(await send("/echo", { "x-api-key": "alice", "cf-connecting-ip": "203.0.113.1" }));
    for (let i = 0; i < 4; i++) statuses.push(await send("/login", { "x-api-key": "bob", "cf-connecting-ip": "203.0.113.2" }));
    // api: alice 5 allowed, 7 refused; bob 2 allowed. login: 2 allowed, then 2 refused, answered
    // by the deny cache (the second allowed emptied the bucket): a cached refusal counts for the
    // refusing rule only, so bob's api bucket sees just the 2 it was charged.
    expect(statuses.filter((s) => s === 200)).toHaveLength(7);

    const expected: Record<string, number> = {
      "api/allowed": 7,
      "api/refused": 7,
      "login/allowed": 2,
      "login/refused": 2,
    };
    const query = `sum by (rule, outcome) (sluice_rule_decisions_total{rule=~"api|login"})`;
    let seen: Record<string, number> = {};
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      try {
        const body = (await (await fetch(`${prometheusUrl}/api/v1/query?query=${encodeURIComponent(query)}`)).json()) as {
          data: { result: { metric: { rule: string; outcome: string }; value: [number, string] }[] };
        };
        seen = Object.fromEntries(body.data.result.map((r) => [`${r.metric.rule}/${r.metric.outcome}`, Number(r.value[1])]));
        if (JSON.stringify(sorted(seen)) === JSON.stringify(sorted(expected))) break;
      } catch {
        // Prometheus is still starting.
      }
      await sleep(500);
    }
    if (JSON.stringify(sorted(seen)) !== JSON.stringify(sorted(expected))) {
      // Say why: the scrape target's health as Prometheus saw it.
      console.log(JSON.stringify(await (await fetch(`${prometheusUrl}/api/v1/targets`)).json()));
    }
    expect(sorted(seen)).toEqual(sorted(expected));
    const requests = (await (await fetch(`${prometheusUrl}/api/v1/query?query=${encodeURIComponent("sum(sluice_requests_total)")}`)).json()) as {
      data: { result: { value: [number, string] }[] };
    };
    expect(Number(requests.data.result[0]?.value[1])).toBe(16);
  }, 45_000);
});

function sorted(record: Record<string, number>): [string, number][] {
  return Object.entries(record).sort(([a], [b]) => a.localeCompare(b));
}
