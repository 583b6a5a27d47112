import { createServer } from "node:net";

/**
 * A loopback port nothing listens on right now (taken, then closed): for a server a test starts,
 * or for a store a test wants unreachable.
 *
 * @example
 * const port = await freePort(); // fetch(`http://127.0.0.1:${port}`) is refused until something listens
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}
