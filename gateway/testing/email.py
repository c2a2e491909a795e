"""``EmailCommunicator``: hand one message to an application without a daemon.

    communicator = EmailCommunicator(application, b"Subject: hi\\r\\n\\r\\nhello\\r\\n",
                                     recipients=["support@example.org"])
    outcome = await communicator.deliver()
    assert outcome.accepted and outcome.code == 250

The scope is the one the SMTP listener builds (``docs/asgi-email.md``), by the same function;
keyword arguments fill it in (``source="imap"`` gives the IMAP reader's keys). What the application
sends is checked by the listeners' own message-order machine, and the outcome is read with their
own rules: :attr:`EmailOutcome.code` is what the SMTP client would see (the application's reply,
or ``451`` when it raised or ended without answering), :attr:`EmailOutcome.fate` what the IMAP
reader would do with the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

from gateway.asgi.app import ASGIApp, Message
from gateway.protocols.email.asgi import ACCEPTED, EmailOrder, Outcome, Send, email_scope
from gateway.protocols.errors import LocalProtocolError
from gateway.testing.application import ProtocolCommunicator, UnexpectedMessage

__all__ = ["EmailCommunicator", "EmailOutcome"]


@dataclass
class EmailOutcome:
    """What the application did with the message.

    Attributes:
        accepted: it sent ``email.accept``.
        code: the SMTP reply code the client would get (250, the rejection's code, or 451 when
            the application raised or ended without answering).
        text: the reply text (with its enhanced status code).
        sends: the ``email.send`` messages sent before the answer, in order.
        error: the exception the application raised before answering, if it did.
        fate: what the IMAP reader would do with the message: ``"taken"`` (marked, moved or
            deleted as configured), ``"refused"`` (a 5xx) or ``"retried"`` (left for later).
    """

    accepted: bool = False
    code: int = 451
    text: str = "4.3.0 Temporary failure, please try again later"
    sends: list[Message] = field(default_factory=list)
    error: BaseException | None = None
    fate: str = "retried"

    @classmethod
    def of(cls, outcome: Outcome, sends: list[Message], error: BaseException | None = None) -> EmailOutcome:
        """The outcome as the listeners read it (:meth:`Outcome.smtp_reply`, :attr:`Outcome.fate`)."""
        reply = outcome.smtp_reply()
        text = " ".join(reply.lines)
        return cls(accepted=outcome.kind == ACCEPTED, code=reply.code,
                   text=f"{reply.status} {text}" if reply.status else text, sends=sends, error=error,
                   fate=outcome.fate)


def _raw(message: bytes | str | EmailMessage) -> bytes:
    if isinstance(message, EmailMessage):
        return message.as_bytes(policy=SMTP)
    if isinstance(message, str):
        return message.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
    return bytes(message)


class EmailCommunicator(ProtocolCommunicator):
    """Drives one ``email`` scope.

    Args:
        application: the ASGI application (a consumer's ``as_asgi()``, an ``EmailToRouter``).
        message: the message: bytes, text (line endings become CRLF) or an ``EmailMessage``.
        sender, recipients: the envelope.
        source: ``"smtp"`` or ``"imap"``.
        helo, client, server, tls, auth_user: SMTP scope keys; ``mailbox``, ``uid``,
            ``uidvalidity``: IMAP scope keys (with ``source="imap"``).
        scope_overrides: further scope keys.
    """

    scope_type = "email"

    def __init__(self, application: ASGIApp, message: bytes | str | EmailMessage, *, sender: str = "sender@example.org",
                 recipients: Sequence[str] = ("recipient@example.org",), source: str = "smtp",
                 helo: str | None = "client.example.org", client: tuple[str, int] | None = ("192.0.2.1", 40000),
                 server: tuple[str, int | None] | None = ("192.0.2.25", 25), tls: dict[str, Any] | None = None,
                 auth_user: str | None = None, mailbox: str = "INBOX", uid: int = 1, uidvalidity: int = 1,
                 scope_overrides: dict[str, Any] | None = None) -> None:
        if source not in ("smtp", "imap"):
            raise ValueError("source is 'smtp' or 'imap'")
        self.raw = _raw(message)
        self.delivered = False
        #: The listeners' message-order machine, fed with everything the application sends.
        self.order = EmailOrder()
        super().__init__(application, scope_overrides=scope_overrides, sender=sender, recipients=list(recipients),
                         source=source, helo=helo, client=client, server=server, tls=tls, auth_user=auth_user,
                         mailbox=mailbox, uid=uid, uidvalidity=uidvalidity)

    def build_scope(self, *, sender: str, recipients: list[str], source: str, helo: str | None,
                    client: Any, server: Any, tls: Any, auth_user: str | None, mailbox: str, uid: int,
                    uidvalidity: int) -> dict[str, Any]:
        """An ``email`` scope as the listener builds it (:func:`~gateway.protocols.email.asgi.email_scope`)."""
        scope = email_scope(source="smtp" if source == "smtp" else "imap", sender=sender, recipients=recipients,
                            size=len(self.raw), server=server, tls=tls, state=None, can_send=True, helo=helo,
                            client=client, auth_user=auth_user, mailbox=mailbox, uid=uid, uidvalidity=uidvalidity)
        return dict(scope)

    def check(self, message: Message) -> Any:
        """What the listener makes of a message from the application (the order's action).

        Raises:
            UnexpectedMessage: the listener would refuse it (``send()`` would raise
                ``LocalProtocolError``).
        """
        try:
            return self.order.app_send(message)
        except LocalProtocolError as exc:
            raise UnexpectedMessage(f"the email application sent {message!r}: {exc}") from None

    async def deliver(self, timeout: float = 1) -> EmailOutcome:
        """Send ``email.receive`` and collect what the application does until it answers or ends.

        Raises:
            UnexpectedMessage: the application sent something the listener would refuse.
            TimeoutError: it neither answered nor ended within ``timeout``.
        """
        if self.delivered:
            raise RuntimeError("deliver() is called once per communicator")
        self.delivered = True
        await self.send_input({"type": "email.receive", "raw": self.raw})
        sends: list[Message] = []
        error: BaseException | None = None
        order = self.order
        while order.outcome is None:
            message = await self.next_output(timeout)
            if message is None:  # the application ended without answering
                error = None if self.future.cancelled() else self.future.exception()
                order.give_up(f"{type(error).__name__}: {error}" if error else "it ended without answering")
            elif isinstance(self.check(message), Send):
                sends.append(message)
        return EmailOutcome.of(order.outcome, sends, error)

    async def send_result(self, message_id: str, *, ok: bool = True, code: int | None = 250, text: str = "sent",
                          temporary: bool = False, refused: dict[str, str] | None = None) -> None:
        """Give the application an ``email.send.result`` for the send with ``message_id``."""
        await self.send_input({"type": "email.send.result", "id": message_id, "ok": ok, "code": code, "text": text,
                               "temporary": temporary, "refused": dict(refused or {})})

    async def collect_sends(self, timeout: float = 0.1) -> list[Message]:
        """The ``email.send`` messages sent since, until ``timeout`` passes quietly."""
        sends: list[Message] = []
        while not await self.receive_nothing(timeout):
            message = await self.receive_output(timeout)
            if not isinstance(self.check(message), Send):
                raise UnexpectedMessage(f"expected email.send after the answer, got {message!r}")
            sends.append(message)
        return sends

    async def disconnect(self, timeout: float = 1) -> None:
        """Send ``email.disconnect`` (as the listener does once nothing is left) and wait for the end."""
        await self.send_input({"type": "email.disconnect"})
        await self.wait(timeout)
