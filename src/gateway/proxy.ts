import { originTimeoutProblem, originUnreachableProblem } from "../core/problems";
import { logEvent } from "./log";

/** Options of {@link forwardToOrigin}. */
export interface ForwardOptions {
  /** Base URL; the request's path is appended to its path, and the request's query used. */
  readonly originUrl: URL;
  /** Time allowed for the origin's response headers; past it the answer is 504. */
  readonly timeoutMs: number;
  /** The client's address, for `X-Forwarded-For`. */
  readonly clientIp: string;
  /** Logged with a failure. */
  readonly requestId?: string;
}

/** Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus `Host`. */
const HOP_BY_HOP = [
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
];

/** Request headers that belong to the gateway, or to Cloudflare's edge, and stop here. */
const INTERNAL_REQUEST_HEADERS = /^(x-sluice-|cf-)/i;

/**
 * Forwards a request to the origin, streaming both bodies, and returns the origin's answer
 * (status, headers including every `Set-Cookie`, body) with hop-by-hop headers removed.
 * An unreachable origin gives 502 and a slow one 504, both as problem+json. A WebSocket upgrade
 * is passed through: the origin's 101 comes back with its socket, which the runtime connects.
 *
 * @example
 * const response = await forwardToOrigin(c.req.raw, { originUrl: new URL("https://api.example.com/v1"), timeoutMs: 30000, clientIp: "203.0.113.7" });
 */
export async function forwardToOrigin(request: Request, options: ForwardOptions): Promise<Response> {
  const incoming = new URL(request.url);
  const target = new URL(options.originUrl);
  target.pathname = joinPaths(target.pathname, incoming.pathname);
  target.search = incoming.search;

  const headers = withoutHopByHop(request.headers);
  for (const name of [...headers.keys()]) if (INTERNAL_REQUEST_HEADERS.test(name)) headers.delete(name);
  // A WebSocket upgrade keeps its Upgrade: the runtime then connects the socket through to the origin.
  const upgrade = request.headers.get("upgrade")?.toLowerCase() === "websocket";
  if (upgrade) {
    headers.set("Upgrade", "websocket");
    headers.set("Connection", "Upgrade");
  }
  const forwardedFor = request.headers.get("x-forwarded-for");
  headers.set("X-Forwarded-For", forwardedFor ? `${forwardedFor}, ${options.clientIp}` : options.clientIp);
  headers.set("X-Forwarded-Proto", incoming.protocol.replace(":", ""));
  headers.set("X-Forwarded-Host", incoming.host);

  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), options.timeoutMs);
  let response: Response;
  try {
    response = await fetch(target, {
      method: request.method,
      headers,
      body: upgrade ? null : request.body,
      redirect: "manual",
      signal: controller.signal,
    });
  } catch (error) {
    if (controller.signal.aborted) {
      logEvent("error", { event: "proxy.origin_timeout", origin: options.originUrl.origin, timeoutMs: options.timeoutMs }, options.requestId);
      return originTimeoutProblem(options.timeoutMs);
    }
    logEvent("error", { event: "proxy.origin_unreachable", origin: options.originUrl.origin, reason: String(error) }, options.requestId);
    return originUnreachableProblem();
  } finally {
    // Once headers are in, the body streams for as long as it takes.
    clearTimeout(timer);
  }

  if (response.webSocket) return new Response(null, { status: 101, webSocket: response.webSocket, headers: withoutHopByHop(response.headers) });
  return new Response(response.body, {
    status: response.status,
    statusText: response.statusText,
    headers: withoutHopByHop(response.headers),
  });
}

function withoutHopByHop(source: Headers): Headers {
  const headers = new Headers(source);
  // Headers named in `Connection` are hop-by-hop too.
  const named = (source.get("connection") ?? "").split(",").map((name) => name.trim().toLowerCase());
  for (const name of [...HOP_BY_HOP, ...named]) if (name) headers.delete(name);
  return headers;
}

function joinPaths(base: string, path: string): string {
  if (base === "" || base === "/") return path;
  return base.replace(/\/+$/, "") + path;
}
