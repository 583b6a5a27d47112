import { Redis } from "@upstash/redis/cloudflare";
import { BackendConfigError } from "../../core/backend";
import type { Settled } from "../../core/keyed-batcher";
import { SLOTS_UPSTASH_LUA, SLOTS_UPSTASH_SHA1 } from "./slots-script";
import { TOKEN_BUCKET_UPSTASH_LUA, TOKEN_BUCKET_UPSTASH_SHA1 } from "./token-bucket-script";

/**
 * The Upstash backend's REST client: `@upstash/redis` with each call under its caller's signal,
 * its scripts run by SHA-1 (EVAL only on NOSCRIPT), alone or several in one pipeline, and its
 * errors made readable (a refused token is a configuration error).
 */

/**
 * The `@upstash/redis` client, plus {@link UpstashClient.send}: one command under its caller's
 * signal, so one client (built once per backend) serves calls with different deadlines.
 */
export class UpstashClient extends Redis {
  /**
   * Runs the one command `call` issues, aborted with `signal`. The client builds a command from
   * its options when the method is called, so options carrying this call's signal are in place
   * for exactly that synchronous moment (no other call can run in between). A plain signal makes
   * the client turn an aborted fetch into a fake reply rather than an error: whatever it returns,
   * an aborted signal throws its reason here, so a late or fake answer is never taken for a decision.
   */
  async send<T>(signal: AbortSignal, call: (redis: this) => Promise<T>): Promise<T> {
    const shared = this.opts;
    let pending: Promise<T>;
    this.opts = { ...shared, streamOptions: { signal } };
    try {
      pending = call(this);
    } finally {
      this.opts = shared;
    }
    return withAuthCheck(async () => {
      let result: T;
      try {
        result = await pending;
      } catch (error) {
        signal.throwIfAborted();
        throw withoutCommand(error);
      }
      signal.throwIfAborted();
      return result;
    });
  }

  /** Raw commands in one pipeline request under `signal`, each answered (or failed) on its own, in order. */
  async sendPipeline(signal: AbortSignal, commands: readonly (readonly string[])[]): Promise<Settled<unknown>[]> {
    return withAuthCheck(async () => {
      let replies: unknown;
      try {
        replies = await this.client.request({ path: ["pipeline"], body: commands, signal });
      } catch (error) {
        signal.throwIfAborted();
        throw withoutCommand(error);
      }
      // An aborted fetch comes back as a fake reply, not an error.
      signal.throwIfAborted();
      if (!Array.isArray(replies) || replies.length !== commands.length) throw new Error(`unexpected pipeline reply: ${JSON.stringify(replies).slice(0, 200)}`);
      return replies.map((reply: { result?: unknown; error?: string }) => (reply.error === undefined ? { ok: true, value: reply.result } : { ok: false, error: new Error(reply.error) }));
    });
  }
}

/** A Lua script and the SHA-1 of its text (EVALSHA's name for it). */
export interface Script {
  readonly lua: string;
  readonly sha1: string;
}

// Sent with Upstash's flags line: Upstash locks only the keys in KEYS.
const TOKEN_BUCKET: Script = { lua: TOKEN_BUCKET_UPSTASH_LUA, sha1: TOKEN_BUCKET_UPSTASH_SHA1 };
export const SLOTS: Script = { lua: SLOTS_UPSTASH_LUA, sha1: SLOTS_UPSTASH_SHA1 };

/** EVALSHA, then EVAL only if the script is not cached (NOSCRIPT): never a separate SCRIPT LOAD. */
export async function runScript(redis: UpstashClient, keys: string[], args: string[], signal: AbortSignal, script: Script = TOKEN_BUCKET): Promise<unknown> {
  try {
    return await redis.send(signal, (r) => r.evalsha(script.sha1, keys, args));
  } catch (error) {
    if (error instanceof Error && error.message.includes("NOSCRIPT")) return redis.send(signal, (r) => r.eval(script.lua, keys, args));
    throw error;
  }
}

/** One script call: its KEYS and ARGV. */
export interface ScriptCall {
  readonly keys: string[];
  readonly args: string[];
}

/**
 * Several calls of `script` in one pipeline (run in order, each atomic, each answered on its
 * own); those Redis answers NOSCRIPT go again as EVAL, in order. A failure of the request fails them all.
 */
export async function runScripts(redis: UpstashClient, calls: readonly ScriptCall[], signal: AbortSignal, script: Script = TOKEN_BUCKET): Promise<Settled<unknown>[]> {
  const replies = await redis.sendPipeline(
    signal,
    calls.map(({ keys, args }) => ["EVALSHA", script.sha1, String(keys.length), ...keys, ...args]),
  );
  const unknown = replies.flatMap((reply, i) => (!reply.ok && String(reply.error).includes("NOSCRIPT") ? [i] : []));
  if (unknown.length === 0) return replies;
  const again = await redis.sendPipeline(
    signal,
    unknown.map((i) => {
      const { keys, args } = calls[i] ?? { keys: [], args: [] };
      return ["EVAL", script.lua, String(keys.length), ...keys, ...args];
    }),
  );
  for (const [i, at] of unknown.entries()) replies[at] = again[i] ?? { ok: false, error: new Error("no reply") };
  return replies;
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

/**
 * The client's errors end with the whole command (", command was: [...]"), a script's full text
 * included: kilobytes per log line. The reason is the part before it.
 */
function withoutCommand(error: unknown): unknown {
  if (!(error instanceof Error)) return error;
  const at = error.message.indexOf(", command was");
  if (at < 0) return error;
  const trimmed = new Error(error.message.slice(0, at));
  trimmed.name = error.name;
  return trimmed;
}
