// @ts-check
/**
 * A local stand-in for Upstash: the REST protocol `@upstash/redis` speaks, in front of a real Redis.
 *
 *   POST /            ["SET","k","v"]              → {"result":"OK"}, or 400 {"error":"<redis error>"}
 *   POST /pipeline    [["INCR","n"],["GET","n"]]   → [{"result":1},{"result":"1"}]  (errors per entry)
 *   POST /multi-exec  the same, inside MULTI/EXEC  → the same shape
 *
 * `Authorization: Bearer <token>` is required (401 otherwise). With `Upstash-Encoding: base64` (which
 * @upstash/redis sends by default) every string in a result is base64, except a top-level "OK".
 * While Redis is down, requests fail at once with 503 {"error": …}; the bridge reconnects by itself.
 * Like Upstash, it accepts Upstash's script flags (`#!lua flags=allow-key-locking`), which Redis
 * itself refuses: it strips them before Redis sees the script and answers to the SHA-1 of the
 * script as sent (see {@link ScriptFlags}).
 *
 * Run alone: `node dev/upstash-bridge.mjs --redis redis://127.0.0.1:6379 --token dev-token --port 8079`.
 */
import { createHash } from "node:crypto";
import { createServer } from "node:http";
import { setTimeout as delay } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { createClient, ErrorReply, RESP_TYPES } from "redis";

// Bulk strings as Buffers: binary values survive, and they can't be mistaken for an "OK" status.
const AS_BUFFERS = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } };

// Commands that would change the state of the one connection every request shares.
const CONNECTION_STATE = new Set([
  "MULTI",
  "EXEC",
  "DISCARD",
  "WATCH",
  "UNWATCH",
  "SELECT",
  "SUBSCRIBE",
  "PSUBSCRIBE",
  "SSUBSCRIBE",
  "UNSUBSCRIBE",
  "PUNSUBSCRIBE",
  "SUNSUBSCRIBE",
  "MONITOR",
  "QUIT",
  "RESET",
  "HELLO",
  "AUTH",
]);

/** @typedef {[status: number, body: unknown]} Answer */
/** @typedef {(args: string[], options?: typeof AS_BUFFERS) => Promise<unknown>} Send one raw command to Redis */

/**
 * Starts the bridge. It waits up to 2 s for Redis, then listens anyway: requests get 503 until
 * Redis is up.
 * @param {{ redisUrl: string, token: string, port?: number, host?: string }} options
 * @returns {Promise<{ url: string, port: number, close: () => Promise<void>, setLatency: (ms: number) => void, setHang: (hang: boolean) => void, stats: () => { requests: number, peakInFlight: number }, resetStats: () => void }>}
 * @example
 * const bridge = await startUpstashBridge({ redisUrl: "redis://127.0.0.1:6379", token: "dev-token" });
 * const redis = new Redis({ url: bridge.url, token: "dev-token" }); // from "@upstash/redis"
 * await redis.set("k", "v");
 * bridge.setLatency(200); // every answer now comes 200 ms late
 * bridge.setHang(true);   // requests are accepted and never answered
 * bridge.stats();         // { requests, peakInFlight } since bridge.resetStats()
 * await bridge.close();
 */
export async function startUpstashBridge({ redisUrl, token, port = 0, host = "127.0.0.1" }) {
  const redis = createClient({
    url: redisUrl,
    RESP: 2, // what Upstash answers with: flat arrays, no maps or doubles
    disableOfflineQueue: true, // while Redis is down, fail now rather than queue until it's back
    socket: { reconnectStrategy: (retries) => Math.min(50 * (retries + 1), 500) },
  });
  let lost = false;
  redis.on("error", (/** @type {Error} */ err) => {
    if (!lost) console.warn(`upstash-bridge: Redis unavailable (${err.message}), reconnecting`);
    lost = true;
  });
  redis.on("ready", () => {
    if (lost) console.warn("upstash-bridge: Redis is back");
    lost = false;
  });
  const scripts = new ScriptFlags();
  /** @type {Send} */
  const send = async (args, options) => scripts.reply(args, await redis.sendCommand(scripts.translate(args), options));
  const connecting = redis.connect();
  connecting.catch(() => {}); // failures also arrive as "error" events, and it keeps retrying
  await Promise.race([connecting, delay(2000)]);

  let latencyMs = 0;
  let hang = false;
  // REST requests received, and the most answered at once (what a burst costs the store).
  const stats = { requests: 0, inFlight: 0, peakInFlight: 0 };

  const server = createServer(async (req, res) => {
    stats.requests += 1;
    if (hang) return; // accepted and never answered; close() drops the connection
    stats.inFlight += 1;
    stats.peakInFlight = Math.max(stats.peakInFlight, stats.inFlight);
    res.on("close", () => (stats.inFlight -= 1));
    try {
      const chunks = [];
      for await (const chunk of req) chunks.push(chunk);
      const [status, body] = await answer(send, token, req, Buffer.concat(chunks).toString("utf8"));
      if (latencyMs > 0) await delay(latencyMs);
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    } catch {
      res.destroy(); // the client went away mid-request; nobody is left to answer
    }
  });
  await new Promise((resolve) => server.listen(port, host, () => resolve(undefined)));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("upstash-bridge did not bind a TCP port");

  return {
    url: `http://${host}:${address.port}`,
    port: address.port,
    setLatency: (ms) => void (latencyMs = ms),
    setHang: (value) => void (hang = value),
    /** REST requests since the last reset, and the most in flight at once. */
    stats: () => ({ requests: stats.requests, peakInFlight: stats.peakInFlight }),
    resetStats: () => void Object.assign(stats, { requests: 0, peakInFlight: stats.inFlight }),
    close: async () => {
      const closed = new Promise((resolve) => server.close(() => resolve(undefined)));
      server.closeAllConnections(); // including hung requests and idle keep-alive sockets
      await closed;
      redis.destroy();
    },
  };
}

