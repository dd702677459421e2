"""The dashboard page: one HTML document with its CSS and JS inline.

No CDN, no fonts, no images: the page needs nothing but the monitor on
loopback. It loads `/api/state` (with the chart history), then follows
`/events` (Server-Sent Events, one per poll) and redraws; the charts are
drawn on canvases by the small script below. Actions POST to
`/api/action/<verb>` after a confirmation dialog; `VERBS_JSON` is replaced
by the registry's verbs when the page is served.

Actions need the run's token. The operator opens the link `hftctl dashboard`
prints (`/#token=...`); the script moves the token from the fragment into
this tab's sessionStorage, takes it out of the address bar, and sends it as
`Authorization: Bearer` with every action. Without it the page is read-only
and says how to get the link.
"""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hftd monitor</title>
<style>
:root { --bg:#0f1419; --panel:#171e26; --line:#2a3440; --text:#d8dee6; --dim:#8a96a3;
  --ok:#3fb950; --warn:#d29922; --crit:#f85149; --accent:#58a6ff; --p99:#f0883e; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--text);
  font:13px/1.4 ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
header { display:flex; align-items:center; gap:16px; padding:8px 14px;
  background:var(--panel); border-bottom:1px solid var(--line); flex-wrap:wrap; }
header h1 { font-size:15px; margin:0; color:var(--accent); }
.badge { padding:2px 8px; border-radius:3px; background:#222b35; }
.badge.ok { color:var(--ok); } .badge.warn { color:var(--warn); }
.badge.crit { color:#fff; background:var(--crit); }
.spacer { flex:1; }
button { font:inherit; color:var(--text); background:#222b35; border:1px solid var(--line);
  padding:4px 12px; border-radius:3px; cursor:pointer; }
button:hover { border-color:var(--accent); }
button.danger { border-color:#6e2a28; }
button:disabled { opacity:.4; cursor:not-allowed; border-color:var(--line); }
main { display:grid; grid-template-columns:repeat(12, 1fr); gap:10px; padding:10px; }
section { background:var(--panel); border:1px solid var(--line); border-radius:4px;
  padding:8px 10px; min-width:0; }
section h2 { margin:0 0 6px; font-size:12px; color:var(--dim); text-transform:uppercase;
  letter-spacing:.06em; font-weight:normal; }
.c3 { grid-column:span 3; } .c4 { grid-column:span 4; } .c5 { grid-column:span 5; }
.c6 { grid-column:span 6; } .c7 { grid-column:span 7; } .c8 { grid-column:span 8; }
.c12 { grid-column:span 12; }
@media (max-width: 1100px) { .c3,.c4,.c5,.c6,.c7,.c8 { grid-column:span 12; } }
table { width:100%; border-collapse:collapse; }
th, td { padding:2px 6px; text-align:right; white-space:nowrap; }
th:first-child, td:first-child { text-align:left; }
th { color:var(--dim); font-weight:normal; border-bottom:1px solid var(--line); }
tfoot td { border-top:1px solid var(--line); font-weight:bold; }
.neg { color:var(--crit); } .pos { color:var(--ok); }
.tiles { display:grid; grid-template-columns:repeat(5, 1fr); gap:6px; }
.tile { background:#1c242e; padding:6px; border-radius:3px; }
.tile .v { font-size:20px; } .tile .l { color:var(--dim); font-size:11px; }
.tile .n { color:var(--dim); font-size:11px; }
.bar { display:grid; grid-template-columns:1fr auto 52px; column-gap:8px; row-gap:2px;
  align-items:center; margin:4px 0; }
.bar .fig, .bar .pct { text-align:right; white-space:nowrap; }
.bar .track { grid-column:1 / -1; height:5px; background:#222b35; border-radius:2px;
  overflow:hidden; }
.bar .fill { height:100%; background:var(--ok); }
.bar .fill.warn { background:var(--warn); } .bar .fill.crit { background:var(--crit); }
canvas { width:100%; height:190px; display:block; }
ul { list-style:none; margin:0; padding:0; }
#alerts li { padding:3px 6px; margin:2px 0; border-left:3px solid var(--warn); }
#alerts li.critical { border-left-color:var(--crit); }
#alerts li .t, #alertlog li .t { color:var(--dim); }
#alertlog li { color:var(--dim); padding:1px 0; }
.st-ready { color:var(--ok); } .st-bad { color:var(--crit); } .st-other { color:var(--warn); }
#modal { position:fixed; inset:0; background:rgba(0,0,0,.6); display:none;
  align-items:center; justify-content:center; }
#modal.open { display:flex; }
#modal .box { background:var(--panel); border:1px solid var(--line); padding:18px;
  max-width:460px; border-radius:4px; }
#modal .box p { margin:0 0 14px; }
#action-result { color:var(--dim); }
.legend span { margin-right:12px; } .dim { color:var(--dim); }
.unit { text-transform:none; }
</style>
</head>
<body>
<header>
  <h1>hftd</h1>
  <span class="badge" id="conn">connecting</span>
  <span>mode <span class="badge" id="mode">-</span></span>
  <span>breaker <span class="badge" id="breaker">-</span></span>
  <span>venue <span class="badge" id="venue">-</span></span>
  <span class="dim">updated <span id="updated">-</span> · poll <span id="seq">0</span></span>
  <span id="next" class="badge warn" hidden></span>
  <span class="spacer"></span>
  <span id="action-result"></span>
  <span id="actions"></span>
</header>
<main>
  <section class="c7"><h2>Throughput</h2>
    <div class="tiles">
      <div class="tile"><div class="v" id="rate-orders">-</div><div class="l">orders/s</div>
        <div class="n">total <span id="cnt-orders">-</span></div></div>
      <div class="tile"><div class="v" id="rate-fills">-</div><div class="l">fills/s</div>
        <div class="n">total <span id="cnt-fills">-</span></div></div>
      <div class="tile"><div class="v" id="rate-cancels">-</div><div class="l">cancels/s</div>
        <div class="n">total <span id="cnt-cancels">-</span></div></div>
      <div class="tile"><div class="v" id="rate-rejects">-</div><div class="l">rejects/s</div>
        <div class="n">total <span id="cnt-rejects">-</span></div></div>
      <div class="tile"><div class="v" id="rate-md">-</div><div class="l">md msgs/s</div>
        <div class="n">total <span id="cnt-md">-</span></div></div>
    </div>
  </section>
  <section class="c5"><h2>Latency, <span class="unit">&micro;s</span>, last
    <span id="lat-window">-</span> s</h2>
    <table id="latency"><thead><tr><th>hop</th><th>n</th><th>p50</th><th>p95</th>
      <th>p99</th><th>p99.9</th><th>max</th></tr></thead><tbody></tbody></table>
  </section>
  <section class="c6"><h2>Latency over time, <span class="unit">&micro;s</span>
    (<span id="chart-hop">tick-to-trade</span>)</h2>
    <div class="legend"><span style="color:var(--accent)">&#9632; p50</span>
      <span style="color:var(--p99)">&#9632; p99</span></div>
    <canvas id="chart-latency"></canvas>
  </section>
  <section class="c6"><h2>P&amp;L over time, $</h2>
    <div class="legend"><span>total <b id="pnl-total">-</b></span></div>
    <canvas id="chart-pnl"></canvas>
  </section>
  <section class="c8"><h2>Positions</h2>
    <table id="positions"><thead><tr><th>symbol</th><th>position</th><th>avg price</th>
      <th>market</th><th>unrealized</th><th>realized</th><th>total</th></tr></thead>
      <tbody></tbody><tfoot></tfoot></table>
  </section>
  <section class="c4"><h2>Strategies</h2>
    <table id="strategies"><thead><tr><th>strategy</th><th title="signals">sig</th>
      <th title="orders sent">ord</th><th>fills</th><th title="rejects">rej</th>
      <th title="held: the gateway's mode would refuse them">held</th><th>position</th>
      <th>P&amp;L</th></tr></thead><tbody></tbody></table>
  </section>
  <section class="c4"><h2>Risk</h2><div id="risk"></div></section>
  <section class="c4"><h2>Alerts (<span id="alert-count">0</span>)</h2>
    <ul id="alerts"></ul><h2 style="margin-top:8px">Alert log</h2><ul id="alertlog"></ul>
  </section>
  <section class="c4"><h2>Components</h2>
    <table id="health"><thead><tr><th>daemon</th><th>state</th><th>pid</th><th>up</th>
      <th title="restarts">rst</th></tr></thead><tbody></tbody></table>
  </section>
  <section class="c4"><h2>Recent trades</h2>
    <table id="trades"><thead><tr><th>time</th><th>sym</th><th>side</th><th>qty</th>
      <th>price</th><th>t2t &micro;s</th>
      <th title="a fill that reduced a position: its P&amp;L per share closed">P&amp;L/sh</th>
      </tr></thead><tbody></tbody></table>
  </section>
</main>
<div id="modal"><div class="box"><p id="confirm-text"></p>
  <button id="confirm-yes" class="danger">Confirm</button>
  <button id="confirm-no">Cancel</button></div></div>
<script>
"use strict";
const VERBS = VERBS_JSON;
const TOKEN_KEY = "hftd-token";
const READ_ONLY = "read-only: run `hftctl dashboard` for the operator link";
const REFUSED = "not authorized: open the link from `hftctl dashboard` again";
(function takeToken() {  // the operator link: /#token=...; keep it out of the address bar
  const m = /(?:^#|&)token=([^&]*)/.exec(window.location.hash);
  if (!m) return;
  let t = m[1];
  try { t = decodeURIComponent(t); } catch (e) { /* keep it as it came */ }
  sessionStorage.setItem(TOKEN_KEY, t);
  window.history.replaceState(null, "", window.location.pathname + window.location.search);
})();
function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }
const HOP_LABELS = {t1_t2: "feed>strategy", t2_t3: "strategy>risk", t3_t4: "risk>wire",
  t4_t5: "wire>ack", t1_t4: "tick-to-trade"};
let history = [];
let last = null;
const $ = (id) => document.getElementById(id);
function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
    '"': "&quot;", "'": "&#39;"}[c]));
}
function us(v) {  // as the console: "12.3", "4,002", "55.4ms", "182ms", "12.5s"
  if (v < 100) return v.toFixed(1);
  if (v < 10000) return Math.round(v).toLocaleString("en-US");
  if (v < 100000) return (v / 1000).toFixed(1) + "ms";
  if (v < 10000000) return (v / 1000).toFixed(0) + "ms";
  return (v / 1e6).toFixed(1) + "s";
}
function money(v) {
  return v.toLocaleString("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 2});
}
function signed(v) { return '<span class="' + (v < 0 ? "neg" : v > 0 ? "pos" : "") + '">'
  + money(v) + "</span>"; }
function perShare(v) {  // a reducing fill's P&L per share closed; "-" for one that opened
  if (v === null || v === undefined) return '<span class="dim">-</span>';
  return '<span class="' + (v < 0 ? "neg" : v > 0 ? "pos" : "") + '">' + (v > 0 ? "+" : "") +
    v.toLocaleString("en-US", {minimumFractionDigits: 4, maximumFractionDigits: 4}) +
    "</span>";
}
function rate(v) { return v >= 100 ? v.toFixed(0) : v.toFixed(1); }
function clock(t) { return new Date(t * 1000).toLocaleTimeString("en-GB"); }
function dur(s) {
  s = Math.floor(s); const h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60);
  return (h ? h + ":" : "") + String(m).padStart(2, "0") + ":" + String(s % 60).padStart(2, "0");
}
function setText(id, text) { const el = $(id); if (el.textContent !== text) el.textContent = text; }
function badge(id, text, cls) { const el = $(id); el.textContent = text;
  el.className = "badge " + cls; }

