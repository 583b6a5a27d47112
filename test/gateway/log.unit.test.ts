import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { EVENT_LEVELS } from "../../src/gateway/log";

describe("the log's one table of events", () => {
  it("the Logs table of docs/operations.md lists exactly the events the gateway writes, each at its level", async () => {
    const page = await readFile(new URL("../../docs/operations.md", import.meta.url).pathname, "utf8");
    const section = page.slice(page.indexOf("### Logs"));
    const rows = [...section.matchAll(/^\| `([a-z_.]+)` \| (info|warn|error) \|/gm)].map(([, event, level]) => [event, level]);
    expect(Object.fromEntries(rows)).toEqual(EVENT_LEVELS);
  });
});
