import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ADMIN_TOKEN, closedPort, startAdminGateways } from "../support/admin-gateways";
import { buildCli, runCli, type CliRun } from "./run-cli";

/**
 * The `sluice` command as users run it: built by the package's tsdown configuration, spawned as
 * a process, against real gateways (the deployable bundle on workerd) in the states an operator
 * meets: healthy, admin API off, store down, misconfigured, and not running at all.
 */
let cli: string;
let gateways: Awaited<ReturnType<typeof startAdminGateways<"healthy" | "adminOff" | "storeDown" | "misconfigured">>>;
let env: Record<string, string>;

beforeAll(async () => {
  [cli, gateways] = await Promise.all([buildCli(), startAdminGateways(inject("gatewayBundle"), ["healthy", "adminOff", "storeDown", "misconfigured"])]);
  env = { SLUICE_URL: gateways.healthy.url, SLUICE_ADMIN_TOKEN: ADMIN_TOKEN };
}, 60_000);

afterAll(async () => {
  await gateways?.stop();
});

const sluice = (args: readonly string[], extraEnv: Record<string, string> = {}) => runCli(cli, args, { ...env, ...extraEnv });
const key = () => `k-${crypto.randomUUID().slice(0, 8)}`;

/** A table's rows as records keyed by its (lower-case) headers, after checking every cell starts under its header. */
function parseTable(text: string): Record<string, string>[] {
  const [header, ...rows] = text.trimEnd().split("\n");
  const names = [...header!.matchAll(/\S+(?: \S+)*/g)].map((match) => ({ name: match[0].toLowerCase(), start: match.index }));
  return rows.map((row) => {
    const record: Record<string, string> = {};
    names.forEach(({ name, start }, i) => {
      const end = names[i + 1]?.start ?? row.length;
      // Aligned: the cell starts exactly under its header, after a gap.
      expect(row[start - 1] ?? " ", `column ${name} of "${row}"`).toBe(" ");
      expect(row[start], `column ${name} of "${row}"`).not.toBe(" ");
      record[name] = row.slice(start, end).trim();
    });
    return record;
  });
}

/** Name-value lines (`status`, `check`) as a record. */
function parsePairs(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .trimEnd()
      .split("\n")
      .map((line) => [line.split(/ {2,}/)[0]!, line.split(/ {2,}/).slice(1).join("  ")]),
  );
}

function expectOneLineError(run: CliRun, code: number, pattern: RegExp): void {
  expect(run.code, run.stderr).toBe(code);
  expect(run.stderr.trimEnd().split("\n")).toHaveLength(1);
  expect(run.stderr).toMatch(/^sluice: /);
  expect(run.stderr).toMatch(pattern);
  expect(run.stdout + run.stderr).not.toContain(ADMIN_TOKEN);
}

