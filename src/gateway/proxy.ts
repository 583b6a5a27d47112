import { notFoundProblem, originTimeoutProblem, originUnreachableProblem } from "../core/problems";
import { logEvent } from "./log";
import { reservedPath } from "./reserved";

/** Options of {@link forwardToOrigin}. */
export interface ForwardOptions {
  /** Base URL; the request's path is appended to its path, and the request's query used. */
  readonly originUrl: URL;
  /** Time allowed for the origin's response headers; past it the answer is 504. */
  readonly timeoutMs: number;
  /** The client's address, for `X-Forwarded-For` and `X-Real-IP`. */
  readonly clientIp: string;
  /** Logged with a failure: read only then. */
  readonly requestId?: () => string;
}

/** Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus `Host`. */
const HOP_BY_HOP = ["connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "host"];

/** Request headers that belong to the gateway, or to Cloudflare's edge, and stop here. */
const INTERNAL_REQUEST_HEADERS = /^(x-sluice-|cf-)/i;

/**
 * Client-sent headers that claim to say who the client is, which the origin might believe: the
 * gateway drops them and sets `X-Real-IP` itself (`X-Forwarded-For` gets the address appended,
 * so its last entry is the gateway's).
 */
const CLIENT_ADDRESS_HEADERS = ["x-real-ip", "true-client-ip", "forwarded", "x-client-ip", "x-cluster-client-ip", "fastly-client-ip"];

/**
 * Forwards a request to the origin, streaming both bodies, and returns the origin's answer
 * (status, headers including every `Set-Cookie`, body) with hop-by-hop headers removed. What the
 * origin may trust: `X-Real-IP` and the last `X-Forwarded-For` entry are the client's address
 * as the gateway saw it; other client-sent address headers are dropped. A `Location` pointing
 * into `ORIGIN_URL` is rewritten to the gateway's own origin. A reserved path is never sent.
 * An unreachable origin gives 502 and a slow one 504, both as problem+json. A WebSocket upgrade
 * is passed through: the origin's 101 comes back with its socket, which the runtime connects.
 *
 * @example
 * const response = await forwardToOrigin(request, { originUrl: new URL("https://api.example.com/v1"), timeoutMs: 30000, clientIp: "203.0.113.7" });
 */
export async function forwardToOrigin(request: Request, options: ForwardOptions): Promise<Response> {
  const incoming = new URL(request.url);
  // The Worker answers these itself: a path that spells one must never carry its token out.
  if (reservedPath(incoming.pathname) !== undefined) return notFoundProblem(incoming.pathname);
  const target = new URL(options.originUrl);
  target.pathname = joinPaths(target.pathname, incoming.pathname);
  target.search = incoming.search;

  const headers = withoutHopByHop(request.headers);
  for (const name of [...headers.keys()]) if (INTERNAL_REQUEST_HEADERS.test(name)) headers.delete(name);
  for (const name of CLIENT_ADDRESS_HEADERS) headers.delete(name);
  // A WebSocket upgrade keeps its Upgrade: the runtime then connects the socket through to the origin.
  const upgrade = request.headers.get("upgrade")?.toLowerCase() === "websocket";
  if (upgrade) {
    headers.set("Upgrade", "websocket");
    headers.set("Connection", "Upgrade");
  }
  const forwardedFor = request.headers.get("x-forwarded-for");
  headers.set("X-Forwarded-For", forwardedFor ? `${forwardedFor}, ${options.clientIp}` : options.clientIp);
  headers.set("X-Real-IP", options.clientIp);
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
      logEvent({ event: "proxy.origin_timeout", origin: options.originUrl.origin, timeoutMs: options.timeoutMs }, options.requestId?.());
      return originTimeoutProblem(options.timeoutMs);
    }
    logEvent({ event: "proxy.origin_unreachable", origin: options.originUrl.origin, reason: String(error) }, options.requestId?.());
    return originUnreachableProblem();
  } finally {
    // Once headers are in, the body streams for as long as it takes.
    clearTimeout(timer);
  }

  if (response.webSocket) return new Response(null, { status: 101, webSocket: response.webSocket, headers: withoutHopByHop(response.headers) });
  const headersBack = withoutHopByHop(response.headers);
  const location = headersBack.get("location");
  const rewritten = location === null ? undefined : gatewayLocation(location, options.originUrl, incoming.origin);
  if (rewritten !== undefined) headersBack.set("Location", rewritten);
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers: headersBack });
}

/**
 * An absolute `Location` into `ORIGIN_URL` (its origin, under its path) as the same place
 * behind the gateway; `undefined` for any other (relative ones, other hosts), which pass as they are.
 *
 * @example
 * gatewayLocation("http://10.0.0.5:8080/v1/login?next=%2F", new URL("http://10.0.0.5:8080/v1"), "https://api.example.com");
 * // "https://api.example.com/login?next=%2F"
 */
export function gatewayLocation(location: string, originUrl: URL, gatewayOrigin: string): string | undefined {
  if (!/^[a-z][a-z0-9+.-]*:/i.test(location)) return undefined;
  let url: URL;
  try {
    url = new URL(location);
  } catch {
    return undefined;
  }
  if (url.origin !== originUrl.origin) return undefined;
  const base = originUrl.pathname.replace(/\/+$/, "");
  if (base !== "" && url.pathname !== base && !url.pathname.startsWith(`${base}/`)) return undefined;
  return `${gatewayOrigin}${url.pathname.slice(base.length) || "/"}${url.search}${url.hash}`;
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
