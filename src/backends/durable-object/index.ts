import type { BucketDecision } from "../../limiter/token-bucket";
import type { BucketCharge, LimiterBackend } from "../backend";
import type { ClientBuckets, ObjectCharge } from "./client-buckets";

export { ClientBuckets } from "./client-buckets";

const HEALTH_OBJECT = "__limiter_health";

/**
 * The default backend: each client key names one {@link ClientBuckets} Durable Object.
 *
 * All or nothing: charges for one client key go to one object in one call, which applies
 * them atomically. When a request's rules name several client keys (say per IP and per API
 * key), the objects are called in parallel and, if any of them refused, the others' charges
 * are refunded (compensation). Between charge and refund another request of the same client
 * may see fewer tokens: the error is towards refusing, never towards over-admitting.
 *
 * An RPC call cannot be cancelled once sent; `signal` only stops a call that has not started.
 *
 * @example
 * const backend = durableObjectBackend(env.LIMITER_BUCKETS);
 * await backend.take([{ clientKey, bucket: "default", policy, cost: 1, enforced: true }], signal);
 */
export function durableObjectBackend(namespace: DurableObjectNamespace<ClientBuckets>): LimiterBackend {
  const stubFor = (name: string) => namespace.get(namespace.idFromName(name));
  return {
    name: "durable-object",
    async take(charges, signal) {
      signal.throwIfAborted();
      const groups = groupByClient(charges);
      if (groups.length === 1) return stubFor(groups[0]!.clientKey).take(groups[0]!.charges);

      const results = await Promise.all(groups.map((group) => stubFor(group.clientKey).take(group.charges)));
      const refused = results.some((decisions, g) =>
        decisions.some((decision, i) => groups[g]!.charges[i]!.enforced && decision.outcome !== "allowed"),
      );
      if (refused) {
        // Objects that charged this request give the tokens back.
        await Promise.all(
          groups.map((group, g) => {
            const charged = group.charges.filter((_, i) => results[g]![i]!.outcome === "allowed");
            const committed = !results[g]!.some((d, i) => group.charges[i]!.enforced && d.outcome !== "allowed");
            return committed && charged.length > 0 ? stubFor(group.clientKey).refund(charged) : undefined;
          }),
        );
      }
      const decisions: BucketDecision[] = [];
      groups.forEach((group, g) => group.indexes.forEach((index, i) => (decisions[index] = results[g]![i]!)));
      return decisions;
    },
    async ping(signal) {
      signal.throwIfAborted();
      await stubFor(HEALTH_OBJECT).ping();
    },
  };
}

interface ClientGroup {
  readonly clientKey: string;
  readonly charges: ObjectCharge[];
  /** Position of each charge in the request's list. */
  readonly indexes: number[];
}

function groupByClient(charges: readonly BucketCharge[]): ClientGroup[] {
  const groups = new Map<string, ClientGroup>();
  charges.forEach(({ clientKey, bucket, policy, cost, enforced }, index) => {
    let group = groups.get(clientKey);
    if (group === undefined) groups.set(clientKey, (group = { clientKey, charges: [], indexes: [] }));
    group.charges.push({ bucket, policy, cost, enforced });
    group.indexes.push(index);
  });
  return [...groups.values()];
}
