// @ts-check
/**
 * The accuracy chart as a hand-written SVG: allowed requests per second over time against the
 * policy (the burst, then the refill rate), and the running total against capacity + rate × t.
 */

/** @typedef {import("./scenarios.mjs").AccuracyResult} AccuracyResult */

const COLORS = ["#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#d62728", "#8c564b"];
const WIDTH = 900;
const PANEL_HEIGHT = 260;
const MARGIN = { left: 60, right: 300, top: 70, bottom: 50 };

/**
 * @param {AccuracyResult[]} results  same policy for all
 * @param {Record<string, string>} labels  limiter id → legend text
 * @param {string} title
 * @returns {string} an SVG document
 */
export function accuracyChart(results, labels, title) {
  const policy = results[0]?.policy ?? { capacity: 0, rate: 0 };
  const seconds = Math.max(1, ...results.map((r) => Math.floor(r.elapsedS + 0.5)));
  const perSecond = results.map((r) => perSecondCounts(r, seconds));
  const policyPerSecond = Array.from({ length: seconds }, (_, s) => (s === 0 ? policy.capacity + policy.rate : policy.rate));
  const maxElapsed = Math.max(...results.map((r) => r.elapsedS), 1);
  const cumulativeMax = policy.capacity + policy.rate * maxElapsed;

  const top = panel({
    y0: MARGIN.top,
    title: "allowed per second (each point: one second)",
    xMax: seconds,
    yMax: niceMax(Math.max(...policyPerSecond, ...perSecond.flat())),
    series: [
      {
        label: "policy: burst, then rate",
        color: "#000",
        dashed: true,
        points: policyPerSecond.flatMap((v, s) => [
          [s, v],
          [s + 1, v],
        ]),
      },
      ...results.map((r, i) => ({
        label: labels[r.limiter] ?? r.limiter,
        color: COLORS[i % COLORS.length] ?? "#000",
        dashed: false,
        markers: true,
        points: (perSecond[i] ?? []).map((v, s) => /** @type {[number, number]} */ ([s + 0.5, v])),
      })),
    ],
  });
  const bottom = panel({
    y0: MARGIN.top + PANEL_HEIGHT + MARGIN.bottom + 30,
    title: "allowed so far (over the line = over-admission)",
    xMax: seconds,
    yMax: niceMax(cumulativeMax),
    series: [
      {
        label: "capacity + rate × t",
        color: "#000",
        dashed: true,
        points: [
          [0, policy.capacity],
          [maxElapsed, cumulativeMax],
        ],
      },
      ...results.map((r, i) => ({
        label: labels[r.limiter] ?? r.limiter,
        color: COLORS[i % COLORS.length] ?? "#000",
        dashed: false,
        points: cumulative(r),
      })),
    ],
  });
  const height = MARGIN.top + 2 * (PANEL_HEIGHT + MARGIN.bottom) + 30;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="${MARGIN.left}" y="24" font-size="15" font-weight="bold">${escapeHtml(title)}</text>`,
    top,
    bottom,
    `</svg>`,
  ].join("\n");
}

/**
 * Allowed requests in each whole second since the start.
 * @param {AccuracyResult} result
 * @param {number} seconds
 */
function perSecondCounts(result, seconds) {
  const perSecond = 1000 / result.intervalMs;
  return Array.from({ length: seconds }, (_, s) => result.allowedPerInterval.slice(s * perSecond, (s + 1) * perSecond).reduce((a, b) => a + b, 0));
}

/**
 * The running total of allowed requests at the end of each interval.
 * @param {AccuracyResult} result
 * @returns {[number, number][]}
 */
function cumulative(result) {
  let total = 0;
  /** @type {[number, number][]} */
  const points = [[0, 0]];
  result.allowedPerInterval.forEach((count, i) => {
    total += count;
    points.push([Math.min(((i + 1) * result.intervalMs) / 1000, result.elapsedS), total]);
  });
  return points;
}

/**
 * One panel: axes, grid, series and legend.
 * @param {{ y0: number, title: string, xMax: number, yMax: number, series: { label: string, color: string, dashed: boolean, markers?: boolean, points: number[][] }[] }} spec
 */
function panel({ y0, title, xMax, yMax, series }) {
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const x = (/** @type {number} */ v) => MARGIN.left + (v / xMax) * plotWidth;
  const y = (/** @type {number} */ v) => y0 + PANEL_HEIGHT - (v / yMax) * PANEL_HEIGHT;
  const parts = [`<text x="${MARGIN.left}" y="${y0 - 12}" font-weight="bold">${escapeHtml(title)}</text>`];
  for (let i = 0; i <= 4; i++) {
    const v = (yMax / 4) * i;
    parts.push(`<line x1="${x(0)}" x2="${x(xMax)}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`);
    parts.push(`<text x="${x(0) - 6}" y="${y(v) + 4}" text-anchor="end">${round(v)}</text>`);
  }
  const xStep = Math.max(1, Math.ceil(xMax / 10));
  for (let s = 0; s <= xMax; s += xStep) parts.push(`<text x="${x(s)}" y="${y(0) + 16}" text-anchor="middle">${s}</text>`);
  parts.push(`<text x="${x(xMax)}" y="${y(0) + 32}" text-anchor="end">seconds</text>`);
  parts.push(`<line x1="${x(0)}" x2="${x(xMax)}" y1="${y(0)}" y2="${y(0)}" stroke="#333"/>`);
  parts.push(`<line x1="${x(0)}" x2="${x(0)}" y1="${y(0)}" y2="${y(yMax)}" stroke="#333"/>`);
  series.forEach((s, i) => {
    const path = s.points.map(([px = 0, py = 0]) => `${round(x(px))},${round(y(py))}`).join(" ");
    parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ""} points="${path}"/>`);
    if (s.markers) for (const [px = 0, py = 0] of s.points) parts.push(`<circle cx="${round(x(px))}" cy="${round(y(py))}" r="3" fill="${s.color}"/>`);
    const ly = y0 + 10 + i * 18;
    const lx = WIDTH - MARGIN.right + 15;
    parts.push(`<line x1="${lx}" x2="${lx + 24}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ""}/>`);
    parts.push(`<text x="${lx + 30}" y="${ly + 4}">${escapeHtml(s.label)}</text>`);
  });
  return parts.join("\n");
}

/** A round axis maximum at or above `v`. @param {number} v */
function niceMax(v) {
  const magnitude = 10 ** Math.floor(Math.log10(Math.max(v, 1)));
  return Math.ceil((v * 1.1) / magnitude) * magnitude;
}

/** @param {number} v */
function round(v) {
  return Math.round(v * 10) / 10;
}

/** @param {string} text */
function escapeHtml(text) {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}