function render(s) {
  last = s;
  setText("updated", clock(s.time));
  setText("seq", String(s.seq));
  badge("mode", s.mode, s.mode === "active" ? "ok" : s.mode === "halted" ? "crit" :
    s.mode === "unknown" ? "" : "warn");
  badge("breaker", s.breaker_tripped ? "TRIPPED" : s.mode === "unknown" ? "-" : "ok",
    s.breaker_tripped ? "crit" : s.mode === "unknown" ? "" : "ok");
  $("breaker").title = s.breaker_reason || "";
  setText("next", s.next_step ? "next: " + s.next_step : "");
  $("next").hidden = !s.next_step;
  badge("venue", s.venue_up ? "up" : "down", s.venue_up ? "ok" : "crit");
  for (const k of ["orders", "fills", "cancels", "rejects", "md"]) {
    setText("rate-" + k, rate(s.rates[k]));
  }
  const c = s.counters;
  setText("cnt-orders", String(c.orders)); setText("cnt-fills", String(c.fills));
  setText("cnt-cancels", String(c.cancels));
  setText("cnt-rejects", String(c.risk_rejects + c.venue_rejects));
  setText("cnt-md", String(c.md_messages));
  setText("lat-window", String(Math.round(s.latency_window_s)));
  setText("chart-hop", HOP_LABELS[s.latency_hop] || s.latency_hop);
  $("latency").tBodies[0].innerHTML = s.latency.map((h) =>
    '<tr data-hop="' + h.hop + '"><td>' + esc(HOP_LABELS[h.hop] || h.hop) + "</td><td>" +
    h.count + "</td><td>" + us(h.p50) + "</td><td>" + us(h.p95) + "</td><td>" + us(h.p99) +
    "</td><td>" + us(h.p999) + "</td><td>" + us(h.max) + "</td></tr>").join("");
  $("positions").tBodies[0].innerHTML = s.positions.map((p) =>
    '<tr data-symbol="' + esc(p.symbol) + '"><td>' + esc(p.symbol) + "</td><td>" + p.qty +
    "</td><td>" + p.avg_price.toFixed(4) + "</td><td>" + p.mark.toFixed(4) + "</td><td>" +
    signed(p.unrealized) + "</td><td>" + signed(p.realized) + "</td><td>" + signed(p.total) +
    "</td></tr>").join("");
  $("strategies").tBodies[0].innerHTML = (s.strategies || []).map((r) =>
    '<tr data-strategy="' + esc(r.name) + '"><td>' + esc(r.name) + "</td><td>" + r.signals +
    "</td><td>" + r.orders + "</td><td>" + r.fills + "</td><td>" + r.rejects + "</td><td>" +
    r.held + "</td><td>" + (esc(Object.entries(r.positions).map(([k, q]) =>
      k + " " + (q > 0 ? "+" : "") + q).join(", ")) || "flat") + '</td><td class="pnl">' +
    signed(r.pnl) + "</td></tr>").join("");
  const t = s.totals;
  // no share total: shares of different symbols do not add up
  $("positions").tFoot.innerHTML = t ? "<tr><td>TOTAL</td><td>" +
    "</td><td></td><td></td><td>" + signed(t.unrealized) + "</td><td>" + signed(t.realized) +
    '</td><td id="total-pnl">' + signed(t.total) + "</td></tr>" : "";
  setText("pnl-total", t ? money(t.total) : "-");
  // each limit: a bar, used/limit as the gateway counts it ("400/1,000", the daily P&L
  // against the loss limit: "-$128.00 / -$5,000.00"; hftd.msg.status.risk_text), the %
  const bars = s.risk.map((b) => {
    const pct = Math.max(0, Math.min(1, b.fraction)) * 100;
    const cls = b.fraction >= 0.8 ? "crit" : b.fraction >= 0.5 ? "warn" : "";
    return '<div class="bar" data-key="' + esc(b.key) + '"><span>' + esc(b.label) +
      '</span><span class="fig">' + esc(b.figure || "") + '</span><span class="pct">' +
      (b.fraction * 100).toFixed(1) + '%</span><div class="track"><div class="fill ' + cls +
      '" style="width:' + pct.toFixed(1) + '%"></div></div></div>';
  });
  // no gateway answering: nobody says the breaker is armed
  bars.push('<div class="bar"><span>circuit breaker</span><span id="risk-breaker" class="' +
    (s.breaker_tripped ? "st-bad" : s.mode === "unknown" ? "dim" : "st-ready") + '">' +
    (s.breaker_tripped ? "TRIPPED " + esc(s.breaker_reason) : s.mode === "unknown" ? "-" :
      "armed") + "</span></div>");
  $("risk").innerHTML = bars.join("");
  setText("alert-count", String(s.alerts.length));
  $("alerts").innerHTML = s.alerts.length ? s.alerts.map((a) =>
    '<li class="' + a.severity + '" data-key="' + esc(a.key) + '"><span class="t">' +
    clock(a.raised_at) + "</span> " + esc(a.severity.toUpperCase()) + " " + esc(a.message) +
    "</li>").join("") : '<li class="none dim" style="border:0">no alerts</li>';
  $("alertlog").innerHTML = s.alert_log.slice(0, 8).map((a) =>
    '<li><span class="t">' + clock(a.cleared_at || a.raised_at) + "</span> " +
    (a.cleared_at ? "cleared " : "raised ") + esc(a.key) + "</li>").join("");
  $("health").tBodies[0].innerHTML = s.daemons.map((d) =>
    '<tr data-daemon="' + esc(d.name) + '"><td>' + esc(d.name) + '</td><td class="' +
    (d.up ? "st-ready" : ["ready", "starting"].includes(d.state) ? "st-other" : "st-bad") +
    '" title="' + esc(d.last_error) + '">' + esc(d.state) + "</td><td>" + (d.pid || "-") +
    "</td><td>" + (d.up ? dur(d.uptime_s) : "-") + "</td><td>" + d.restarts + "</td></tr>"
  ).join("");
  $("trades").tBodies[0].innerHTML = s.trades.slice(0, 12).map((f) =>
    "<tr><td>" + clock(f.time) + "</td><td>" + esc(f.symbol) + "</td><td>" + esc(f.side) +
    "</td><td>" + f.qty + "</td><td>" + f.price.toFixed(2) + "</td><td>" +
    (f.tick_to_trade_us > 0 ? us(f.tick_to_trade_us) : "no tick") + '</td><td class="pps">' +
    perShare(f.pnl_per_share) + "</td></tr>").join("");
  drawCharts();
}

