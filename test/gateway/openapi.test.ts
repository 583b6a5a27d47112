import { readFileSync } from "node:fs";
import { Validator } from "@seriousme/openapi-schema-validator";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { parse } from "yaml";
import { adminRoutes } from "../../src/gateway/admin-routes";
import { ADMIN_TOKEN, startAdminGateways } from "../support/admin-gateways";

/**
 * docs/openapi.yaml kept true: the document is valid OpenAPI 3.1; every route and status it lists
 * is called on a running gateway (the deployable bundle on workerd, in each state that answers
 * it: healthy, admin API off, store down, misconfigured) and each answer's body and documented
 * headers validate against its schema; every route the admin router and the limiter routes
 * define is documented, and nothing documented is missing from them.
 */
const root = new URL("../..", import.meta.url).pathname;
const DOCUMENT_PATH = `${root}docs/openapi.yaml`;
const doc = parse(readFileSync(DOCUMENT_PATH, "utf8")) as OpenApi;
const METHODS = ["get", "put", "post", "delete", "patch"] as const;
/** Routes under /__limiter/ that are not JSON APIs and are described in docs/operations.md instead. */
const NOT_DOCUMENTED_HERE = ["GET /__limiter/metrics", "GET /__limiter/dashboard", "GET /__limiter/dashboard/data"];

interface OpenApi {
  paths: Record<string, Partial<Record<(typeof METHODS)[number], Operation>>>;
  components: { schemas: Record<string, unknown>; responses: Record<string, ResponseObject>; headers: Record<string, HeaderObject> };
}
interface Operation {
  requestBody?: { content: Record<string, { schema: unknown }> };
  responses: Record<string, ResponseObject | { $ref: string }>;
}
interface ResponseObject {
  headers?: Record<string, HeaderObject | { $ref: string }>;
  content?: Record<string, { schema: unknown }>;
}
interface HeaderObject {
  schema: unknown;
}

// The schemas, with their `#/components/schemas/…` references made absolute so Ajv resolves them.
const SCHEMAS_ID = "https://sluice.dev/openapi/schemas";
const absolute = <T>(value: T): T => JSON.parse(JSON.stringify(value).replaceAll('"#/components/schemas/', `"${SCHEMAS_ID}#/$defs/`)) as T;
const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
addFormats(ajv);
ajv.addSchema({ $id: SCHEMAS_ID, $defs: absolute(doc.components.schemas) });
const compiled = new Map<unknown, ValidateFunction>();
function validate(schema: unknown, value: unknown, what: string): void {
  let check = compiled.get(schema);
  if (check === undefined) compiled.set(schema, (check = ajv.compile(absolute(schema) as object)));
  expect(check(value), `${what}: ${ajv.errorsText(check.errors)}\n${JSON.stringify(value)}`).toBe(true);
}
function deref<T>(value: T | { $ref: string }): T {
  if (typeof value !== "object" || value === null || !("$ref" in value)) return value;
  const [, , kind, name] = value.$ref.split("/");
  return (doc.components as unknown as Record<string, Record<string, T>>)[kind!]![name!]!;
}

let gateways: Awaited<ReturnType<typeof startAdminGateways<"healthy" | "adminOff" | "storeDown" | "misconfigured">>>;
type GatewayName = "healthy" | "adminOff" | "storeDown" | "misconfigured";
/** Every (method, documented path, status) a call produced. */
const seen = new Set<string>();

beforeAll(async () => {
  gateways = await startAdminGateways(inject("gatewayBundle"), ["healthy", "adminOff", "storeDown", "misconfigured"]);
}, 60_000);

afterAll(async () => {
  await gateways?.stop();
});

/**
 * Calls one documented route and checks the answer against the document: its status is listed
 * for the operation, its Content-Type is the documented one, its body validates against the
 * schema, and each documented header with a schema is present and validates. A request body is
 * checked against the documented request schema too, unless the call means to send a bad one.
 */
async function call(
  on: GatewayName,
  method: Uppercase<(typeof METHODS)[number]>,
  path: string,
  { query, body, token = ADMIN_TOKEN, badRequest = false }: { query?: Record<string, string>; body?: unknown; token?: string | null; badRequest?: boolean } = {},
): Promise<{ status: number; body: unknown }> {
  const operation = doc.paths[path]?.[method.toLowerCase() as (typeof METHODS)[number]];
  if (operation === undefined) throw new Error(`${method} ${path} is not documented`);
  if (body !== undefined && !badRequest) {
    const [, media] = Object.entries(operation.requestBody?.content ?? {})[0] ?? [];
    if (media === undefined) throw new Error(`${method} ${path} documents no request body`);
    validate(media.schema, body, `request body of ${method} ${path}`);
  }
  const headers: Record<string, string> = {};
  if (token !== null && (path.startsWith("/__limiter/admin/") || path === "/__limiter/health")) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const url = `${gateways[on].url}${path}${query ? `?${new URLSearchParams(query)}` : ""}`;
  const response = await fetch(url, { method, headers, ...(body !== undefined && { body: typeof body === "string" ? body : JSON.stringify(body) }) });
  const text = await response.text();
  const what = `${method} ${path} on the ${on} gateway → ${response.status}`;

  const documented = operation.responses[String(response.status)];
  expect(documented, `${what} is not a documented answer: ${text}`).toBeDefined();
  const answer = deref(documented!);
  const contentType = (response.headers.get("content-type") ?? "").split(";")[0]!.trim();
  const media = answer.content?.[contentType];
  expect(media, `${what}: Content-Type ${contentType} is not documented (${Object.keys(answer.content ?? {}).join(", ")})`).toBeDefined();
  const parsed = JSON.parse(text) as unknown;
  validate(media!.schema, parsed, what);
  for (const [name, header] of Object.entries(answer.headers ?? {})) {
    const value = response.headers.get(name);
    expect(value, `${what}: header ${name}`).not.toBeNull();
    validate(deref(header).schema, value, `${what}: header ${name}`);
  }
  seen.add(`${method} ${path} ${response.status}`);
  return { status: response.status, body: parsed };
}

