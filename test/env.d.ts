import type { Env as GatewayEnv } from "../src/config/env";

declare global {
  namespace Cloudflare {
    interface Env extends GatewayEnv {}
  }
}
