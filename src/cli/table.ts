/**
 * Plain-text output for people: aligned columns, durations and rates in units a person reads.
 * Scripts use `--json` instead, which prints the gateway's own answer.
 */

/**
 * Columns padded to their widest cell, two spaces apart, headers in capitals; no trailing spaces.
 *
 * @example
 * table(["rule", "remaining"], [["api", "3"], ["login", "10"]]);
 * // "RULE   REMAINING\napi    3\nlogin  10"
 */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [headers.map((h) => h.toUpperCase()), ...rows];
  const widths = headers.map((_, column) => Math.max(...all.map((row) => (row[column] ?? "").length)));
  return all
    .map((row) =>
      row
        .map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/**
 * Name and value pairs, one a line, the values aligned.
 *
 * @example
 * pairs([["status", "ok"], ["backend", "durable-object"]]); // "status   ok\nbackend  durable-object"
 */
export function pairs(rows: readonly (readonly [string, string])[]): string {
  const width = Math.max(...rows.map(([name]) => name.length));
  return rows.map(([name, value]) => `${name.padEnd(width)}  ${value}`.trimEnd()).join("\n");
}

/**
 * A client as `PART=VALUE`, several joined by a space.
 *
 * @example
 * clientText({ ip: "203.0.113.7", route: "POST /login" }); // "ip=203.0.113.7 route=POST /login"
 */
export function clientText(client: Readonly<Record<string, string>>): string {
  return Object.entries(client)
    .map(([part, value]) => `${part}=${value}`)
    .join(" ");
}

/**
 * A wait in milliseconds as a person reads it.
 *
 * @example
 * duration(0); // "0s"
 * duration(850); // "850ms"
 * duration(11_905); // "11.9s"
 * duration(125_000); // "2m5s"
 */
export function duration(ms: number): string {
  if (ms <= 0) return "0s";
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${Number((ms / 1000).toFixed(1))}s`;
  const seconds = Math.round(ms / 1000);
  const [h, m, s] = [Math.floor(seconds / 3600), Math.floor((seconds % 3600) / 60), seconds % 60];
  return [h > 0 ? `${h}h` : "", m > 0 ? `${m}m` : "", s > 0 ? `${s}s` : ""].join("");
}

const UNITS: readonly (readonly [string, number])[] = [
  ["d", 86_400_000],
  ["h", 3_600_000],
  ["m", 60_000],
  ["s", 1000],
];

/**
 * A refill rate as the gateway reports it (`"1/12000ms"`) in the largest unit that divides the
 * period exactly; anything else (an override's own `"1000/1m"`, a number) is shown as written.
 *
 * @example
 * rate("1/12000ms"); // "1/12s"
 * rate("1/60ms"); // "1/60ms"
 * rate("1000/1m"); // "1000/1m"
 */
export function rate(text: string | number): string {
  const match = /^(\d+)\/(\d+)ms$/.exec(String(text));
  if (match === null) return String(text);
  const [, tokens, periodText] = match;
  const period = Number(periodText);
  const unit = UNITS.find(([, size]) => period % size === 0);
  return unit === undefined ? `${tokens}/${period}ms` : `${tokens}/${period / unit[1]}${unit[0]}`;
}
