import type { OverrideRecord } from "../../core/backend";
import { requireFlags, type Invocation } from "../args";
import { EXIT } from "../exit-codes";
import type { GatewayClient } from "../http";
import type { Outcome } from "../outcome";
import { clientText, table } from "../table";

/** An override as the admin API answers it. */
type Override = OverrideRecord & { readonly kind: "exact" | "prefix" };

const HEADERS = ["rule", "client", "kind", "capacity", "rate"];

/**
 * `sluice overrides list`: every override, exact and prefix (`GET /__limiter/admin/overrides`).
 *
 * @example
 * await listOverrides(invocation, gateway); // RULE  CLIENT  KIND  CAPACITY  RATE …
 */
export async function listOverrides(_invocation: Invocation, gateway: GatewayClient): Promise<Outcome> {
  const answer = (await gateway.admin("GET", "overrides")) as { overrides: Override[] };
  const text = answer.overrides.length === 0 ? "No overrides." : table(HEADERS, answer.overrides.map(row));
  return { code: EXIT.ok, json: answer, text };
}

/**
 * `sluice overrides set`: a client's (or, with a value ending in `*`, many clients') own capacity
 * and rate (`PUT /__limiter/admin/overrides`). The clients keep their tokens.
 *
 * @example
 * await setOverride({ rule: "api", client: { "header:x-api-key": "ent_*" }, capacity: 1000, rate: "1000/1m", … }, gateway);
 */
export async function setOverride(invocation: Invocation, gateway: GatewayClient): Promise<Outcome> {
  requireFlags(invocation, ["rule", "client", "capacity", "rate"]);
  const { rule, client, capacity, rate } = invocation;
  const answer = (await gateway.admin("PUT", "overrides", { rule, client, capacity, rate })) as { override: Override };
  return { code: EXIT.ok, json: answer, text: table(HEADERS, [row(answer.override)]) };
}

/**
 * `sluice overrides remove`: the override as it was set (`DELETE /__limiter/admin/overrides`).
 * Removing one that is not there is not an error (exit 0), and says so.
 *
 * @example
 * await removeOverride({ rule: "api", client: { "header:x-api-key": "ent_*" }, … }, gateway);
 */
export async function removeOverride(invocation: Invocation, gateway: GatewayClient): Promise<Outcome> {
  requireFlags(invocation, ["rule", "client"]);
  const { rule, client } = invocation;
  const answer = (await gateway.admin("DELETE", "overrides", { rule, client })) as { removed: boolean };
  const who = `${rule} ${clientText(client ?? {})}`;
  return { code: EXIT.ok, json: answer, text: answer.removed ? `Removed the override of ${who}.` : `No override of ${who}: nothing removed.` };
}

function row(override: Override): string[] {
  return [override.rule, clientText(override.client), override.kind, String(override.capacity), String(override.rate)];
}
