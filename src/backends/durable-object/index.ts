import type { BucketCharge, LimiterBackend } from "../../core/backend";
import type { BucketDecision } from "../../core/token-bucket";
import type { ClientBuckets, ObjectCharge, ObjectTakeResult } from "./client-buckets";

export { ClientBuckets } from "./client-buckets";

const HEALTH_OBJECT = "__limiter_health";

/** Stands in for the decision of an object that failed while another one refused the request. */
const UNKNOWN: BucketDecision = { outcome: "denied", remaining: 0, resetMs: 0, retryAfterMs: 0 };

/**
 * The default backend: each client key names one {@link ClientBuckets} Durable Object.
 *
 * All or nothing: charges for one client key go to one object in one call, which applies
 * them atomically. When a request's rules name several client keys (say per IP and per API
 * key), the objects are called in parallel and, unless every one allowed, those that charged
 * give it back (compensation; the refund returns only what the charge still withholds). Between
 * charge and refund another request of the same client may see fewer tokens: the error is
 * towards refusing, never towards over-admitting. A known refusal wins over a failed object.
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
      if (groups.length === 1) return (await stubFor(groups[0]!.clientKey).take(groups[0]!.charges)).decisions;

      const settled = await Promise.allSettled(groups.map((group) => stubFor(group.clientKey).take(group.charges)));
      const results = settled.map((r) => (r.status === "fulfilled" ? (r.value as ObjectTakeResult) : undefined));
      const refused = results.some((result, g) => result?.decisions.some((d, i) => groups[g]!.charges[i]!.enforced && d.outcome !== "allowed"));
      const failure = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
      if (refused || failure) await refundAll(groups, results, stubFor);
      if (failure && !refused) throw failure.reason;

      const decisions: BucketDecision[] = [];
      groups.forEach((group, g) => group.indexes.forEach((index, i) => (decisions[index] = results[g]?.decisions[i] ?? UNKNOWN)));
      return decisions;
    },
    async peek(charges, signal) {
      signal.throwIfAborted();
      const groups = groupByClient(charges);
      const answers = await Promise.all(groups.map((group) => stubFor(group.clientKey).peek(group.charges)));
      const decisions: BucketDecision[] = [];
      groups.forEach((group, g) => group.indexes.forEach((index, i) => (decisions[index] = answers[g]?.[i] ?? UNKNOWN)));
      return decisions;
    },
    async ping(signal) {
      signal.throwIfAborted();
      await stubFor(HEALTH_OBJECT).ping();
    },
  };
}

/** Gives back every charge the objects made; a failed refund is logged, never thrown. */
async function refundAll(
  groups: readonly ClientGroup[],
  results: readonly (ObjectTakeResult | undefined)[],
  stubFor: (name: string) => DurableObjectStub<ClientBuckets>,
): Promise<void> {
  const refunds = groups.map((group, g) => {
    const charged = group.charges.flatMap((charge, i) => {
      const state = results[g]?.charged[i];
      return state ? [{ ...charge, charged: state }] : [];
    });
    return charged.length > 0 ? stubFor(group.clientKey).refund(charged) : undefined;
  });
  for (const outcome of await Promise.allSettled(refunds)) {
    if (outcome.status === "rejected") {
      console.error(JSON.stringify({ event: "limiter.refund_failure", reason: String(outcome.reason) }));
    }
  }
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
