// @ts-check
/**
 * The demo and test origin: a real HTTP server that shows what the gateway forwarded.
 *
 *   GET  /                 a greeting (what `npm run dev` shows)
 *   ANY  /echo...          JSON: method, path, query, headers, body (base64)
 *   GET  /bytes?n=N        N bytes 0,1,…,255,0,… as application/octet-stream
 *   GET  /cookies          two Set-Cookie headers
 *   GET  /status/CODE      an empty answer with that status
 *   GET  /slow?ms=N        answers after N ms
 *   GET  /stream?ms=N      sends its headers and a first chunk at once, the rest after N ms
 *   GET  /hop              answers with hop-by-hop headers the gateway must drop
 *   GET  …/redirect?to=P   a 302 to P on this origin as an absolute URL (`http://<Host>P`), as an
 *                          origin that knows only its own address answers; `?url=U`: to U as given
 *   ANY  anything else     the greeting below, marked `x-origin: fallback` (so a test sees that
 *                          a request reached the origin at all)
 *   WS   /ws                a WebSocket that answers each message with "echo: <message>", and
 *                           first says "hello <x-api-key header>" so a test sees what was forwarded
 *
 * Run alone: `node dev/origin.mjs [port]` (default 8788).
 */
import { createServer } from "node:http";
import { pathToFileURL } from "node:url";
import { createRequire } from "node:module";

// Node's resolution, not a bundler's: `ws`'s "browser" entry is a stub.
/** @type {typeof import("ws")} */
const { WebSocketServer } = createRequire(import.meta.url)("ws");

/**
 * Starts the origin on loopback.
 * @param {{ port?: number, host?: string }} [options]
 * @returns {Promise<{ url: string, port: number, close: () => Promise<void> }>}
 * @example
 * const origin = await startOrigin({ port: 0 });
 * await fetch(`${origin.url}/echo`);
 * await origin.close();
 */
export async function startOrigin({ port = 0, host = "127.0.0.1" } = {}) {
  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://origin");
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const body = Buffer.concat(chunks);

    if (url.pathname.startsWith("/echo")) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          method: req.method,
          path: url.pathname,
          query: url.search,
          headers: req.headers,
          body: body.toString("base64"),
        }),
      );
    } else if (url.pathname === "/bytes") {
      const n = Number(url.searchParams.get("n") ?? "256");
      res.writeHead(200, { "content-type": "application/octet-stream" });
      res.end(Buffer.from(Array.from({ length: n }, (_, i) => i % 256)));
    } else if (url.pathname === "/cookies") {
      res.setHeader("set-cookie", ["session=abc; Path=/; HttpOnly", "theme=dark; Path=/"]);
      res.end("cookies");
    } else if (url.pathname.startsWith("/status/")) {
      res.writeHead(Number(url.pathname.slice("/status/".length)), { "x-origin": "status" });
      res.end(`status ${url.pathname.slice("/status/".length)}`);
    } else if (url.pathname === "/slow") {
      setTimeout(() => res.end("slow"), Number(url.searchParams.get("ms") ?? "1000"));
    } else if (url.pathname === "/stream") {
      res.writeHead(200, { "content-type": "text/plain" });
      res.write("first;");
      setTimeout(() => res.end("last"), Number(url.searchParams.get("ms") ?? "1000"));
    } else if (url.pathname.endsWith("/redirect")) {
      res.writeHead(302, { location: url.searchParams.get("url") ?? `http://${req.headers.host}${url.searchParams.get("to") ?? "/"}` });
      res.end();
    } else if (url.pathname === "/hop") {
      res.writeHead(200, { connection: "x-hop-custom", "x-hop-custom": "1", "keep-alive": "timeout=5", "x-end-to-end": "kept" });
      res.end("hop");
    } else {
      res.writeHead(200, { "content-type": "application/json", "x-origin": "fallback" });
      res.end(`${JSON.stringify({ hello: "from the demo origin", method: req.method, path: url.pathname })}\n`);
    }
  });
  const sockets = new WebSocketServer({ server, path: "/ws" });
  sockets.on("connection", (socket, request) => {
    socket.send(`hello ${request.headers["x-api-key"] ?? "anonymous"}`);
    socket.on("message", (data) => socket.send(`echo: ${String(data)}`));
  });
  await new Promise((resolve) => server.listen(port, host, () => resolve(undefined)));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("origin did not bind a TCP port");
  return {
    url: `http://${host}:${address.port}`,
    port: address.port,
    close: () => {
      for (const socket of sockets.clients) socket.terminate();
      sockets.close();
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve(undefined)));
    },
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const origin = await startOrigin({ port: Number(process.argv[2] ?? "8788") });
  console.log(`demo origin listening on ${origin.url}`);
}
