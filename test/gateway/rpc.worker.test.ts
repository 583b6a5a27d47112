import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { randomIp } from "../support/gateway";

/** Calls the gateway's LimiterService from this (test) Worker, over a real service binding. */
async function rpc(method: "check" | "peek" | "reset", input: unknown): Promise<unknown> {
  return env.SLUICE_GATEWAY[method](input);
}

describe("the LimiterService entrypoint, from another Worker over a service binding", () => {
  it("checks, peeks and resets a named client in the same buckets as traffic", async () => {
    const client = { ip: randomIp() }; // the default rule: 60 tokens per client IP
    expect(await rpc("check", { rule: "default", client, cost: 59 })).toMatchObject({ ok: true, allowed: true, remaining: 1, limit: 60 });
    expect(await rpc("check", { rule: "default", client })).toMatchObject({ allowed: true, remaining: 0 });
    expect(await rpc("check", { rule: "default", client })).toMatchObject({ allowed: false, remaining: 0 });
    expect(await rpc("peek", { client })).toMatchObject({ ok: true, buckets: [{ rule: "default", remaining: 0, capacity: 60 }] });
    expect(await rpc("reset", { rule: "default", client })).toEqual({ ok: true, reset: ["default"] });
    expect(await rpc("peek", { rule: "default", client })).toMatchObject({ buckets: [{ remaining: 60 }] });
  });

  it("names a bad input's field instead of throwing", async () => {
    expect(await rpc("check", { rule: "nope", client: {} })).toMatchObject({ ok: false, field: "rule" });
    expect(await rpc("peek", "not an object")).toMatchObject({ ok: false, field: "(body)" });
  });
});