/**
 * One request, start to finish; never throws.
 * @param {Send} send
 * @param {string} token
 * @param {import("node:http").IncomingMessage} req
 * @param {string} text the request body
 * @returns {Promise<Answer>}
 */
async function answer(send, token, req, text) {
  // The exact words real Upstash uses for a bad token.
  if (req.headers.authorization !== `Bearer ${token}`) return [401, { error: "WRONGPASS invalid or missing auth token" }];
  if (req.method !== "POST") return [405, { error: "ERR only POST is supported by this bridge" }];
  const base64 = String(req.headers["upstash-encoding"]).toLowerCase() === "base64";
  const path = new URL(req.url ?? "/", "http://bridge").pathname.replace(/\/+$/, "") || "/";

  /** @type {unknown} */
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    return [400, { error: "ERR failed to parse the request body as JSON" }];
  }

  try {
    if (path === "/") {
      const invalid = checkCommand(body);
      if (invalid) return [400, { error: invalid }];
      return [200, { result: encode(await send(toArgs(body), AS_BUFFERS), base64) }];
    }
    if (path === "/pipeline" || path === "/multi-exec") {
      if (!Array.isArray(body) || body.length === 0) return [400, { error: "ERR expected a JSON array of commands" }];
      const invalid = body.map(checkCommand).find(Boolean);
      if (invalid) return [400, { error: invalid }];
      const commands = body.map(toArgs);
      const replies = path === "/pipeline" ? await pipeline(send, commands) : await multiExec(send, commands);
      return [200, replies.map((reply) => (reply instanceof ErrorReply ? { error: reply.message } : { result: encode(reply, base64) }))];
    }
    return [404, { error: `ERR unknown path ${path}` }];
  } catch (err) {
    // A reply from Redis (WRONGTYPE, NOSCRIPT, EXECABORT, …) is the caller's problem: 400, as Upstash.
    if (err instanceof ErrorReply) return [400, { error: err.message }];
    // Anything else means no answer from Redis (down, reconnecting, connection lost mid-command).
    return [503, { error: `ERR Redis unavailable: ${err instanceof Error ? err.message : String(err)}` }];
  }
}

/**
 * Runs commands back to back on the one connection (node-redis writes them as one pipeline).
 * Redis errors stay per command; a lost connection fails the whole request.
 * @param {Send} send
 * @param {string[][]} commands
 */
async function pipeline(send, commands) {
  const settled = await Promise.allSettled(commands.map((args) => send(args, AS_BUFFERS)));
  return settled.map((s) => {
    if (s.status === "fulfilled") return s.value;
    if (s.reason instanceof ErrorReply) return s.reason;
    throw s.reason;
  });
}

/**
 * Runs commands in MULTI/EXEC. All of them are queued in the same tick, so no other request's
 * command can land inside the transaction on the shared connection.
 * @param {Send} send
 * @param {string[][]} commands
 */
async function multiExec(send, commands) {
  const queued = Promise.allSettled([send(["MULTI"]), ...commands.map((args) => send(args))]);
  const exec = send(["EXEC"], AS_BUFFERS); // rejects with EXECABORT if one was refused
  const [replies] = await Promise.all([exec, queued]);
  return Array.isArray(replies) ? replies : [];
}

/**
 * Why a JSON value is not a command this bridge runs, or "" when it is one.
 * @param {unknown} command
 * @returns {string}
 */
function checkCommand(command) {
  if (!Array.isArray(command) || command.length === 0 || !command.every((a) => ["string", "number", "boolean"].includes(typeof a))) {
    return "ERR a command is a non-empty JSON array of strings and numbers";
  }
  const name = String(command[0]).toUpperCase();
  return CONNECTION_STATE.has(name) ? `ERR ${name} is not supported (the bridge shares one connection)` : "";
}

/**
 * @param {unknown} command an array that passed checkCommand
 * @returns {string[]}
 */
