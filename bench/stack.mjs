// @ts-check
/**
 * Parent side of bench/stack-process.mjs: starts the local stack in a child process and stops it.
 */
import { fork } from "node:child_process";

const STARTUP_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;

/**
 * @typedef {{ redisUrl: string, bridgeUrl: string, originUrl: string }} StackUrls
 */

/**
 * Starts redis-server, the Upstash REST bridge and the demo origin in a child process.
 * @returns {Promise<StackUrls & { bridge: { url: string }, origin: { url: string }, stop: () => Promise<void> }>}
 *   `bridge` and `origin` have the shape `upstashVars()` takes.
 * @example
 * const stack = await startStackProcess();
 * const vars = upstashVars(stack);
 * await stack.stop();
 */
export async function startStackProcess() {
  const child = fork(new URL("./stack-process.mjs", import.meta.url).pathname, { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const exited = new Promise((resolve) => child.once("exit", resolve));

  async function stop() {
    if (child.exitCode !== null || child.signalCode !== null) return;
    if (child.connected) child.send("stop");
    const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }

  try {
    /** @type {StackUrls} */
    const urls = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the local stack did not start within ${STARTUP_TIMEOUT_MS} ms`)), STARTUP_TIMEOUT_MS);
      child.once("exit", (code) => reject(new Error(`the local stack's process exited (${code}) before it was ready`)));
      child.on("message", (/** @type {any} */ message) => {
        clearTimeout(timer);
        if (message?.ready) resolve(message.ready);
        else reject(new Error(`the local stack did not start: ${message?.failed ?? JSON.stringify(message)}`));
      });
    });
    return { ...urls, bridge: { url: urls.bridgeUrl }, origin: { url: urls.originUrl }, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
