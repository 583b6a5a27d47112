import { describe, expect, it } from "vitest";
import { LocalTable } from "../../src/core/local-table";

describe("LocalTable", () => {
  it("never forgets a live entry to make room; expired ones make room", () => {
    const table = new LocalTable<string>(2);
    expect(table.set("a", "A", 100, 0)).toBe(true);
    expect(table.set("b", "B", 200, 0)).toBe(true);
    expect(table.tracks("c", 50)).toBe(false); // both live: no room
    expect(table.set("c", "C", 300, 50)).toBe(false);
    expect(table.get("a", 50)).toBe("A"); // kept
    expect(table.tracks("c", 100)).toBe(true); // a has expired
    expect(table.set("c", "C", 300, 100)).toBe(true);
    expect(table.get("a", 100)).toBeUndefined();
    expect(table.get("b", 100)).toBe("B");
    expect(table.size).toBe(2);
  });
});
