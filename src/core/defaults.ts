/**
 * Every default of the limiter, in one place: the library's options and the gateway's wrangler
 * vars both fall back to these (docs/configuration.md quotes them).
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
  /** `trustedHops`: proxies that append to the address header; the client is that many entries from the right. */
  identity: { ipHeader: "cf-connecting-ip", ipv6PrefixLength: 64, trustedHops: 1 },
  /** What a rule does when the backend cannot decide. */
  failMode: "open",
  /**
   * Share of a `failMode: "local"` rule each isolate enforces alone during an outage. A tenth: a
   * client reaching up to ten isolates gets no more than its limit, and one reaching one isolate
   * still gets a tenth of it (at least one token) rather than nothing.
   */
  localFraction: 0.1,
  /** A rule's fields when left out. */
  rule: { key: "ip", cost: 1, mode: "enforce" },
  /** A calendar rule's zone and (weeks) first day when left out. */
  calendar: { timeZone: "UTC", weekStart: "monday" },
  /** A concurrency rule's lease when left out: a slot an isolate lost (it died mid-response) frees itself within this. */
  leaseMs: 30_000,
  /**
   * Upstash leases (the Durable Object backend keeps its own in its batcher: largest 64, a
   * second): the largest lease in charges of the request's cost (0 turns leases off), its
   * lifetime on the isolate, the share of what a bucket holds a lease may take at most (1/8), and
   * how much longer the store counts a lease as out (the clocks of isolate and store disagree).
   */
  leases: { maxLease: 64, leaseTtlMs: 1_000, share: 8, slackMs: 1_000 },
} as const;

/**
 * How much per-client state one isolate keeps, by what: fixed bounds (not settings) that keep an
 * isolate's memory small whatever its traffic. docs/configuration.md quotes them.
 */
export const ISOLATE_BOUNDS = {
  /** Degraded-mode entries of one limiter: local buckets, local slot sets, known exact overrides. */
  localEntries: 10_000,
  /** Clients whose own breaker circuit is remembered (Durable Objects). */
  clientCircuits: 1_000,
} as const;
