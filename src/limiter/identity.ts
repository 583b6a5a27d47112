/** Where a request's client identity comes from (`LIMITER_KEY`). */
export type KeySource =
  | { readonly kind: "ip" }
  /** A header such as an API key; `name` is lower-case. */
  | { readonly kind: "header"; readonly name: string }
  /** The token of `Authorization: Bearer <token>`. */
  | { readonly kind: "bearer" };

/** Used when `CF-Connecting-IP` is absent: only in local development, where the client is this machine. */
export const LOCAL_FALLBACK_IP = "127.0.0.1";

/** The key every request without the configured header or token shares. */
export const ANONYMOUS_KEY = "anonymous";

/**
 * The client's IP address as Cloudflare reports it. Client-supplied headers such as
 * `X-Forwarded-For` are never trusted.
 *
 * @example
 * clientIp(new Headers({ "cf-connecting-ip": "203.0.113.7" })); // "203.0.113.7"
 */
export function clientIp(headers: Headers): string {
  return headers.get("cf-connecting-ip")?.trim() || LOCAL_FALLBACK_IP;
}

/**
 * Derives the client key a request is charged to. Every raw value is hashed (SHA-256), so a
 * secret never becomes a storage name and no header value, however long, can bloat a key.
 *
 * @example
 * await clientKey(new Headers({ authorization: "Bearer abc" }), { kind: "bearer" });
 * // "bearer:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
 */
export async function clientKey(headers: Headers, source: KeySource): Promise<string> {
  switch (source.kind) {
    case "ip":
      return `ip:${await sha256Hex(clientIp(headers))}`;
    case "header": {
      const value = headers.get(source.name)?.trim();
      return value ? `header:${source.name}:${await sha256Hex(value)}` : ANONYMOUS_KEY;
    }
    case "bearer": {
      const match = /^Bearer\s+(\S+)\s*$/i.exec(headers.get("authorization") ?? "");
      return match ? `bearer:${await sha256Hex(match[1]!)}` : ANONYMOUS_KEY;
    }
  }
}

async function sha256Hex(value: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(value));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}
