import type { TestProject } from "vitest/node";
import { buildDashboardAssets } from "../../dev/build-dashboard.mjs";
import { LOCAL_UPSTASH_TOKEN, startLocalStack } from "../../dev/local-stack.mjs";

declare module "vitest" {
  export interface ProvidedContext {
    originUrl: string;
    upstashUrl: string;
    upstashToken: string;
  }
}

/**
 * Starts the real origin, redis-server and the Upstash REST bridge for the Workers tests
 * (global setup runs in Node, not workerd).
 */
export default async function ({ provide }: TestProject) {
  // The Worker inlines the dashboard's bundled script (wrangler builds it itself, via [build]).
  await buildDashboardAssets();
  const stack = await startLocalStack();
  provide("originUrl", stack.origin.url);
  provide("upstashUrl", stack.bridge.url);
  provide("upstashToken", LOCAL_UPSTASH_TOKEN);
  return () => stack.stop();
}
