import type { BucketStatus, CheckResult } from "../../gateway/control";
import { requireFlags, type Invocation } from "../args";
import { EXIT } from "../exit-codes";
import type { GatewayClient } from "../http";
import type { Outcome } from "../outcome";
import { clientText, duration, pairs, rate, table } from "../table";

/** `check`'s answer as it travels (the core's result without its `ok`). */
type CheckAnswer = DistributiveOmit<CheckResult, "ok">;
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/**
 * `sluice peek`: the client's bucket(s) as they stand, consuming nothing (`POST /__limiter/admin/peek`).
 *
 * @example
 * await peek({ command: "peek", rule: "api", client: { "header:x-api-key": "abc" }, … }, gateway);
 */
export async function peek(invocation: Invocation, gateway: GatewayClient): Promise<Outcome> {
  requireFlags(invocation, ["client"]);
  const answer = (await gateway.admin("POST", "peek", clientBody(invocation))) as { buckets: BucketStatus[] };
  const rows = answer.buckets.map((b) => [
    b.rule,
    clientText(b.client),
    String(b.remaining),
    String(b.capacity),
    rate(b.rate),
    duration(b.fullInMs),
    b.override === null ? "-" : `${b.override.kind} ${clientText(b.override.client)}`,
  ]);
  const text = rows.length === 0 ? "No bucket." : table(["rule", "client", "remaining", "capacity", "rate", "full in", "override"], rows);
  return { code: EXIT.ok, json: answer, text };
}

/**
 * `sluice reset`: the client's bucket(s) full again (`POST /__limiter/admin/reset`).
 *
 * @example
 * await reset({ command: "reset", rule: "login", client: { ip: "203.0.113.7" }, … }, gateway);
 */
export async function reset(invocation: Invocation, gateway: GatewayClient): Promise<Outcome> {
  requireFlags(invocation, ["client"]);
  const answer = (await gateway.admin("POST", "reset", clientBody(invocation))) as { reset: string[] };
  return { code: EXIT.ok, json: answer, text: `Reset ${clientText(invocation.client ?? {})}: ${answer.reset.join(", ") || "no bucket"} full again.` };
}

/**
 * `sluice check`: charges the client like traffic and shows the decision (`POST /__limiter/admin/check`);
 * a refusal exits with 2, so `sluice check … && do-the-thing` works.
 *
 * @example
 * await check({ command: "check", rule: "api", client: { "header:x-api-key": "abc" }, cost: 2, … }, gateway);
 */
export async function check(invocation: Invocation, gateway: GatewayClient): Promise<Outcome> {
  requireFlags(invocation, ["rule", "client"]);
  const body = { ...clientBody(invocation), ...(invocation.cost !== undefined && { cost: invocation.cost }) };
  const answer = (await gateway.admin("POST", "check", body)) as CheckAnswer;
  const rows: [string, string][] = [
    ["decision", answer.allowed ? "allowed" : "refused"],
    ["rule", answer.rule],
  ];
  if ("failure" in answer) rows.push(["store", `failed, decided by the rule's fail mode (${answer.failure})`]);
  else rows.push(["remaining", `${answer.remaining} of ${answer.limit}`], answer.allowed ? ["full in", duration(answer.resetMs)] : ["retry in", duration(answer.retryAfterMs)]);
  return { code: answer.allowed ? EXIT.ok : EXIT.refused, json: answer, text: pairs(rows) };
}

function clientBody({ rule, client }: Invocation): { rule?: string; client?: Record<string, string> } {
  return { ...(rule !== undefined && { rule }), ...(client !== undefined && { client }) };
}
