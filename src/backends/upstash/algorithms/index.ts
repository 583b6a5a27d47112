/**
 * The Lua twins of the core's algorithms (`src/core/algorithms/index.ts`), by the same ids: the
 * Upstash script is assembled from these. One line per algorithm; the type refuses an algorithm
 * registered in the core without its twin, and a test checks the script defines exactly these ids.
 */
import type { AlgorithmId, AlgorithmPolicy, AlgorithmState, RatePolicy, RateState } from "../../../core/algorithms/index";
import { DEFAULT_ALGORITHM } from "../../../core/algorithms/index";
import type { LuaAlgorithm } from "./lua-algorithm";
import { calendarLua } from "./calendar.lua";
import { fixedWindowLua } from "./fixed-window.lua";
import { slidingWindowLua } from "./sliding-window.lua";
import { tokenBucketLua } from "./token-bucket.lua";

export const LUA_ALGORITHMS: { readonly [K in AlgorithmId]: LuaAlgorithm<AlgorithmPolicy<K>, AlgorithmState<K>> } = {
  "token-bucket": tokenBucketLua,
  "fixed-window": fixedWindowLua,
  "sliding-window": slidingWindowLua,
  calendar: calendarLua,
};

/**
 * The algorithm id a policy names, and its Lua twin's wire texts.
 *
 * @example
 * luaAlgorithmOf({ capacity: 10, refillTokens: 1, refillPeriodMs: 1000 }); // ["token-bucket", tokenBucketLua]
 */
export function luaAlgorithmOf(policy: RatePolicy): readonly [AlgorithmId, LuaAlgorithm<RatePolicy, RateState>] {
  const id = policy.algorithm ?? DEFAULT_ALGORITHM;
  const twin: unknown = LUA_ALGORITHMS[id];
  if (twin === undefined) throw new Error(`no Lua twin for rate-limit algorithm: ${id}`);
  // The policy names the algorithm; its twin encodes that algorithm's policies and states.
  return [id, twin as LuaAlgorithm<RatePolicy, RateState>];
}

/**
 * The Lua twin by an id a script reply carries.
 *
 * @example
 * luaAlgorithmById("token-bucket"); // tokenBucketLua
 */
export function luaAlgorithmById(id: string): LuaAlgorithm<RatePolicy, RateState> {
  if (!Object.hasOwn(LUA_ALGORITHMS, id)) throw new Error(`unexpected algorithm in script reply: ${JSON.stringify(id)}`);
  return LUA_ALGORITHMS[id as AlgorithmId] as LuaAlgorithm<RatePolicy, RateState>;
}
