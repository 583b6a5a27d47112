// @ts-check
/**
 * What one client gets through a gateway it floods with many connections, with default settings:
 * `node dev/overload-probe.mjs` (env: BACKEND=upstash|do, CONNS=100, SECS=5, EXTRA='{"LIMITER_…":"…"}').
 *
 * Starts the local stack (redis-server, the Upstash REST bridge, the origin) in a child process and
 * the gateway's deployable bundle in Miniflare, policy capacity 10 at 1/s keyed on `x-api-key`, then
 * sends one client's requests over CONNS connections for SECS seconds (loopback only; bounded in
 * time) and prints what came back beside the bucket's bound (capacity + rate × elapsed). A 2xx
 * beyond the bound is a request let through by `failMode: "open"` after store calls timed out
 * (the gateway logs `limiter.backend_failure` with the reason). An exploratory probe, not a test.
 */
import autocannon from "autocannon";
import { startStackProcess } from "../bench/stack.mjs";
import { upstashVars } from "./local-stack.mjs";
import { buildGatewayBundle, startGateway } from "./miniflare-gateway.mjs";

const backend = process.env.BACKEND ?? "upstash";
const connections = Number(process.env.CONNS ?? 100);
const seconds = Number(process.env.SECS ?? 5);
const policy = { capacity: 10, rate: 1 };

const stack = await startStackProcess();
try {
  const vars = {
    ORIGIN_URL: stack.originUrl,
    LIMITER_CAPACITY: String(policy.capacity),
    LIMITER_REFILL_RATE: String(policy.rate),
    LIMITER_KEY: "header:x-api-key",
    ...(backend === "upstash" ? upstashVars({ bridge: { url: stack.bridgeUrl }, origin: { url: stack.originUrl } }) : {}),
    ...JSON.parse(process.env.EXTRA ?? "{}"),
  };
  const gateway = await startGateway({ scriptPath: buildGatewayBundle(), vars, direct: true });
  try {
    const started = Date.now();
    const result = await autocannon({ url: `${gateway.url}/`, connections, duration: seconds, timeout: 20, headers: { "x-api-key": `probe-${started}` } });
    const elapsedS = (Date.now() - started) / 1000;
    const bound = policy.capacity + Math.ceil(policy.rate * elapsedS);
    console.log(
      JSON.stringify({
        backend,
        connections,
        elapsedS,
        rps: result.requests.average,
        "2xx": result["2xx"],
        "4xx": result["4xx"],
        "5xx": result["5xx"],
        errors: result.errors,
        bound,
        over: Math.max(0, result["2xx"] - bound),
      }),
    );
  } finally {
    await gateway.dispose();
  }
} finally {
  await stack.stop();
}
