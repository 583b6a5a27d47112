import { Hono, type Context, type MiddlewareHandler } from "hono";
import type { GatewayEnv } from "./gateway";
import { limiterRoutes } from "./limiter-routes";

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

/** The reserved routes, under their prefix. */
const reservedApp = new Hono<GatewayEnv>().route(RESERVED_PREFIX, limiterRoutes);

/**
 * Middleware, first in the Worker: a request whose path spells a reserved route (see
 * {@link reservedPath}) is answered by the limiter's routes, at the canonical path, and never
 * reaches the limiter's buckets or the origin; any other request passes on.
 *
 * @example
 * app.use("*", reservedRoutes);
 */
export const reservedRoutes: MiddlewareHandler<GatewayEnv> = async (c, next) => {
  // Most requests: the whole URL has no escape, no backslash and no "__limiter", so neither has
  // its path (a serialized URL holds its pathname as is): no URL object to build.
  if (!MAY_BE_RESERVED.test(c.req.url)) return next();
  const url = new URL(c.req.url);
  const path = reservedPath(url.pathname);
  if (path === undefined) return next();
  let request = c.req.raw;
  if (path !== url.pathname) {
    url.pathname = path;
    request = new Request(url, request);
  }
  return reservedApp.fetch(request, c.env, executionContextOf(c));
};

function executionContextOf(c: Context<GatewayEnv>) {
  try {
    return c.executionCtx;
  } catch {
    return undefined; // no execution context (a test calling the app directly)
  }
}
