"""The webhook request as the HTTP adapter hands it to a provider module.

The adapter supplies four things and nothing else:

* ``method``: the HTTP method (``"POST"``, ``"GET"``).
* ``url``: the **full public URL the provider called**, scheme, host, port (if any), path and the
  raw query string exactly as received. Providers sign this URL, so behind a TLS terminator or a
  proxy it must be rebuilt from a configured public base URL (or trusted proxy headers) plus the
  request target: never from an untrusted ``Host`` header.
* ``headers``: the request headers, either a mapping or (name, value) pairs, ``str`` or ``bytes``
  (bytes are decoded as Latin-1). Names are matched case-insensitively.
* ``body``: the raw body bytes, unmodified (signatures cover the exact bytes).

Form and JSON bodies and the query string are parsed here, lazily and strictly: a body that does not
parse raises :class:`~gateway.protocols.errors.RemoteProtocolError` with ``hint=400``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NoReturn, Union
from urllib.parse import parse_qsl, urlsplit

from gateway.protocols.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["WebhookRequest", "HeadersLike", "reject", "MAX_FORM_FIELDS"]

HeadersLike = Union[
    Mapping[Union[str, bytes], Union[str, bytes]],
    Iterable[tuple[Union[str, bytes], Union[str, bytes]]],
]

#: Upper bound on form fields and query parameters (a DoS guard; real webhooks have < 60).
MAX_FORM_FIELDS = 1000


def reject(status: int, message: str) -> NoReturn:
    """Raise the package's one remote error: ``RemoteProtocolError(message, hint=status)``."""
    raise RemoteProtocolError(message, hint=status)


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)


def _normalize_headers(headers: HeadersLike) -> tuple[tuple[str, str], ...]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((_text(name).strip().lower(), _text(value).strip()) for name, value in items)


@dataclass(frozen=True, init=False)
class WebhookRequest:
    """One webhook request, as received (see the module docstring for what the adapter supplies).

    Attributes:
        method: upper-case HTTP method.
        url: the full public URL the provider called, including the query string.
        headers: (lower-case name, value) pairs in arrival order.
        body: the raw body.
    """

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def __init__(self, method: str, url: str, headers: HeadersLike = (), body: bytes = b"") -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise LocalProtocolError(
                f"the webhook URL must be the absolute public URL the provider called, got {url!r}"
            )
        object.__setattr__(self, "method", method.upper())
        object.__setattr__(self, "url", url)
        object.__setattr__(self, "headers", _normalize_headers(headers))
        object.__setattr__(self, "body", bytes(body))

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (any case); repeated headers are joined with ``","``."""
        wanted = name.lower()
        values = [value for key, value in self.headers if key == wanted]
        return ",".join(values) if values else None

    @property
    def media_type(self) -> str:
        """The body's media type, lower-case, without parameters (``""`` when absent)."""
        return (self.header("content-type") or "").split(";", 1)[0].strip().lower()

    @property
    def is_json(self) -> bool:
        """Whether the body is declared as JSON (``application/json`` or ``+json``)."""
        media = self.media_type
        return media == "application/json" or media.endswith("+json")

    @cached_property
    def query(self) -> tuple[tuple[str, str], ...]:
        """The URL's query parameters, decoded, blanks kept, in order.

        Parsed leniently, as the providers' SDKs do (``urllib.parse.parse_qs`` defaults), because
        the signatures are computed over that reading.
        """
        try:
            return tuple(
                parse_qsl(urlsplit(self.url).query, keep_blank_values=True,
                          max_num_fields=MAX_FORM_FIELDS)
            )
        except ValueError:
            reject(400, f"the query string has more than {MAX_FORM_FIELDS} parameters")

    @cached_property
    def form(self) -> tuple[tuple[str, str], ...]:
        """The body parsed as ``application/x-www-form-urlencoded`` (strict UTF-8), in order.

        Raises:
            RemoteProtocolError: hint 400, the body is not valid form encoding.
        """
        try:
            text = self.body.decode("utf-8")
            return tuple(
                parse_qsl(text, keep_blank_values=True, strict_parsing=True,
                          errors="strict", max_num_fields=MAX_FORM_FIELDS)
            )
        except UnicodeDecodeError:
            reject(400, "the form body is not valid UTF-8 (or has bad percent-encoding)")
        except ValueError as exc:
            reject(400, f"the body is not valid form encoding: {exc}")

    @cached_property
    def json_body(self) -> Any:
        """The body parsed as JSON.

        Raises:
            RemoteProtocolError: hint 400, the body is not valid JSON.
        """
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError) as exc:
            reject(400, f"the body is not valid JSON: {type(exc).__name__}")

    def json_object(self) -> dict[str, Any]:
        """The body parsed as a JSON *object*.

        Raises:
            RemoteProtocolError: hint 400, invalid JSON or not an object.
        """
        data = self.json_body
        if not isinstance(data, dict):
            reject(400, "the JSON body is not an object")
        return data

    def params(self) -> tuple[tuple[str, str], ...]:
        """The webhook's parameters: the query for GET, the form body for other methods."""
        if self.method == "GET":
            return self.query
        return self.form
