"""WebSocket (RFC 6455, RFC 7692) on HTTP listeners, with autobahn, as ASGI ``websocket`` scopes.

* :mod:`.config`: the ``websocket:`` settings of an HTTP listener;
* :mod:`.asgi`: the sans-IO rules for the application's messages, and the scope;
* :mod:`.adapter`: the Twisted protocol (autobahn's server protocol wired to the application);
* :mod:`.frames`, :mod:`.timers`: its fast frame path and its one timer;
* :mod:`.listener`: the upgrade hook the HTTP listener installs.
"""
