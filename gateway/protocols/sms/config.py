"""Configuration of SMS webhook listeners (``protocol: sms``).

An SMS listener is an HTTP listener (every ``protocol: http`` key applies: endpoint, limits,
timeouts, proxy, access log) whose requests are provider webhooks, one path per account::

    - name: sms
      protocol: sms
      endpoint: "tcp:8080:interface=127.0.0.1"
      public_url: https://sms.example.com          # what the providers call (signing URL)
      accounts:
        - {name: uk, provider: twilio, path: /twilio/uk, auth_token: "${TWILIO_TOKEN}",
           account_sid: AC123}
        - {name: eu, provider: vonage, path: /vonage, signature_secret: "${VONAGE_SIG}",
           api_key: abc, api_secret: "${VONAGE_SECRET}"}

Each account is a *variant* chosen by ``provider``, so a credential of another provider is an
"unknown key" error with its line. ``check()`` builds the provider once, so a missing credential
is reported by the configuration check rather than at the first webhook.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from gateway.config.errors import InvalidValue
from gateway.config.schema import positive
from gateway.config.units import Duration, Size
from gateway.protocols.http.config import HttpListenerConfig

__all__ = [
    "SmsAccountConfig",
    "TwilioAccountConfig",
    "VonageAccountConfig",
    "PlivoAccountConfig",
    "TelnyxAccountConfig",
    "GenericAccountConfig",
    "SmsListenerConfig",
]

# Fields of SmsAccountConfig that are not provider settings.
_NOT_PROVIDER_SETTINGS = frozenset({"name", "provider", "path", "ca_file"})


def check_path(value: str) -> None:
    """A webhook path: starts with ``/``, no query, no fragment, no spaces."""
    if not value.startswith("/") or any(c in value for c in "?# \t"):
        raise InvalidValue(f"a webhook path starts with / and has no query or spaces, got {value!r}")


def check_http_url(value: str) -> None:
    """An absolute ``http(s)://`` URL without query or fragment."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise InvalidValue(f"expected an absolute http(s) URL without query or fragment, got {value!r}")


def check_readable_file(value: str) -> None:
    """A file that exists (read at start-up)."""
    if not os.path.isfile(value):
        raise InvalidValue(f"no such file: {value!r}")


@dataclass(frozen=True, kw_only=True)
class SmsAccountConfig:
    """One provider account served at one webhook path; ``provider`` chooses the variant."""

    discriminator: ClassVar[str] = "provider"

    name: str = field(metadata={"doc": "Account name, unique on the listener (scope key 'account')."})
    provider: str = field(metadata={"doc": "twilio, vonage, plivo, telnyx or generic."})
    path: str = field(metadata={"doc": "Webhook path of this account on the listener (like /twilio/main).", "check": check_path})
    verify_signatures: bool = field(
        default=True,
        metadata={"doc": "Verify the provider's signature. false accepts unsigned webhooks (logged as a warning at start-up): tests only."},
    )
    default_from: str | None = field(default=None, metadata={"doc": "Our sender for sms.send without 'from' (number, short code or alphanumeric ID)."})
    default_region: str | None = field(default=None, metadata={"doc": "ISO region for national-format numbers and short codes (GB)."})
    base_url: str | None = field(
        default=None, metadata={"doc": "The provider's API base URL for sms.send (default: production).", "check": check_http_url}
    )
    ca_file: str | None = field(
        default=None,
        metadata={"doc": "PEM file of CA certificates trusted for base_url (default: the system's trust store).", "check": check_readable_file},
    )
    timestamp_tolerance: Duration = field(
        default=Duration(300.0), metadata={"doc": "How far a signed timestamp may be off our clock (replay window).", "check": positive}
    )

    @classmethod
    def variants(cls) -> Mapping[str, type[SmsAccountConfig]]:
        """The account classes by provider name."""
        return {
            "twilio": TwilioAccountConfig,
            "vonage": VonageAccountConfig,
            "plivo": PlivoAccountConfig,
            "telnyx": TelnyxAccountConfig,
            "generic": GenericAccountConfig,
        }

    def provider_settings(self) -> dict[str, Any]:
        """The keyword arguments of :func:`gateway.protocols.sms.create_provider`."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in _NOT_PROVIDER_SETTINGS and getattr(self, f.name) is not None}

    def build_provider(self) -> Any:
        """The provider object for this account.

        Raises:
            ValueError: a setting is invalid or a credential is missing.
        """
        from gateway.protocols.sms.providers import create_provider

        return create_provider(self.provider, **self.provider_settings())

    def check(self) -> Iterable[tuple[str, str]]:
        try:
            self.build_provider()
        except ValueError as exc:
            yield "", str(exc)


@dataclass(frozen=True, kw_only=True)
class TwilioAccountConfig(SmsAccountConfig):
    """A Twilio account (X-Twilio-Signature, TwiML replies)."""

    auth_token: str | None = field(default=None, metadata={"doc": "Auth Token: verifies webhooks, and sends unless an API key is set."})
    account_sid: str | None = field(default=None, metadata={"doc": "Account SID (AC...), needed to send."})
    api_key_sid: str | None = field(default=None, metadata={"doc": "API key SID to send with (instead of the Auth Token)."})
    api_key_secret: str | None = field(default=None, metadata={"doc": "API key secret."})
    messaging_service_sid: str | None = field(default=None, metadata={"doc": "Send through this Messaging Service when no sender is given."})


@dataclass(frozen=True, kw_only=True)
class VonageAccountConfig(SmsAccountConfig):
    """A Vonage SMS API account (signed requests or signed JWT webhooks)."""

    api_key: str | None = field(default=None, metadata={"doc": "API key (to send; checked against a JWT's api_key claim)."})
    api_secret: str | None = field(default=None, metadata={"doc": "API secret (to send)."})
    signature_secret: str | None = field(default=None, metadata={"doc": "Signature secret from the dashboard (verifies webhooks)."})
    signature_method: Literal["md5hash", "md5", "sha1", "sha256", "sha512", "jwt"] = field(
        default="md5hash", metadata={"doc": "Signature method as set in the dashboard (md5hash is Vonage's default)."}
    )


@dataclass(frozen=True, kw_only=True)
class PlivoAccountConfig(SmsAccountConfig):
    """A Plivo account or sub-account (X-Plivo-Signature-V3, Message XML replies)."""

    auth_id: str | None = field(default=None, metadata={"doc": "Auth ID, needed to send."})
    auth_token: str | None = field(default=None, metadata={"doc": "Auth Token: verifies webhooks and sends."})
    main_auth_token: str | None = field(default=None, metadata={"doc": "Main account's Auth Token, to accept X-Plivo-Signature-Ma-V3."})


@dataclass(frozen=True, kw_only=True)
class TelnyxAccountConfig(SmsAccountConfig):
    """A Telnyx messaging profile (Ed25519 signatures with a signed timestamp)."""

    api_key: str | None = field(default=None, metadata={"doc": "API v2 key (to send)."})
    public_key: str | None = field(default=None, metadata={"doc": "The account's Ed25519 public key, base64 as the portal shows it."})
    messaging_profile_id: str | None = field(default=None, metadata={"doc": "Send through this messaging profile when no sender is given."})


@dataclass(frozen=True, kw_only=True)
class GenericAccountConfig(SmsAccountConfig):
    """Any other source speaking the gateway's generic JSON webhook format."""

    secret: str | None = field(default=None, metadata={"doc": "Shared HMAC-SHA256 secret (X-SMS-Signature)."})
    send_token: str | None = field(default=None, metadata={"doc": "Bearer token for base_url, the send endpoint."})


