import type { KeyPart } from "./key-parts";
import { routePath } from "./path";
import type { RequestSubject } from "./subject";

/** How client addresses are read and grouped. */
export interface IdentityOptions {
  /** Header holding the client address (lower-case): `cf-connecting-ip` unless configured. */
  readonly ipHeader: string;
  /** IPv6 clients are grouped by this prefix length (one subscriber line gets one /64). */
  readonly ipv6PrefixLength: number;
  /**
   * Proxies you trust in front of the limiter that append to the address header (as nginx's
   * `$proxy_add_x_forwarded_for`, load balancers and Cloudflare do to `X-Forwarded-For`): the
   * client is the entry the outermost of them appended, the n-th from the right. Entries further
   * left were written by the client. Default 1: the last entry.
   */
  readonly trustedHops?: number;
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
 * The client's address from the configured header (Cloudflare's `CF-Connecting-IP` by default),
 * else the peer address. A header holding a list (`X-Forwarded-For`, `Forwarded`) is read from
 * the right: every proxy appends the address it received the request from, so the entry the
 * outermost trusted proxy appended (the `trustedHops`-th from the right, default the last) is the
 * client, and anything left of it is whatever the client wrote. A list shorter than that did not
 * pass every trusted proxy: it names nobody, and the peer address is used. IPv6 addresses are
 * reduced to their prefix.
 *
 * @example
 * clientIp(new Headers({ "cf-connecting-ip": "2001:db8:1:2:3:4:5:6" }), { ipHeader: "cf-connecting-ip", ipv6PrefixLength: 64 });
 * // "2001:db8:1:2:0:0:0:0/64"
 * clientIp(new Headers({ "x-forwarded-for": "6.6.6.6, 203.0.113.7" }), { ipHeader: "x-forwarded-for", ipv6PrefixLength: 64 });
 * // "203.0.113.7" (the client wrote 6.6.6.6; the proxy appended 203.0.113.7)
 */
export function clientIp(headers: Headers, options: IdentityOptions, peerAddress?: string): string {
  const raw = trustedEntry(headers.get(options.ipHeader), options) || peerAddress || LOCAL_FALLBACK_IP;
  return groupAddress(raw, options);
}

// The entry the outermost trusted proxy appended, as an address (`Forwarded`'s `for=`), or "".
function trustedEntry(header: string | null, options: IdentityOptions): string {
  if (header === null) return "";
  const entries = header.split(",");
  const entry = entries[entries.length - (options.trustedHops ?? DEFAULT_TRUSTED_HOPS)]?.trim() ?? "";
  return options.ipHeader === "forwarded" ? forwardedFor(entry) : entry;
}

const DEFAULT_TRUSTED_HOPS = 1;

// `for=192.0.2.60;proto=https` or `for="[2001:db8::1]:4711"` (RFC 7239): the address, or "" for
// `unknown` and obfuscated names, which name nobody.
function forwardedFor(element: string): string {
  const value = /(?:^|;)\s*for\s*=\s*("[^"]*"|[^;]*)/i.exec(element)?.[1]?.replace(/^"|"$/g, "").trim() ?? "";
  return value === "" || /^(unknown|_)/i.test(value) ? "" : value;
}

/**
 * An address as `ip` keys see it: IPv4 in plain dotted decimal, IPv6 reduced to its configured
 * prefix; a port or brackets a proxy wrote (`203.0.113.7:4711`, `[2001:db8::7]:443`) are dropped,
 * so one client is one value however it is spelled. Text that is no address is kept as it is.
 *
 * @example
 * groupAddress("2001:db8::7", { ipHeader: "cf-connecting-ip", ipv6PrefixLength: 64 }); // "2001:db8:0:0:0:0:0:0/64"
 * groupAddress("203.0.113.7:4711", { ipHeader: "x-forwarded-for", ipv6PrefixLength: 64 }); // "203.0.113.7"
 */
export function groupAddress(address: string, options: IdentityOptions): string {
  const raw = address.trim();
  const v4 = ipv4Text(raw.replace(/:\d{1,5}$/, ""));
  if (v4 !== undefined) return v4;
  if (!raw.includes(":")) return raw;
  const unbracketed = /^\[([^\]]*)\](:\d{1,5})?$/.exec(raw)?.[1] ?? raw;
  return ipv6Prefix(unbracketed, options.ipv6PrefixLength) ?? raw;
}

/**
 * A named `ip` value (an override's, a reset's) as traffic produces it, or why it cannot be one:
 * an address (any spelling), or a network whose prefix length is at least the IPv6 grouping
 * (`2001:db8:1:2::/64` names one /64 client). A shorter network names many clients: `network`
 * says so, with its prefix length.
 *
 * @example
 * parseAddress("2001:0DB8::7", identity); // { kind: "address", value: "2001:db8:0:0:0:0:0:0/64" }
 * parseAddress("2001:db8::/32", identity); // { kind: "network", family: 6, groups: [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], length: 32 }
 * parseAddress("nope", identity);          // undefined
 */
