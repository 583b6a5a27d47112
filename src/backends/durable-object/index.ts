import { logLimiterEvent } from "../../core/events";
import { SharedCallError } from "../../core/store-guard";
import type { BucketAnswer, BucketCharge, BucketRef, LimiterBackend, SlotClaim } from "../../core/backend";
import type { SlotDecision } from "../../core/slots";
import type { RateState } from "../../core/algorithms/index";
import type { ClientBuckets, ObjectAnswer, ObjectCharge, ObjectSlotClaim } from "./client-buckets";
import { ClientBatcher, type LeaseOptions } from "./client-batcher";

export { ClientBuckets } from "./client-buckets";
export type { LeaseOptions } from "./client-batcher";

/**
 * The one object that lists every override (client keys are hashes with a kind prefix: no clash).
 * It is also the health target: every isolate reads it (prefix overrides), and no client's
 * buckets live there.
 */
const REGISTRY_OBJECT = "__limiter_registry";

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
 * await backend.take([{ clientKey, rule: "default", policy, cost: 1, enforced: true }], signal);
 */
export function durableObjectBackend(namespace: DurableObjectNamespace<ClientBuckets>, options: LeaseOptions = {}): LimiterBackend & { readonly stats: { readonly calls: number } } {
  // Every call that reaches an object is counted here (health reports it; the benchmark divides it by requests).
  const stats = { calls: 0 };
  // A stub belongs to the request that made it (Workers refuse I/O through it from another): one per call.
  const stubFor = (name: string) => {
    stats.calls += 1;
    return namespace.get(namespace.idFromName(name));
  };
  const registry = () => stubFor(REGISTRY_OBJECT);
  const releaseSlots = (claims: readonly SlotClaim[]) =>
    Promise.all(groupClaims(claims).map(([clientKey, group]) => stubFor(clientKey).releaseSlots(group.map(({ claim }) => ({ rule: claim.rule, id: claim.id })))));
  const batcher = new ClientBatcher(stubFor, options);
  return {
    name: "durable-object",
    failureScope: "client",
    stats,
    takeHeld(charges) {
      const [charge] = charges;
      if (charges.length !== 1 || charge === undefined) return undefined;
      const { clientKey, rule, policy, cost, enforced } = charge;
      const held = batcher.takeHeld(clientKey, [{ rule, policy, cost, enforced }]);
      return held === undefined ? undefined : [held];
    },
    async take(charges, signal) {
      signal.throwIfAborted();
      const groups = groupByClient(charges);
      const [only] = groups;
      // One client's request (the usual case): its isolate's batcher, which shares calls and leases.
      if (only !== undefined && groups.length === 1) return batcher.take(only.clientKey, chargesOf(only), signal);

      // Several clients' objects: each one's part goes through that client's batcher too, so a burst
      // of such requests still has one call per object in flight from this isolate (and only the
      // request that made a failed call counts it against the client's circuit).
      const calls = await Promise.all(groups.map(async (group) => ({ group, result: await settle(batcher.take(group.clientKey, chargesOf(group), signal, { leased: false })) })));
      const answered = calls.flatMap(({ group, result }) => (result.ok ? [{ group, answers: result.value }] : []));
      const refused = answered.some(({ group, answers }) => zip(group.members, answers).some(([member, a]) => member.charge.enforced && a.decision.outcome !== "allowed"));
      // This request's own failed call first: only that one counts against the client's circuit.
      const failures = calls.filter(({ result }) => !result.ok).map(({ result }) => result);
      const failure = failures.find((result) => !result.ok && !(result.error instanceof SharedCallError)) ?? failures[0];
      if (refused || failure) await refundAll(answered, stubFor);
      if (failure && !failure.ok && !refused) throw failure.error;
      return scatter(charges, answered);
    },
    async peek(charges, signal) {
      signal.throwIfAborted();
      const groups = groupByClient(charges);
      return scatter(charges, await Promise.all(groups.map(async (group) => ({ group, answers: await stubFor(group.clientKey).peek(chargesOf(group)) }))));
    },
    async refund(refunds, signal) {
      signal.throwIfAborted();
      const byClient = new Map<string, (ObjectCharge & { charged: RateState })[]>();
      for (const { charge, charged } of refunds) {
        const { clientKey, rule: bucket, policy, cost, enforced } = charge;
        byClient.set(clientKey, [...(byClient.get(clientKey) ?? []), { rule: bucket, policy, cost, enforced, charged }]);
      }
      await Promise.all([...byClient].map(([clientKey, charges]) => stubFor(clientKey).refund(charges)));
    },
    async acquire(claims, signal) {
      signal.throwIfAborted();
      // One object per client key; with several, all or nothing by giving back what was granted.
      const byClient = groupClaims(claims);
      const answers = await Promise.allSettled(byClient.map(([clientKey, group]) => stubFor(clientKey).acquireSlots(group.map(({ claim }) => objectClaim(claim)))));
      const decisions: (SlotDecision | undefined)[] = claims.map(() => undefined);
      byClient.forEach(([, group], g) => {
        const answer = answers[g];
        if (answer?.status === "fulfilled") for (const [i, { index }] of group.entries()) decisions[index] = answer.value[i];
      });
      const failure = answers.find((answer) => answer.status === "rejected");
      // A known refusal wins over a failed object, as in `take`.
      const refused = claims.some((claim, i) => claim.enforced && decisions[i]?.granted === false);
      if (failure !== undefined || refused) {
        const granted = claims.filter((_, i) => decisions[i]?.granted === true);
        if (granted.length > 0) await releaseSlots(granted).catch(() => {}); // a lost release frees itself at the lease's end
        if (failure?.status === "rejected" && !refused) throw failure.reason;
      }
      return decisions.map((decision) => decision ?? { granted: false, inFlight: 0 });
    },
    async renew(claims, signal) {
      signal.throwIfAborted();
      await Promise.all(groupClaims(claims).map(([clientKey, group]) => stubFor(clientKey).renewSlots(group.map(({ claim }) => objectClaim(claim)))));
    },
    release: async (claims, signal) => {
      signal.throwIfAborted();
      await releaseSlots(claims);
    },
    async reset(refs, signal) {
      signal.throwIfAborted();
      // This isolate stops handing out leased tokens of these buckets (they go back with its next
      // call); the object leaves out what other isolates may still hand out.
      for (const { clientKey, rule: bucket } of refs) batcher.endLeaseOf(clientKey, bucket);
      await Promise.all(groupRefs(refs).map(([clientKey, buckets]) => stubFor(clientKey).reset(buckets)));
    },
    async setOverride(ref: BucketRef, policy, signal) {
      signal.throwIfAborted();
      batcher.endLeaseOf(ref.clientKey, ref.rule);
      await stubFor(ref.clientKey).setOverride(ref.rule, policy);
    },
    overrides: {
      async list(signal) {
        signal.throwIfAborted();
        return registry().listOverrides();
      },
      async put(record, signal) {
        signal.throwIfAborted();
        await registry().putOverride(record);
      },
      async remove(id, signal) {
        signal.throwIfAborted();
        return registry().removeOverride(id);
      },
    },
    async ping(signal) {
      signal.throwIfAborted();
      // Not a decision's call: health checks are left out of the count.
      stats.calls -= 1;
      await registry().ping();
    },
  };
}

