import type { KeyPart } from "./key-parts";
import { normalizePath } from "./path";
import type { RequestSubject } from "./subject";

/** How client addresses are read and grouped. */
export interface IdentityOptions {
  /** Header holding the client address (lower-case): `cf-connecting-ip` unless configured. */
  readonly ipHeader: string;
  /** IPv6 clients are grouped by this prefix length (one subscriber line gets one /64). */
  readonly ipv6PrefixLength: number;
  /**
   * A secret that keys the hash of client keys (HMAC-SHA-256): stored names, metrics and logs then
   * cannot be reversed by guessing (an unkeyed hash of an IPv4 address can be, by trying them all).
   * Changing it renames every client's buckets (they start full).
   */
  readonly hashKey?: string;
}

/** Used when neither the address header nor a peer address is known: only in local development. */
export const LOCAL_FALLBACK_IP = "127.0.0.1";

/**
 * The client's address from the configured header (Cloudflare's `CF-Connecting-IP` by default;
 * client-supplied headers such as `X-Forwarded-For` are trusted only when configured, and then
 * their first entry is the client), else the peer address. IPv6 addresses are reduced to their
 * prefix.
 *
 * @example
 * clientIp(new Headers({ "cf-connecting-ip": "2001:db8:1:2:3:4:5:6" }), { ipHeader: "cf-connecting-ip", ipv6PrefixLength: 64 });
 * // "2001:db8:1:2:0:0:0:0/64"
 */
export function clientIp(headers: Headers, options: IdentityOptions, peerAddress?: string): string {
  const raw = headers.get(options.ipHeader)?.split(",")[0]?.trim() || peerAddress || LOCAL_FALLBACK_IP;
  return groupAddress(raw, options);
}

/**
 * An address as `ip` keys see it: IPv4 as is, IPv6 reduced to its configured prefix.
 *
 * @example
 * groupAddress("2001:db8::7", { ipHeader: "cf-connecting-ip", ipv6PrefixLength: 64 }); // "2001:db8:0:0:0:0:0:0/64"
 */
