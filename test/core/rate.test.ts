import { describe, expect, it } from "vitest";
import { parseRatePerSecond, parseRateShorthand } from "../../src/core/rate";

describe("parseRatePerSecond", () => {
  it.each([
    ["1", { refillTokens: 1, refillPeriodMs: 1000 }],
    ["10", { refillTokens: 1, refillPeriodMs: 100 }],
    ["0.5", { refillTokens: 1, refillPeriodMs: 2000 }],
    ["2.75", { refillTokens: 11, refillPeriodMs: 4000 }],
    ["1000", { refillTokens: 1, refillPeriodMs: 1 }],
    ["3000", { refillTokens: 3, refillPeriodMs: 1 }],
  ])("%s → %j", (text, expected) => expect(parseRatePerSecond(text)).toEqual(expected));

  it.each(["0", "0.0", "-1", "abc", "1e3", "", "0.0000001", "1/2"])("refuses %j", (text) => {
    expect(parseRatePerSecond(text)).toBeUndefined();
  });
});

describe("rate shorthands", () => {
  it.each([
    ["100/1m", { refillTokens: 1, refillPeriodMs: 600 }],
    ["5/m", { refillTokens: 1, refillPeriodMs: 12_000 }],
    ["20/s", { refillTokens: 1, refillPeriodMs: 50 }],
    ["10000/1d", { refillTokens: 1, refillPeriodMs: 8_640 }],
    ["3/500ms", { refillTokens: 3, refillPeriodMs: 500 }],
  ])("%s → %j", (text, expected) => expect(parseRateShorthand(text)).toEqual(expected));

  it.each(["0/1m", "10/0s", "10/1w", "ten/1m", "10//1m"])("refuses %s", (text) => expect(parseRateShorthand(text)).toBeUndefined());
});
