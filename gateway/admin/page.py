"""The status page's assets, shipped inside the package as Python constants (no CDN, no data
files to declare): the HTML (with its CSS) and the script. Plain JavaScript and inline SVG; the
layout is one column that stays readable on a phone-sized screen.

Element ids the tests read: ``state`` (live / disconnected), ``ready``, and per protocol row
``open-<p>``, ``cps-<p>``, ``mps-<p>``, ``total-<p>`` (messages received + sent since start),
``conns-<p>`` (connections since start); per MQTT connector (a second table, shown when there are
some) ``connector-<name>`` with ``conn-state-<name>`` (connected / down), ``conn-received-<name>``,
``conn-sent-<name>``, ``conn-queued-<name>``, ``conn-reconnects-<name>``; per worker process (a
third table, shown when the daemon runs several) ``worker-<n>`` with ``worker-state-<n>``
(serving, starting, restarting, ...), ``worker-open-<n>``, ``worker-messages-<n>``,
``worker-conns-<n>``, ``worker-restarts-<n>``, ``worker-pid-<n>``; the chart ``chart`` (one ``path.series`` per protocol,
``g.y-axis`` and ``g.x-axis`` with one ``text`` per tick, ``text.unit``).
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
svg{width:100%;height:220px;display:block;border:1px solid var(--line);border-radius:6px}
svg text{fill:var(--muted);font-size:11px;font-variant-numeric:tabular-nums}
svg .grid{stroke:var(--line);stroke-width:1}
svg .axis{stroke:var(--muted);stroke-width:1}
small{color:var(--muted)}
@media (max-width:420px){body{font-size:14px;padding:8px}th,td{padding:5px 2px}.wide{display:none}}
</style></head>
<body><main>
<header><h1>gateway</h1>
<span><span id="ready" class="badge">&hellip;</span> <span id="state" class="badge">connecting</span></span></header>
<small>version <span id="version">?</span>; the daemon samples once a second and keeps the last
<span id="keep">?</span></small>
<table><thead><tr><th>protocol</th><th>open</th><th>conn/s</th><th>msg/s</th>
<th>messages</th><th class="wide">connections</th></tr></thead><tbody id="rows"></tbody></table>
<table id="workers-table" hidden><thead><tr><th>worker</th><th>state</th><th>open</th><th>messages</th>
<th class="wide">connections</th><th class="wide">restarts</th><th class="wide">pid</th></tr></thead><tbody id="workers"></tbody></table>
<table id="connectors-table" hidden><thead><tr><th>connector</th><th>state</th><th>received</th><th>sent</th>
<th>queued</th><th class="wide">reconnects</th></tr></thead><tbody id="connectors"></tbody></table>
<div class="tabs" id="tabs">
<button data-m="mps" aria-pressed="true">messages/s</button>
<button data-m="cps" aria-pressed="false">connections/s</button>
<button data-m="open" aria-pressed="false">open connections</button></div>
<svg id="chart" role="img" aria-label="chart"></svg>
<small id="axis"></small>
</main><script src="/status.js"></script></body></html>
"""