describe("sluice against a healthy gateway", () => {
  it("peek shows the client's bucket as an aligned table, and --json the gateway's answer", async () => {
    const client = key();
    const table = await sluice(["peek", "--rule", "api", "--client", `header:x-api-key=${client}`]);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout.split("\n")[0]).toMatch(/^RULE +CLIENT +REMAINING +CAPACITY +RATE +FULL IN +OVERRIDE$/);
    expect(parseTable(table.stdout)).toEqual([{ rule: "api", client: `header:x-api-key=${client}`, remaining: "5", capacity: "5", rate: "1/12s", "full in": "0s", override: "-" }]);

    const json = await sluice(["peek", "--rule", "api", "--client", `header:x-api-key=${client}`, "--json"]);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual({
      buckets: [{ rule: "api", client: { "header:x-api-key": client }, remaining: 5, capacity: 5, rate: "1/12000ms", fullInMs: 0, override: null }],
    });
  });

  it("peek without --rule shows every rule keyed on the given parts", async () => {
    const run = await sluice(["peek", "--client", "ip=203.0.113.9"]);
    expect(run.code, run.stderr).toBe(0);
    expect(parseTable(run.stdout)).toMatchObject([{ rule: "login", client: "ip=203.0.113.9", remaining: "3", capacity: "3", rate: "1/20s" }]);
  });

  it("check charges like traffic: allowed exits 0, refused exits 2, and reset makes the bucket full again", async () => {
    const client = ["--rule", "api", "--client", `header:x-api-key=${key()}`];
    const allowed = await sluice(["check", ...client, "--cost", "3"]);
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(parsePairs(allowed.stdout)).toMatchObject({ decision: "allowed", rule: "api", remaining: "2 of 5" });
    expect(parsePairs(allowed.stdout)["full in"]).toMatch(/^\d+(\.\d)?s$/);

    const refused = await sluice(["check", ...client, "--cost", "3"]);
    expect(refused.code).toBe(2);
    expect(parsePairs(refused.stdout)).toMatchObject({ decision: "refused", rule: "api", remaining: "2 of 5" });
    expect(parsePairs(refused.stdout)["retry in"]).toMatch(/^\d+(\.\d)?s$/);

    const json = await sluice(["check", ...client, "--cost", "3", "--json"]);
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stdout)).toMatchObject({ allowed: false, rule: "api", remaining: 2, limit: 5, retryAfterMs: expect.any(Number) });

    const reset = await sluice(["reset", ...client]);
    expect(reset.code, reset.stderr).toBe(0);
    expect(reset.stdout.trim()).toMatch(/^Reset header:x-api-key=k-\w+: api full again\.$/);
    expect(JSON.parse((await sluice(["reset", ...client, "--json"])).stdout)).toEqual({ reset: ["api"] });
    const after = await sluice(["peek", ...client, "--json"]);
    expect(JSON.parse(after.stdout).buckets[0].remaining).toBe(5);
  });

  it("overrides set, list and remove; peek shows the override in force", async () => {
    const prefix = `${key()}_`;
    const target = ["--rule", "api", "--client", `header:x-api-key=${prefix}*`];
    const set = await sluice(["overrides", "set", ...target, "--capacity", "100", "--rate", "100/1m"]);
    expect(set.code, set.stderr).toBe(0);
    expect(parseTable(set.stdout)).toEqual([{ rule: "api", client: `header:x-api-key=${prefix}*`, kind: "prefix", capacity: "100", rate: "100/1m" }]);

    const list = await sluice(["overrides", "list"]);
    expect(list.code).toBe(0);
    expect(parseTable(list.stdout)).toContainEqual({ rule: "api", client: `header:x-api-key=${prefix}*`, kind: "prefix", capacity: "100", rate: "100/1m" });
    const listed = JSON.parse((await sluice(["overrides", "list", "--json"])).stdout);
    expect(listed.overrides).toContainEqual({ id: expect.any(String), rule: "api", client: { "header:x-api-key": `${prefix}*` }, capacity: 100, rate: "100/1m", kind: "prefix" });

    const exact = await sluice(["overrides", "set", "--rule", "api", "--client", `header:x-api-key=${prefix}exact`, "--capacity", "7", "--rate", "2"]);
    expect(parseTable(exact.stdout)).toEqual([{ rule: "api", client: `header:x-api-key=${prefix}exact`, kind: "exact", capacity: "7", rate: "2" }]);

    // The gateway that served the override forgets its cached prefixes at once: the next peek sees it.
    const peek = await sluice(["peek", "--rule", "api", "--client", `header:x-api-key=${prefix}customer`]);
    expect(parseTable(peek.stdout)).toMatchObject([{ capacity: "100", rate: "1/600ms", override: `prefix header:x-api-key=${prefix}*` }]);

    const removed = await sluice(["overrides", "remove", ...target]);
    expect(removed.code, removed.stderr).toBe(0);
    expect(removed.stdout.trim()).toBe(`Removed the override of api header:x-api-key=${prefix}*.`);
    const again = await sluice(["overrides", "remove", ...target]);
    expect(again.code).toBe(0);
    expect(again.stdout.trim()).toBe(`No override of api header:x-api-key=${prefix}*: nothing removed.`);
    expect(JSON.parse((await sluice(["overrides", "remove", ...target, "--json"])).stdout)).toEqual({ removed: false });
    expect((await sluice(["overrides", "list"])).stdout).not.toContain(`${prefix}*`);
  });

  it("status shows the gateway's health (its details with the token); --json is the health answer", async () => {
    const run = await sluice(["status"], { SLUICE_ADMIN_TOKEN: "" });
    expect(run.code, run.stderr).toBe(0);
    expect(parsePairs(run.stdout)).toMatchObject({ gateway: gateways.healthy.url, status: "ok", details: expect.stringMatching(/SLUICE_ADMIN_TOKEN/) });
    const withToken = await sluice(["status"]);
    expect(parsePairs(withToken.stdout)).toMatchObject({ gateway: gateways.healthy.url, status: "ok", config: "ok", rules: "api, login" });
    expect(parsePairs(withToken.stdout).backend).toMatch(/^durable-object, ok, [\d.]+ ms$/);
    const json = await sluice(["status", "--json"]);
    expect(JSON.parse(json.stdout)).toMatchObject({ status: "ok", config: { ok: true }, backend: { name: "durable-object", ok: true }, isolate: { rules: ["api", "login"] } });
  });

  it("status --path shows what a request would be charged to, as the caller its --header names; exit 2 when it would be refused", async () => {
    const client = key();
    const run = await sluice(["status", "--path", "/login", "--method", "POST", "--header", `x-api-key=${client}`]);
    expect(run.code, run.stderr).toBe(0);
    const [first, ...table] = run.stdout.trimEnd().split("\n");
    expect(first).toBe("POST /login: would be allowed");
    expect(parseTable(table.join("\n"))).toEqual([
      { rule: "api", mode: "enforce", remaining: "5", limit: "5", cost: "1", "retry in": "-" },
      { rule: "login", mode: "enforce", remaining: "3", limit: "3", cost: "1", "retry in": "-" },
    ]);

    await sluice(["check", "--rule", "api", "--client", `header:x-api-key=${client}`, "--cost", "5"]);
    const refused = await sluice(["status", "--path", "/items", "--header", `x-api-key=${client}`, "--json"]);
    expect(refused.code).toBe(2);
    expect(JSON.parse(refused.stdout)).toMatchObject({ method: "GET", path: "/items", allowed: false, buckets: [{ rule: "api", remaining: 0 }] });
  });

  it("--help and no arguments print the commands and exit codes; init needs a folder", async () => {
    for (const args of [["--help"], [], ["peek", "-h"]]) {
      const run = await sluice(args);
      expect(run.code).toBe(0);
      expect(run.stdout).toContain("sluice overrides set");
      expect(run.stdout).toMatch(/Exit codes:\n {2}0 {2}done[\s\S]* {2}5 {2}unavailable/);
    }
    // init itself: test/package/gateway-package.test.ts (from the packed tarball).
    expectOneLineError(await sluice(["init"]), 1, /"sluice init" needs a folder, e.g. sluice init my-gateway/);
  });
});

