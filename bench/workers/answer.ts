/**
 * The flood's floor: no limiter and no framework, only the answer. A client's first request gets
 * a 200 (the benchmark checks one), every later one a fixed 429 shaped like sluice's under the
 * default headers (`SHAPE=sluice`: 7 headers, the problem+json body) or like the benchmark's
 * `@upstash/ratelimit` worker's (`SHAPE=peer`: 4 headers, a 42-byte body). Their ratio is what the
 * answers alone cost the runtime that writes them and the load generator that reads them.
 */
interface AnswerEnv {
  readonly SHAPE: "sluice" | "peer";
}

const ANSWERS = {
  sluice: {
    body: JSON.stringify({
      type: "https://iana.org/assignments/http-problem-types#quota-exceeded",
      title: "Too Many Requests",
      status: 429,
      detail: 'Rate limit "default" exceeded: retry in 1 s.',
      "violated-policies": ["default"],
    }),
    headers: {
      "Content-Type": "application/problem+json",
      "Retry-After": "1",
      "RateLimit-Policy": '"default";q=10;w=10',
      RateLimit: '"default";r=0;t=1',
      "X-RateLimit-Limit": "10",
      "X-RateLimit-Remaining": "0",
      "X-RateLimit-Reset": "1",
    },
  },
  peer: {
    body: JSON.stringify({ title: "Too Many Requests", status: 429 }),
    headers: { "Content-Type": "application/json", "X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "0", "Retry-After": "1" },
  },
} as const;

// One flood client per run, and a worker per run: this stays small.
const seen = new Set<string>();

export default {
  fetch(request: Request, env: AnswerEnv): Response {
    const client = request.headers.get("x-api-key") ?? "anonymous";
    if (!seen.has(client)) {
      seen.add(client);
      return new Response("first request of this client");
    }
    const { body, headers } = ANSWERS[env.SHAPE];
    return new Response(body, { status: 429, headers });
  },
};
