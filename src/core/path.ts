/**
 * The path rules and route keys see: percent-encoded unreserved characters decoded, repeated
 * slashes collapsed, `.` and `..` segments resolved, a trailing slash dropped, so `/%6Cogin`,
 * `//login`, `/x/../login` and `/login/` are all `/login`. A limit must not be dodged by
 * spelling; the origin still gets the path as sent.
 *
 * @example
 * normalizePath("//api//%75sers/"); // "/api/users"
 */
export function normalizePath(pathname: string): string {
  // Most paths are already normal: no escape, no doubled or trailing slash, no dot segment.
  if (!NEEDS_NORMALISING.test(pathname)) return pathname;
  const decoded = pathname.replace(/%(2[DdEe]|3[0-9]|[46][1-9A-Fa-f]|[57][0-9Aa]|5[Ff]|7[Ee])/g, (escaped) => String.fromCharCode(parseInt(escaped.slice(1), 16)));
  const segments: string[] = [];
  for (const segment of decoded.split("/")) {
    if (segment === "..") segments.pop();
    else if (segment !== "." && segment !== "") segments.push(segment);
  }
  return `/${segments.join("/")}`;
}

const NEEDS_NORMALISING = /%|\/\/|.\/$|\/\.\.?(\/|$)/;

/**
 * Every spelling of a normalised path that some origin routes to the same handler, the path
 * itself first: with `%2F` decoded to `/` (nginx does) and matrix parameters dropped (`/login;x`:
 * Spring, Tomcat and Jetty route it to `/login`), then also without a format suffix on the last
 * segment (`/login.json`, `/login.`: Rails, Spring and Django REST framework route it to
 * `/login`). A rule covers a request when its pattern matches any of them, so folding a spelling
 * never makes a rule miss one it matched before.
 *
 * @example
 * pathSpellings("/api%2Flogin;jsessionid=1.json"); // ["/api%2Flogin;jsessionid=1.json", "/api/login"]
 * pathSpellings("/users/7.json"); // ["/users/7.json", "/users/7"]
 * pathSpellings("/users/7"); // ["/users/7"]
 */
export function pathSpellings(pathname: string): readonly string[] {
  if (!FOLDABLE.test(pathname)) return [pathname];
  if (pathname === last.pathname) return last.spellings;
  const unparametered = normalizePath(pathname.replace(/%2f/gi, "/").replace(/;[^/]*/g, ""));
  const stem = withoutSuffix(unparametered);
  const spellings = [...new Set([pathname, unparametered, stem])];
  last = { pathname, spellings };
  return spellings;
}

// Rules are matched one after another against the same path: fold it once.
let last: { pathname: string; spellings: readonly string[] } = { pathname: "/", spellings: ["/"] };
const FOLDABLE = /[;.]|%2f/i;

/**
 * The path a `route` key names: the most folded of {@link pathSpellings}, lower-case, so
 * `/Login.json`, `/login;x` and `/login` are one endpoint and one bucket.
 *
 * @example
 * routePath("//Login.json"); // "/login"
 */
export function routePath(path: string): string {
  const spellings = pathSpellings(normalizePath(path));
  return (spellings[spellings.length - 1] ?? "/").toLowerCase();
}

// The last segment cut at its first dot (`/a/report.tar.gz` → `/a/report`, `/login.` → `/login`);
// a segment that starts with a dot (`/.well-known`) keeps it.
function withoutSuffix(path: string): string {
  const dot = path.indexOf(".", path.lastIndexOf("/") + 2);
  return dot === -1 ? path : path.slice(0, dot);
}
