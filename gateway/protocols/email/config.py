"""Configuration shared by the email listeners (the YAML schema): the smarthost ``email.send``
messages go through, and the checks of file and port settings the listeners share."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from gateway.config.errors import InvalidValue
from gateway.config.schema import positive
from gateway.config.units import Duration


def check_readable(path: str) -> None:
    """The file exists and can be read (certificates, keys, CA bundles, password files)."""
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise InvalidValue(f"cannot read {path!r}: {exc.strerror or exc}") from None


def check_port(value: int) -> None:
    """A TCP port number."""
    if not 1 <= value <= 65535:
        raise InvalidValue(f"a port is 1-65535, got {value}")


@dataclass(frozen=True, kw_only=True)
class SmarthostConfig:
    """The SMTP server that ``email.send`` messages are submitted to (RFC 6409 submission)."""

    host: str = field(metadata={"doc": "Host name of the smarthost; also the name its certificate must carry."})
    port: int = field(default=587, metadata={"doc": "Port: 587 (submission, STARTTLS) or 465 (implicit TLS).", "check": check_port})
    tls: Literal["starttls", "implicit"] = field(
        default="starttls", metadata={"doc": "starttls (STARTTLS is required) or implicit (TLS from the first byte, port 465)."}
    )
    ca_file: str | None = field(
        default=None, metadata={"doc": "PEM file of the CAs to trust for the smarthost's certificate (default: the system's).", "check": check_readable}
    )
    server_name: str | None = field(default=None, metadata={"doc": "Name to verify in the certificate when it differs from host."})
    username: str | None = field(default=None, metadata={"doc": "AUTH user (PLAIN, LOGIN or CRAM-MD5), or null for no AUTH."})
    password: str | None = field(default=None, metadata={"doc": "AUTH password (use ${ENV_VAR} to keep it out of the file)."})
    sender: str | None = field(default=None, metadata={"doc": "Envelope sender and From: address used when email.send gives none."})
    helo: str | None = field(default=None, metadata={"doc": "Name sent in EHLO (default: the listener's hostname)."})
    timeout: Duration = field(default=Duration(60.0), metadata={"doc": "Seconds without progress before a send fails (temporary).", "check": positive})

    def check(self) -> Iterable[tuple[str, str]]:
        if (self.username is None) != (self.password is None):
            yield "username", "username and password go together"
