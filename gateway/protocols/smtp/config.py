"""Configuration of SMTP listeners (``protocol: smtp``): the YAML schema.

:func:`gateway.protocols.smtp.listener.build_listener` turns it into the sans-IO core's
:class:`~gateway.protocols.smtp.core.ServerConfig` and the adapter's settings. Defaults follow
Postfix 3.7 (``postconf -d``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from gateway.config.errors import InvalidValue
from gateway.config.schema import ListenerConfig, TLSPolicy, check_app_path, positive
from gateway.config.units import Duration, Size
from gateway.protocols.email.config import SmarthostConfig, check_readable
from gateway.passwords import check_password_hash as check_hash


def check_users(users: Mapping[str, str]) -> None:
    """Every user has a password hash (never a plain password)."""
    for name, encoded in users.items():
        try:
            check_hash(encoded)
        except ValueError as exc:
            raise InvalidValue(f"user {name!r}: {exc}") from None


def check_mechanisms(values: tuple[str, ...]) -> None:
    """PLAIN and/or LOGIN."""
    for value in values:
        if value.upper() not in ("PLAIN", "LOGIN"):
            raise InvalidValue(f"{value!r} is not one of: PLAIN, LOGIN")


@dataclass(frozen=True, kw_only=True)
class SmtpTLSConfig(TLSPolicy):
    """STARTTLS (RFC 3207): certificate, key, and the same cipher policy as ssl: endpoints.

    Implicit TLS (port 465, RFC 8314) is an ``ssl:`` endpoint instead (with the ``ssl:`` key).
    """

    certificate: str = field(metadata={"doc": "PEM file: the server certificate, then any intermediates.", "check": check_readable})
    private_key: str = field(metadata={"doc": "PEM file of the private key.", "check": check_readable})
    required: bool = field(default=False, metadata={"doc": "Refuse MAIL (530 5.7.0) until STARTTLS is done (for submission ports)."})


@dataclass(frozen=True, kw_only=True)
class SmtpAuthConfig:
    """SMTP AUTH (RFC 4954), offered only over TLS."""

    mechanisms: tuple[str, ...] = field(default=("PLAIN", "LOGIN"), metadata={"doc": "SASL mechanisms offered: PLAIN, LOGIN.", "check": check_mechanisms})
    users: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}),
        metadata={"doc": "username: password hash (scrypt$... or pbkdf2_sha256$..., Django's formats; make one with gateway hash-password).", "check": check_users},
    )
    hook: str | None = field(
        default=None,
        metadata={"doc": "module:callable(username, password, scope) -> bool (sync or async), asked for users not in users.", "check": check_app_path},
    )
    required: bool = field(default=False, metadata={"doc": "MAIL needs a successful AUTH first (530 5.7.0): a submission port."})

    @property
    def enabled(self) -> bool:
        """Whether AUTH can succeed at all (some users or a hook)."""
        return bool(self.users) or self.hook is not None


@dataclass(frozen=True, kw_only=True)
class SmtpLimitsConfig:
    """Limits (Postfix's defaults)."""

    max_message_size: Size = field(default=Size(10_240_000), metadata={"doc": "Largest message, advertised as SIZE (message_size_limit); larger gets 552 5.3.4.", "check": positive})
    max_recipients: int = field(default=1000, metadata={"doc": "Recipients per message (smtpd_recipient_limit); more get 452 4.5.3.", "check": positive})
    max_command_line: int = field(default=512, metadata={"doc": "Octets per command line with CRLF (RFC 5321 4.5.3.1.4).", "check": positive})
    max_data_line: int | None = field(default=1000, metadata={"doc": "Octets per message line with CRLF (RFC 5321 4.5.3.1.6); null for no limit."})
    max_errors: int = field(default=20, metadata={"doc": "Error replies before 421 and disconnect (smtpd_hard_error_limit).", "check": positive})
    max_junk_commands: int = field(default=100, metadata={"doc": "NOOP/RSET/VRFY/HELP/HELO/EHLO before each counts as an error (smtpd_junk_command_limit)."})
    max_connections: int = field(default=1000, metadata={"doc": "Open connections on this listener; beyond it new ones wait in the accept queue.", "check": positive})
    max_connections_per_client: int = field(
        default=50, metadata={"doc": "Open connections from one client address (smtpd_client_connection_count_limit); more get 421 4.7.0.", "check": positive}
    )


@dataclass(frozen=True, kw_only=True)
class SmtpTimeoutsConfig:
    """Timers."""

    command: Duration = field(default=Duration(300.0), metadata={"doc": "Client silence allowed (smtpd_timeout); then 421 4.4.2.", "check": positive})
    consumer: Duration = field(
        default=Duration(60.0),
        metadata={"doc": "Time the application has to accept or reject a message; then 451 4.3.0 (senders wait 10 minutes, RFC 5321 4.5.3.2.6).", "check": positive},
    )
    recipient_check: Duration = field(default=Duration(10.0), metadata={"doc": "Time the router's matches() may take at RCPT; then 451 4.3.0.", "check": positive})
    auth: Duration = field(default=Duration(10.0), metadata={"doc": "Time the auth hook may take; then 454 4.7.0.", "check": positive})


@dataclass(frozen=True, kw_only=True)
class SmtpListenerConfig(ListenerConfig):
    """An ESMTP listener that hands each message to the application as an ``email`` scope."""

    hostname: str | None = field(default=None, metadata={"doc": "Our name in the greeting, EHLO and Received: header (default: the host's FQDN)."})
    greeting: str = field(default="ESMTP", metadata={"doc": "Text after the hostname in the 220 greeting."})
    tls: SmtpTLSConfig | None = field(default=None, metadata={"doc": "STARTTLS certificate and key; null: no STARTTLS."})
    auth: SmtpAuthConfig = field(default_factory=SmtpAuthConfig, metadata={"doc": "AUTH PLAIN/LOGIN over TLS; off unless users or a hook are set."})
    limits: SmtpLimitsConfig = field(default_factory=SmtpLimitsConfig, metadata={"doc": "Limits."})
    timeouts: SmtpTimeoutsConfig = field(default_factory=SmtpTimeoutsConfig, metadata={"doc": "Timeouts."})
    smtputf8: bool = field(default=True, metadata={"doc": "Advertise and accept SMTPUTF8 (RFC 6531)."})
    bare_newlines: Literal["reject", "pass"] = field(
        default="reject", metadata={"doc": "A bare CR or LF in a message: reject (550 5.6.0, RFC 5321 2.3.8) or pass it on unchanged."}
    )
    received_header: bool = field(default=True, metadata={"doc": "Prepend a Received: trace header to each message (RFC 5321 4.4)."})
    soft_reject: bool = field(
        default=False, metadata={"doc": "Turn every 5xx refusal into the matching 4xx, so senders keep the mail (Postfix soft_bounce; for rollouts)."}
    )
    smarthost: SmarthostConfig | None = field(default=None, metadata={"doc": "Where email.send messages go; null: email.send fails."})

    def check(self) -> Iterable[tuple[str, str]]:
        yield from super().check()
        endpoint = (self.endpoint or "").lower()
        implicit = endpoint.startswith("ssl:")
        if self.tls is not None and implicit:
            yield "tls", "an ssl: endpoint is already TLS; STARTTLS (tls:) is for plain endpoints"
        if self.auth.required and not self.auth.enabled:
            yield "auth", "auth.required needs auth.users or auth.hook"
        if self.auth.required and self.tls is None and not implicit:
            yield "auth", "AUTH is only offered over TLS: auth.required needs tls: or an ssl: endpoint"
        if self.auth.enabled and self.tls is None and not implicit:
            yield "auth", "AUTH is only offered over TLS: configure tls: (STARTTLS) or an ssl: endpoint"
        limit = self.limits.max_data_line
        if limit is not None and limit < 3:
            yield "limits", "max_data_line must be at least 3 (or null)"
        if self.limits.max_command_line < 64:
            yield "limits", "max_command_line must be at least 64"
