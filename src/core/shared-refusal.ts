import type { BucketAnswer } from "./backend";
import type { Answered } from "./keyed-batcher";
import type { BucketPolicy } from "./token-bucket";

/** A charge as {@link sharedRefusal} compares it: bucket (within the client), policy, cost, shadow or not. */
interface ComparedCharge {
  readonly rule: string;
  readonly policy: BucketPolicy;
  readonly cost: number;
  readonly enforced: boolean;
}

/**
 * The refusal a queued request shares with its client's call that just answered, if that call
 * refused a request making the very same single charge (the same rule, policy object, cost and
 * mode). The queued request arrived while that call was out: deciding it right after the refused
 * one finds the bucket as empty, so it gets the same answer with no call of its own (as the deny
 * cache would a moment later; the error is only towards refusing, by one answer's transit of
 * refill). A burst of any size against an empty bucket then costs the store one call.
 *
 * @example
 * sharedRefusal([charge], { batch: [[charge]], results: [{ ok: true, value: [denied] }] }, (r) => r); // [denied]
 */
export function sharedRefusal<R>(charges: readonly ComparedCharge[], answered: Answered<R, readonly BucketAnswer[]>, chargesOf: (request: R) => readonly ComparedCharge[]): BucketAnswer[] | undefined {
  const [charge] = charges;
  if (charge === undefined || charges.length !== 1) return undefined;
  for (let i = answered.batch.length - 1; i >= 0; i--) {
    const request = answered.batch[i];
    const result = answered.results[i];
    if (request === undefined || result === undefined || !result.ok) continue;
    const [other] = chargesOf(request);
    const [answer] = result.value;
    if (chargesOf(request).length !== 1 || other === undefined || answer === undefined) continue;
    if (other.rule !== charge.rule || other.policy !== charge.policy || other.cost !== charge.cost || other.enforced !== charge.enforced) continue;
    // The latest answer for this charge decides: a refusal is shared, an admission is not.
    return answer.decision.outcome === "denied" ? [answer] : undefined;
  }
  return undefined;
}
