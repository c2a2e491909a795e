"""Twisted server endpoint strings: validation, and the description of a bound port.

Listeners are bound with :func:`twisted.internet.endpoints.serverFromString`, so every endpoint
type Twisted knows works (``tcp:``, ``ssl:``, ``unix:``, ``systemd:`` and plugins).
"""

from __future__ import annotations

import difflib
import re
from typing import Any

_SYSTEMD = re.compile(r"^systemd:(?P<args>.*)$")
_KNOWN = ("tcp", "tcp6", "ssl", "unix", "systemd")


class EndpointError(ValueError):
    """An endpoint string cannot be used; the message says why."""


def validate_server_endpoint(description: str) -> None:
    """Check that ``description`` is a usable server endpoint string.

    Raises:
        EndpointError: with a message naming the problem (unknown type, bad argument, missing
            certificate file, ...).
    """
    if not description or not description.strip():
        raise EndpointError("an endpoint is required, such as tcp:8000:interface=127.0.0.1")
    match = _SYSTEMD.match(description)
    if match:
        _validate_systemd(match.group("args"))
        return
    from twisted.internet.endpoints import serverFromString
    from twisted.internet.testing import MemoryReactor

    try:
        serverFromString(MemoryReactor(), description)
    except ValueError as exc:
        message = str(exc)
        kind = description.split(":", 1)[0]
        if "Unknown endpoint type" in message:
            close = difflib.get_close_matches(kind, _KNOWN, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise EndpointError(f"unknown endpoint type {kind!r}{hint}; use tcp, ssl, unix or systemd") from None
        raise EndpointError(f"invalid endpoint {description!r}: {message}") from None
    except TypeError as exc:
        raise EndpointError(f"invalid endpoint {description!r}: {exc}") from None
    except OSError as exc:
        raise EndpointError(f"cannot use endpoint {description!r}: {exc}") from None
    except Exception as exc:  # pyOpenSSL errors for bad keys/certificates, and the like
        raise EndpointError(f"cannot use endpoint {description!r}: {type(exc).__name__}: {exc}") from None


def _validate_systemd(args: str) -> None:
    params: dict[str, str] = {}
    for part in args.split(":") if args else []:
        key, sep, value = part.partition("=")
        if not sep:
            raise EndpointError(f"systemd endpoint arguments are key=value pairs, got {part!r}")
        params[key] = value
    unknown = set(params) - {"domain", "index", "name"}
    if unknown:
        raise EndpointError(f"unknown systemd endpoint argument(s): {', '.join(sorted(unknown))}")
    if params.get("domain") not in ("INET", "INET6", "UNIX"):
        raise EndpointError("systemd endpoints need domain=INET, domain=INET6 or domain=UNIX")
    if ("index" in params) == ("name" in params):
        raise EndpointError("systemd endpoints need exactly one of index=N or name=NAME")
    if "index" in params and not params["index"].isdigit():
        raise EndpointError(f"systemd index must be a number, got {params['index']!r}")


def describe_port(port: Any) -> str:
    """A short description of a listening port's address (``127.0.0.1:8000``, ``unix:/path``)."""
    try:
        address = port.getHost()
    except Exception:  # pragma: no cover - exotic ports
        return repr(port)
    host = getattr(address, "host", None)
    if host is not None:
        if ":" in host:
            return f"[{host}]:{address.port}"
        return f"{host}:{address.port}"
    name = getattr(address, "name", None)
    if name is not None:
        return f"unix:{name.decode() if isinstance(name, bytes) else name}"
    return str(address)
