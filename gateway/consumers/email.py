"""Email consumers: ``EmailConsumer`` (sync handlers) and ``AsyncEmailConsumer``.

One instance per message, from the SMTP listener or the IMAP reader (``docs/asgi-email.md``).
Hooks:

* ``receive(message, raw)``: the message, parsed (:class:`email.message.EmailMessage`, policy
  ``email.policy.default``) and as the raw bytes; ``self.scope`` has the envelope (``sender``,
  ``recipients``), ``source`` (``"smtp"`` or ``"imap"``), ``client``, ``tls``, ``auth_user``...;
* ``send_result(result)``: the outcome of a :meth:`send_email` / :meth:`reply`
  (``email.send.result``: ``id``, ``ok``, ``code``, ``text``, ``temporary``, ``refused``); the
  default logs failures;
* ``disconnect()``: the instance is about to end.

Answer with ``accept(text=None)`` or ``reject(code=550, text=...)``. When ``receive`` returns
without answering, the message is accepted; when it raises, the message is *not* taken: the SMTP
client gets ``451 4.3.0`` and will send it again, the IMAP reader leaves it in the mailbox and
offers it again later. So raise (or ``reject(451, ...)``) when the message could not be stored,
and reject with a 5xx only for a permanent refusal.

An email consumer has ``self.channel_layer`` (to ``group_send`` to WebSocket consumers) but, as it
lives for one message, no channel of its own unless ``channel_receive = True``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses
from typing import Any, ClassVar

from twisted.logger import Logger

from gateway.asgi.app import Receive, Scope, Send
from gateway.consumers.base import AsyncConsumer, SyncConsumer
from gateway.exceptions import StopConsumer
from gateway.layers import get_channel_layer

__all__ = ["AsyncEmailConsumer", "EmailConsumer", "LazyEmailMessage", "parse_message"]

log = Logger(namespace="gateway.consumers.email")
_PARSER = BytesParser(policy=policy.default)


class LazyEmailMessage(EmailMessage):
    """An :class:`EmailMessage` parsed from its bytes the first time it is used.

    Parsing costs far more than the rest of a delivery (``email.feedparser`` is pure Python), and
    many consumers only store or forward ``raw``; they should not pay for it. Every attribute of
    :class:`email.message.Message` is an instance attribute, so the first access to any of them
    (through any method: ``msg["Subject"]``, ``get_body()``, ``walk()``...) parses the bytes and
    fills the instance in place; the object then is exactly the parser's result.
    """

    def __init__(self, raw: bytes) -> None:  # the parse fills in what Message.__init__ would
        self.__dict__["_lazy_raw"] = raw

    def _materialize(self) -> bool:
        raw = self.__dict__.pop("_lazy_raw", None)
        if raw is None:
            return False
        self.__dict__.update(_PARSER.parsebytes(raw).__dict__)
        return True

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or not self._materialize():
            raise AttributeError(name)
        return getattr(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._materialize()
        super().__setattr__(name, value)


def parse_message(raw: bytes) -> EmailMessage:
    """Message bytes as an :class:`EmailMessage` (``email.policy.default``), parsed lazily."""
    return LazyEmailMessage(raw)


def _send_message(to: str | Sequence[str] | None, subject: str, body: str, *, html: str | None, from_: str | None,
                  cc: str | Sequence[str], bcc: str | Sequence[str], headers: Mapping[str, str] | None,
                  message: bytes | None, message_id: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "email.send", "id": message_id or uuid.uuid4().hex}
    if message is not None:
        out["message"] = message
    else:
        out["subject"] = subject
        out["body"] = body
    if to:
        out["to"] = to if isinstance(to, str) else list(to)
    if cc:
        out["cc"] = cc if isinstance(cc, str) else list(cc)
    if bcc:
        out["bcc"] = bcc if isinstance(bcc, str) else list(bcc)
    if html is not None:
        out["html"] = html
    if from_ is not None:
        out["from"] = from_
    if headers:
        out["headers"] = dict(headers)
    return out


def _reply_message(original: EmailMessage | None, body: str, subject: str | None, html: str | None,
                   from_: str | None, headers: Mapping[str, str] | None) -> dict[str, Any]:
    """An ``email.send`` answering ``original``: to its Reply-To (else From), ``Re:`` subject,
    ``In-Reply-To`` and ``References`` (RFC 5322 §3.6.4)."""
    if original is None:
        raise RuntimeError("reply() needs the received message; call it from receive()")
    targets = [addr for _, addr in getaddresses(original.get_all("Reply-To") or original.get_all("From") or [])]
    targets = [addr for addr in targets if addr]
    if not targets:
        raise ValueError("the message has no Reply-To or From address to answer")
    if subject is None:
        original_subject = str(original.get("Subject", ""))
        subject = original_subject if original_subject.lower().startswith("re:") else f"Re: {original_subject}".strip()
    extra = dict(headers or {})
    message_id = original.get("Message-ID")
    if message_id:
        extra.setdefault("In-Reply-To", str(message_id))
        references = str(original.get("References", "")).split()
        extra.setdefault("References", " ".join([*references, str(message_id)]))
    return _send_message(targets, subject, body, html=html, from_=from_, cc=(), bcc=(), headers=extra,
                         message=None, message_id=None)


def _log_result(consumer: Any, result: dict[str, Any]) -> None:
    if not result.get("ok"):
        log.warn("{consumer}: email.send {id} failed ({kind}): {code} {text} {refused}",
                 consumer=type(consumer).__name__, id=result.get("id"),
                 kind="temporary" if result.get("temporary") else "permanent", code=result.get("code"),
                 text=result.get("text"), refused=result.get("refused") or "")


class _OneMessage(AsyncConsumer):
    """The run loop of email consumers: one source (the message), one handler at a time.

    An email instance lives for one message, so by default it does not open a channel of its own
    on the channel layer: ``self.channel_layer`` is there (``group_send`` to WebSockets works),
    ``self.channel_name`` is None. Opening one per message costs more than the rest of the
    delivery together (a channel, a second receive task, ``asyncio.wait`` per event). Set
    ``channel_receive = True`` on a subclass to get Channels' behaviour (a channel whose messages
    are dispatched like the email events).
    """

    channel_receive: ClassVar[bool] = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.channel_receive:
            await super().__call__(scope, receive, send)
            return
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.base_send = self._prepare(send)
        try:
            while True:
                await self._dispatch_async(await receive())
        except StopConsumer:
            pass
        finally:
            await self._on_exit()


class AsyncEmailConsumer(_OneMessage):
    """An async email consumer (see the module docstring)."""

    answered = False
    #: The received message (set before :meth:`receive` is called).
    message: EmailMessage | None = None

    async def email_receive(self, event: dict[str, Any]) -> None:
        """Parse the message, call :meth:`receive`, then accept unless it answered."""
        raw = event["raw"]
        self.message = parse_message(raw)
        await self.receive(self.message, raw)
        if not self.answered:
            await self.accept()

    async def email_send_result(self, event: dict[str, Any]) -> None:
        """Call :meth:`send_result`."""
        await self.send_result(event)

    async def email_disconnect(self, event: dict[str, Any]) -> None:
        """Call :meth:`disconnect` and stop."""
        await self.disconnect()
        raise StopConsumer()

    async def receive(self, message: EmailMessage, raw: bytes) -> None:
        """Called with the message; subclasses implement it."""

    async def send_result(self, result: dict[str, Any]) -> None:
        """Called with the outcome of each send; the default logs failures."""
        _log_result(self, result)

    async def disconnect(self) -> None:
        """Cleanup hook, called once before the instance ends."""

    async def accept(self, text: str | None = None) -> None:
        """Take the message: the SMTP client gets ``250`` (with ``text``), IMAP marks it done."""
        self.answered = True
        await self.send({"type": "email.accept"} if text is None else {"type": "email.accept", "text": text})

    async def reject(self, code: int = 550, text: str = "5.7.1 Message rejected") -> None:
        """Refuse the message: 5xx permanently, 4xx for now (the sender retries)."""
        self.answered = True
        await self.send({"type": "email.reject", "code": code, "text": text})

    async def send_email(self, to: str | Sequence[str] | None = None, subject: str = "", body: str = "", *,
                         html: str | None = None, from_: str | None = None, cc: str | Sequence[str] = (),
                         bcc: str | Sequence[str] = (), headers: Mapping[str, str] | None = None,
                         message: bytes | None = None, id: str | None = None) -> str:  # noqa: A002
        """Send a message through the smarthost; returns its id (the outcome goes to :meth:`send_result`)."""
        out = _send_message(to, subject, body, html=html, from_=from_, cc=cc, bcc=bcc, headers=headers,
                            message=message, message_id=id)
        await self.send(out)
        message_id: str = out["id"]
        return message_id

    async def reply(self, body: str, *, subject: str | None = None, html: str | None = None,
                    from_: str | None = None, headers: Mapping[str, str] | None = None) -> str:
        """Answer the received message's author (Reply-To, else From); returns the send id."""
        out = _reply_message(self.message, body, subject, html, from_, headers)
        await self.send(out)
        message_id: str = out["id"]
        return message_id


