"""SMTP: a sans-IO ESMTP server core, and the listener built on it (``protocol: smtp``).

The wire core is :mod:`~gateway.protocols.smtp.core` (the session and its limits,
:class:`ServerConfig`), with its collaborators :mod:`~gateway.protocols.smtp.events`,
:mod:`~gateway.protocols.smtp.replies`, :mod:`~gateway.protocols.smtp.address`,
:mod:`~gateway.protocols.smtp.data` (the DATA phase) and :mod:`~gateway.protocols.smtp.auth` (SASL).
The listener's modules (not re-exported, so importing the core stays light):
:mod:`~gateway.protocols.smtp.adapter` (the Twisted protocol: STARTTLS, timer, flow control, the
decisions), :mod:`~gateway.protocols.smtp.checks` (recipient routing at RCPT, AUTH checks),
:mod:`~gateway.protocols.smtp.listener` (factory, builder), :mod:`~gateway.protocols.smtp.config`
(the YAML configuration) and :mod:`gateway.passwords` (password hashes). The ASGI side of a
message is :mod:`gateway.protocols.email` (shared with the IMAP reader); the mapping is
``docs/asgi-email.md``.

The public API of the core, re-exported here:

* :class:`SMTPServer`: one session (``receive_data``, ``events_received``, ``data_to_send``,
  ``next_deadline``/``handle_timeout``, ``tls_started``, ``shutdown``, and ``accept``/``reject``/
  ``defer``/``answer`` for decisions);
* :class:`ServerConfig`: per-listener limits and policy;
* the events (:class:`MailFrom`, :class:`RcptTo`, :class:`AuthCredentials`,
  :class:`MessageReceived` with its :class:`Envelope`; :class:`StartTLS`, :class:`CloseConnection`);
* :class:`Reply` for answers;
* address helpers :func:`parse_path`, :func:`split_address`.

A Twisted adapter drives it like this (one flush point)::

    def dataReceived(self, data):
        self.session.receive_data(data)
        self.flush()

    def flush(self):
        while events := self.session.events_received():   # answers may produce more events
            for event in events:
                if isinstance(event, Decision):
                    self.decide(event)     # now or later: session.accept(event) ... then flush()
                elif isinstance(event, StartTLS):
                    self.transport.write(self.session.data_to_send())   # the 220 goes in clear
                    self.transport.startTLS(self.tls_context)
                    self.session.tls_started()
                elif isinstance(event, CloseConnection):
                    self.closing = True
        self.transport.write(self.session.data_to_send())
        if self.closing:
            self.transport.loseConnection()
        else:
            self.rearm(self.session.next_deadline(self.reactor.seconds()))

    def on_timer(self):
        self.session.handle_timeout(self.reactor.seconds())
        self.flush()

After answering a decision later (a consumer's reply), call ``flush()`` again: the answer resumes
the buffered input. While ``session.pending`` is set the adapter should pause reading
(``transport.pauseProducing()``) and resume after the answer; the core buffers what arrives anyway,
up to ``ServerConfig.pipeline_limit``, then gives up with ``421 4.7.0``.

The upper layer bounds its own decision time (``next_deadline`` is None while a decision is
pending) and answers a consumer failure or timeout with ``session.defer(event)`` (451 4.3.0), so
the sending server keeps the message and retries.
"""

from __future__ import annotations

from gateway.protocols.smtp.address import AddressError, parse_path, split_address
from gateway.protocols.smtp.core import ServerConfig
from gateway.protocols.smtp.core import SMTPServer
from gateway.protocols.smtp.events import (
    AuthCredentials,
    CloseConnection,
    Decision,
    Envelope,
    Event,
    MailFrom,
    MessageReceived,
    RcptTo,
    StartTLS,
)
from gateway.protocols.smtp.replies import Reply

__all__ = [
    "SMTPServer",
    "ServerConfig",
    "Event",
    "Decision",
    "MailFrom",
    "RcptTo",
    "AuthCredentials",
    "MessageReceived",
    "Envelope",
    "StartTLS",
    "CloseConnection",
    "Reply",
    "AddressError",
    "parse_path",
    "split_address",
]
