"""Configuration of IMAP readers (``protocol: imap``): a mailbox whose new messages become
``email`` scopes (``docs/asgi-email.md``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from gateway.config.schema import ListenerConfig, positive
from gateway.config.units import Duration, Size
from gateway.protocols.email.config import SmarthostConfig, check_port, check_readable

Action = Literal["seen", "move", "delete"]


@dataclass(frozen=True, kw_only=True)
class ImapTimeoutsConfig:
    """Timers of an IMAP reader."""

    connect: Duration = field(default=Duration(30.0), metadata={"doc": "Time to connect, get the greeting, log in and select.", "check": positive})
    command: Duration = field(default=Duration(60.0), metadata={"doc": "Time the server may take to answer one command; then reconnect.", "check": positive})
    consumer: Duration = field(default=Duration(60.0), metadata={"doc": "Time the application has to accept or reject a message; then it is retried later.", "check": positive})


@dataclass(frozen=True, kw_only=True)
class ImapListenerConfig(ListenerConfig):
    """Reads a mailbox: each new message is handed to the application as an ``email`` scope."""

    needs_endpoint: ClassVar[bool] = False

    host: str = field(metadata={"doc": "IMAP server host name; also the name its certificate must carry."})
    port: int | None = field(default=None, metadata={"doc": "Port (default 993 for implicit TLS, else 143).", "check": check_port})
    tls: Literal["implicit", "starttls", "none"] = field(
        default="implicit",
        metadata={"doc": "implicit (TLS from the first byte, RFC 8314), starttls (required, RFC 3501 6.2.1) or none (cleartext; only for a server on this host)."},
    )
    ca_file: str | None = field(default=None, metadata={"doc": "PEM file of the CAs to trust for the server certificate (default: the system's).", "check": check_readable})
    server_name: str | None = field(default=None, metadata={"doc": "Name to verify in the certificate when it differs from host."})
    username: str = field(metadata={"doc": "Login name."})
    password: str = field(metadata={"doc": "Password (use ${ENV_VAR} to keep it out of the file)."})
    mailbox: str = field(default="INBOX", metadata={"doc": "Mailbox to read."})
    recipients: tuple[str, ...] = field(
        default=(),
        metadata={"doc": "Addresses this mailbox receives for: the scope's recipients, which the router routes on (default: each message's Delivered-To, else To and Cc)."},
    )
    after_accept: Action = field(default="seen", metadata={"doc": "Once the application accepted: seen (set \\Seen), move (to move_to) or delete."})
    move_to: str | None = field(default=None, metadata={"doc": "Mailbox accepted messages are moved to (after_accept: move)."})
    after_reject: Literal["seen", "move", "delete", "leave"] = field(
        default="seen",
        metadata={"doc": "After a permanent (5xx) rejection: seen, move (to reject_move_to), delete, or leave it unseen (not retried until restart)."},
    )
    reject_move_to: str | None = field(default=None, metadata={"doc": "Mailbox rejected messages are moved to (after_reject: move)."})
    poll_interval: Duration = field(default=Duration(60.0), metadata={"doc": "Seconds between checks when the server has no IDLE (RFC 2177).", "check": positive})
    idle_refresh: Duration = field(default=Duration(600.0), metadata={"doc": "IDLE is restarted this often (RFC 2177: at most 29 minutes).", "check": positive})
    retry_interval: Duration = field(default=Duration(60.0), metadata={"doc": "A message the application failed on (raised, timed out, 4xx) is offered again after this long.", "check": positive})
    reconnect_initial: Duration = field(default=Duration(1.0), metadata={"doc": "First delay before reconnecting; doubles after each failure.", "check": positive})
    reconnect_max: Duration = field(default=Duration(300.0), metadata={"doc": "Longest delay between reconnection attempts.", "check": positive})
    max_message_size: Size = field(default=Size(10_240_000), metadata={"doc": "Larger messages are not fetched and count as rejected (552 5.3.4).", "check": positive})
    timeouts: ImapTimeoutsConfig = field(default_factory=ImapTimeoutsConfig, metadata={"doc": "Timeouts."})
    smarthost: SmarthostConfig | None = field(default=None, metadata={"doc": "Where email.send messages go; null: email.send fails."})

    def check(self) -> Iterable[tuple[str, str]]:
        yield from super().check()
        if self.endpoint:
            yield "endpoint", "an imap listener connects out; it takes host/port, not an endpoint"
        if self.after_accept == "move" and not self.move_to:
            yield "move_to", "after_accept: move needs move_to"
        if self.after_reject == "move" and not self.reject_move_to:
            yield "reject_move_to", "after_reject: move needs reject_move_to"
        if self.idle_refresh > 29 * 60:
            yield "idle_refresh", "RFC 2177: re-issue IDLE at least every 29 minutes"

    @property
    def effective_port(self) -> int:
        """The port to connect to."""
        if self.port is not None:
            return self.port
        return 993 if self.tls == "implicit" else 143
