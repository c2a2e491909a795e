# -*- test-case-name: tests.unit.imap.test_reader -*-
"""The ASGI side of a message read from an IMAP mailbox, pure: its ``email`` scope, and what the
reader does with the message once the application answered (``docs/asgi-email.md``).

The rule that a message is marked, moved or deleted only once the application took it is
:attr:`gateway.protocols.email.asgi.Outcome.fate`; :func:`disposition` maps that fate to the
listener's configured action.
"""

from __future__ import annotations

from email import policy
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from typing import Any

from gateway.asgi.types import EmailScope, TLSInfo
from gateway.protocols.email.asgi import REFUSED, TAKEN, Outcome, email_scope
from gateway.protocols.imap.config import ImapListenerConfig

__all__ = ["Disposition", "disposition", "message_scope"]

_HEADERS = BytesHeaderParser(policy=policy.compat32)


def _addresses(values: list[Any] | None) -> list[str]:
    return [address for _, address in getaddresses([str(v) for v in values or ()]) if address]


def message_scope(config: ImapListenerConfig, uid: int, raw: bytes, *, uidvalidity: int | None,
                  tls: TLSInfo | None, state: dict[str, Any] | None, can_send: bool) -> EmailScope:
    """The scope for message ``uid`` of the configured mailbox.

    ``recipients`` (what routers route on): the configured ones, else the ``Delivered-To`` headers
    the delivering server added, else ``To`` and ``Cc``. ``sender``: ``Return-Path`` (the envelope
    sender the delivering server recorded, RFC 5321 §4.4), else ``From``.
    """
    headers = _HEADERS.parsebytes(raw, headersonly=True)
    recipients = list(config.recipients)
    if not recipients:
        recipients = _addresses(headers.get_all("Delivered-To")) or _addresses(
            [*(headers.get_all("To") or ()), *(headers.get_all("Cc") or ())]
        )
    senders = _addresses(headers.get_all("Return-Path")) or _addresses(headers.get_all("From"))
    return email_scope(
        source="imap", sender=senders[0] if senders else "", recipients=recipients, size=len(raw),
        server=(config.host, config.effective_port), tls=tls, state=state, can_send=can_send,
        mailbox=config.mailbox, uid=uid, uidvalidity=uidvalidity,
    )


class Disposition:
    """What to do with a message once answered: ``action`` (``seen``, ``move``, ``delete`` or
    ``leave``) and, for ``move``, the ``target`` mailbox; ``retry`` when it stays unseen to be
    offered again later (nothing is changed on the server)."""

    __slots__ = ("action", "retry", "target")

    def __init__(self, action: str, target: str | None = None, retry: bool = False) -> None:
        self.action = action
        self.target = target
        self.retry = retry

    def __repr__(self) -> str:
        return f"Disposition({self.action!r}, {self.target!r}, retry={self.retry})"


_RETRY = Disposition("leave", retry=True)


def disposition(outcome: Outcome, config: ImapListenerConfig) -> Disposition:
    """The configured action for the outcome's fate: ``after_accept`` once taken, ``after_reject``
    once refused (a 5xx), otherwise nothing: the message is offered again after ``retry_interval``."""
    fate = outcome.fate
    if fate == TAKEN:
        return Disposition(config.after_accept, config.move_to)
    if fate == REFUSED:
        return Disposition(config.after_reject, config.reject_move_to)
    return _RETRY
