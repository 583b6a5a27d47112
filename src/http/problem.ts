/** RFC 9457 problem details: `type` URIs are relative to the gateway's documentation. */
export interface Problem {
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly detail?: string;
  readonly [extension: string]: unknown;
}

/**
 * An `application/problem+json` response.
 *
 * @example
 * problemResponse({ type: "/problems/rate-limited", title: "Too Many Requests", status: 429 }, [["Retry-After", "3"]]);
 */
export function problemResponse(problem: Problem, headers: [string, string][] = []): Response {
  const response = new Response(JSON.stringify(problem), {
    status: problem.status,
    headers: [["Content-Type", "application/problem+json"], ["Cache-Control", "no-store"], ...headers],
  });
  return response;
}
