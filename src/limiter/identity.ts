import { normalizePath } from "./rules";

/** One part of a client key. A rule's key is one part or several (e.g. ip plus route). */
export type KeyPart =
  | { readonly kind: "ip" }
  /** A header such as an API key; `name` is lower-case. */
  | { readonly kind: "header"; readonly name: string }
  /** The token of `Authorization: Bearer <token>`. */
  | { readonly kind: "bearer" }
  /** The request's method and path: a bucket per endpoint. */
  | { readonly kind: "route" };

/** How client addresses are read and grouped. */
export interface IdentityOptions {
  /** Header holding the client address (lower-case): `cf-connecting-ip` unless configured. */
  readonly ipHeader: string;
  /** IPv6 clients are grouped by this prefix length (one subscriber line gets one /64). */
  readonly ipv6PrefixLength: number;
}

export const DEFAULT_IDENTITY: IdentityOptions = { ipHeader: "cf-connecting-ip", ipv6PrefixLength: 64 };

/** Used when the address header is absent: only in local development, where the client is this machine. */
export const LOCAL_FALLBACK_IP = "127.0.0.1";

/**
 * The client's address from the configured header (Cloudflare's `CF-Connecting-IP` by default;
 * client-supplied headers such as `X-Forwarded-For` are trusted only when configured, and then
 * their first entry is the client). IPv6 addresses are reduced to their prefix.
 *
 * @example
 * clientIp(new Headers({ "cf-connecting-ip": "2001:db8:1:2:3:4:5:6" })); // "2001:db8:1:2:0:0:0:0/64"
 */
export function clientIp(headers: Headers, options: IdentityOptions = DEFAULT_IDENTITY): string {
  const raw = headers.get(options.ipHeader)?.split(",")[0]?.trim() || LOCAL_FALLBACK_IP;
  return raw.includes(":") ? ipv6Prefix(raw, options.ipv6PrefixLength) ?? raw : raw;
}

/**
 * The address of the peer that sent the request, as Cloudflare saw it (unmasked), for
 * `X-Forwarded-For`; the rate-limit key uses {@link clientIp} instead.
 *
 * @example
 * peerAddress(new Headers({ "cf-connecting-ip": "2001:db8::7" })); // "2001:db8::7"
 */
export function peerAddress(headers: Headers): string {
  return headers.get("cf-connecting-ip")?.trim() || LOCAL_FALLBACK_IP;
}

/**
 * Derives the key a rule charges a request to: the rule's key parts, hashed (SHA-256), so a
 * secret never becomes a storage name and no header value, however long, can bloat a key.
 * Returns `undefined` when the request lacks a part (no API-key header, no bearer token).
 *
 * @example
 * await clientKey(request, [{ kind: "bearer" }]); // "bearer:ba7816bf…" or undefined
 */
export async function clientKey(
  request: Request,
  parts: readonly KeyPart[],
  options: IdentityOptions = DEFAULT_IDENTITY,
): Promise<string | undefined> {
  const values: string[] = [];
  for (const part of parts) {
    const value = keyPartValue(request, part, options);
    if (value === undefined) return undefined;
    values.push(value);
  }
  return `${describeKey(parts)}:${await sha256Hex(values.join("\n"))}`;
}

/**
 * The readable prefix of a key, e.g. `ip`, `header.x-api-key`, `ip+route`.
 *
 * @example
 * describeKey([{ kind: "ip" }, { kind: "route" }]); // "ip+route"
 */
export function describeKey(parts: readonly KeyPart[]): string {
  return parts.map((part) => (part.kind === "header" ? `header.${part.name}` : part.kind)).join("+");
}

function keyPartValue(request: Request, part: KeyPart, options: IdentityOptions): string | undefined {
  switch (part.kind) {
    case "ip":
      return clientIp(request.headers, options);
    case "header":
      return request.headers.get(part.name)?.trim() || undefined;
    case "bearer":
      return /^Bearer\s+(\S+)\s*$/i.exec(request.headers.get("authorization") ?? "")?.[1];
    case "route":
      // The same normalised, case-folded path the rules match on: spelling cannot mint buckets.
      return `${request.method.toUpperCase()} ${normalizePath(new URL(request.url).pathname).toLowerCase()}`;
  }
}

/**
 * The /`length` network of an IPv6 address (all eight groups, lower-case hex), or undefined if
 * it does not parse.
 * IPv4-mapped addresses (`::ffff:192.0.2.1`) come back as plain IPv4.
 *
 * @example
 * ipv6Prefix("2001:DB8:0:0:1::1", 64); // "2001:db8:0:0:0:0:0:0/64"
 */
export function ipv6Prefix(address: string, length: number): string | undefined {
  const groups = parseIpv6(address);
  if (groups === undefined) return undefined;
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return [groups[6]! >> 8, groups[6]! & 255, groups[7]! >> 8, groups[7]! & 255].join(".");
  }
  const masked = groups.map((group, i) => {
    const bits = Math.min(16, Math.max(0, length - i * 16));
    return bits === 0 ? 0 : group & (0xffff << (16 - bits)) & 0xffff;
  });
  return `${masked.map((g) => g.toString(16)).join(":")}/${length}`;
}

function parseIpv6(address: string): number[] | undefined {
  let text = address.trim().toLowerCase().replace(/^\[|\]$/g, "").split("%")[0]!;
  // A dotted IPv4 tail (::ffff:192.0.2.1) becomes two groups.
  const v4 = /^(.*:)(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const bytes = v4.slice(2).map(Number);
    if (bytes.some((b) => b > 255)) return undefined;
    text = `${v4[1]}${((bytes[0]! << 8) | bytes[1]!).toString(16)}:${((bytes[2]! << 8) | bytes[3]!).toString(16)}`;
  }
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const head = halves[0] ? halves[0].split(":") : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...tail];
  if (!groups.every((g) => /^[0-9a-f]{1,4}$/.test(g))) return undefined;
  return groups.map((g) => parseInt(g, 16));
}

async function sha256Hex(value: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(value));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}
