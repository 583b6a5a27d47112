// @ts-check
/**
 * A throwaway `redis-server` on loopback, for tests and local runs: no persistence, a free port,
 * and stop/start on the same port so tests can simulate an outage and the recovery after it.
 *
 * Run alone: `node dev/redis-server.mjs [port]` (default: a free port); Ctrl-C stops it.
 */
import { spawn } from "node:child_process";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { pathToFileURL } from "node:url";

const READY_TIMEOUT_MS = 5000;
const NOT_INSTALLED = "redis-server not found: apt-get install redis-server";

/**
 * Starts `redis-server` on 127.0.0.1 and waits until it answers PING.
 * @param {{ port?: number }} [options] `port: 0` (the default) picks a free port.
 * @returns {Promise<{ port: number, url: string, stop: () => Promise<void>, start: () => Promise<void> }>}
 * @example
 * const redis = await startRedis();
 * // use redis.url ("redis://127.0.0.1:<port>")
 * await redis.stop();  // outage: the process is killed
 * await redis.start(); // recovery: same port, empty data set
 * await redis.stop();
 */
export async function startRedis({ port = 0 } = {}) {
  const chosenPort = await checkPort(port);
  /** @type {import("node:child_process").ChildProcess | undefined} */
  let child;
  // Don't leave an orphaned redis-server behind if the parent exits without calling stop().
  const killOnExit = () => child?.kill("SIGKILL");

  async function start() {
    if (child) return;
    child = await spawnRedis(chosenPort);
    child.once("exit", () => (child = undefined));
    process.once("exit", killOnExit);
  }

  async function stop() {
    const running = child;
    if (!running) return;
    process.removeListener("exit", killOnExit);
    const exited = new Promise((resolve) => running.once("exit", resolve));
    running.kill("SIGKILL");
    await exited;
  }

  await start();
  return { port: chosenPort, url: `redis://127.0.0.1:${chosenPort}`, stop, start };
}

/**
 * Spawns redis-server on `port` and resolves once it answers PING; rejects (and kills it) otherwise.
 * @param {number} port
 * @returns {Promise<import("node:child_process").ChildProcess>}
 */
async function spawnRedis(port) {
  // A redis already on this port would answer our PING and pass for ours.
  await checkPort(port);
  const child = spawn(
    "redis-server",
    // `--save ""` and `--appendonly no`: nothing is ever written; `--dir` just in case.
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmpdir()],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  // Keep the tail of redis's own log: it names the problem (port in use, bad option, ...).
  let output = "";
  const keep = (/** @type {Buffer} */ chunk) => (output = (output + chunk.toString()).slice(-2000));
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);

  /** @type {Promise<never>} */
  const failed = new Promise((_, reject) => {
    child.once("error", (err) => reject(/** @type {NodeJS.ErrnoException} */ (err).code === "ENOENT" ? new Error(NOT_INSTALLED) : err));
    child.once("exit", (code, signal) => reject(new Error(`redis-server on port ${port} exited early (${signal ?? code}):\n${output}`)));
  });
  failed.catch(() => {}); // only observed through the race below

  const deadline = Date.now() + READY_TIMEOUT_MS;
  try {
    while (!(await Promise.race([ping(port), failed]))) {
      if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not answer PING within ${READY_TIMEOUT_MS} ms:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } catch (err) {
    child.kill("SIGKILL");
    throw err;
  }
  // Once up, stop collecting its log so the pipes can't fill up and block it.
  child.stdout?.removeListener("data", keep).resume();
  child.stderr?.removeListener("data", keep).resume();
  return child;
}

/**
 * One raw `PING` over TCP; true when the answer is `+PONG`.
 * @param {number} port
 * @returns {Promise<boolean>}
 */
function ping(port) {
  return new Promise((resolve) => {
    const socket = connect({ port, host: "127.0.0.1" });
    const done = (/** @type {boolean} */ ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once("error", () => done(false));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.once("data", (data) => done(data.toString().startsWith("+PONG")));
  });
}

/**
 * Checks that a loopback port is free right now by binding it and letting go; port 0 gets one
 * from the OS.
 * @param {number} port
 * @returns {Promise<number>} the port, free at the time of the check
 */
function checkPort(port) {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", (err) => reject(/** @type {NodeJS.ErrnoException} */ (err).code === "EADDRINUSE" ? new Error(`port ${port} is already in use`) : err));
    server.listen(port, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const redis = await startRedis({ port: Number(process.argv[2] ?? "0") });
  console.log(`redis-server listening on ${redis.url}`);
  const shutdown = async () => {
    await redis.stop();
    process.exit(0);
  };
  process.once("SIGINT", shutdown);
  process.once("SIGTERM", shutdown);
}
