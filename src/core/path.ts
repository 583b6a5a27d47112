/**
 * The path rules and route keys see: percent-encoded unreserved characters decoded, repeated
 * slashes collapsed, a trailing slash dropped, so `/%6Cogin`, `//login` and `/login/` are all
 * `/login`. A limit must not be dodged by spelling; the origin still gets the path as sent.
 *
 * @example
 * normalizePath("//api//%75sers/"); // "/api/users"
 */
export function normalizePath(pathname: string): string {
  // Most paths are already normal: no escape, no doubled or trailing slash.
  if (!NEEDS_NORMALISING.test(pathname)) return pathname;
  const decoded = pathname.replace(/%(2[DdEe]|3[0-9]|[46][1-9A-Fa-f]|[57][0-9Aa]|5[Ff]|7[Ee])/g, (escape) =>
    String.fromCharCode(parseInt(escape.slice(1), 16)),
  );
  const collapsed = decoded.replace(/\/{2,}/g, "/");
  return collapsed.length > 1 && collapsed.endsWith("/") ? collapsed.slice(0, -1) : collapsed;
}

const NEEDS_NORMALISING = /%|\/\/|.\/$/;
