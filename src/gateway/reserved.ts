import { Hono } from "hono";
import { internalErrorProblem } from "../core/problems";
import type { Env } from "./env";
import type { GatewayEnv } from "./gateway";
import { limiterRoutes } from "./limiter-routes";
import { logEvent, requestIdReader } from "./log";

/** The prefix of the gateway's own routes: never proxied, never charged. */
export const RESERVED_PREFIX = "/__limiter";

/** Percent-decoding rounds: an origin may decode twice (`%255F` → `%5F` → `_`). */
const DECODE_ROUNDS = 3;

/**
 * The reserved route a path spells, in its canonical form, or `undefined` when the path is not
 * reserved. Any spelling an origin (or a framework in front of it) could route to `/__limiter`
 * counts: any case, percent-escapes (decoded up to three times), `\` for `/`, repeated slashes,
 * `.` and `..` segments, `;matrix` parameters and trailing dots on the first segment. Spellings
 * that count too many paths as reserved are harmless; one that counted too few would send the
 * request, with its admin token, to the origin.
 *
 * @example
 * reservedPath("//__LIMITER/Admin/peek"); // "/__limiter/admin/peek"
 * reservedPath("/%5f_limiter;x/health/"); // "/__limiter/health"
 * reservedPath("/api/__limiter");         // undefined
 */
export function reservedPath(pathname: string): string | undefined {
  // Most paths: no escape, no backslash, and no "__limiter" anywhere.
  if (!/[%\\]/.test(pathname) && !pathname.toLowerCase().includes("__limiter")) return undefined;
  let decoded = pathname;
  for (let round = 0; round < DECODE_ROUNDS && decoded.includes("%"); round++) {
    decoded = decoded.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
  }
  const segments: string[] = [];
  for (const segment of decoded.replaceAll("\\", "/").split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") segments.pop();
    else segments.push(segment);
  }
  const [first, ...rest] = segments;
  if (first === undefined) return undefined;
  const name = (first.split(";")[0] ?? "")
    .trim()
    .replace(/[.\s]+$/, "")
    .toLowerCase();
  if (name !== RESERVED_PREFIX.slice(1)) return undefined;
  return [RESERVED_PREFIX, ...rest.map((segment) => segment.toLowerCase())].join("/");
}

/** What any spelling of a reserved path holds somewhere in its URL (see {@link reservedPath}'s first test). */
const MAY_BE_RESERVED = /[%\\]|__limiter/i;

/**
 * The reserved routes, under their prefix. An exception in one (a bug, or a store read no route
 * guards) is logged and answered with the catalogue's 500, as on the traffic path, never with
 * Hono's plain-text default.
 */
const reservedApp = new Hono<GatewayEnv>().route(RESERVED_PREFIX, limiterRoutes).onError((error, c) => {
  const requestId = requestIdReader(c.req.raw.headers)();
  logEvent({ event: "gateway.internal_error", reason: error instanceof Error ? error.message : String(error) }, requestId);
  return internalErrorProblem(requestId);
});

/**
 * First in the Worker: a request whose path spells a reserved route (see {@link reservedPath})
 * gets the limiter routes' answer, at the canonical path, and never reaches the limiter's
 * buckets or the origin; any other request gets `undefined` and goes on.
 *
 * @example
 * const reserved = reservedResponse(request, env, ctx);
 * if (reserved !== undefined) return reserved;
 */
export function reservedResponse(request: Request, env: Env, ctx: ExecutionContext | undefined): Response | Promise<Response> | undefined {
  // Most requests: the whole URL has no escape, no backslash and no "__limiter", so neither has
  // its path (a serialized URL holds its pathname as is): no URL object to build.
  if (!MAY_BE_RESERVED.test(request.url)) return undefined;
  const url = new URL(request.url);
  const path = reservedPath(url.pathname);
  if (path === undefined) return undefined;
  if (path !== url.pathname) {
    url.pathname = path;
    return reservedApp.fetch(new Request(url, request), env, ctx);
  }
  return reservedApp.fetch(request, env, ctx);
}
