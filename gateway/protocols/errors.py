"""The exceptions every protocol core raises.

A core raises exactly two kinds of exception:

* :class:`RemoteProtocolError` when the *peer* broke the protocol (a malformed packet, a limit
  exceeded). It carries ``hint``: the reply the adapter should send before closing (an HTTP
  status, a WebSocket close code, an MQTT reason code, an SMTP reply). The adapter sends it and
  closes that one connection; the daemon carries on.
* :class:`LocalProtocolError` when *our* side (the adapter or the application) misused the API,
  for instance an ASGI message sent out of order.

Anything else escaping a core is a bug.
"""

from __future__ import annotations

from typing import Any


class ProtocolError(Exception):
    """Base class of protocol errors.

    Args:
        message: what went wrong, in words a user can act on.
        hint: the protocol-specific reply to send before closing, or ``None``.
    """

    def __init__(self, message: str, hint: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, hint={self.hint!r})"


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol (or one of our limits) does not allow."""


class LocalProtocolError(ProtocolError):
    """Our side (adapter or application) used a core in a way the protocol does not allow."""
