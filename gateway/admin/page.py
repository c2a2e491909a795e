"""The status page's assets, shipped inside the package as Python constants (no CDN, no data
files to declare): the HTML (with its CSS) and the script. Plain JavaScript and inline SVG; the
layout is one column that stays readable on a phone-sized screen.

Element ids the tests read: ``state`` (live / disconnected), ``ready``, and per protocol row
``open-<p>``, ``cps-<p>``, ``mps-<p>``, ``total-<p>`` (messages received + sent since start),
``conns-<p>`` (connections since start).
"""

from __future__ import annotations

__all__ = ["HTML", "SCRIPT"]

HTML = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gateway status</title>
<style>
:root{--fg:#1f2937;--muted:#6b7280;--line:#e5e7eb;--bg:#fff}
@media (prefers-color-scheme:dark){:root{--fg:#e5e7eb;--muted:#9ca3af;--line:#374151;--bg:#111827}}
*{box-sizing:border-box}
body{margin:0;padding:12px;font:15px/1.4 system-ui,-apple-system,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:760px;margin:0 auto}
header{display:flex;flex-wrap:wrap;gap:8px;align-items:baseline;justify-content:space-between}
h1{font-size:1.25rem;margin:0}
.badge{display:inline-block;padding:1px 8px;border-radius:9px;font-size:.8rem;border:1px solid var(--line)}
.ok{background:#dcfce7;color:#166534}.bad{background:#fee2e2;color:#991b1b}
table{width:100%;border-collapse:collapse;margin:12px 0;font-variant-numeric:tabular-nums}
th,td{padding:6px 4px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
th{font-size:.75rem;color:var(--muted);font-weight:600;text-transform:uppercase}
.dot{display:inline-block;width:.7em;height:.7em;border-radius:50%;margin-right:6px}
.tabs{display:flex;gap:6px;flex-wrap:wrap;margin:6px 0}
.tabs button{font:inherit;font-size:.85rem;padding:4px 10px;border:1px solid var(--line);border-radius:6px;
  background:transparent;color:var(--fg)}
.tabs button[aria-pressed=true]{background:var(--fg);color:var(--bg)}
svg{width:100%;height:180px;display:block;border:1px solid var(--line);border-radius:6px}
small{color:var(--muted)}
@media (max-width:420px){body{font-size:14px;padding:8px}th,td{padding:5px 2px}.wide{display:none}}
</style></head>
<body><main>
<header><h1>gateway</h1>
<span><span id="ready" class="badge">&hellip;</span> <span id="state" class="badge">connecting</span></span></header>
<small>version <span id="version">?</span>; one sample a second while this page is open</small>
<table><thead><tr><th>protocol</th><th>open</th><th>conn/s</th><th>msg/s</th>
<th>messages</th><th class="wide">connections</th></tr></thead><tbody id="rows"></tbody></table>
<div class="tabs" id="tabs">
<button data-m="mps" aria-pressed="true">messages/s</button>
<button data-m="cps" aria-pressed="false">connections/s</button>
<button data-m="open" aria-pressed="false">open connections</button></div>
<svg id="chart" viewBox="0 0 600 180" preserveAspectRatio="none" role="img" aria-label="chart"></svg>
<small id="axis"></small>
</main><script src="/status.js"></script></body></html>
"""

SCRIPT = b"""'use strict';
(function () {
  var ORDER = ['http', 'websocket', 'mqtt', 'smtp', 'imap', 'sms'];
  var COLORS = {http: '#2563eb', websocket: '#16a34a', mqtt: '#d97706', smtp: '#dc2626',
                imap: '#7c3aed', sms: '#0891b2'};
  var history = [], keep = 300, interval = 1, metric = 'mps';
  var $ = function (id) { return document.getElementById(id); };

  function color(p) { return COLORS[p] || '#6b7280'; }
  function fmt(v) {
    if (v === null || v === undefined) { return '\\u2013'; }
    return v >= 100 ? String(Math.round(v)) : String(Math.round(v * 10) / 10);
  }
  function value(item, m) {
    if (m === 'open') { return item.open; }
    if (m === 'cps') { return item.cps; }
    if (item.rps === null || item.rps === undefined) { return null; }
    return item.rps + item.sps;
  }
  function protocols(sample) {
    var names = Object.keys(sample.protocols);
    names.sort(function (a, b) {
      var i = ORDER.indexOf(a), j = ORDER.indexOf(b);
      return (i < 0 ? 99 : i) - (j < 0 ? 99 : j) || (a < b ? -1 : 1);
    });
    return names;
  }
  function cell(text, id, wide) {
    var td = document.createElement('td');
    td.textContent = text;
    if (id) { td.id = id; }
    if (wide) { td.className = 'wide'; }
    return td;
  }
  function table(sample) {
    var body = $('rows');
    body.textContent = '';
    protocols(sample).forEach(function (p) {
      var item = sample.protocols[p], tr = document.createElement('tr');
      var name = document.createElement('td'), dot = document.createElement('span');
      dot.className = 'dot'; dot.style.background = color(p);
      name.appendChild(dot); name.appendChild(document.createTextNode(p));
      tr.id = 'row-' + p;
      tr.appendChild(name);
      tr.appendChild(cell(String(item.open), 'open-' + p));
      tr.appendChild(cell(fmt(item.cps), 'cps-' + p));
      tr.appendChild(cell(fmt(value(item, 'mps')), 'mps-' + p));
      tr.appendChild(cell(String(item.received + item.sent), 'total-' + p));
      tr.appendChild(cell(String(item.connections), 'conns-' + p, true));
      body.appendChild(tr);
    });
    var ready = $('ready');
    ready.textContent = sample.ready ? 'ready' : 'not ready';
    ready.className = 'badge ' + (sample.ready ? 'ok' : 'bad');
  }
  function chart() {
    var svg = $('chart'), ns = 'http://www.w3.org/2000/svg';
    svg.textContent = '';
    if (!history.length) { return; }
    var end = history[history.length - 1].t, span = keep * interval * 1000, start = end - span;
    var top = 1, series = {};
    history.forEach(function (s) {
      Object.keys(s.protocols).forEach(function (p) {
        var v = value(s.protocols[p], metric);
        if (v !== null && v !== undefined) { top = Math.max(top, v); }
      });
    });
    var last = {};
    history.forEach(function (s) {
      if (s.t < start) { return; }
      var x = (s.t - start) / span * 600;
      Object.keys(s.protocols).forEach(function (p) {
        var v = value(s.protocols[p], metric);
        if (v === null || v === undefined) { return; }
        var y = 176 - v / top * 170, gap = last[p] === undefined || s.t - last[p] > 2500 * interval;
        series[p] = (series[p] || '') + (gap ? 'M' : 'L') + x.toFixed(1) + ' ' + y.toFixed(1);
        last[p] = s.t;
      });
    });
    Object.keys(series).forEach(function (p) {
      var path = document.createElementNS(ns, 'path');
      path.setAttribute('d', series[p]);
      path.setAttribute('fill', 'none');
      path.setAttribute('stroke', color(p));
      path.setAttribute('stroke-width', '2');
      path.setAttribute('vector-effect', 'non-scaling-stroke');
      svg.appendChild(path);
    });
    $('axis').textContent = 'last ' + Math.round(span / 60000) + ' min; top of the chart: ' + fmt(top);
  }
  function render() {
    if (history.length) { table(history[history.length - 1]); }
    chart();
  }
  function connect() {
    var ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws');
    ws.onopen = function () { $('state').textContent = 'live'; };
    ws.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.history) {
        history = message.history; keep = message.keep || keep; interval = message.interval || 1;
        $('version').textContent = message.version;
      }
      if (message.sample) {
        history.push(message.sample);
        while (history.length > keep) { history.shift(); }
      }
      render();
    };
    ws.onclose = function () {
      $('state').textContent = 'disconnected';
      setTimeout(connect, 2000);
    };
  }
  $('tabs').addEventListener('click', function (event) {
    var m = event.target.getAttribute('data-m');
    if (!m) { return; }
    metric = m;
    Array.prototype.forEach.call($('tabs').children, function (b) {
      b.setAttribute('aria-pressed', String(b === event.target));
    });
    chart();
  });
  connect();
}());
"""
