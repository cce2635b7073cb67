// The status page: one self-contained HTML document (no CDN, no external fonts or scripts).
// It polls /status and /lag once a second and draws the lag of the last hour on a canvas.
// After each draw the canvas carries data-points (samples drawn) and data-max-lag, so a headless
// browser test can check that the chart drew real data.
#include "ops/ops_service.h"

namespace tenantsync::ops {

const char* StatusPageHtml() {
  return R"html(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tenantsync status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1b1f24;background:#f6f8fa}
 h1{font-size:20px;margin:0 0 4px} .sub{color:#57606a;margin-bottom:16px}
 .grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:10px;margin-bottom:16px}
 .card{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:10px}
 .k{color:#57606a;font-size:12px} .v{font-size:18px;font-weight:600;word-break:break-all}
 .bad{color:#cf222e} .ok{color:#1a7f37}
 canvas{background:#fff;border:1px solid #d0d7de;border-radius:6px;width:100%;height:260px}
 #err{color:#cf222e;margin:8px 0}
</style></head><body>
<h1>tenantsync <span id="pipeline"></span></h1>
<div class="sub">phase <b id="phase">…</b> · updated <span id="updated">never</span></div>
<div id="err"></div>
<div class="grid" id="cards"></div>
<div class="k">Lag (seconds) over the last hour</div>
<canvas id="chart" width="1200" height="260" data-points="0"></canvas>
<h2 style="font-size:16px;margin:20px 0 6px">Runs</h2>
<table id="runs" style="border-collapse:collapse;background:#fff;width:100%" data-rows="0"></table>
<script>
"use strict";
const token = new URLSearchParams(location.search).get("access_token");
const headers = token ? {"Authorization": "Bearer " + token} : {};
const fields = [
  ["lag", r => r.lag_seconds.toFixed(1) + " s / " + bytes(r.lag_bytes)],
  ["source WAL LSN", r => r.source.wal_lsn],
  ["received LSN", r => r.received_lsn],
  ["journaled LSN", r => r.journaled_lsn],
  ["applied LSN", r => r.applied_lsn],
  ["slot retains", r => r.source.slot_exists ? bytes(r.source.slot_retained_wal_bytes) : "no slot"],
  ["journal", r => bytes(r.journal.bytes) + ", " + r.journal.transactions + " txns"],
  ["apply rate", r => r.apply.txn_per_second.toFixed(0) + " txn/s, " + r.apply.rows_per_second.toFixed(0) + " rows/s"],
  ["transactions applied", r => String(r.apply.transactions_total)],
  ["dead letters", r => String(r.dead_letters)],
  ["source", r => r.source.reachable ? "reachable" : "UNREACHABLE"],
  ["target", r => r.target.reachable ? "reachable" : "UNREACHABLE"],
  ["last error", r => r.last_error || "none"],
];
function bytes(n) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}
function text(el, s) { el.textContent = s; }
function renderCards(r) {
  const cards = document.getElementById("cards");
  cards.replaceChildren();
  for (const [k, f] of fields) {
    const c = document.createElement("div"); c.className = "card";
    const kk = document.createElement("div"); kk.className = "k"; text(kk, k);
    const vv = document.createElement("div"); vv.className = "v"; text(vv, f(r));
    if ((k === "dead letters" && r.dead_letters > 0) || (k === "last error" && r.last_error) ||
        vv.textContent === "UNREACHABLE") vv.classList.add("bad");
    c.append(kk, vv); cards.append(c);
  }
  text(document.getElementById("pipeline"), r.pipeline);
  const ph = document.getElementById("phase"); text(ph, r.phase);
  ph.className = r.phase === "streaming" ? "ok" : (r.phase === "failed" ? "bad" : "");
  text(document.getElementById("updated"), new Date(r.collected_at_us / 1000).toLocaleTimeString());
}
function drawChart(samples) {
  const cv = document.getElementById("chart"), g = cv.getContext("2d");
  const W = cv.width, H = cv.height, L = 50, B = 24, T = 10;
  g.clearRect(0, 0, W, H);
  const now = Date.now(), t0 = now - 3600 * 1000;
  const pts = samples.filter(s => s[0] >= t0);
  let max = 1; for (const s of pts) max = Math.max(max, s[1]);
  g.strokeStyle = "#d0d7de"; g.fillStyle = "#57606a"; g.font = "12px sans-serif";
  for (let i = 0; i <= 4; i++) {
    const y = T + (H - T - B) * i / 4;
    g.beginPath(); g.moveTo(L, y); g.lineTo(W, y); g.stroke();
    g.fillText((max * (1 - i / 4)).toFixed(1) + "s", 4, y + 4);
  }
  for (let m = 60; m >= 0; m -= 15) g.fillText("-" + m + "m", L + (W - L) * (60 - m) / 60 - 12, H - 6);
  g.strokeStyle = "#0969da"; g.lineWidth = 2; g.beginPath();
  pts.forEach((s, i) => {
    const x = L + (W - L) * (s[0] - t0) / 3600000, y = T + (H - T - B) * (1 - s[1] / max);
    if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
  });
  g.stroke();
  cv.dataset.points = String(pts.length);
  cv.dataset.maxLag = String(max);
}
async function tick() {
  try {
    const [s, l] = await Promise.all([fetch("/status", {headers}), fetch("/lag", {headers})]);
    if (!s.ok) throw new Error("/status answered " + s.status);
    if (!l.ok) throw new Error("/lag answered " + l.status);
    renderCards(await s.json());
    drawChart(await l.json());
    text(document.getElementById("err"), "");
  } catch (e) {
    text(document.getElementById("err"), "cannot read status: " + e.message);
  }
}
async function loadRuns() {
  try {
    const r = await fetch("/history", {headers});
    if (!r.ok) return;
    const runs = await r.json(), t = document.getElementById("runs");
    t.replaceChildren();
    const head = document.createElement("tr");
    for (const h of ["started", "command", "user", "outcome", "seconds", "report"]) {
      const th = document.createElement("th"); th.style.textAlign = "left"; text(th, h); head.append(th);
    }
    t.append(head);
    for (const run of runs) {
      const tr = document.createElement("tr");
      const secs = run.finished_us ? ((run.finished_us - run.started_us) / 1e6).toFixed(1) : "-";
      for (const v of [new Date(run.started_us / 1000).toLocaleString(), run.command, run.user,
                       run.outcome, secs]) {
        const td = document.createElement("td"); text(td, v); tr.append(td);
      }
      const td = document.createElement("td");
      if (run.has_report) {
        const a = document.createElement("a");
        a.href = "/history/" + encodeURIComponent(run.id) + (token ? "?access_token=" + encodeURIComponent(token) : "");
        text(a, "JSON"); td.append(a);
      }
      tr.append(td);
      if (run.outcome === "failed") tr.className = "bad";
      t.append(tr);
    }
    t.dataset.rows = String(runs.length);
  } catch (e) { /* the figures above still update */ }
}
tick(); setInterval(tick, 1000);
loadRuns(); setInterval(loadRuns, 15000);
</script></body></html>
)html";
}

}  // namespace tenantsync::ops