@dataclass(frozen=True, kw_only=True)
class SmsListenerConfig(HttpListenerConfig):
    """An HTTP listener for SMS provider webhooks; each verified webhook becomes an ``sms`` scope."""

    public_url: str | None = field(
        default=None,
        metadata={"doc": "Base URL the providers call (https://sms.example.com, plus any prefix a proxy strips); webhook URLs are this plus the request path. Required unless proxy.trusted is set.", "check": check_http_url},
    )
    accounts: tuple[SmsAccountConfig, ...] = field(default=(), metadata={"doc": "Provider accounts, one webhook path each."})
    consumer_timeout: Duration = field(
        default=Duration(10.0),
        metadata={"doc": "How long the application has to acknowledge a webhook before the provider is told to retry (capped below each provider's own deadline).", "check": positive},
    )
    dedup_window: Duration = field(
        default=Duration(86400.0), metadata={"doc": "How long a handled message id is remembered, so that a redelivery is not handed over twice.", "check": positive}
    )
    dedup_max_entries: int = field(
        default=100_000, metadata={"doc": "Most message ids remembered (oldest forgotten first): bounds memory.", "check": positive}
    )
    max_webhook_size: Size = field(default=Size(64 * 1024), metadata={"doc": "Largest webhook body; larger gets 413.", "check": positive})
    send_timeout: Duration = field(default=Duration(30.0), metadata={"doc": "Time limit of one outbound sms.send call to a provider.", "check": positive})
    unrouted: Literal["drop", "retry"] = field(
        default="drop",
        metadata={"doc": "A message no route matches: drop (acknowledge, log a warning) or retry (answer the provider's retry status)."},
    )
    concat_window: Duration = field(
        default=Duration(3600.0), metadata={"doc": "How long the parts of a concatenated message (Vonage) wait for the rest.", "check": positive}
    )

    def check(self) -> Iterable[tuple[str, str]]:
        yield from super().check()
        if not self.accounts:
            yield "accounts", "an sms listener needs at least one account"
        websocket = getattr(self, "websocket", None)  # inherited from the HTTP listener
        if websocket is not None and websocket != type(websocket)():
            yield "websocket", "an sms listener serves no WebSocket upgrades; remove this section"
        if self.public_url is None and not self.proxy.trusted:
            yield "public_url", ("set public_url (the URL the providers call) or proxy.trusted: signatures cover "
                                 "the public URL, which the Host header alone cannot be trusted to give")
        names: set[str] = set()
        paths: set[str] = set()
        for account in self.accounts:
            if account.name in names:
                yield "accounts", f"two accounts are named {account.name!r}"
            if account.path.rstrip("/") in paths:
                yield "accounts", f"two accounts use the path {account.path!r}"
            names.add(account.name)
            paths.add(account.path.rstrip("/"))
