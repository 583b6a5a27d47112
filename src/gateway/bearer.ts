/**
 * Whether a request carries `Authorization: Bearer <token>`, compared in constant time: both
 * sides are hashed (SHA-256) first, so neither the token's length nor a matching prefix shows in
 * the time taken.
 *
 * @example
 * if (!(await bearerMatches(c.req.raw.headers, config.admin.token))) return unauthorizedProblem("the admin API");
 */
export async function bearerMatches(headers: Headers, token: string): Promise<boolean> {
  const given = /^Bearer\s+(\S+)\s*$/i.exec(headers.get("authorization") ?? "")?.[1] ?? "";
  const [a, b] = await Promise.all([digest(given), digest(token)]);
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return difference === 0 && given !== "";
}

async function digest(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}
