/** One part of a client key. A rule's key is one part or several (e.g. ip plus route). */
export type KeyPart =
  | { readonly kind: "ip" }
  /** A header such as an API key; `name` is lower-case. */
  | { readonly kind: "header"; readonly name: string }
  /** The token of `Authorization: Bearer <token>`. */
  | { readonly kind: "bearer" }
  /** The request's method and path: a bucket per endpoint. */
  | { readonly kind: "route" };

/** A key part as rules spell it: `ip`, `bearer`, `route`, or `header:<name>`. */
export type KeySpec = "ip" | "bearer" | "route" | `header:${string}`;

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * Parses one key part as `LIMITER_KEY` and a rule's `key` spell it.
 *
 * @example
 * parseKeyPart("header:X-API-Key"); // { kind: "header", name: "x-api-key" }
 * parseKeyPart("cookie");           // undefined
 */
export function parseKeyPart(text: string): KeyPart | undefined {
  const trimmed = text.trim();
  if (trimmed === "ip" || trimmed === "bearer" || trimmed === "route") return { kind: trimmed };
  const name = trimmed.startsWith("header:") ? trimmed.slice("header:".length) : undefined;
  return name !== undefined && HEADER_NAME.test(name) ? { kind: "header", name: name.toLowerCase() } : undefined;
}

/**
 * A key part spelled back the way rules and named clients write it.
 *
 * @example
 * keySpec({ kind: "header", name: "x-api-key" }); // "header:x-api-key"
 */
export function keySpec(part: KeyPart): KeySpec {
  return part.kind === "header" ? `header:${part.name}` : part.kind;
}

/**
 * The readable prefix of a stored key, e.g. `ip`, `header.x-api-key`, `ip+route`.
 *
 * @example
 * describeKey([{ kind: "ip" }, { kind: "route" }]); // "ip+route"
 */
export function describeKey(parts: readonly KeyPart[]): string {
  return parts.map((part) => (part.kind === "header" ? `header.${part.name}` : part.kind)).join("+");
}

/** Whether `text` is a valid HTTP header name (RFC 9110 token). */
export function isHeaderName(text: string): boolean {
  return HEADER_NAME.test(text);
}
