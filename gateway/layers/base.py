"""The channel layer API shared by every backend.

This is the API of Django Channels' ``BaseChannelLayer`` (``channels/layers.py``), without
Django: the same method names, the same name rules and error messages, the same ``capacity`` /
``channel_capacity`` semantics, so a layer written for Channels and code that calls one port by
changing imports.

A backend implements ``send``, ``receive``, ``new_channel`` and, for the ``groups`` and ``flush``
extensions, ``group_add``, ``group_discard``, ``group_send`` and ``flush``.
"""

from __future__ import annotations

import fnmatch
import re
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Pattern, Protocol, TypeGuard, runtime_checkable

__all__ = ["BaseChannelLayer", "ChannelLayer", "compile_capacities"]


def compile_capacities(
    channel_capacity: Mapping[Any, int] | Iterable[tuple[Any, int]] | None,
) -> list[tuple[Pattern[str], int]]:
    """Compile a ``channel_capacity`` mapping into ``[(regex, capacity), ...]``.

    Keys are globs (``"http.request"``, ``"websocket.*"``), precompiled regexes (Channels
    compatible), or strings starting with ``re:`` holding a regex (handy in YAML, where compiled
    objects cannot be written; ``:`` never occurs in a channel name, so there is no ambiguity).
    The first pattern that matches a channel wins, in the mapping's order.

    Raises:
        InvalidChannelLayerError: a capacity is not a positive integer or a regex does not compile.
    """
    from gateway.exceptions import InvalidChannelLayerError

    if not channel_capacity:
        return []
    items = channel_capacity.items() if isinstance(channel_capacity, Mapping) else channel_capacity
    result: list[tuple[Pattern[str], int]] = []
    for pattern, value in items:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidChannelLayerError(
                f"channel_capacity[{pattern!r}] must be a positive integer, got {value!r}"
            )
        if hasattr(pattern, "match"):
            result.append((pattern, value))
        elif isinstance(pattern, str) and pattern.startswith("re:"):
            try:
                result.append((re.compile(pattern[3:]), value))
            except re.error as exc:
                raise InvalidChannelLayerError(
                    f"channel_capacity key {pattern!r} is not a valid regex: {exc}"
                ) from None
        elif isinstance(pattern, str):
            result.append((re.compile(fnmatch.translate(pattern)), value))
        else:
            raise InvalidChannelLayerError(
                f"channel_capacity keys must be glob strings or regexes, got {pattern!r}"
            )
    return result


@runtime_checkable
class ChannelLayer(Protocol):
    """The Channels layer API: what consumers, workers, ``gateway send`` and the contract suite
    use of a layer, whatever its backend (every :class:`BaseChannelLayer` is one)."""

    #: The optional API groups the layer implements (``groups``, ``flush``).
    extensions: ClassVar[list[str]]

    async def send(self, channel: str, message: dict[str, Any]) -> None: ...

    async def receive(self, channel: str) -> dict[str, Any]: ...

    async def new_channel(self, prefix: str = "specific") -> str: ...

    async def group_add(self, group: str, channel: str) -> None: ...

    async def group_discard(self, group: str, channel: str) -> None: ...

    async def group_send(self, group: str, message: dict[str, Any]) -> None: ...

    async def flush(self) -> None: ...

    async def close(self) -> None: ...

    def require_valid_channel_name(self, name: object, receive: bool = False) -> bool: ...

    def require_valid_group_name(self, name: object) -> bool: ...


