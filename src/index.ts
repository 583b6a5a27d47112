// The gateway Worker is the package's `sluice/gateway` entry (src/gateway/index.ts); a project made by `npx sluice init` has this line, importing "sluice/gateway".
export { default, ClientBuckets, GatewayMetrics, LimiterService } from "./gateway/index";