class EmailConsumer(_OneMessage, SyncConsumer):
    """A sync email consumer: the hooks of :class:`AsyncEmailConsumer` as plain methods, run on the
    sync pool (see :mod:`gateway.consumers.threads`)."""

    answered = False
    message: EmailMessage | None = None

    def email_receive(self, event: dict[str, Any]) -> None:
        """Parse the message, call :meth:`receive`, then accept unless it answered."""
        raw = event["raw"]
        self.message = parse_message(raw)
        self.receive(self.message, raw)
        if not self.answered:
            self.accept()

    def email_send_result(self, event: dict[str, Any]) -> None:
        """Call :meth:`send_result`."""
        self.send_result(event)

    def email_disconnect(self, event: dict[str, Any]) -> None:
        """Call :meth:`disconnect` and stop."""
        self.disconnect()
        raise StopConsumer()

    def receive(self, message: EmailMessage, raw: bytes) -> None:
        """Called with the message; subclasses implement it."""

    def send_result(self, result: dict[str, Any]) -> None:
        """Called with the outcome of each send; the default logs failures."""
        _log_result(self, result)

    def disconnect(self) -> None:
        """Cleanup hook, called once before the instance ends."""

    def accept(self, text: str | None = None) -> None:
        """Take the message (see :meth:`AsyncEmailConsumer.accept`)."""
        self.answered = True
        self.send({"type": "email.accept"} if text is None else {"type": "email.accept", "text": text})

    def reject(self, code: int = 550, text: str = "5.7.1 Message rejected") -> None:
        """Refuse the message (see :meth:`AsyncEmailConsumer.reject`)."""
        self.answered = True
        self.send({"type": "email.reject", "code": code, "text": text})

    def send_email(self, to: str | Sequence[str] | None = None, subject: str = "", body: str = "", *,
                   html: str | None = None, from_: str | None = None, cc: str | Sequence[str] = (),
                   bcc: str | Sequence[str] = (), headers: Mapping[str, str] | None = None,
                   message: bytes | None = None, id: str | None = None) -> str:  # noqa: A002
        """Send a message through the smarthost; returns its id."""
        out = _send_message(to, subject, body, html=html, from_=from_, cc=cc, bcc=bcc, headers=headers,
                            message=message, message_id=id)
        self.send(out)
        message_id: str = out["id"]
        return message_id

    def reply(self, body: str, *, subject: str | None = None, html: str | None = None,
              from_: str | None = None, headers: Mapping[str, str] | None = None) -> str:
        """Answer the received message's author; returns the send id."""
        out = _reply_message(self.message, body, subject, html, from_, headers)
        self.send(out)
        message_id: str = out["id"]
        return message_id