const client = (key = `k-${crypto.randomUUID().slice(0, 8)}`) => ({ "header:x-api-key": key });

describe("docs/openapi.yaml", () => {
  it("is a valid OpenAPI 3.1 document", async () => {
    const validator = new Validator();
    const result = await validator.validate(DOCUMENT_PATH);
    expect(result.errors ?? [], JSON.stringify(result.errors, null, 2)).toEqual([]);
    expect(result.valid).toBe(true);
    expect(validator.version).toBe("3.1");
  });

  it("documents every route the admin router and the limiter routes define, and no other", () => {
    const admin = adminRoutes.routes.filter((route) => route.method !== "ALL").map((route) => `${route.method} /__limiter/admin${route.path}`);
    expect(admin.length).toBeGreaterThanOrEqual(6);
    // The limiter routes' module needs the Workers runtime to import; its own routes are read from its source.
    const source = readFileSync(`${root}src/gateway/limiter-routes.ts`, "utf8");
    const own = [...source.matchAll(/limiterRoutes\.(get|post|put|delete|patch)\("([^"]+)"/g)].map(([, method, path]) => `${method!.toUpperCase()} /__limiter${path}`);
    const metricsSource = readFileSync(`${root}src/gateway/metrics-routes.ts`, "utf8");
    const metrics = [...metricsSource.matchAll(/metricsRoutes\.(get|post|put|delete|patch)\("([^"]+)"/g)].map(([, method, path]) => `${method!.toUpperCase()} /__limiter${path}`);
    expect(metrics.sort()).toEqual([...NOT_DOCUMENTED_HERE].sort());

    const documented = Object.entries(doc.paths).flatMap(([path, item]) => METHODS.filter((m) => item[m] !== undefined).map((m) => `${m.toUpperCase()} ${path}`));
    expect(documented.sort()).toEqual([...admin, ...own].sort());
  });

  it("health: 200 when healthy, 503 when the store is down or the configuration is invalid", async () => {
    expect((await call("healthy", "GET", "/__limiter/health")).status).toBe(200);
    expect((await call("healthy", "GET", "/__limiter/health", { token: null })).body).toMatchObject({ status: "ok", details: expect.any(String) });
    expect((await call("storeDown", "GET", "/__limiter/health", { token: null })).status).toBe(503);
    expect((await call("storeDown", "GET", "/__limiter/health")).body).toMatchObject({ status: "error", config: { ok: true }, backend: { name: "upstash", ok: false } });
    expect((await call("misconfigured", "GET", "/__limiter/health")).body).toMatchObject({ status: "error", config: { ok: false } });
  });

  it("status: 200, 400 for a bad path, 429 past its own limit, 500 misconfigured, 503 store down", async () => {
    const answer = await call("healthy", "GET", "/__limiter/status", { query: { method: "POST", path: "/login" } });
    expect(answer).toMatchObject({ status: 200, body: { allowed: true, buckets: [{ rule: "api" }, { rule: "login" }] } });
    expect((await call("healthy", "GET", "/__limiter/status", { query: { path: "login" } })).body).toMatchObject({ field: "path" });
    expect((await call("healthy", "GET", "/__limiter/status", { query: { method: "G E T", path: "/" } })).body).toMatchObject({ field: "method" });
    // The endpoint's own limit is 10 a minute per address; the tests' address is loopback.
    let status = 200;
    for (let i = 0; i < 12 && status === 200; i++) status = (await call("healthy", "GET", "/__limiter/status", { query: { path: "/items" } })).status;
    expect(status).toBe(429);
    expect((await call("misconfigured", "GET", "/__limiter/status", { query: { path: "/items" } })).status).toBe(500);
    expect((await call("storeDown", "GET", "/__limiter/status", { query: { path: "/items" } })).status).toBe(503);
  });

  it("admin peek, reset, check: 200 on each, and 400 naming the field", async () => {
    const named = { rule: "api", client: client() };
    expect((await call("healthy", "POST", "/__limiter/admin/check", { body: { ...named, cost: 3 } })).body).toMatchObject({ allowed: true, remaining: 2 });
    expect((await call("healthy", "POST", "/__limiter/admin/check", { body: { ...named, cost: 3 } })).body).toMatchObject({ allowed: false, remaining: 2 });
    expect((await call("healthy", "POST", "/__limiter/admin/peek", { body: named })).body).toMatchObject({ buckets: [{ rule: "api", remaining: 2, override: null }] });
    expect((await call("healthy", "POST", "/__limiter/admin/peek", { body: { client: { ip: "203.0.113.9" } } })).body).toMatchObject({ buckets: [{ rule: "login" }] });
    expect((await call("healthy", "POST", "/__limiter/admin/reset", { body: named })).body).toEqual({ reset: ["api"] });

    expect((await call("healthy", "POST", "/__limiter/admin/peek", { body: { rule: "nope", client: client() }, badRequest: true })).body).toMatchObject({ field: "rule" });
    expect((await call("healthy", "POST", "/__limiter/admin/reset", { body: { rule: "login", client: { ip: "not-an-address" } }, badRequest: true })).body).toMatchObject({ field: "client.ip" });
    expect((await call("healthy", "POST", "/__limiter/admin/check", { body: { client: client() }, badRequest: true })).body).toMatchObject({ field: "rule" });
    expect((await call("healthy", "POST", "/__limiter/admin/check", { body: "not json", badRequest: true })).body).toMatchObject({ field: "(body)" });
  });

  it("admin overrides: set (exact and prefix), list, remove; 400 naming the field", async () => {
    const prefix = { rule: "api", client: { "header:x-api-key": `p-${crypto.randomUUID().slice(0, 8)}_*` } };
    const exact = { rule: "api", client: client() };
    expect((await call("healthy", "PUT", "/__limiter/admin/overrides", { body: { ...prefix, capacity: 100, rate: "100/1m" } })).body).toMatchObject({ override: { kind: "prefix" } });
    expect((await call("healthy", "PUT", "/__limiter/admin/overrides", { body: { ...exact, capacity: 7, rate: 2 } })).body).toMatchObject({ override: { kind: "exact", rate: 2 } });
    const listed = (await call("healthy", "GET", "/__limiter/admin/overrides")).body as { overrides: { client: unknown }[] };
    expect(listed.overrides.map((o) => o.client)).toEqual(expect.arrayContaining([prefix.client, exact.client]));
    expect((await call("healthy", "POST", "/__limiter/admin/peek", { body: exact })).body).toMatchObject({ buckets: [{ capacity: 7, override: { kind: "exact" } }] });
    expect((await call("healthy", "DELETE", "/__limiter/admin/overrides", { body: prefix })).body).toEqual({ removed: true });
    expect((await call("healthy", "DELETE", "/__limiter/admin/overrides", { body: prefix })).body).toEqual({ removed: false });
    expect((await call("healthy", "DELETE", "/__limiter/admin/overrides", { body: exact })).body).toEqual({ removed: true });

    expect((await call("healthy", "PUT", "/__limiter/admin/overrides", { body: { ...exact, capacity: 0, rate: "1/1m" }, badRequest: true })).body).toMatchObject({ field: "capacity" });
    expect((await call("healthy", "DELETE", "/__limiter/admin/overrides", { body: { ...exact, capacity: 5 }, badRequest: true })).body).toMatchObject({ field: "capacity" });
  });

  it("admin: 401 without the token or with another, 404 when the admin API is off, 500 misconfigured, 503 store down", async () => {
    const named = { rule: "api", client: client() };
    const routes = [
      ["POST", "/__limiter/admin/peek", named],
      ["POST", "/__limiter/admin/reset", named],
      ["POST", "/__limiter/admin/check", named],
      ["PUT", "/__limiter/admin/overrides", { ...named, capacity: 10, rate: "10/1m" }],
      ["GET", "/__limiter/admin/overrides", undefined],
      ["DELETE", "/__limiter/admin/overrides", named],
    ] as const;
    for (const [method, path, body] of routes) {
      expect((await call("healthy", method, path, { body, token: null })).status, `${method} ${path}`).toBe(401);
      expect((await call("healthy", method, path, { body, token: "not-the-admin-token-at-all" })).status, `${method} ${path}`).toBe(401);
      expect((await call("adminOff", method, path, { body })).status, `${method} ${path}`).toBe(404);
      expect((await call("misconfigured", method, path, { body })).status, `${method} ${path}`).toBe(500);
      // A check the store cannot answer is decided by the rule's fail mode (open by default): a 200 that says so.
      const down = await call("storeDown", method, path, { body });
      if (path === "/__limiter/admin/check") expect(down).toMatchObject({ status: 200, body: { allowed: true, rule: "api", failure: expect.any(String) } });
      else expect(down.status, `${method} ${path}`).toBe(503);
    }
  });

  it("every documented route and status was answered by a running gateway", () => {
    const documented = Object.entries(doc.paths).flatMap(([path, item]) => METHODS.flatMap((m) => Object.keys(item[m]?.responses ?? {}).map((status) => `${m.toUpperCase()} ${path} ${status}`)));
    expect(documented.filter((answer) => !seen.has(answer))).toEqual([]);
  });
});
