/**
 * Every default of the limiter, in one place: the library's options and the gateway's wrangler
 * vars both fall back to these (the README's tables quote them).
 */
export const DEFAULTS = {
  /** Budget of one backend call, ms. */
  timeoutMs: 1_000,
  /** Which rate-limit headers responses carry. */
  headers: "all",
  /** A request without its rule's key: one shared bucket per key kind. */
  missingKey: "anonymous",
  /** Entries of the per-isolate deny cache (0 = off). */
  denyCacheSize: 10_000,
  breaker: { failureThreshold: 5, cooldownMs: 5_000 },
  identity: { ipHeader: "cf-connecting-ip", ipv6PrefixLength: 64 },
  /** What a rule does when the backend cannot decide. */
  failMode: "open",
  /** A rule's fields when left out. */
  rule: { key: "ip", cost: 1, mode: "enforce" },
} as const;
