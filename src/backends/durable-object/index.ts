import type { BucketCharge, LimiterBackend } from "../backend";
import type { ClientBuckets } from "./client-buckets";

export { ClientBuckets } from "./client-buckets";

const HEALTH_OBJECT = "__limiter_health";

/**
 * The default backend: each client key names one {@link ClientBuckets} Durable Object.
 * An RPC call cannot be cancelled once sent; `signal` only stops a call that has not started.
 *
 * @example
 * const backend = durableObjectBackend(env.LIMITER_BUCKETS);
 * await backend.take({ clientKey, bucket: "default", policy, cost: 1 }, AbortSignal.timeout(1000));
 */
export function durableObjectBackend(namespace: DurableObjectNamespace<ClientBuckets>): LimiterBackend {
  const stubFor = (name: string) => namespace.get(namespace.idFromName(name));
  return {
    name: "durable-object",
    async take(charge: BucketCharge, signal: AbortSignal) {
      signal.throwIfAborted();
      return stubFor(charge.clientKey).take(charge.bucket, charge.policy, charge.cost);
    },
    async ping(signal: AbortSignal) {
      signal.throwIfAborted();
      await stubFor(HEALTH_OBJECT).ping();
    },
  };
}
