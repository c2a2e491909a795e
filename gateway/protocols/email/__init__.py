"""Email: what the SMTP listener (:mod:`gateway.protocols.smtp`) and the IMAP reader
(:mod:`gateway.protocols.imap`) share.

* :mod:`~gateway.protocols.email.asgi`: the ``email`` scope and events, the order of the
  application's messages (:class:`~gateway.protocols.email.asgi.EmailOrder`) and what an answer
  means for the message (:class:`~gateway.protocols.email.asgi.Outcome`); pure;
* :mod:`~gateway.protocols.email.adapter`: the application instance of one message on the reactor
  (:class:`~gateway.protocols.email.adapter.EmailInstance`);
* :mod:`~gateway.protocols.email.sender`: ``email.send`` through a smarthost, built from
  :class:`gateway.protocols.email.config.SmarthostConfig`, with messages composed by
  :mod:`~gateway.protocols.email.compose` (client TLS is :mod:`gateway.tls`).

The ASGI mapping is documented in ``docs/asgi-email.md``.
"""
