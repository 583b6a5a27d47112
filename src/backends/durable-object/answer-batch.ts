import type { BucketTable } from "../../core/bucket-table";
import type { BatchAnswer, BatchRequest } from "./wire";

/**
 * An isolate's batch against a client's bucket table, pure (the clock is passed in): gives back
 * unused leased tokens of leases the table still counts, ends the caller's earlier leases, charges
 * each request in order (the same decisions as that many separate takes), and may grant a lease,
 * never more than 1/`LEASE_SHARE` of what the bucket then holds. The object persists the table after.
 *
 * @example
 * const answer = answerBatch(table, { holder: "isolate-a", seq: 1, takes: [[charge]] }, Date.now());
 * answer.answers[0]; // the first request's answers
 */
export function answerBatch(table: BucketTable, request: BatchRequest, nowMs: number): BatchAnswer {
  const { holder, seq } = request;
  if (holder !== undefined) table.endLeases(holder, seq, request.giveBack ?? [], nowMs);
  const answers = request.takes.map((charges) => table.charge(charges, nowMs));
  // A lease is granted only to a caller that says who it is (so its next call can release it).
  const lease = request.lease === undefined || holder === undefined ? null : table.grantLease(request.lease, holder, seq, nowMs);
  return { answers, lease };
}
