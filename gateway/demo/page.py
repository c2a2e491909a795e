"""The demo's pages, shipped as Python constants (no data files, no CDN): the index and the
room page (plain JavaScript over a WebSocket). Element ids the tests use: ``name``, ``text``,
``send`` (the form), ``messages`` (one ``li`` per message, ``data-source`` set), ``state``."""

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
#messages{list-style:none;padding:0;margin:8px 0;min-height:40vh}
#messages li{padding:6px 8px;border-bottom:1px solid #e5e7eb;overflow-wrap:anywhere}
.src{display:inline-block;min-width:3.6em;font-size:.75rem;padding:0 6px;border-radius:8px;color:#fff;margin-right:6px;text-align:center}
.web{background:#2563eb}.mqtt{background:#d97706}.email{background:#dc2626}.sms{background:#0891b2}
.who{font-weight:600;margin-right:6px}
form{display:flex;gap:6px;flex-wrap:wrap}#name{flex:0 1 8em}#text{flex:1 1 12em}
input,button{font:inherit;padding:6px}
</style></head><body><main>
<h1>#ROOM <small id="state">connecting</small></h1>
<ul id="messages"></ul>
<form id="send"><input id="name" placeholder="name" value="web" aria-label="name">
<input id="text" placeholder="message" autocomplete="off" aria-label="message"><button>send</button></form>
</main><script>
'use strict';
(function () {
  var room = 'ROOM', list = document.getElementById('messages'), ws;
  function show(m) {
    var li = document.createElement('li'), src = document.createElement('span'), who = document.createElement('span');
    li.setAttribute('data-source', m.source);
    src.className = 'src ' + m.source; src.textContent = m.source;
    who.className = 'who'; who.textContent = m.user;
    li.appendChild(src); li.appendChild(who); li.appendChild(document.createTextNode(m.text));
    list.appendChild(li);
    li.scrollIntoView({block: 'nearest'});
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
