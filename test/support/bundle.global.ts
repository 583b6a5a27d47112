import type { TestProject } from "vitest/node";
import { buildGatewayBundle } from "../../dev/miniflare-gateway.mjs";

declare module "vitest" {
  export interface ProvidedContext {
    gatewayBundle: string;
  }
}

/** Bundles the Worker once (as `wrangler deploy` would) for the tests that run it on workerd processes. */
export default function ({ provide }: TestProject) {
  provide("gatewayBundle", buildGatewayBundle());
}
