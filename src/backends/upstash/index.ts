import { Redis } from "@upstash/redis/cloudflare";
import { BackendConfigError, type BucketCharge, type LimiterBackend } from "../../core/backend";
import type { BucketDecision } from "../../core/token-bucket";
import { TOKEN_BUCKET_LUA, TOKEN_BUCKET_SHA1 } from "./token-bucket-script";

/** Options of {@link upstashBackend}. */
export interface UpstashBackendOptions {
  /** `UPSTASH_REDIS_REST_URL`. */
  readonly url: string;
  /** `UPSTASH_REDIS_REST_TOKEN`. */
  readonly token: string;
  /** Namespace of every key, so several gateways can share one database. */
  readonly keyPrefix: string;
}

const OUTCOMES = { 1: "allowed", 0: "denied", 2: "cost_exceeds_capacity" } as const;

/**
 * The Redis key of one bucket: prefix, bucket (policy) name, hashed client key.
 *
 * @example
 * bucketKey("sluice", { bucket: "default", clientKey: "ip:3f2a…" }); // "sluice:default:ip:3f2a…"
 */
export function bucketKey(prefix: string, charge: Pick<BucketCharge, "bucket" | "clientKey">): string {
  return `${prefix}:${charge.bucket}:${charge.clientKey}`;
}

/**
 * The script's arguments for a request's charges: `charge` false only looks (a peek); `nowMs`
 * only in tests (production uses Redis's clock).
 *
 * @example
 * scriptArgs([charge], true); // ["", "1", "60", "1", "1000", "1", "1"]
 */
export function scriptArgs(charges: readonly BucketCharge[], charge: boolean, nowMs?: number): string[] {
  const args = [nowMs === undefined ? "" : String(nowMs), charge ? "1" : "0"];
  for (const { policy, cost, enforced } of charges) {
    args.push(String(policy.capacity), String(policy.refillTokens), String(policy.refillPeriodMs), String(cost), enforced ? "1" : "0");
  }
  return args;
}

/**
 * Decodes the script's reply (4 integers per bucket) into decisions.
 *
 * @example
 * decodeReply([1, 9, 1000, 0]); // [{ outcome: "allowed", remaining: 9, resetMs: 1000 }]
 */
export function decodeReply(reply: unknown): BucketDecision[] {
  if (!Array.isArray(reply) || reply.length % 4 !== 0) throw new Error(`unexpected script reply: ${JSON.stringify(reply)}`);
  const decisions: BucketDecision[] = [];
  for (let i = 0; i < reply.length; i += 4) {
    const [code, remaining, resetMs, retryAfterMs] = reply.slice(i, i + 4).map(Number) as [number, number, number, number];
    const outcome = OUTCOMES[code as keyof typeof OUTCOMES];
    if (outcome === undefined) throw new Error(`unexpected outcome code ${code}`);
    decisions.push(outcome === "denied" ? { outcome, remaining, resetMs, retryAfterMs } : { outcome, remaining, resetMs });
  }
  return decisions;
}

/**
 * The Upstash backend: one atomic token-bucket script per decision over the REST API,
 * EVALSHA first and EVAL only when Redis answers NOSCRIPT. A call whose signal aborts is
 * cancelled at the HTTP level, so a late answer cannot be mistaken for a decision.
 *
 * @example
 * const backend = upstashBackend({ url: env.UPSTASH_REDIS_REST_URL, token: env.UPSTASH_REDIS_REST_TOKEN, keyPrefix: "sluice" });
 * const decisions = await backend.take([charge], AbortSignal.timeout(1000));
 */
export function upstashBackend(options: UpstashBackendOptions): LimiterBackend {
  // One client per call: the abort signal is per request, and a function-valued signal is the
  // only form @upstash/redis turns into a thrown error (a plain one yields a fake "Aborted" result).
  const clientFor = (signal: AbortSignal) =>
    new Redis({
      url: options.url,
      token: options.token,
      signal: () => signal,
      retry: { retries: 0 },
      automaticDeserialization: false,
      enableTelemetry: false,
      readYourWrites: false,
      // One decision is one REST request with one command.
      enableAutoPipelining: false,
    });

  const decide = async (charges: readonly BucketCharge[], signal: AbortSignal, charge: boolean) => {
    const keys = charges.map((c) => bucketKey(options.keyPrefix, c));
    const decisions = decodeReply(await runScript(clientFor(signal), keys, scriptArgs(charges, charge)));
    if (decisions.length !== charges.length) throw new Error(`script answered ${decisions.length} decisions for ${charges.length} charges`);
    return decisions;
  };

  return {
    name: "upstash",
    take: (charges, signal) => decide(charges, signal, true),
    peek: (charges, signal) => decide(charges, signal, false),
    async ping(signal) {
      await withAuthCheck(() => clientFor(signal).ping());
    },
  };
}

/** EVALSHA, then EVAL only if the script is not cached (NOSCRIPT): never a separate SCRIPT LOAD. */
async function runScript(redis: Redis, keys: string[], args: string[]): Promise<unknown> {
  return withAuthCheck(async () => {
    try {
      return await redis.evalsha(TOKEN_BUCKET_SHA1, keys, args);
    } catch (error) {
      if (error instanceof Error && error.message.includes("NOSCRIPT")) return redis.eval(TOKEN_BUCKET_LUA, keys, args);
      throw error;
    }
  });
}

async function withAuthCheck<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof Error && /unauthorized|WRONGPASS|invalid.*token/i.test(error.message)) {
      // A wrong token is a configuration error, not an outage.
      throw new BackendConfigError("UPSTASH_REDIS_REST_TOKEN", `the Upstash REST API refused the token: ${error.message.split(", command was")[0]}`);
    }
    throw error;
  }
}