/** Stands in for the answer of an object that failed while another one refused the request. */
function unknownAnswer(charge: BucketCharge): BucketAnswer {
  return { decision: { outcome: "denied", remaining: 0, resetMs: 0, retryAfterMs: 0 }, policy: charge.policy, charged: null };
}

/** Each object's answers put back in the request's order. */
function scatter(charges: readonly BucketCharge[], answered: readonly { group: ClientGroup; answers: readonly BucketAnswer[] }[]): BucketAnswer[] {
  const answers = charges.map(unknownAnswer);
  for (const { group, answers: got } of answered) for (const [member, { decision, policy, charged }] of zip(group.members, got)) answers[member.index] = { decision, policy, charged };
  return answers;
}

/** Gives back every charge the objects made; a failed refund is logged, never thrown. */
async function refundAll(answered: readonly { group: ClientGroup; answers: readonly ObjectAnswer[] }[], stubFor: (name: string) => DurableObjectStub<ClientBuckets>): Promise<void> {
  const refunds = answered.map(({ group, answers }) => {
    const charged = zip(group.members, answers).flatMap(([member, { charged: state }]) => (state ? [{ ...member.charge, charged: state }] : []));
    return charged.length > 0 ? stubFor(group.clientKey).refund(charged) : undefined;
  });
  for (const outcome of await Promise.allSettled(refunds)) {
    if (outcome.status === "rejected") {
      logLimiterEvent({ event: "limiter.refund_failure", backend: "durable-object", reason: String(outcome.reason) });
    }
  }
}

/** One client's charges of a request, each with its position in the request's list. */
interface ClientGroup {
  readonly clientKey: string;
  readonly members: { readonly index: number; readonly charge: ObjectCharge }[];
}

function chargesOf(group: ClientGroup): ObjectCharge[] {
  return group.members.map((member) => member.charge);
}

/** Claims per client key, each with its position in the request's list. */
function groupClaims(claims: readonly SlotClaim[]): [string, { index: number; claim: SlotClaim }[]][] {
  const byClient = new Map<string, { index: number; claim: SlotClaim }[]>();
  for (const [index, claim] of claims.entries()) byClient.set(claim.clientKey, [...(byClient.get(claim.clientKey) ?? []), { index, claim }]);
  return [...byClient];
}

function objectClaim({ rule, id, limit, leaseMs, enforced }: SlotClaim): ObjectSlotClaim {
  return { rule, id, limit, leaseMs, enforced };
}

/** Bucket names per client key. */
function groupRefs(refs: readonly BucketRef[]): [string, string[]][] {
  const byClient = new Map<string, string[]>();
  for (const { clientKey, rule: bucket } of refs) byClient.set(clientKey, [...(byClient.get(clientKey) ?? []), bucket]);
  return [...byClient];
}

function groupByClient(charges: readonly BucketCharge[]): ClientGroup[] {
  const groups = new Map<string, ClientGroup>();
  charges.forEach(({ clientKey, rule: bucket, policy, cost, enforced }, index) => {
    let group = groups.get(clientKey);
    if (group === undefined) groups.set(clientKey, (group = { clientKey, members: [] }));
    group.members.push({ index, charge: { rule: bucket, policy, cost, enforced } });
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