function toArgs(command) {
  return /** @type {unknown[]} */ (command).map(String);
}

/**
 * A Redis reply as JSON: numbers and null as they are, arrays recursively, strings as UTF-8 or,
 * with base64, as base64 (a top-level "OK" status stays "OK": @upstash/redis special-cases it).
 * @param {unknown} reply
 * @param {boolean} base64
 * @param {boolean} [nested]
 * @returns {unknown}
 */
function encode(reply, base64, nested = false) {
  if (Buffer.isBuffer(reply)) return /** @type {Buffer} */ (reply).toString(base64 ? "base64" : "utf8");
  if (typeof reply === "string") return base64 && (nested || reply !== "OK") ? Buffer.from(reply).toString("base64") : reply;
  if (reply instanceof ErrorReply) return encode(reply.message, base64, nested); // e.g. redis.error_reply inside a Lua table
  if (Array.isArray(reply)) return reply.map((item) => encode(item, base64, true));
  return reply;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const { values } = parseArgs({
    options: {
      redis: { type: "string", default: "redis://127.0.0.1:6379" },
      token: { type: "string", default: "dev-token" },
      port: { type: "string", default: "8079" },
      host: { type: "string", default: "127.0.0.1" },
    },
  });
  const bridge = await startUpstashBridge({ redisUrl: values.redis, token: values.token, port: Number(values.port), host: values.host });
  console.log(`upstash-bridge listening on ${bridge.url} (Redis ${values.redis}, token ${values.token})`);
  const shutdown = async () => {
    await bridge.close();
    process.exit(0);
  };
  process.once("SIGINT", shutdown);
  process.once("SIGTERM", shutdown);
}

/** Script flags Upstash accepts that Redis does not know (Upstash's per-key locking). */
const UPSTASH_ONLY_FLAGS = new Set(["allow-key-locking"]);

/**
 * Scripts as Upstash takes them: a shebang may carry Upstash-only flags, which Redis 7 refuses
 * ("Unexpected flag in script shebang"). The script Redis runs has them stripped, so its SHA-1
 * differs from the one the caller computed over the text it sent: EVALSHA, SCRIPT EXISTS and
 * SCRIPT LOAD's answer are translated between the two, as Upstash itself would answer.
 */
class ScriptFlags {
  /** SHA-1 of a script as sent → SHA-1 of the script Redis runs. */
  #redisSha = new Map();

  /**
   * The command Redis should run for `args`.
   * @param {string[]} args
   * @returns {string[]}
   */
  translate(args) {
    const name = (args[0] ?? "").toUpperCase();
    if ((name === "EVAL" || name === "EVAL_RO") && args[1] !== undefined) return [args[0] ?? name, this.#strip(args[1]), ...args.slice(2)];
    if ((name === "EVALSHA" || name === "EVALSHA_RO") && args[1] !== undefined) return [args[0] ?? name, this.#redisSha.get(args[1].toLowerCase()) ?? args[1], ...args.slice(2)];
    const sub = (args[1] ?? "").toUpperCase();
    if (name === "SCRIPT" && sub === "EXISTS") return args.map((arg, i) => (i < 2 ? arg : (this.#redisSha.get(arg.toLowerCase()) ?? arg)));
    if (name === "SCRIPT" && sub === "LOAD" && args[2] !== undefined) return [args[0] ?? name, args[1] ?? sub, this.#strip(args[2])];
    return args;
  }

  /**
   * Redis's reply to `args`, as Upstash would give it: SCRIPT LOAD answers the SHA-1 of the script as sent.
   * @param {string[]} args
   * @param {unknown} reply
   */
  reply(args, reply) {
    const isLoad = (args[0] ?? "").toUpperCase() === "SCRIPT" && (args[1] ?? "").toUpperCase() === "LOAD" && args[2] !== undefined;
    if (!isLoad) return reply;
    const sha = sha1(args[2] ?? "");
    return Buffer.isBuffer(reply) ? Buffer.from(sha) : sha;
  }

  /**
   * The script without Upstash-only flags; remembers which SHA-1 Redis will know it by.
   * @param {string} script
   */
  #strip(script) {
    const match = /^#!lua([^\n]*)/.exec(script);
    if (match === null) return script;
    const flags = /flags=([^\s]*)/.exec(match[1] ?? "");
    if (flags === null) return script;
    const kept = (flags[1] ?? "").split(",").filter((flag) => flag !== "" && !UPSTASH_ONLY_FLAGS.has(flag));
    const shebang = `#!lua${kept.length > 0 ? ` flags=${kept.join(",")}` : ""}`;
    const stripped = shebang + script.slice(match[0].length);
    if (stripped !== script) this.#redisSha.set(sha1(script), sha1(stripped));
    return stripped;
  }
}

/** @param {string} text */
function sha1(text) {
  return createHash("sha1").update(text).digest("hex");
}
