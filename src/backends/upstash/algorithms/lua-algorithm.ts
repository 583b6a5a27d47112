/**
 * What an algorithm's Lua twin provides to the Upstash script (`../token-bucket-script.ts`), which
 * keeps everything that is not the algorithm: the clock, hints, `SET … GET`, the put-back with its
 * recorded expiry, `MGET`, all-or-nothing across buckets, overrides stored beside the state, the
 * modes (charge, peek, refund, reset, override) and the reply.
 *
 * A fragment's `lua` calls `define('<id>', { … })` with the algorithm's registered id and these
 * functions (all numbers integers; `policy` tables are the fragment's own; times in ms on the
 * store's clock; a state text is what the key holds before any `|override`, '' for none):
 *
 * - `policy(text)`: the rule's policy from its ARGV text ({@link LuaAlgorithm.policyArg}).
 * - `with_override(policy, text)`: the policy in force under an exact override's text (stored
 *   after `|`; {@link LuaAlgorithm.overrideArg}); the rule's `policy` if the text does not parse.
 * - `policy_reply(policy)`: the policy in force as reply text ({@link LuaAlgorithm.policyOfReply}).
 * - `take(state, policy, rule, cost, now_ms, generation)`: the decision, as a table: `outcome`
 *   (1 allowed, 0 denied, 2 cost exceeds the limit), `remaining`, `reset_ms`, `retry_after_ms`;
 *   `write`, the state text to store (nil: none; a refusal may write, e.g. a block, and that
 *   write is kept even when the request is refused), with `ttl`, how long it matters under the
 *   `rule` (the charge's own policy, what is left when an override goes); `charged`, when
 *   allowed, the reply text of the state written ({@link LuaAlgorithm.chargedOfReply}). A state
 *   text that does not parse is none. `generation` names a state this take starts from none.
 * - `refund(state, policy, rule, cost, charged, now_ms)`: the state text to store and its `ttl`
 *   (as above), or nil when nothing is given back; `charged` is {@link LuaAlgorithm.chargedArg}'s text.
 * - `expires_at(state, now_ms, rule)`: when a stored state stops mattering (absolute ms); nil if
 *   the text is not this algorithm's state (texts of two algorithms must never both parse); false
 *   when the state does not say and `rule` is nil (then a key keeps it without expiry).
 * - optional, leases (the token bucket only; `src/core/leases.ts` is the TypeScript side):
 *   `lease(state, policy, rule, cost, ask, now_ms)` after an allowed charge, the text and TTL to
 *   store and the grant's reply text (nil: none); `give_back(state, policy, rule, text, now_ms)`,
 *   a lease's rest, the text and TTL to store (nil: nothing changes); `reset(state, now_ms)`,
 *   what of a state outlives a reset (nil: nothing).
 *
 * The TypeScript side encodes the ARGV texts and decodes the reply texts of the same algorithm.
 */
export interface LuaAlgorithm<Policy, State> {
  /** Lua text: `define('<id>', { policy = …, with_override = …, policy_reply = …, take = …, refund = …, expires_at = … })`, inside `do … end`. */
  readonly lua: string;
  /** The charge's policy as the fragment's `policy(text)` reads it. */
  policyArg(policy: Policy): string;
  /** An exact override, as stored after `|` in the bucket's key and read by `with_override`. */
  overrideArg(policy: Policy): string;
  /** The state a charge wrote, as a refund's `charged` text. */
  chargedArg(state: State): string;
  /** The policy in force, from `policy_reply`'s text. */
  policyOfReply(text: string): Policy;
  /** The state a charge wrote, from `take`'s `charged` text. */
  chargedOfReply(text: string): State;
}
