import { DASHBOARD_SCRIPT, DASHBOARD_STYLE } from "./dashboard/assets.generated.js";

/**
 * The page's response headers. It shares its origin with the proxied content, so: it may not be
 * framed (clickjacking the token form), it sends no Referer, nothing keeps a copy, and it loads
 * nothing and posts nowhere but its own data. The token itself is kept in the script's memory only.
 */
export const DASHBOARD_HEADERS: Readonly<Record<string, string>> = {
  "Content-Security-Policy":
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "X-Frame-Options": "DENY",
  "Referrer-Policy": "no-referrer",
  "Cache-Control": "no-store",
  "X-Content-Type-Options": "nosniff",
};

/**
 * The dashboard: one self-contained page (its script and the charting library, uPlot, inline),
 * which asks for the metrics token once and then reads `/__limiter/dashboard/data` every 2 s.
 */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sluice</title>
<style>${DASHBOARD_STYLE}
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 960px; }
h1 { font-size: 20px; margin: 0 0 12px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px; margin-bottom: 16px; }
.tile { border: 1px solid #ddd; border-radius: 6px; padding: 8px 12px; }
.tile b { display: block; font-size: 18px; }
.ok { color: #2e7d32; } .bad { color: #c62828; }
table { border-collapse: collapse; } td, th { border-bottom: 1px solid #eee; padding: 4px 12px 4px 0; text-align: left; }
.chart { margin-bottom: 16px; } #status { color: #777; }
</style>
</head>
<body>
<h1>sluice <span id="status"></span></h1>
<form id="login" hidden>
  <p>Metrics token (<code>LIMITER_METRICS_TOKEN</code>, or the admin token): <span id="login-message" class="bad"></span></p>
  <input id="token" type="password" autocomplete="off" size="40"> <button type="submit">Show</button>
</form>
<main id="board" hidden>
  <div class="tiles">
    <div class="tile">requests <b id="total-requests">0</b></div>
    <div class="tile">refused <b id="total-refused">0</b></div>
    <div class="tile">clients (min / hour) <b id="clients">0</b></div>
    <div class="tile">circuit breaker <b id="breaker">-</b></div>
    <div class="tile">store <b id="backend">-</b></div>
  </div>
  <section id="rules"></section>
  <section id="latency"></section>
  <h2>Top refused clients, last hour (hashed ids)</h2>
  <table><thead><tr><th>rule</th><th>client</th><th>refusals</th></tr></thead><tbody id="top-refused"></tbody></table>
</main>
<script>${DASHBOARD_SCRIPT}</script>
</body>
</html>`;
