import { createServer, type IncomingMessage, type ServerResponse } from "node:http";

/** Marks every answer of the origin, so the test tells an admitted request from the gateway's own answers. */
export const FROM_ORIGIN = { "x-model-origin": "1" };

/**
 * The model test's origin: a real HTTP server on loopback that answers the statuses the test
 * chooses and keeps the books the concurrency promise is checked against.
 *
 *   GET /<anything>/s/<code>     an answer with that status (a `count` rule's counted or refunded status)
 *   GET /<anything>/work?ms=N    headers and a first chunk at once, the rest after N ms (a slow response)
 *   anything else                200 "ok"
 *
 * In-flight accounting (per `x-api-key`, the key every model rule uses): a `/work` request is in
 * flight from its arrival until the origin has finished it (its N ms are over), whether or not
 * the gateway or the client went away before: the origin keeps working, which is what a
 * concurrency limit protects. `peak` is the most that were ever in flight at once.
 *
 * Arrivals: every request that carries an `x-model-id` header is noted with the time it reached
 * the origin (`performance.now()`, the test's own clock): a queued request counts then, and a
 * queued request whose client left must never arrive.
 *
 * @example
 * const origin = await startModelOrigin();
 * await fetch(`${origin.url}/count/s/401`); // 401
 * origin.inFlight.get("client-a"); // { now: 0, peak: 0 }
 * await origin.close();
 */
export async function startModelOrigin() {
  const inFlight = new Map<string, { now: number; peak: number }>();
  const arrivals = new Map<string, { at: number; times: number }>();
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://origin");
    const status = /\/s\/(\d{3})$/.exec(url.pathname);
    const id = req.headers["x-model-id"];
    if (typeof id === "string") {
      const seen = arrivals.get(id);
      arrivals.set(id, { at: seen?.at ?? performance.now(), times: (seen?.times ?? 0) + 1 });
    }
    req.resume();
    if (status) {
      res.writeHead(Number(status[1]), { "content-type": "text/plain", ...FROM_ORIGIN });
      res.end(`status ${status[1]}`);
    } else if (url.pathname.endsWith("/work")) {
      const key = String(req.headers["x-api-key"] ?? "");
      const books = inFlight.get(key) ?? { now: 0, peak: 0 };
      inFlight.set(key, books);
      books.now += 1;
      books.peak = Math.max(books.peak, books.now);
      res.on("error", () => {}); // the peer may be gone: the work goes on regardless
      res.writeHead(200, { "content-type": "text/plain", ...FROM_ORIGIN });
      res.write("first;");
      const timer = setTimeout(
        () => {
          timers.delete(timer);
          books.now -= 1;
          if (!res.destroyed) res.end("last");
        },
        Number(url.searchParams.get("ms") ?? "500"),
      );
      timers.add(timer);
    } else {
      res.writeHead(200, { "content-type": "text/plain", ...FROM_ORIGIN });
      res.end("ok");
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("model origin did not bind a TCP port");
  return {
    url: `http://127.0.0.1:${address.port}`,
    inFlight,
    arrivals,
    close: () => {
      for (const timer of timers) clearTimeout(timer);
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export type ModelOrigin = Awaited<ReturnType<typeof startModelOrigin>>;
