// The dashboard's script, for the browser. dev/build-dashboard.mjs bundles it with uPlot into
// one string the Worker serves inline: the page loads nothing from anywhere else.
import uPlot from "uplot";

const REFRESH_MS = 2000;
const $ = (id) => document.getElementById(id);
const charts = new Map();
// The token lives in this variable only: never in storage (another page of this origin, the
// proxied content, could read that), never in a URL. A reload asks for it again.
let token = "";

function showLogin(message) {
  $("login").hidden = false;
  $("board").hidden = true;
  $("login-message").textContent = message ?? "";
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("token").value.trim();
  $("token").value = "";
  void refresh();
});

async function refresh() {
  if (!token) return showLogin();
  let response;
  try {
    response = await fetch("dashboard/data", { headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
  } catch {
    $("status").textContent = "gateway unreachable";
    return;
  }
  if (response.status === 401) {
    token = "";
    return showLogin("That token was refused.");
  }
  if (!response.ok) {
    $("status").textContent = `metrics unavailable (${response.status})`;
    return;
  }
  $("login").hidden = true;
  $("board").hidden = false;
  render(await response.json());
}

function render(data) {
  $("total-requests").textContent = String(data.totals.requests);
  $("total-refused").textContent = String(data.totals.refused);
  $("clients").textContent = `${data.clients.lastMinute} / ${data.clients.lastHour}`;
  $("breaker").textContent = `${data.isolate.breaker}, ${data.totals.breakerOpenings} opened`;
  $("backend").textContent = data.backend.ok ? `${data.backend.name}: ok` : `${data.backend.name}: down`;
  $("backend").title = data.backend.ok ? `${data.backend.latencyMs} ms` : data.backend.error;
  $("backend").className = data.backend.ok ? "ok" : "bad";
  $("status").textContent = `updated ${new Date().toLocaleTimeString()}`;

  const rules = $("rules");
  for (const { rule, allowed, refused } of data.rules) {
    chart(
      `rule-${rule}`,
      rules,
      `Rule "${rule}": decisions per ${data.slotMs / 1000} s`,
      [data.times, allowed, refused],
      [
        { label: "allowed", stroke: "#2e7d32" },
        { label: "refused", stroke: "#c62828" },
      ],
    );
  }
  const { decisionP50, decisionP99, originP50, originP99 } = data.latency;
  chart(
    "latency",
    $("latency"),
    "Latency (ms)",
    [data.times, decisionP50, decisionP99, originP50, originP99],
    [
      { label: "decision p50", stroke: "#1565c0" },
      { label: "decision p99", stroke: "#1565c0", dash: [6, 4] },
      { label: "origin p50", stroke: "#6a1b9a" },
      { label: "origin p99", stroke: "#6a1b9a", dash: [6, 4] },
    ],
  );

  const rows = data.topRefused.map((r) => `<tr><td>${escapeHtml(r.rule)}</td><td><code>${escapeHtml(r.client.slice(0, 24))}…</code></td><td>${r.refusals}</td></tr>`);
  $("top-refused").innerHTML = rows.length > 0 ? rows.join("") : `<tr><td colspan="3">no refusals in the last hour</td></tr>`;
}

function chart(id, parent, title, series, lines) {
  const existing = charts.get(id);
  if (existing) return existing.setData(series);
  const holder = document.createElement("div");
  holder.id = id;
  holder.className = "chart";
  parent.append(holder);
  const width = Math.max(320, Math.min(900, parent.clientWidth || 900));
  const plot = new uPlot(
    { title, width, height: 220, series: [{}, ...lines.map((l) => ({ ...l, width: 2, spanGaps: true, points: { show: true, size: 5 } }))], axes: [{}, { size: 50 }] },
    series,
    holder,
  );
  charts.set(id, plot);
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

void refresh();
setInterval(refresh, REFRESH_MS);
