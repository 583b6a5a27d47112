import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { randomIp } from "../support/gateway";

/** Calls the gateway's LimiterService from this (test) Worker, over a real service binding. */
async function rpc(method: "check" | "peek" | "reset" | "putOverride" | "deleteOverride", input: unknown): Promise<unknown> {
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

  it("sets, lists and removes a client's override, which the next check obeys", async () => {
    const client = { ip: randomIp() };
    expect(await rpc("putOverride", { rule: "default", client, capacity: 2, rate: "2/1h" })).toMatchObject({ ok: true, override: { rule: "default", kind: "exact" } });
    expect(await env.SLUICE_GATEWAY.listOverrides()).toMatchObject({ ok: true, overrides: expect.arrayContaining([expect.objectContaining({ rule: "default", client })]) });
    expect(await rpc("check", { rule: "default", client })).toMatchObject({ allowed: true, remaining: 1, limit: 2 });
    expect(await rpc("deleteOverride", { rule: "default", client })).toEqual({ ok: true, removed: true });
    expect(await rpc("check", { rule: "default", client })).toMatchObject({ allowed: true, limit: 60 });
    expect(await rpc("putOverride", { rule: "default", client, capacity: "lots", rate: "2/1h" })).toMatchObject({ ok: false, field: "capacity" });
  });

  it("names a bad input's field instead of throwing", async () => {
    expect(await rpc("check", { rule: "nope", client: {} })).toMatchObject({ ok: false, field: "rule" });
    expect(await rpc("peek", "not an object")).toMatchObject({ ok: false, field: "(body)" });
  });
});
