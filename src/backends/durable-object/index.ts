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
      const [only] = groups;
      if (only !== undefined && groups.length === 1) return (await stubFor(only.clientKey).take(only.members.map((m) => m.charge))).decisions;

      const calls = await Promise.all(groups.map(async (group) => ({ group, result: await settle(stubFor(group.clientKey).take(group.members.map((m) => m.charge))) })));
      const answered = calls.flatMap(({ group, result }) => (result.ok ? [{ group, taken: result.value }] : []));
      const refused = answered.some(({ group, taken }) => zip(group.members, taken.decisions).some(([member, d]) => member.charge.enforced && d.outcome !== "allowed"));
      const failure = calls.find(({ result }) => !result.ok)?.result;
      if (refused || failure) await refundAll(answered, stubFor);
      if (failure && !failure.ok && !refused) throw failure.error;

      const decisions: BucketDecision[] = charges.map(() => UNKNOWN);
      for (const { group, taken } of answered) for (const [member, decision] of zip(group.members, taken.decisions)) decisions[member.index] = decision;
      return decisions;
    },
    async peek(charges, signal) {
      signal.throwIfAborted();
      const groups = groupByClient(charges);
      const answers = await Promise.all(groups.map(async (group) => ({ group, decisions: await stubFor(group.clientKey).peek(group.members.map((m) => m.charge)) })));
      const decisions: BucketDecision[] = charges.map(() => UNKNOWN);
      for (const { group, decisions: answer } of answers) for (const [member, decision] of zip(group.members, answer)) decisions[member.index] = decision;
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
  answered: readonly { group: ClientGroup; taken: ObjectTakeResult }[],
  stubFor: (name: string) => DurableObjectStub<ClientBuckets>,
): Promise<void> {
  const refunds = answered.map(({ group, taken }) => {
    const charged = zip(group.members, taken.charged).flatMap(([member, state]) => (state ? [{ ...member.charge, charged: state }] : []));
    return charged.length > 0 ? stubFor(group.clientKey).refund(charged) : undefined;
  });
  for (const outcome of await Promise.allSettled(refunds)) {
    if (outcome.status === "rejected") {
      console.error(JSON.stringify({ event: "limiter.refund_failure", reason: String(outcome.reason) }));
    }
  }
}

/** One client's charges of a request, each with its position in the request's list. */
interface ClientGroup {
  readonly clientKey: string;
  readonly members: { readonly index: number; readonly charge: ObjectCharge }[];
}

function groupByClient(charges: readonly BucketCharge[]): ClientGroup[] {
  const groups = new Map<string, ClientGroup>();
  charges.forEach(({ clientKey, bucket, policy, cost, enforced }, index) => {
    let group = groups.get(clientKey);
    if (group === undefined) groups.set(clientKey, (group = { clientKey, members: [] }));
    group.members.push({ index, charge: { bucket, policy, cost, enforced } });
  });
  return [...groups.values()];
}

/** Pairs an object's answers with the charges it was sent, in order (its RPC's contract). */
function zip<A, B>(as: readonly A[], bs: readonly B[]): [A, B][] {
  const pairs: [A, B][] = [];
  as.forEach((a, i) => {
    const b = bs[i];
    if (b !== undefined) pairs.push([a, b]);
  });
  return pairs;
}

async function settle<T>(promise: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await promise };
  } catch (error) {
    return { ok: false, error };
  }
}
