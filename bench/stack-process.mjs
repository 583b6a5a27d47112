// @ts-check
/**
 * Child process that hosts the local stack (redis-server, Upstash REST bridge, demo origin) from
 * dev/local-stack.mjs. It runs apart from the load generator so that autocannon's event loop and
 * the origin's and bridge's never slow each other down.
 *
 * Protocol (IPC): sends `{ ready: { redisUrl, bridgeUrl, originUrl } }` or `{ failed: message }`;
 * stops the stack and exits on the message "stop" or when the parent goes away.
 */
import { startLocalStack } from "../dev/local-stack.mjs";

if (!process.send) throw new Error("bench/stack-process.mjs must be started with fork()");

/** @type {Awaited<ReturnType<typeof startLocalStack>> | undefined} */
let stack;
let stopping = false;

async function shutdown() {
  if (stopping) return;
  stopping = true;
  await stack?.stop().catch(() => {});
  process.exit(0);
}

process.on("message", (message) => message === "stop" && void shutdown());
process.on("disconnect", () => void shutdown());
process.on("SIGTERM", () => void shutdown());
process.on("SIGINT", () => void shutdown());

try {
  stack = await startLocalStack();
  process.send({ ready: { redisUrl: stack.redis.url, bridgeUrl: stack.bridge.url, originUrl: stack.origin.url } });
} catch (error) {
  process.send({ failed: error instanceof Error ? error.message : String(error) });
  await shutdown();
}