SCRIPT = b"""'use strict';
(function () {
  var ORDER = ['http', 'websocket', 'mqtt', 'mqtt-connector', 'smtp', 'imap', 'sms'];
  var COLORS = {http: '#2563eb', websocket: '#16a34a', mqtt: '#d97706', 'mqtt-connector': '#92400e',
                smtp: '#dc2626', imap: '#7c3aed', sms: '#0891b2'};
  var UNITS = {mps: 'messages/s', cps: 'connections/s', open: 'connections'};
  var NS = 'http://www.w3.org/2000/svg';
  // Plot margins inside the chart, in pixels: room for the y labels and the unit (left, top)
  // and for the time labels (bottom).
  var LEFT = 46, RIGHT = 10, TOP = 20, BOTTOM = 22;
  var history = [], keep = 300, interval = 1, metric = 'mps';
  var $ = function (id) { return document.getElementById(id); };

  function color(p) { return COLORS[p] || '#6b7280'; }
  function fmt(v) {
    if (v === null || v === undefined) { return '\\u2013'; }
    if (v >= 10000) { return Math.round(v / 1000) + 'k'; }
    return v >= 100 ? String(Math.round(v)) : String(Math.round(v * 10) / 10);
  }
  function duration(seconds) {
    if (seconds >= 3600 && seconds % 3600 === 0) { return seconds / 3600 + ' h'; }
    if (seconds >= 60) { return Math.round(seconds / 60 * 10) / 10 + ' min'; }
    return Math.round(seconds) + ' s';
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
    connectors(sample.connectors || {});
    workers(sample.workers || []);
    var ready = $('ready');
    ready.textContent = sample.ready ? 'ready' : 'not ready';
    ready.className = 'badge ' + (sample.ready ? 'ok' : 'bad');
  }
  function connectors(entries) {
    var names = Object.keys(entries).sort(), body = $('connectors');
    $('connectors-table').hidden = names.length === 0;
    body.textContent = '';
    names.forEach(function (name) {
      var item = entries[name], tr = document.createElement('tr'), state = document.createElement('td');
      var badge = document.createElement('span');
      badge.className = 'badge ' + (item.up ? 'ok' : 'bad');
      badge.textContent = item.up ? 'connected' : 'down';
      badge.id = 'conn-state-' + name;
      state.appendChild(badge);
      tr.id = 'connector-' + name;
      tr.appendChild(cell(name));
      tr.appendChild(state);
      tr.appendChild(cell(String(item.received), 'conn-received-' + name));
      tr.appendChild(cell(String(item.sent), 'conn-sent-' + name));
      tr.appendChild(cell(String(item.queued), 'conn-queued-' + name));
      tr.appendChild(cell(String(item.reconnects), 'conn-reconnects-' + name, true));
      body.appendChild(tr);
    });
  }
  function workers(rows) {
    var body = $('workers');
    $('workers-table').hidden = rows.length === 0;
    body.textContent = '';
    rows.forEach(function (item) {
      var n = item.worker, tr = document.createElement('tr'), state = document.createElement('td');
      var badge = document.createElement('span');
      badge.className = 'badge ' + (item.state === 'serving' ? 'ok' : 'bad');
      badge.textContent = item.state;
      badge.id = 'worker-state-' + n;
      state.appendChild(badge);
      tr.id = 'worker-' + n;
      tr.appendChild(cell(String(n)));
      tr.appendChild(state);
      tr.appendChild(cell(String(item.open), 'worker-open-' + n));
      tr.appendChild(cell(String(item.messages), 'worker-messages-' + n));
      tr.appendChild(cell(String(item.connections), 'worker-conns-' + n, true));
      tr.appendChild(cell(String(item.restarts), 'worker-restarts-' + n, true));
      tr.appendChild(cell(item.pid === null ? '\\u2013' : String(item.pid), 'worker-pid-' + n, true));
      body.appendChild(tr);
    });
  }
  // A round step (1, 2 or 5 times a power of ten) giving about `count` intervals up to `top`.
  function step(top, count) {
    var raw = top / count, power = Math.pow(10, Math.floor(Math.log(raw) / Math.LN10)), unit = raw / power;
    return (unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10) * power;
  }
  // A round time step in seconds for about `count` intervals over `span` seconds.
  function timeStep(span, count) {
    var steps = [10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
    for (var i = 0; i < steps.length; i++) { if (span / steps[i] <= count) { return steps[i]; } }
    return steps[steps.length - 1];
  }
  function svg(kind, attrs, parent, text) {
    var node = document.createElementNS(NS, kind);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) { node.textContent = text; }
    parent.appendChild(node);
    return node;
  }
  function chart() {
    var box = $('chart');
    var width = box.clientWidth || 600, height = box.clientHeight || 220;
    box.setAttribute('viewBox', '0 0 ' + width + ' ' + height);
    box.textContent = '';
    var plotW = Math.max(10, width - LEFT - RIGHT), plotH = Math.max(10, height - TOP - BOTTOM);
    var end = history.length ? history[history.length - 1].t : Date.now();
    var first = history.length ? history[0].t : end;
    // The chart covers what is kept, at least a minute, at most the configured history.
    var span = Math.min(keep * interval, Math.max(60, (end - first) / 1000));
    var start = end - span * 1000;
    var top = 0;
    history.forEach(function (s) {
      if (s.t < start) { return; }
      Object.keys(s.protocols).forEach(function (p) {
        var v = value(s.protocols[p], metric);
        if (v !== null && v !== undefined) { top = Math.max(top, v); }
      });
    });
    var tick = step(Math.max(top, metric === 'open' ? 4 : 1), 4);
    top = Math.max(tick, Math.ceil(top / tick) * tick);
    var y = function (v) { return TOP + plotH - v / top * plotH; };
    var x = function (t) { return LEFT + (t - start) / (span * 1000) * plotW; };
    // y axis: grid lines and labels at round values, the unit above.
    var yAxis = svg('g', {'class': 'y-axis'}, box);
    for (var v = 0; v <= top + tick / 2; v += tick) {
      svg('line', {'class': v === 0 ? 'axis' : 'grid', x1: LEFT, x2: LEFT + plotW, y1: y(v), y2: y(v)}, yAxis);
      svg('text', {x: LEFT - 6, y: y(v) + 4, 'text-anchor': 'end'}, yAxis, fmt(v));
    }
    svg('text', {'class': 'unit', x: 4, y: 13}, box, UNITS[metric]);
    // x axis: ticks at round times before now, labelled by how long ago.
    var xAxis = svg('g', {'class': 'x-axis'}, box), every = timeStep(span, width < 480 ? 3 : 6);
    svg('line', {'class': 'axis', x1: LEFT, x2: LEFT, y1: TOP, y2: TOP + plotH}, xAxis);
    for (var ago = 0; ago <= span + 0.001; ago += every) {
      var at = x(end - ago * 1000);
      svg('line', {'class': 'axis', x1: at, x2: at, y1: TOP + plotH, y2: TOP + plotH + 4}, xAxis);
      svg('text', {x: at, y: height - 5, 'text-anchor': ago === 0 ? 'end' : 'middle'}, xAxis,
          ago === 0 ? 'now' : '\\u2212' + duration(ago));
    }
    // One line per protocol; a gap in the samples is a gap in the line.
    var series = {}, last = {};
    history.forEach(function (s) {
      if (s.t < start) { return; }
      Object.keys(s.protocols).forEach(function (p) {
        var v = value(s.protocols[p], metric);
        if (v === null || v === undefined) { return; }
        var gap = last[p] === undefined || s.t - last[p] > 2500 * interval;
        series[p] = (series[p] || '') + (gap ? 'M' : 'L') + x(s.t).toFixed(1) + ' ' + y(v).toFixed(1);
        last[p] = s.t;
      });
    });
    Object.keys(series).forEach(function (p) {
      svg('path', {'class': 'series', 'data-protocol': p, d: series[p], fill: 'none', stroke: color(p),
                   'stroke-width': '2', 'stroke-linejoin': 'round'}, box);
    });
    var text = UNITS[metric] + ' over the last ' + duration(span) + '; top of the chart: ' + fmt(top);
    box.setAttribute('aria-label', text);
    $('axis').textContent = text;
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
        $('keep').textContent = duration(keep * interval);
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
  window.addEventListener('resize', chart);
  connect();
}());
"""