class BaseChannelLayer:
    """Common parts of every channel layer: capacities, expiry settings and name validation.

    Args:
        expiry: seconds a message waits in a channel before it is dropped.
        capacity: messages a channel holds before ``send()`` raises ``ChannelFull``.
        channel_capacity: per-channel capacities by pattern (see :func:`compile_capacities`).
    """

    MAX_NAME_LENGTH: ClassVar[int] = 100

    #: The optional API groups this layer implements (the Channels spec's "extensions").
    extensions: ClassVar[list[str]] = []

    #: True when the layer's channels live inside one process (the in-memory layer); a CLI that
    #: sends from another process (``gateway send``) must refuse such a layer.
    process_local: ClassVar[bool] = False

    channel_name_regex: ClassVar[Pattern[str]] = re.compile(r"^[a-zA-Z\d\-_.]+(\![\d\w\-_.]*)?$")
    group_name_regex: ClassVar[Pattern[str]] = re.compile(r"^[a-zA-Z\d\-_.]+$")
    invalid_name_error: ClassVar[str] = (
        "{} name must be a valid unicode string "
        + f"with length < {MAX_NAME_LENGTH} "
        + "containing only ASCII alphanumerics, hyphens, underscores, or periods."
    )

    def __init__(
        self,
        expiry: float = 60,
        capacity: int = 100,
        channel_capacity: Mapping[Any, int] | None = None,
    ) -> None:
        from gateway.exceptions import InvalidChannelLayerError

        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise InvalidChannelLayerError(f"capacity must be a positive integer, got {capacity!r}")
        if isinstance(expiry, bool) or not isinstance(expiry, (int, float)) or expiry <= 0:
            raise InvalidChannelLayerError(f"expiry must be a positive number, got {expiry!r}")
        self.expiry = expiry
        self.capacity = capacity
        self.channel_capacity = compile_capacities(channel_capacity)

    # -- capacities ---------------------------------------------------------------------------

    def compile_capacities(self, channel_capacity: Mapping[Any, int]) -> list[tuple[Pattern[str], int]]:
        """Channels-compatible alias of :func:`compile_capacities`."""
        return compile_capacities(channel_capacity)

    def get_capacity(self, channel: str) -> int:
        """The capacity of ``channel``: the first matching ``channel_capacity`` entry, or
        ``capacity``."""
        for pattern, capacity in self.channel_capacity:
            if pattern.match(channel):
                return capacity
        return self.capacity

    # -- names --------------------------------------------------------------------------------

    def match_type_and_length(self, name: object) -> TypeGuard[str]:
        """True when ``name`` is a ``str`` shorter than :attr:`MAX_NAME_LENGTH`."""
        return isinstance(name, str) and len(name) < self.MAX_NAME_LENGTH

    def require_valid_channel_name(self, name: object, receive: bool = False) -> bool:
        """Check a channel name; raise ``TypeError`` (as Channels does) when it is invalid.

        With ``receive=True`` a process-specific name (one with ``!``) must end at the ``!``,
        the rule for backends that demultiplex local channels themselves.
        """
        if not self.match_type_and_length(name) or not self.channel_name_regex.match(name):
            raise TypeError(self.invalid_name_error.format("Channel") + f" Got {name!r}.")
        if receive and "!" in name and not name.endswith("!"):
            raise TypeError("Specific channel names in receive() must end at the !")
        return True

    def require_valid_group_name(self, name: object) -> bool:
        """Check a group name; raise ``TypeError`` (as Channels does) when it is invalid."""
        if not self.match_type_and_length(name) or not self.group_name_regex.match(name):
            raise TypeError(self.invalid_name_error.format("Group") + f" Got {name!r}.")
        return True

    def valid_channel_name(self, name: object, receive: bool = False) -> bool:
        """Deprecated (as in Channels): use :meth:`require_valid_channel_name`."""
        warnings.warn("valid_channel_name is deprecated, use require_valid_channel_name instead.",
                      DeprecationWarning, stacklevel=2)
        return self.require_valid_channel_name(name, receive=receive)

    def valid_group_name(self, name: object) -> bool:
        """Deprecated (as in Channels): use :meth:`require_valid_group_name`."""
        warnings.warn("valid_group_name is deprecated, use require_valid_group_name instead.",
                      DeprecationWarning, stacklevel=2)
        return self.require_valid_group_name(name)

    def valid_channel_names(self, names: list[str], receive: bool = False) -> bool:
        """Check a non-empty list of channel names."""
        if not isinstance(names, list) or not names:
            raise TypeError("names must be a non-empty list")
        for name in names:
            self.require_valid_channel_name(name, receive=receive)
        return True

    def non_local_name(self, name: str) -> str:
        """The part of a process-specific name up to and including ``!``; other names whole."""
        index = name.find("!")
        return name if index < 0 else name[: index + 1]

    @staticmethod
    def require_message(message: object) -> None:
        """Raise ``TypeError`` unless ``message`` is a dict with a string ``type``."""
        if not isinstance(message, dict):
            raise TypeError(f"message must be a dict, got {type(message).__name__}")
        if not isinstance(message.get("type"), str):
            raise TypeError("message must have a 'type' key holding a string")

    # -- the API ------------------------------------------------------------------------------

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Put ``message`` on ``channel``; raise ``ChannelFull`` when it is at capacity."""
        raise NotImplementedError("send() should be implemented in a channel layer")

    async def receive(self, channel: str) -> dict[str, Any]:
        """Wait for and return the next message on ``channel`` (FIFO, at most once)."""
        raise NotImplementedError("receive() should be implemented in a channel layer")

    async def new_channel(self, prefix: str = "specific") -> str:
        """Return a new, unique, process-specific channel name (it contains ``!``)."""
        raise NotImplementedError("new_channel() should be implemented in a channel layer")

    async def flush(self) -> None:
        """Drop every message and group (the ``flush`` extension)."""
        raise NotImplementedError("flush() not implemented (flush extension)")

    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group`` (idempotent; refreshes the membership's expiry)."""
        raise NotImplementedError("group_add() not implemented (groups extension)")

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; a non-member is a no-op."""
        raise NotImplementedError("group_discard() not implemented (groups extension)")

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Send ``message`` to every member of ``group``; full members are skipped, never raised."""
        raise NotImplementedError("group_send() not implemented (groups extension)")

    async def close(self) -> None:
        """Release the layer's resources (connections, timers). The default does nothing."""
