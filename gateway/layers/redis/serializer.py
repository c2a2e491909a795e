"""Message bodies exactly as channels_redis 4.x writes them.

A sorted-set member is ``random prefix (12 bytes) + body``; the body is ``msgpack.packb(message)``
(or JSON with ``serializer_format="json"``), Fernet-encrypted when symmetric keys are configured
(each key is ``urlsafe_b64(sha256(key))``; the first key encrypts, every key decrypts, with a
time-to-live of ``expiry + 10`` seconds). The random prefix only keeps identical messages distinct
in a sorted set; it comes *after* encryption, in front of the token.

A message sent to a process-specific channel carries ``__asgi_channel__``: the full channel name
(``send``) or a list of names in that process (``group_send``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from collections.abc import Sequence
from typing import Any

import msgpack

__all__ = ["CHANNEL_KEY", "Serializer", "split_map"]

#: The message key naming the process-local channel(s) a message is for.
CHANNEL_KEY = "__asgi_channel__"

# A private generator: the random module's shared one is left alone (code that seeds it, or
# hypothesis, which watches it, is not disturbed by a layer running in the background). The
# prefix only keeps identical messages distinct in a sorted set; it need not be secret.
_getrandbits = random.Random().getrandbits
_packb = msgpack.packb
_unpackb = msgpack.unpackb


def split_map(packed: bytes) -> tuple[int, bytes]:
    """Split a msgpack map into (number of entries, the encoded entries after the header).

    The Lua ``group_send`` script rebuilds the map with one more entry (``__asgi_channel__``),
    so a message is packed once per call whatever the group's size.
    """
    first = packed[0]
    if 0x80 <= first <= 0x8F:
        return first & 0x0F, packed[1:]
    if first == 0xDE:
        return int.from_bytes(packed[1:3], "big"), packed[3:]
    if first == 0xDF:
        return int.from_bytes(packed[1:5], "big"), packed[5:]
    raise ValueError("not a msgpack map")


class Serializer:
    """Encode and decode sorted-set members (channels_redis' ``BaseMessageSerializer``).

    Args:
        symmetric_encryption_keys: keys for Fernet encryption of bodies, or none.
        expiry: the layer's expiry; a token older than ``expiry + 10`` s does not decrypt.
        random_prefix_length: bytes of random prefix (channels_redis: 12).
        serializer_format: ``msgpack`` (default) or ``json``.

    Raises:
        ValueError: keys given as one string, an unknown format, or no ``cryptography``.
    """

    def __init__(
        self,
        symmetric_encryption_keys: Sequence[str | bytes] | None = None,
        expiry: float = 60,
        random_prefix_length: int = 12,
        serializer_format: str = "msgpack",
    ) -> None:
        if serializer_format not in ("msgpack", "json"):
            raise ValueError(f"serializer_format must be msgpack or json, got {serializer_format!r}")
        if isinstance(random_prefix_length, bool) or not isinstance(random_prefix_length, int) or random_prefix_length < 0:
            raise ValueError(f"random_prefix_length must be a non-negative integer, got {random_prefix_length!r}")
        self.format = serializer_format
        # One packer, reused (msgpack.packb builds one per call): the layer encodes on the
        # reactor's loop only; encode(fresh=True) is for calls from other threads.
        self._pack = msgpack.Packer().pack
        self.prefix_length = random_prefix_length
        self.expiry = expiry
        self.crypter: Any = None
        if symmetric_encryption_keys:
            if isinstance(symmetric_encryption_keys, (str, bytes)):
                raise ValueError("symmetric_encryption_keys must be a list of possible keys")
            try:
                from cryptography.fernet import Fernet, MultiFernet
            except ImportError:  # pragma: no cover - cryptography is installed with the gateway
                raise ValueError("Cannot run with encryption without 'cryptography' installed.") from None
            fernets = []
            for key in symmetric_encryption_keys:
                raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
                fernets.append(Fernet(base64.urlsafe_b64encode(hashlib.sha256(raw).digest())))
            self.crypter = MultiFernet(fernets)

    @property
    def patchable(self) -> bool:
        """Whether Lua may append ``__asgi_channel__`` to a body (plain msgpack only)."""
        return self.crypter is None and self.format == "msgpack"

    def random_prefix(self) -> bytes:
        n = self.prefix_length
        return _getrandbits(8 * n).to_bytes(n, "big") if n else b""

    def dumps(self, message: dict[str, Any], fresh: bool = False) -> bytes:
        """The body (no prefix, not encrypted); ``fresh``: safe from any thread."""
        if self.format == "msgpack":
            packed: bytes = _packb(message) if fresh else self._pack(message)
            return packed
        return json.dumps(message).encode("utf-8")

    def encode(self, message: dict[str, Any], fresh: bool = False) -> bytes:
        """A complete member: random prefix + (encrypted) body (``fresh``: safe from any
        thread; otherwise only on the reactor's loop)."""
        body = self.dumps(message, fresh)
        if self.crypter is not None:
            body = self.crypter.encrypt(body)
        n = self.prefix_length
        return _getrandbits(8 * n).to_bytes(n, "big") + body if n else body

    def decode(self, member: bytes) -> dict[str, Any]:
        """A message from a member.

        Raises:
            ValueError: the member does not decode (corrupt, wrong key, token too old).
        """
        body = member[self.prefix_length:] if self.prefix_length else member
        try:
            if self.crypter is not None:
                body = self.crypter.decrypt(body, int(self.expiry) + 10)
            if self.format == "msgpack":
                message = _unpackb(body)
            else:
                message = json.loads(body)
        except Exception as exc:  # InvalidToken, msgpack's errors, JSONDecodeError...
            raise ValueError(f"undecodable message: {type(exc).__name__}: {exc}") from None
        if not isinstance(message, dict):
            raise ValueError(f"undecodable message: a {type(message).__name__}, not a map")
        return message
