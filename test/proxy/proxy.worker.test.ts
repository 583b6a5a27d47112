import { inject } from "vitest";
import { describe, expect, it } from "vitest";
import { gatewayWith, randomIp } from "../support/gateway";

const gateway = gatewayWith({ LIMITER_CAPACITY: "1000", LIMITER_REFILL_RATE: "1000" });

async function echo(path: string, init: RequestInit = {}) {
  const response = await gateway(path, { ip: randomIp(), ...init });
  expect(response.status).toBe(200);
  return (await response.json()) as { method: string; path: string; query: string; headers: Record<string, string>; body: string };
}

describe("proxy to a real origin", () => {
  it.each(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])("forwards %s with path and query", async (method) => {
    const body = method === "GET" || method === "OPTIONS" ? undefined : `payload for ${method}`;
    const seen = await echo("/echo/a/b?x=1&y=%20z", { method, body });
    expect(seen).toMatchObject({ method, path: "/echo/a/b", query: "?x=1&y=%20z" });
    if (body) expect(atob(seen.body)).toBe(body);
  });

  it("HEAD gets the origin's headers and no body", async () => {
    const response = await gateway("/bytes?n=10", { method: "HEAD", ip: randomIp() });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("application/octet-stream");
    expect(await response.text()).toBe("");
  });

  it("streams a binary request body through unchanged", async () => {
    const bytes = new Uint8Array(70_000).map((_, i) => (i * 7) % 256);
    const seen = await echo("/echo", { method: "POST", body: bytes, headers: { "content-type": "application/octet-stream" } });
    const received = Uint8Array.from(atob(seen.body), (c) => c.charCodeAt(0));
    expect(received).toEqual(bytes);
  });

  it("returns a binary response body unchanged", async () => {
    const response = await gateway("/bytes?n=100000", { ip: randomIp() });
    const body = new Uint8Array(await response.arrayBuffer());
    expect(body.length).toBe(100_000);
    expect(body.every((byte, i) => byte === i % 256)).toBe(true);
  });

  it("keeps every Set-Cookie header", async () => {
    const response = await gateway("/cookies", { ip: randomIp() });
    expect(response.headers.getSetCookie()).toEqual(["session=abc; Path=/; HttpOnly", "theme=dark; Path=/"]);
  });

  it.each([404, 500, 503])("passes origin status %i through, with rate-limit headers", async (status) => {
    const response = await gateway(`/status/${status}`, { ip: randomIp() });
    expect(response.status).toBe(status);
    expect(await response.text()).toBe(`status ${status}`);
    expect(response.headers.get("x-origin")).toBe("status");
    expect(response.headers.get("RateLimit")).toMatch(/^"default";r=\d+;t=\d+$/);
  });

  it("drops hop-by-hop headers both ways and adds forwarding headers", async () => {
    const ip = randomIp();
    const seen = await echo("/echo", {
      ip,
      headers: {
        connection: "x-client-hop",
        "x-client-hop": "secret",
        "keep-alive": "timeout=5",
        "proxy-authorization": "Basic abc",
        "x-sluice-admin-token": "internal",
        "x-end-to-end": "kept",
      },
    } as RequestInit & { ip: string });
    expect(seen.headers["x-client-hop"]).toBeUndefined();
    expect(seen.headers["proxy-authorization"]).toBeUndefined();
    expect(seen.headers["x-sluice-admin-token"]).toBeUndefined();
    expect(seen.headers["cf-connecting-ip"]).toBeUndefined();
    expect(seen.headers["x-end-to-end"]).toBe("kept");
    expect(seen.headers["x-forwarded-for"]).toBe(ip);
    expect(seen.headers["x-forwarded-proto"]).toBe("https");
    expect(seen.headers["x-forwarded-host"]).toBe("gateway.test");

    const response = await gateway("/hop", { ip: randomIp() });
    expect(response.headers.get("x-hop-custom")).toBeNull();
    expect(response.headers.get("keep-alive")).toBeNull();
    expect(response.headers.get("x-end-to-end")).toBe("kept");
  });

  it("forwards the full IPv6 address, not the /64 the limiter groups by", async () => {
    const seen = await echo("/echo", { ip: "2001:db8:5:6:7:8:9:a" } as RequestInit);
    expect(seen.headers["x-forwarded-for"]).toBe("2001:db8:5:6:7:8:9:a");
  });

  it("forwards the client's Authorization header to the origin", async () => {
    const seen = await echo("/echo", { headers: { authorization: "Bearer client-token" } });
    expect(seen.headers.authorization).toBe("Bearer client-token");
  });

  it("appends the request path to an ORIGIN_URL with a path prefix", async () => {
    const prefixed = gatewayWith({ ORIGIN_URL: `${inject("originUrl")}/echo/v1/` });
    const response = await prefixed("/users?id=3", { ip: randomIp() });
    expect(await response.json()).toMatchObject({ path: "/echo/v1/users", query: "?id=3" });
  });

  it("answers 502 problem+json when the origin is down", async () => {
    const down = gatewayWith({ ORIGIN_URL: "http://127.0.0.1:9" }); // discard port: nothing listens
    const response = await down("/anything", { ip: randomIp() });
    expect(response.status).toBe(502);
    expect(response.headers.get("content-type")).toBe("application/problem+json");
    expect(await response.json()).toMatchObject({ status: 502, title: "Bad Gateway", type: "tag:sluice.dev,2026:origin-unreachable" });
  });

  it("answers 504 problem+json when the origin is too slow", async () => {
    const impatient = gatewayWith({ ORIGIN_TIMEOUT_MS: "100" });
    const response = await impatient("/slow?ms=2000", { ip: randomIp() });
    expect(response.status).toBe(504);
    expect(await response.json()).toMatchObject({ status: 504, type: "tag:sluice.dev,2026:origin-timeout" });
  });

  it("never proxies /__limiter/*", async () => {
    const response = await gateway("/__limiter/echo", { ip: randomIp() });
    expect(response.status).toBe(404);
    expect(response.headers.get("content-type")).toBe("application/problem+json");
  });
});
