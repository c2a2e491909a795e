"""SMS consumers: ``SmsConsumer`` (sync handlers) and ``AsyncSmsConsumer``.

One instance per webhook (``docs/asgi-sms.md``). Hooks:

* ``receive(text, message)``: an inbound text (``sms.receive``); ``self.scope["from"]`` is the
  sender, ``self.scope["to"]`` our number;
* ``status(message)``: a delivery report (``sms.status``);
* ``send_result(message)``: the provider's answer to a REST-sent ``sms.send`` or ``sms.reply``
  (``sms.send.result``); the default logs failures;
* ``disconnect()``: the instance is about to end.

Actions: ``reply(text)`` (inline in the webhook answer where the provider allows, else by REST),
``send_sms(to, text, from_=None, media_urls=(), status_callback=None, id=None)`` and ``ack()``.

After ``receive``/``status`` returns, the consumer acknowledges the webhook (``sms.ack``) if it
has not already: the provider gets its success answer, carrying the inline replies. An exception
in the hook means *not handled*: the provider is answered with its retry status and will deliver
the message again. A hook that needs longer than the provider waits (Telnyx: 2 s) should call
``ack()`` first, taking responsibility for the message, and then do the slow work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.logger import Logger

from gateway.consumers.base import AsyncConsumer, SyncConsumer
from gateway.exceptions import StopConsumer

__all__ = ["AsyncSmsConsumer", "SmsConsumer"]

log = Logger(namespace="gateway.consumers.sms")


def _send_message(to: str, text: str, from_: str | None, media_urls: Sequence[str], status_callback: str | None,
                  request_id: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "sms.send", "to": to, "text": text}
    if from_ is not None:
        message["from"] = from_
    if media_urls:
        message["media_urls"] = list(media_urls)
    if status_callback is not None:
        message["status_callback"] = status_callback
    if request_id is not None:
        message["id"] = request_id
    return message


def _log_result(consumer: Any, message: dict[str, Any]) -> None:
    if not message.get("ok"):
        error = message.get("error") or {}
        log.warn("{consumer}: sms.send {id} failed: {error}", consumer=type(consumer).__name__,
                 id=message.get("id"), error=error.get("message"))


class AsyncSmsConsumer(AsyncConsumer):
    """An async SMS consumer (see the module docstring)."""

    acked = False

    async def sms_receive(self, message: dict[str, Any]) -> None:
        """Call :meth:`receive`, then acknowledge."""
        await self.receive(message.get("text", ""), message)
        await self.ack()

    async def sms_status(self, message: dict[str, Any]) -> None:
        """Call :meth:`status`, then acknowledge."""
        await self.status(message)
        await self.ack()

    async def sms_send_result(self, message: dict[str, Any]) -> None:
        """Call :meth:`send_result`."""
        await self.send_result(message)

    async def sms_disconnect(self, message: dict[str, Any]) -> None:
        """Call :meth:`disconnect` and stop."""
        await self.disconnect()
        raise StopConsumer()

    async def receive(self, text: str, message: dict[str, Any]) -> None:
        """Called with each inbound text; ``message`` is the whole ``sms.receive`` event."""

    async def status(self, message: dict[str, Any]) -> None:
        """Called with each delivery report."""

    async def send_result(self, message: dict[str, Any]) -> None:
        """Called with the outcome of each REST send; the default logs failures."""
        _log_result(self, message)

    async def disconnect(self) -> None:
        """Cleanup hook, called once before the instance ends."""

    async def ack(self) -> None:
        """Acknowledge the webhook now (idempotent): from here on, the message is ours."""
        if not self.acked:
            self.acked = True
            await super().send({"type": "sms.ack"})

    async def reply(self, text: str, *, id: Any = None) -> None:  # noqa: A002 - the ASGI key's name
        """Answer the sender: inline where the provider allows it (before :meth:`ack`), else by REST."""
        message: dict[str, Any] = {"type": "sms.reply", "text": text}
        if id is not None:
            message["id"] = id
        await super().send(message)

    async def send_sms(self, to: str, text: str, *, from_: str | None = None, media_urls: Sequence[str] = (),
                       status_callback: str | None = None, id: Any = None) -> None:  # noqa: A002
        """Send a text through the provider's REST API; the outcome comes to :meth:`send_result`."""
        await super().send(_send_message(to, text, from_, media_urls, status_callback, id))


class SmsConsumer(SyncConsumer):
    """A sync SMS consumer: the hooks of :class:`AsyncSmsConsumer` as plain methods, run on the
    sync pool (see :mod:`gateway.consumers.threads`)."""

    acked = False

    def sms_receive(self, message: dict[str, Any]) -> None:
        """Call :meth:`receive`, then acknowledge."""
        self.receive(message.get("text", ""), message)
        self.ack()

    def sms_status(self, message: dict[str, Any]) -> None:
        """Call :meth:`status`, then acknowledge."""
        self.status(message)
        self.ack()

    def sms_send_result(self, message: dict[str, Any]) -> None:
        """Call :meth:`send_result`."""
        self.send_result(message)

    def sms_disconnect(self, message: dict[str, Any]) -> None:
        """Call :meth:`disconnect` and stop."""
        self.disconnect()
        raise StopConsumer()

    def receive(self, text: str, message: dict[str, Any]) -> None:
        """Called with each inbound text; ``message`` is the whole ``sms.receive`` event."""

    def status(self, message: dict[str, Any]) -> None:
        """Called with each delivery report."""

    def send_result(self, message: dict[str, Any]) -> None:
        """Called with the outcome of each REST send; the default logs failures."""
        _log_result(self, message)

    def disconnect(self) -> None:
        """Cleanup hook, called once before the instance ends."""

    def ack(self) -> None:
        """Acknowledge the webhook now (idempotent)."""
        if not self.acked:
            self.acked = True
            super().send({"type": "sms.ack"})

    def reply(self, text: str, *, id: Any = None) -> None:  # noqa: A002
        """Answer the sender (see :meth:`AsyncSmsConsumer.reply`)."""
        message: dict[str, Any] = {"type": "sms.reply", "text": text}
        if id is not None:
            message["id"] = id
        super().send(message)

    def send_sms(self, to: str, text: str, *, from_: str | None = None, media_urls: Sequence[str] = (),
                 status_callback: str | None = None, id: Any = None) -> None:  # noqa: A002
        """Send a text through the provider's REST API; the outcome comes to :meth:`send_result`."""
        super().send(_send_message(to, text, from_, media_urls, status_callback, id))
