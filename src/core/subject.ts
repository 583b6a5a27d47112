/** What the limiter is asked about: a request as it arrived, or a client named by rule and key values. */
export type Subject = RequestSubject | ClientSubject;

/** A request: every rule that matches it is charged, each to the client its key names. */
export interface RequestSubject {
  readonly kind: "request";
  /** HTTP method, any case. */
  readonly method: string;
  /** The URL's pathname as sent (rules see it normalised). */
  readonly path: string;
  readonly headers: Headers;
  /** The host the request was for (rules with `match.hosts`); the `Host` header when left out. */
  readonly host?: string;
  /** The connection's peer, used for `ip` keys when the configured address header is absent. */
  readonly peerAddress?: string;
  /**
   * An identity the caller established (a user id from a verified JWT, say): when set, it
   * replaces every matched rule's key parts.
   */
  readonly clientId?: string;
}

/**
 * A client named the way a rule sees it: the rule's name and a value per key part, spelled as in
 * the rule (`{ rule: "api", client: { "header:x-api-key": "abc" } }`). It reaches the same
 * bucket as that client's traffic.
 */
export interface ClientSubject {
  readonly kind: "client";
  readonly rule: string;
  readonly client: Readonly<Record<string, string>>;
}

/**
 * The subject for a Fetch API request.
 *
 * @example
 * await limiter.check(requestSubject(request)); // in a Worker's fetch handler
 */
export function requestSubject(request: Request, extra?: Pick<RequestSubject, "peerAddress" | "clientId">): RequestSubject {
  const url = request.url;
  // The pathname without building a URL object: scheme://host/path?query#fragment.
  const start = url.indexOf("/", url.indexOf("//") + 2);
  const end = url.search(/[?#]/);
  const path = start === -1 ? "/" : url.slice(start, end === -1 || end < start ? undefined : end);
  const authority = url.slice(url.indexOf("//") + 2, start === -1 ? undefined : start);
  const host = authority.slice(authority.lastIndexOf("@") + 1).replace(/:\d+$/, "");
  const subject: RequestSubject = { kind: "request", method: request.method, path, headers: request.headers, host };
  return extra === undefined ? subject : { ...subject, ...extra };
}