function fmtAxis(v) {
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(0) + "k";
  return a >= 100 ? v.toFixed(0) : v.toFixed(1);
}
function drawChart(canvas, times, series, zeroLine) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== w * dpr || canvas.height !== h * dpr) {
    canvas.width = w * dpr; canvas.height = h * dpr;
  }
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const left = 64, right = 8, top = 8, bottom = 20;
  g.font = "11px monospace"; g.fillStyle = "#8a96a3"; g.strokeStyle = "#2a3440";
  if (times.length < 2) { g.fillText("collecting data...", left, top + 20); return; }
  let lo = Infinity, hi = -Infinity;
  for (const s of series) for (const v of s.values) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (zeroLine) { lo = Math.min(lo, 0); hi = Math.max(hi, 0); }
  if (hi - lo < 1e-9) { hi += 1; lo -= zeroLine ? 1 : 0; }
  const pad = (hi - lo) * 0.08; hi += pad;
  if (lo !== 0) lo = (lo >= 0 && !zeroLine) ? Math.max(0, lo - pad) : lo - pad;
  const t0 = times[0], t1 = times[times.length - 1];
  const x = (t) => left + (w - left - right) * (t - t0) / Math.max(1, t1 - t0);
  const y = (v) => top + (h - top - bottom) * (1 - (v - lo) / (hi - lo));
  g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = lo + (hi - lo) * i / 4, yy = Math.round(y(v)) + 0.5;
    g.beginPath(); g.moveTo(left, yy); g.lineTo(w - right, yy); g.stroke();
    g.fillText(fmtAxis(v), 2, yy + 4);
  }
  g.fillText("-" + dur(t1 - t0), left, h - 4);
  g.fillText("now", w - right - 24, h - 4);
  if (zeroLine) { g.strokeStyle = "#4a5663"; g.beginPath();
    g.moveTo(left, y(0)); g.lineTo(w - right, y(0)); g.stroke(); }
  for (const s of series) {
    g.strokeStyle = s.color; g.lineWidth = 1.6; g.beginPath();
    let started = false;
    s.values.forEach((v, i) => {
      if (s.skipZero && v === 0) { started = false; return; }
      const px = x(times[i]), py = y(v);
      if (started) g.lineTo(px, py); else { g.moveTo(px, py); started = true; }
    });
    g.stroke();
  }
}
function drawCharts() {
  const css = getComputedStyle(document.documentElement);
  const times = history.map((p) => p[0]);
  drawChart($("chart-latency"), times, [
    {color: css.getPropertyValue("--accent"), values: history.map((p) => p[5]), skipZero: true},
    {color: css.getPropertyValue("--p99"), values: history.map((p) => p[6]), skipZero: true},
  ], false);
  drawChart($("chart-pnl"), times, [
    {color: css.getPropertyValue("--ok"), values: history.map((p) => p[7])},
  ], true);
}
function takeHistory(points, full) {
  if (full) { history = points.slice(); return; }
  const lastT = history.length ? history[history.length - 1][0] : -1;
  for (const p of points) if (p[0] > lastT) history.push(p);
  const keep = 3600;
  if (history.length > keep) history.splice(0, history.length - keep);
}

