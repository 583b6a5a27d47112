import type { Env as GatewayEnv } from "../src/gateway/env";

declare global {
  namespace Cloudflare {
    interface Env extends GatewayEnv {}
  }
}