export function groupAddress(address: string, options: IdentityOptions): string {
  const raw = address.trim();
  return raw.includes(":") ? (ipv6Prefix(raw, options.ipv6PrefixLength) ?? raw) : raw;
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
 * A request's value for one key part, in the canonical form {@link namedKeyValue} also gives,
 * or `undefined` when the request lacks it (no API-key header, no bearer token).
 *
 * @example
 * requestKeyValue(subject, { kind: "route" }, identity); // "POST /login"
 */
export function requestKeyValue(subject: RequestSubject, part: KeyPart, options: IdentityOptions): string | undefined {
  switch (part.kind) {
    case "ip":
      return clientIp(subject.headers, options, subject.peerAddress);
    case "header":
      return subject.headers.get(part.name)?.trim() || undefined;
    case "bearer":
      return /^Bearer\s+(\S+)\s*$/i.exec(subject.headers.get("authorization") ?? "")?.[1];
    case "route":
      return routeValue(subject.method, subject.path);
  }
}

/**
 * A key part's value as an operator names it (`"203.0.113.7"`, `"POST /login"`, an API key), in
 * the form traffic produces, so both reach the same bucket; `undefined` when it cannot be that
 * kind of value.
 *
 * @example
 * namedKeyValue({ kind: "route" }, "post //Login/", identity); // "POST /login"
 */
export function namedKeyValue(part: KeyPart, text: string, options: IdentityOptions): string | undefined {
  const value = text.trim();
  if (value === "") return undefined;
  switch (part.kind) {
    case "ip":
      return groupAddress(value, options);
    case "header":
      return value;
    case "bearer":
      return /^\S+$/.test(value) ? value : undefined;
    case "route": {
      const [, method, path] = /^([A-Za-z]{1,16})\s+(\/\S*)$/.exec(value) ?? [];
      return method !== undefined && path !== undefined ? routeValue(method, path) : undefined;
    }
  }
}

/**
 * The stored key for a client: the readable name of its key kind (`describeKey`) and its values,
 * hashed (SHA-256, or HMAC-SHA-256 with `hashKey`), so a secret never becomes a storage name and
 * no header value, however long, can bloat a key.
 *
 * @example
 * await hashedClientKey("bearer", ["abc"]); // "bearer:ba7816bf…"
 * await hashedClientKey("ip", ["203.0.113.7"], secret); // "ip:…" (not guessable without the secret)
 */
export async function hashedClientKey(keyName: string, values: readonly string[], hashKey?: string): Promise<string> {
  const value = values.join("\n");
  const memoKey = `${hashKey === undefined ? "" : keyId(hashKey)}\u0000${keyName}\u0000${value}`;
  const known = hashedKeys.get(memoKey);
  if (known !== undefined) return known;
  const hashed = `${keyName}:${hashKey === undefined ? await sha256Hex(value) : await hmacHex(hashKey, value)}`;
  // A busy isolate sees the same clients again and again: remember the last few thousand hashes.
  if (hashedKeys.size >= MAX_HASHED_KEYS) hashedKeys.clear();
  hashedKeys.set(memoKey, hashed);
  return hashed;
}

/** Hashes of recently seen client keys, per isolate (the profile showed SHA-256 on every decision). */
const hashedKeys = new Map<string, string>();
const MAX_HASHED_KEYS = 4_096;

// The same normalised, case-folded path the rules match on: spelling cannot mint buckets.
function routeValue(method: string, path: string): string {
  return `${method.toUpperCase()} ${normalizePath(path).toLowerCase()}`;
}

/**
 * The /`length` network of an IPv6 address (all eight groups, lower-case hex), or undefined if
 * it does not parse. IPv4-mapped addresses (`::ffff:192.0.2.1`) come back as plain IPv4.
 *
 * @example
 * ipv6Prefix("2001:DB8:0:0:1::1", 64); // "2001:db8:0:0:0:0:0:0/64"
 */
export function ipv6Prefix(address: string, length: number): string | undefined {
  const groups = parseIpv6(address);
  if (groups === undefined) return undefined;
  const [g0, g1, g2, g3, g4, g5, g6, g7] = groups;
  if ([g0, g1, g2, g3, g4].every((g) => g === 0) && g5 === 0xffff) {
    return [g6 >> 8, g6 & 255, g7 >> 8, g7 & 255].join(".");
  }
  const masked = groups.map((group, i) => {
    const bits = Math.min(16, Math.max(0, length - i * 16));
    return bits === 0 ? 0 : group & (0xffff << (16 - bits)) & 0xffff;
  });
  return `${masked.map((g) => g.toString(16)).join(":")}/${length}`;
}

type EightGroups = [number, number, number, number, number, number, number, number];

function parseIpv6(address: string): EightGroups | undefined {
  let text = address.trim().toLowerCase().replace(/^\[|\]$/g, "").split("%")[0] ?? "";
  // A dotted IPv4 tail (::ffff:192.0.2.1) becomes two groups.
  const v4 = /^(.*:)(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [b0 = 0, b1 = 0, b2 = 0, b3 = 0] = v4.slice(2).map(Number);
    if ([b0, b1, b2, b3].some((b) => b > 255)) return undefined;
    text = `${v4[1]}${((b0 << 8) | b1).toString(16)}:${((b2 << 8) | b3).toString(16)}`;
  }
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const head = halves[0] ? halves[0].split(":") : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...tail];
  if (!groups.every((g) => /^[0-9a-f]{1,4}$/.test(g))) return undefined;
  return groups.map((g) => parseInt(g, 16)) as EightGroups;
}

// Imported once per secret per isolate; the memo names a secret by a small number, not its text.
const hmacKeys = new Map<string, { readonly id: number; readonly key: Promise<CryptoKey> }>();

function hmacKeyOf(secret: string): { readonly id: number; readonly key: Promise<CryptoKey> } {
  let entry = hmacKeys.get(secret);
  if (entry === undefined) {
    const key = crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    hmacKeys.set(secret, (entry = { id: hmacKeys.size + 1, key }));
  }
  return entry;
}

function keyId(secret: string): string {
  return `k${hmacKeyOf(secret).id}`;
}

async function hmacHex(secret: string, value: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.sign("HMAC", await hmacKeyOf(secret).key, new TextEncoder().encode(value)));
  let hex = "";
  for (const byte of digest) hex += HEX[byte];
  return hex;
}

const HEX = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, "0"));

async function sha256Hex(value: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(value)));
  let hex = "";
  for (const byte of digest) hex += HEX[byte];
  return hex;
}