let pending = null;
function ask(verb) {
  pending = verb;
  $("confirm-text").textContent = verb.name.toUpperCase() + ": " + verb.help + "?";
  $("modal").classList.add("open");
  $("confirm-yes").focus();
}
function closeModal() { pending = null; $("modal").classList.remove("open"); }
async function act(verb) {
  if (!token()) { setButtons(); return; }
  setText("action-result", verb.name + ": sending...");
  try {
    const r = await fetch("/api/action/" + verb.name, {method: "POST",
      headers: {"Content-Type": "application/json", "X-Hftd-Action": verb.name,
                "Authorization": "Bearer " + token()},
      body: JSON.stringify({confirm: true})});
    if (r.status === 401) {  // a token of another run, or none: read-only until a new link
      sessionStorage.removeItem(TOKEN_KEY);
      setButtons(REFUSED);
      return;
    }
    const body = await r.json();
    const parts = Object.entries(body.replies || {}).map(([target, rep]) =>
      target + (rep.ok ? " ok" : " REFUSED: " + rep.error));
    setText("action-result", verb.name + ": " + (parts.join("; ") || body.error || r.status));
  } catch (e) { setText("action-result", verb.name + ": failed: " + e); }
}
$("confirm-yes").onclick = () => { const v = pending; closeModal(); if (v) act(v); };
$("confirm-no").onclick = () => { setText("action-result", pending.name + ": cancelled");
  closeModal(); };
