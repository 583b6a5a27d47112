import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize } from "node:path";
import { describe, expect, it } from "vitest";

const root = new URL("..", import.meta.url).pathname;
const pages = [
  "README.md",
  "bench/README.md",
  ...readdirSync(join(root, "docs"))
    .filter((f) => f.endsWith(".md"))
    .map((f) => `docs/${f}`),
];
const slug = (heading: string) =>
  heading
    .toLowerCase()
    .trim()
    .replace(/[`()]/g, "")
    .replace(/[^a-z0-9 _-]/g, "")
    .replaceAll(" ", "-");
const anchorsOf = (text: string) => new Set([...text.matchAll(/^#{1,4} (.+)$/gm)].map((m) => slug(m[1] ?? "")).concat([...text.matchAll(/<a id="([^"]+)"/g)].map((m) => m[1] ?? "")));

describe("the documentation", () => {
  it("the README is a front door (≤ 300 lines) and every page it maps is reachable from it", () => {
    const readme = readFileSync(join(root, "README.md"), "utf8");
    expect(readme.split("\n").length).toBeLessThanOrEqual(300);
    for (const page of pages.filter((p) => p.startsWith("docs/") && p !== "docs/profile.md")) expect(readme, page).toContain(`](${page})`);
  });

  it("every relative link points at a file that exists and, with an anchor, at a heading in it", () => {
    const broken: string[] = [];
    for (const page of pages) {
      const text = readFileSync(join(root, page), "utf8");
      for (const [, link = ""] of text.matchAll(/\]\(([^)\s]*)\)/g)) {
        if (/^(https?:|mailto:)/.test(link)) continue;
        const [path = "", anchor] = link.split("#");
        const target = path === "" ? page : normalize(join(dirname(page), path));
        if (!existsSync(join(root, target))) broken.push(`${page}: ${link} (no such file)`);
        else if (anchor !== undefined && target.endsWith(".md") && !anchorsOf(readFileSync(join(root, target), "utf8")).has(anchor)) broken.push(`${page}: ${link} (no such heading)`);
      }
    }
    expect(broken).toEqual([]);
  });
});