export function parseAddress(text: string, options: IdentityOptions): ParsedAddress | undefined {
  const [address = "", length, extra] = text.trim().split("/");
  if (extra !== undefined || (length !== undefined && !/^\d{1,3}$/.test(length))) return undefined;
  const v4 = ipv4Text(address);
  if (v4 !== undefined) {
    const bits = length === undefined ? 32 : Number(length);
    if (bits > 32) return undefined;
    return bits === 32 ? { kind: "address", value: v4 } : { kind: "network", family: 4, groups: v4.split(".").map(Number), length: bits };
  }
  const groups = parseIpv6(address);
  if (groups === undefined) return undefined;
  const bits = length === undefined ? 128 : Number(length);
  if (bits > 128) return undefined;
  const mapped = groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
  if (mapped && bits >= 96) {
    const value = ipv6Prefix(address, 128) ?? "";
    return bits === 128 ? { kind: "address", value } : { kind: "network", family: 4, groups: value.split(".").map(Number), length: bits - 96 };
  }
  if (bits >= options.ipv6PrefixLength) return { kind: "address", value: ipv6Prefix(address, options.ipv6PrefixLength) ?? "" };
  return { kind: "network", family: 6, groups, length: bits };
}

/** What {@link parseAddress} makes of a named `ip` value. */
export type ParsedAddress =
  | { readonly kind: "address"; readonly value: string }
  /** A network of several clients: its groups (4 bytes or 8 hextets, unmasked) and prefix length. */
  | { readonly kind: "network"; readonly family: 4 | 6; readonly groups: readonly number[]; readonly length: number };

// Dotted-quad IPv4 in its plain spelling (no leading zeros), or undefined.
function ipv4Text(text: string): string | undefined {
  const match = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (match === null) return undefined;
  const bytes = match.slice(1).map(Number);
  return bytes.every((b) => b <= 255) ? bytes.join(".") : undefined;
}

/**
 * The address of the peer that sent the request, as Cloudflare saw it (unmasked), for
 * `X-Forwarded-For`; the rate-limit key uses {@link clientIp} instead.
 *
 * @example
 * connectingAddress(new Headers({ "cf-connecting-ip": "2001:db8::7" })); // "2001:db8::7"
 */
export function connectingAddress(headers: Headers): string {
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
    case "ip": {
      const parsed = parseAddress(value, options);
      return parsed?.kind === "address" ? parsed.value : undefined;
    }
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
  // A long value (a 16 KB header) is hashed every time: remembering it would keep its text.
  if (value.length > MEMO_MAX_VALUE_CHARS) return `${keyName}:${await hashOf(value, hashKey)}`;
  const memoKey = `${hashKey === undefined ? "" : keyId(hashKey)}\u0000${keyName}\u0000${value}`;
  const known = hashedKeys.get(memoKey);
  if (known !== undefined) return known;
  const hashed = `${keyName}:${await hashOf(value, hashKey)}`;
  // A busy isolate sees the same clients again and again: remember recent hashes, within a bound
  // on the characters kept (the oldest go first).
  memoChars += memoKey.length + hashed.length;
  hashedKeys.set(memoKey, hashed);
  for (const [oldKey, oldHash] of hashedKeys) {
    if (memoChars <= MEMO_MAX_CHARS && hashedKeys.size <= MAX_HASHED_KEYS) break;
    hashedKeys.delete(oldKey);
    memoChars -= oldKey.length + oldHash.length;
  }
  return hashed;
}

/**
 * What the isolate's client-key hash memo holds: entries and characters (keys and hashes), never
 * more than `maxChars`.
 *
 * @example
 * hashMemoStats(); // { entries: 812, chars: 97_440, maxChars: 1_048_576 }
 */
export function hashMemoStats(): { entries: number; chars: number; maxChars: number } {
  return { entries: hashedKeys.size, chars: memoChars, maxChars: MEMO_MAX_CHARS };
}

function hashOf(value: string, hashKey: string | undefined): Promise<string> {
  return hashKey === undefined ? sha256Hex(value) : hmacHex(hashKey, value);
}

/** Hashes of recently seen client keys, per isolate (the profile showed SHA-256 on every decision). */
const hashedKeys = new Map<string, string>();
const MAX_HASHED_KEYS = 4_096;
/** Characters the memo keeps at most (about 1–2 MB of an isolate's 128 MB). */
const MEMO_MAX_CHARS = 1 << 20;
/** Longer values (an address with a route, an API key, a JWT fit) are not remembered. */
const MEMO_MAX_VALUE_CHARS = 4_096;
let memoChars = 0;

// The folded, case-folded path rules also match on, and HEAD as the GET it is (RFC 9110):
// spelling cannot mint buckets.
function routeValue(method: string, path: string): string {
  const upper = method.toUpperCase();
  return `${upper === "HEAD" ? "GET" : upper} ${routePath(path)}`;
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
  let text =
    address
      .trim()
      .toLowerCase()
      .replace(/^\[|\]$/g, "")
      .split("%")[0] ?? "";
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
