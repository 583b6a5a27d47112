import type { Env as GatewayEnv } from "../src/gateway/env";
import type { LimiterService } from "../src/gateway/rpc";

declare global {
  namespace Cloudflare {
    interface Env extends GatewayEnv {
      /** The gateway bundle running as a second Worker (vitest.config.ts), bound to its LimiterService. */
      SLUICE_GATEWAY: Service<LimiterService>;
    }
  }
}
