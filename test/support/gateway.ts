import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import type { VarName, Env } from "../../src/gateway/env";
import worker from "../../src/index";

/** A fresh client address, so tests never share a bucket by accident. */
export function randomIp(): string {
  const byte = () => Math.floor(Math.random() * 254) + 1;
  return `10.${byte()}.${byte()}.${byte()}`;
}

/**
 * The real gateway (this repo's Worker, real Durable Objects, the real origin from the test
 * setup) with some vars overridden. One env object per gateway, as in production.
 */
export function gatewayWith(vars: Partial<Record<VarName, string>> = {}, bindings: Partial<Pick<Env, "LIMITER_ANALYTICS" | "LIMITER_METRICS_STORE">> = {}) {
  const gatewayEnv: Env = { ...env, ...vars, ...bindings };
  return async (path: string, init: RequestInit & { ip?: string } = {}): Promise<Response> => {
    const { ip, ...rest } = init;
    const headers = new Headers(rest.headers);
    if (ip !== undefined) headers.set("cf-connecting-ip", ip);
    const ctx = createExecutionContext();
    const response = await worker.fetch(new Request(`https://gateway.test${path}`, { ...rest, headers }), gatewayEnv, ctx);
    await waitOnExecutionContext(ctx);
    return response;
  };
}