document.addEventListener("keydown", (e) => { if (e.key === "Escape" && pending) closeModal(); });
for (const v of VERBS) {
  if (v.name === "reload") continue;
  const b = document.createElement("button");
  b.textContent = v.name; b.dataset.verb = v.name; b.dataset.help = v.help;
  if (v.confirm) b.className = "danger";
  b.onclick = () => ask(v);
  $("actions").appendChild(b); $("actions").append(" ");
}
function setButtons(why) {  // enabled with a token; else disabled, saying how to get one
  const ok = !!token();
  for (const b of $("actions").querySelectorAll("button")) {
    b.disabled = !ok; b.title = ok ? b.dataset.help : READ_ONLY;
  }
  if (!ok) setText("action-result", why || READ_ONLY);
}
setButtons();

function connect() {
  const es = new EventSource("/events");
  es.addEventListener("state", (e) => {
    const msg = JSON.parse(e.data);
    takeHistory(msg.state.history, msg.full);
    render(msg.state);
    badge("conn", "live", "ok");
  });
  es.onerror = () => badge("conn", "reconnecting", "crit");
}
window.addEventListener("resize", drawCharts);
connect();
</script>
</body>
</html>
"""


def render_page(verbs_json: str) -> bytes:
    return PAGE.replace("VERBS_JSON", verbs_json).encode("utf-8")
