"""HTTP/2 (RFC 9113) on HTTP listeners: TLS with ALPN, cleartext h2c, WebSocket over HTTP/2 (RFC 8441).

``core.py`` wraps the sans-IO ``h2`` connection with the limits and the accounting that defend
the known HTTP/2 attacks; ``asgi.py`` maps a stream's request onto the ASGI ``http`` and
``websocket`` scopes; ``adapter.py`` is the Twisted connection and its per-stream application
instances; ``config.py`` is the ``http2:`` key of an HTTP listener.
"""
