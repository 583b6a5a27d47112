import { startGateway } from "../../dev/miniflare-gateway.mjs";
import { startOrigin } from "../../dev/origin.mjs";

/**
 * The demo origin and one gateway process (the deployable bundle on workerd) in front of it,
 * with these vars; `stop` ends both.
 *
 * @example
 * const { gateway, stop } = await startGatewayProcess(inject("gatewayBundle"), { LIMITER_METRICS_TOKEN: token });
 */
export async function startGatewayProcess(scriptPath: string, vars: Record<string, string>) {
  const origin = await startOrigin();
  const gateway = await startGateway({ scriptPath, vars: { ORIGIN_URL: origin.url, ...vars } });
  return {
    gateway,
    stop: async () => {
      await gateway.dispose();
      await origin.close();
    },
  };
}
