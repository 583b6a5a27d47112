import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import puppeteer, { type Browser } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startGatewayProcess } from "../support/processes";
import { sleep } from "../support/helpers";

/**
 * The dashboard in a real headless Chromium (Debian's `chromium`, driven by puppeteer-core: no
 * browser download): log in with the token, see the counts rise with traffic, and save a
 * screenshot (the README's with UPDATE_SCREENSHOT=1).
 */
const TOKEN = "dashboard-token-0123456789";
const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((path) => existsSync(path)) ?? "chromium";
// The README's screenshot is refreshed on demand (UPDATE_SCREENSHOT=1 npm test); otherwise the
// test writes to a temporary file, so a test run leaves the working tree as it was.
const SCREENSHOT = process.env.UPDATE_SCREENSHOT === "1" ? join(new URL("../..", import.meta.url).pathname, "docs/dashboard.png") : join(tmpdir(), "sluice-dashboard.png");
let stack: Awaited<ReturnType<typeof startGatewayProcess>> | undefined;
let gateway: Awaited<ReturnType<typeof startGatewayProcess>>["gateway"];
let browser: Browser | undefined;

beforeAll(async () => {
  stack = await startGatewayProcess(inject("gatewayBundle"), {
    LIMITER_METRICS_TOKEN: TOKEN,
    LIMITER_METRICS_FLUSH_MS: "50",
    LIMITER_RULES: JSON.stringify([
      { name: "api", key: "header:x-api-key", capacity: 20, rate: "5/1s" },
      { name: "login", match: { path: "/login" }, key: "ip", capacity: 3, rate: "1/10s" },
    ]),
  });
  gateway = stack.gateway;
  browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
});

describe("the dashboard in Chromium", () => {
  it("asks for the token once, then shows the counts rising with traffic", async () => {
    if (browser === undefined) throw new Error("no browser");
    const page = await browser.newPage();
    await page.setViewport({ width: 1000, height: 1100 });
    await page.goto(`${gateway.url}/__limiter/dashboard`);
    await page.waitForSelector("#login:not([hidden])");

    // A wrong token is refused and asked for again.
    await page.type("#token", "not-the-token-at-all");
    await page.click("#login button");
    // (Page functions are strings: this file is type-checked without the DOM's types.)
    await page.waitForFunction(`document.querySelector("#login-message").textContent.includes("refused")`);

    await page.type("#token", TOKEN);
    await page.click("#login button");
    await page.waitForSelector("#board:not([hidden])");
    const text = (selector: string) => page.evaluate(`document.querySelector(${JSON.stringify(selector)}).textContent`) as Promise<string>;
    const before = Number(await text("#total-requests"));
    expect(page.url()).not.toContain(TOKEN);
    // The token is kept in the page's memory only: no other page of this origin can read it.
    expect(await page.evaluate(`sessionStorage.length + localStorage.length`)).toBe(0);
    expect(await page.evaluate(`document.cookie`)).toBe("");

    const traffic = async (rounds: number) => {
      for (let i = 0; i < rounds; i++) {
        for (const [path, headers] of [
          ["/echo", { "x-api-key": `client-${i % 4}` }],
          ["/login", { "x-api-key": "admin-console", "cf-connecting-ip": `203.0.113.${i % 2}` }],
        ] as const) {
          const response = await fetch(`${gateway.url}${path}`, { headers });
          await response.arrayBuffer();
        }
      }
    };
    await traffic(40);
    await page.waitForFunction(`Number(document.querySelector("#total-requests").textContent) >= ${before + 80}`, { timeout: 15_000 });
    expect(Number(await text("#total-refused"))).toBeGreaterThan(0);
    await page.waitForSelector("#rule-api canvas");
    await page.waitForSelector("#rule-login canvas");
    await page.waitForFunction(`document.querySelector("#top-refused").textContent.includes("login")`);
    expect(await text("#backend")).toMatch(/durable-object: ok/);

    // A little more traffic spread in time, so the charts show a shape, then the picture.
    await traffic(20);
    await sleep(2_500);
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
  }, 60_000);
});
