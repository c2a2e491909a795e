"""The demo's pages, shipped as Python constants (no data files, no CDN): the index and the
room page (plain JavaScript over a WebSocket). Element ids the tests use: ``name``, ``text``,
``send`` (the form), ``messages`` (one ``li`` per message, ``data-source`` set; its ``.who`` shows
the sender, shortened when long, in full as its ``title``), ``state``.

The room page fills the window: the heading and the form stay in view and the message list
between them scrolls, following new messages while the reader is at the bottom."""

from __future__ import annotations

__all__ = ["INDEX", "ROOM"]

_STYLE = """<style>
*{box-sizing:border-box}body{margin:0;padding:12px;font:16px/1.45 system-ui,-apple-system,sans-serif}
main{max-width:720px;margin:0 auto}h1{font-size:1.3rem}code,pre{background:#f3f4f6;border-radius:4px}
pre{padding:8px;overflow-x:auto;font-size:.85rem}
</style>"""

INDEX = ("""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>gateway demo</title>""" + _STYLE + """
</head><body><main>
<h1>One room, five protocols</h1>
<p>Open a room, then talk to it over MQTT, email and SMS as well (see <code>docs/demo.md</code>).</p>
<form onsubmit="location.href='/rooms/'+encodeURIComponent(this.room.value.toLowerCase())+'/';return false">
<input name="room" value="lobby" pattern="[a-z0-9][a-z0-9_\\-]{0,39}" aria-label="room"> <button>open room</button></form>
<ul><li><a href="/rooms/lobby/">#lobby</a></li><li><a href="/hello">/hello</a> (plain text)</li>
<li><a href="/state">/state</a> (lifespan state)</li></ul>
</main></body></html>""").encode()

ROOM = ("""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>#ROOM - gateway demo</title>""" + _STYLE + """
<style>
html,body{height:100%}body{padding:0}
main.room{display:flex;flex-direction:column;height:100vh;height:100dvh;padding:8px 12px 12px}
.room h1{flex:none;margin:4px 0 8px;display:flex;align-items:baseline;gap:10px}
#state{font-size:.8rem;font-weight:400;color:#6b7280}
#messages{flex:1 1 auto;min-height:0;overflow-y:auto;overscroll-behavior:contain;list-style:none;padding:0;margin:0;
  border:1px solid #e5e7eb;border-radius:6px}
#messages li{padding:6px 8px;border-bottom:1px solid #e5e7eb;overflow-wrap:anywhere}
.src{display:inline-block;min-width:3.6em;font-size:.75rem;padding:0 6px;border-radius:8px;color:#fff;margin-right:6px;text-align:center}
.web{background:#2563eb}.mqtt{background:#d97706}.email{background:#dc2626}.sms{background:#0891b2}
.who{font-weight:600;margin-right:6px}
#send{flex:none;display:flex;gap:6px;margin-top:8px}#name{flex:0 1 6.5em;min-width:3em}#text{flex:1 1 auto;min-width:0}
input,button{font:inherit;padding:6px}button{flex:none}
</style></head><body><main class="room">
<h1>#ROOM <small id="state">connecting</small></h1>
<ul id="messages" aria-live="polite"></ul>
<form id="send"><input id="name" placeholder="name" value="web" aria-label="name">
<input id="text" placeholder="message" autocomplete="off" aria-label="message"><button>send</button></form>
</main><script>
'use strict';
(function () {
  var room = 'ROOM', list = document.getElementById('messages'), ws;
  var KEEP = 500;  // messages kept on the page; older ones leave the list
  // Server-assigned MQTT client ids (auto-<32 hex>) and other long names: shortened, in full on hover.
  function short(user) {
    var auto = /^auto-([0-9a-f]{32})$/i.exec(user);
    if (auto) { return 'auto-' + auto[1].slice(0, 6) + '\\u2026'; }
    return user.length > 24 ? user.slice(0, 20) + '\\u2026' : user;
  }
  function show(m) {
    // Follow new messages only while the reader is at the bottom (not reading older ones).
    var atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    var li = document.createElement('li'), src = document.createElement('span'), who = document.createElement('span');
    li.setAttribute('data-source', m.source);
    src.className = 'src ' + m.source; src.textContent = m.source;
    who.className = 'who'; who.textContent = short(m.user); who.title = m.user;
    li.appendChild(src); li.appendChild(who); li.appendChild(document.createTextNode(m.text));
    list.appendChild(li);
    while (list.children.length > KEEP) { list.removeChild(list.firstChild); }
    if (atBottom) { list.scrollTop = list.scrollHeight; }
  }
  function connect() {
    ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws/rooms/' + room + '/');
    ws.onopen = function () { document.getElementById('state').textContent = 'live'; };
    ws.onmessage = function (event) { show(JSON.parse(event.data)); };
    ws.onclose = function () {
      document.getElementById('state').textContent = 'disconnected';
      list.textContent = '';
      setTimeout(connect, 2000);
    };
  }
  document.getElementById('send').addEventListener('submit', function (event) {
    event.preventDefault();
    var text = document.getElementById('text');
    if (text.value && ws && ws.readyState === 1) {
      ws.send(JSON.stringify({name: document.getElementById('name').value, text: text.value}));
      text.value = '';
    }
  });
  connect();
}());
</script></body></html>""")


def room_page(room: str) -> bytes:
    """The room page for ``room`` (a name :func:`gateway.demo.rooms.valid_room` accepted)."""
    return ROOM.replace("ROOM", room).encode()
