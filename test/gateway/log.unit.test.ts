import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { EVENT_LEVELS } from "../../src/gateway/log";

describe("the log's one table of events", () => {
  it("the README's Logs table lists exactly the events the gateway writes, each at its level", async () => {
    const readme = await readFile(new URL("../../README.md", import.meta.url).pathname, "utf8");
    const section = readme.slice(readme.indexOf("### Logs"));
    const rows = [...section.matchAll(/^\| `([a-z_.]+)` \| (info|warn|error) \|/gm)].map(([, event, level]) => [event, level]);
    expect(Object.fromEntries(rows)).toEqual(EVENT_LEVELS);
  });
});
