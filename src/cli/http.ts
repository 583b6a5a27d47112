import { CliError, EXIT } from "./exit-codes";

/** How long `sluice` waits for the gateway before it calls it unreachable. */
export const REQUEST_TIMEOUT_MS = 10_000;

/** One answer of the gateway: its status and parsed body (JSON, or the text when it is not JSON). */
export interface Answer {
  readonly status: number;
  readonly body: unknown;
}

/**
 * Talks to one gateway's `/__limiter/*` routes. The admin token goes only to the admin routes
 * (never to `/status`, where it would be taken for the caller's own bearer key), and a redirect is
 * reported rather than followed, so the token never travels to another address.
 *
 * @example
 * const gateway = new GatewayClient("http://localhost:8787", process.env.SLUICE_ADMIN_TOKEN);
 * await gateway.admin("POST", "peek", { rule: "api", client: { "header:x-api-key": "abc" } });
 */
export class GatewayClient {
  constructor(
    readonly url: string,
    private readonly token: string | undefined,
  ) {}

  /** Calls `/__limiter/admin/<path>` with the token; a 2xx answer's body, or a {@link CliError} saying what went wrong. */
  async admin(method: "GET" | "POST" | "PUT" | "DELETE", path: string, body?: unknown): Promise<unknown> {
    const headers: Record<string, string> = { Accept: "application/json" };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const answer = await this.send(`/__limiter/admin/${path}`, { method, headers, ...(body !== undefined && { body: JSON.stringify(body) }) });
    if (answer.status >= 200 && answer.status < 300) return expectJson(answer, this.url);
    throw failure(answer, this.url, this.token ? "wrong-token" : "no-token");
  }

  /**
   * GETs a public `/__limiter/` route (health, status); any status is returned, only a failure to
   * connect throws. The token goes along only when asked (`withToken`: health's details): on
   * `/status` a bearer token would count as the caller's own key.
   */
  async get(path: string, headers: Record<string, string> = {}, { withToken = false } = {}): Promise<Answer> {
    const auth: Record<string, string> = withToken && this.token ? { Authorization: `Bearer ${this.token}` } : {};
    return this.send(path, { method: "GET", headers: { Accept: "application/json", ...headers, ...auth } });
  }

  private async send(path: string, init: RequestInit): Promise<Answer> {
    let response: Response;
    try {
      response = await fetch(this.url + path, { ...init, redirect: "manual", signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    } catch (error) {
      throw unreachable(this.url, error);
    }
    if (response.status >= 300 && response.status < 400) {
      throw new CliError(EXIT.unavailable, `the gateway at ${this.url} redirects (${response.status}) to ${response.headers.get("location") ?? "?"}: use that address as --url`);
    }
    const text = await response.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // Not JSON: kept as text for the message.
    }
    return { status: response.status, body };
  }
}

/**
 * The {@link CliError} for a gateway answer that is not a success: one line naming what to do,
 * and the exit code of its kind (see `EXIT`).
 *
 * @example
 * failure({ status: 400, body: { field: "rule", detail: 'rule "x" is not a rule (known: api)' } }, url, "wrong-token");
 * // CliError(1, 'the gateway refused the request (400): rule: "x" is not a rule (known: api)')
 */
export function failure(answer: Answer, url: string, token: "no-token" | "wrong-token" | "not-sent"): CliError {
  const { status, body } = answer;
  const problem = isProblem(body) ? body : undefined;
  const detail = problem?.detail ?? (typeof body === "string" ? (body.split("\n")[0] ?? "").slice(0, 200) : "");
  switch (true) {
    case status === 400: {
      const field = typeof problem?.field === "string" ? problem.field : undefined;
      const message = field !== undefined && detail.startsWith(`${field} `) ? detail.slice(field.length + 1) : detail;
      return new CliError(EXIT.usage, `the gateway refused the request (400): ${field === undefined ? message : `${field}: ${message}`}`, body);
    }
    case status === 401:
      return new CliError(
        EXIT.unauthorized,
        token === "not-sent"
          ? `401 Unauthorized: ${detail}`
          : token === "no-token"
            ? "401 Unauthorized: SLUICE_ADMIN_TOKEN is not set (export it with the value of the gateway's LIMITER_ADMIN_TOKEN)"
            : "401 Unauthorized: SLUICE_ADMIN_TOKEN is not the gateway's LIMITER_ADMIN_TOKEN",
        body,
      );
    case status === 404:
      return new CliError(
        EXIT.notFound,
        problem?.title === "Not Found"
          ? `404: the admin API is off at ${url}: set LIMITER_ADMIN_TOKEN on the gateway (wrangler secret put LIMITER_ADMIN_TOKEN)`
          : `404: no sluice gateway answers at ${url} (check --url or SLUICE_URL)`,
        body,
      );
    case status === 429:
      return new CliError(EXIT.refused, `429 Too Many Requests: ${detail || "rate limited"}`, body);
    case status >= 500:
      return new CliError(EXIT.unavailable, `the gateway answered ${status}: ${detail || "no detail"}`, body);
    default:
      return new CliError(EXIT.unavailable, `unexpected answer ${status} from ${url}: ${detail}`, body);
  }
}

function expectJson(answer: Answer, url: string): unknown {
  if (typeof answer.body === "object" && answer.body !== null) return answer.body;
  throw new CliError(EXIT.unavailable, `${url} answered ${answer.status} but not with JSON: is it a sluice gateway? (check --url or SLUICE_URL)`);
}

function unreachable(url: string, error: unknown): CliError {
  if (error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError")) {
    return new CliError(EXIT.unavailable, `the gateway at ${url} did not answer within ${REQUEST_TIMEOUT_MS / 1000} s`);
  }
  // fetch's own message is "fetch failed"; the cause says why (ECONNREFUSED, ENOTFOUND, …).
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error;
  const why = cause instanceof Error ? ((cause as { code?: string }).code ?? cause.message) : String(cause);
  return new CliError(EXIT.unavailable, `cannot reach the gateway at ${url} (${why}): is it running? (check --url or SLUICE_URL)`);
}

interface ProblemBody {
  readonly title?: string;
  readonly detail?: string;
  readonly field?: unknown;
}

function isProblem(body: unknown): body is ProblemBody {
  return typeof body === "object" && body !== null && ("detail" in body || "title" in body);
}
