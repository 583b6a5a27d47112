import type { TestProject } from "vitest/node";
import { startOrigin } from "../../dev/origin.mjs";

declare module "vitest" {
  export interface ProvidedContext {
    originUrl: string;
  }
}

/** Starts the real HTTP origin the Workers tests proxy to (runs in Node, not workerd). */
export default async function ({ provide }: TestProject) {
  const origin = await startOrigin({ port: 0 });
  provide("originUrl", origin.url);
  return () => origin.close();
}
