"""One module per SMS provider, all implementing :class:`~gateway.protocols.sms.providers.base.Provider`.

``create_provider("twilio", auth_token=..., ...)`` builds one from configuration settings.
"""

from __future__ import annotations

from typing import Any

from gateway.protocols.sms.providers.base import Provider
from gateway.protocols.sms.providers.generic import GenericProvider
from gateway.protocols.sms.providers.plivo import PlivoProvider
from gateway.protocols.sms.providers.telnyx import TelnyxProvider
from gateway.protocols.sms.providers.twilio import TwilioProvider
from gateway.protocols.sms.providers.vonage import VonageProvider

__all__ = [
    "PROVIDERS",
    "Provider",
    "TwilioProvider",
    "VonageProvider",
    "PlivoProvider",
    "TelnyxProvider",
    "GenericProvider",
    "create_provider",
]

#: Provider classes by configuration name.
PROVIDERS: dict[str, type[Provider]] = {
    cls.name: cls
    for cls in (TwilioProvider, VonageProvider, PlivoProvider, TelnyxProvider, GenericProvider)
}


def create_provider(name: str, **settings: Any) -> Provider:
    """Build the provider called ``name`` from its settings (credentials, ``base_url``,
    ``default_from``, ``default_region``, ``verify_signatures``, ``timestamp_tolerance``).

    Raises:
        ValueError: unknown provider, unknown setting, or an invalid or missing setting.
    """
    try:
        cls = PROVIDERS[name]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ValueError(f"unknown SMS provider {name!r}; expected one of {known}") from None
    try:
        return cls(**settings)
    except TypeError as exc:  # an unknown keyword: report it as a configuration error
        raise ValueError(f"{name}: {exc}") from None
