import { exports } from "cloudflare:workers";
import { expect, it } from "vitest";

it("proxies to the origin", async () => {
  const response = await exports.default.fetch("https://gateway.test/hello?x=1", { headers: { "cf-connecting-ip": "198.51.100.1" } });
  expect(response.status).toBe(200);
  const body = await response.json();
  expect(body).toMatchObject({ path: "/hello" });
  expect(response.headers.get("RateLimit-Policy")).toBe('"default";q=60;w=60');
});