describe("sluice's errors: one line and an exit code scripts can use", () => {
  const peek = ["peek", "--rule", "api", "--client", "header:x-api-key=abc"];

  it("a usage mistake exits 1 before any request", async () => {
    expectOneLineError(await sluice(["peek", "--rule", "api"]), 1, /"sluice peek" needs --client PART=VALUE/);
    expectOneLineError(await sluice(["peek", "--client", "abc"]), 1, /--client "abc" must be PART=VALUE/);
    expectOneLineError(await sluice(["peek", "--client", "ip=1.2.3.4", "--cost", "2"]), 1, /--cost is not a flag of "sluice peek"/);
    expectOneLineError(await sluice(["check", "--rule", "api", "--client", "ip=1.2.3.4", "--cost", "two"]), 1, /--cost "two" must be a whole number/);
    expectOneLineError(await sluice(["frobnicate"]), 1, /"frobnicate" is not a command/);
    expectOneLineError(await sluice(["overrides"]), 1, /needs list, set or remove/);
    expectOneLineError(await sluice([...peek, "--token", "x"]), 1, /no --token flag: the token is read from SLUICE_ADMIN_TOKEN only/);
    expectOneLineError(await sluice(["status", "--url", "ftp://x"]), 1, /must be http or https/);
  });

  it("a 400 names the field and its message, exits 1, and --json prints the problem", async () => {
    expectOneLineError(await sluice(["peek", "--rule", "nope", "--client", "header:x-api-key=abc"]), 1, /\(400\): rule: "nope" is not a rule \(known: api, login\)/);
    expectOneLineError(await sluice(["peek", "--rule", "login", "--client", "ip=not-an-address"]), 1, /\(400\): client\.ip: /);
    expectOneLineError(await sluice(["overrides", "set", "--rule", "api", "--client", "header:x-api-key=abc", "--capacity", "0", "--rate", "1/1m"]), 1, /\(400\): capacity: /);
    const json = await sluice(["peek", "--rule", "nope", "--client", "header:x-api-key=abc", "--json"]);
    expect(JSON.parse(json.stdout)).toMatchObject({ status: 400, type: "tag:sluice.dev,2026:invalid-request", field: "rule" });
  });

  it("a 401 exits 3 and says whether the token is missing or wrong", async () => {
    expectOneLineError(await sluice(peek, { SLUICE_ADMIN_TOKEN: "" }), 3, /401 Unauthorized: SLUICE_ADMIN_TOKEN is not set/);
    expectOneLineError(await sluice(peek, { SLUICE_ADMIN_TOKEN: "not-the-admin-token-at-all" }), 3, /401 Unauthorized: SLUICE_ADMIN_TOKEN is not the gateway's LIMITER_ADMIN_TOKEN/);
  });

  it("an absent admin API (404) exits 4 and says to set LIMITER_ADMIN_TOKEN", async () => {
    for (const args of [peek, ["overrides", "list"]]) {
      expectOneLineError(await sluice([...args, "--url", gateways.adminOff.url]), 4, /404: the admin API is off at http:\/\/127\.0\.0\.1:\d+: set LIMITER_ADMIN_TOKEN/);
    }
  });

  it("a 404 from something that is not a sluice gateway exits 4 and says to check --url", async () => {
    const server = createServer((_request, response) => response.writeHead(404, { "Content-Type": "text/html" }).end("<h1>Not Found</h1>"));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = server.address() as AddressInfo;
      expectOneLineError(await sluice([...peek, "--url", `http://127.0.0.1:${port}`]), 4, /404: no sluice gateway answers at http:\/\/127\.0\.0\.1:\d+ \(check --url or SLUICE_URL\)/);
    } finally {
      server.close();
    }
  });

  it("an unreachable gateway exits 5 and names the address", async () => {
    const url = `http://127.0.0.1:${await closedPort()}`;
    expectOneLineError(await sluice([...peek, "--url", url]), 5, new RegExp(`cannot reach the gateway at ${url.replaceAll(".", "\\.")} \\(ECONNREFUSED\\)`));
    expectOneLineError(await sluice(["status"], { SLUICE_URL: url }), 5, /cannot reach the gateway/);
  });

  it("a store that is down: admin commands exit 5 with the gateway's reason; status shows it and exits 5", async () => {
    const url = gateways.storeDown.url;
    expectOneLineError(await sluice([...peek, "--url", url]), 5, /the gateway answered 503: The rate-limit store \(upstash\) did not answer/);
    const status = await sluice(["status", "--url", url]);
    expect(status.code).toBe(5);
    expect(parsePairs(status.stdout)).toMatchObject({ status: "error", config: "ok" });
    expect(parsePairs(status.stdout).backend).toMatch(/^upstash, not answering/);
  });

  it("a misconfigured gateway: admin commands exit 5 naming the variable; status shows it and exits 5", async () => {
    const url = gateways.misconfigured.url;
    expectOneLineError(await sluice([...peek, "--url", url]), 5, /the gateway answered 500: LIMITER_CAPACITY="lots" must be an integer/);
    const status = await sluice(["status", "--url", url]);
    expect(status.code).toBe(5);
    expect(parsePairs(status.stdout).config).toMatch(/^invalid: LIMITER_CAPACITY="lots"/);
  });

  // Last in the file: it spends this address's status allowance (10 a minute) on the healthy gateway.
  it("a 429 from the status endpoint's own limit exits 2", async () => {
    let run: CliRun | undefined;
    for (let i = 0; i < 12 && run?.code !== 2; i++) run = await sluice(["status", "--path", "/items"]);
    expectOneLineError(run!, 2, /429 Too Many Requests: Rate limit "__limiter_status" exceeded: retry in \d+ s\./);
  });
});
