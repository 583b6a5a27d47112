import { statSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { buildDashboardAssets } from "../../dev/build-dashboard.mjs";
import { sleep } from "../support/helpers";

// Every `wrangler dev` in the folder watches the generated module: rewriting it with the same
// bytes woke the others, whose builds rewrote it again, forever (issue 16, finding 16).
describe("the dashboard build", () => {
  it("leaves the generated module untouched when nothing changed", async () => {
    const out = await buildDashboardAssets();
    const first = statSync(out).mtimeMs;
    await sleep(50);
    await buildDashboardAssets();
    expect(statSync(out).mtimeMs).toBe(first);
  });
});
