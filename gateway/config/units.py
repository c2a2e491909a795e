"""Human-friendly sizes and durations in configuration files.

Sizes: ``1024``, ``64KiB``, ``10MiB``, ``1GiB`` (binary) or ``10kB``, ``5MB`` (decimal); a plain
integer is a number of bytes. Durations: ``500ms``, ``10s``, ``5m``, ``1h``, ``1d``; a plain
number is seconds.
"""

from __future__ import annotations

import re
from typing import NewType

from gateway.config.errors import InvalidValue

#: A number of bytes, written in the configuration as ``10MiB`` or ``4096``.
Size = NewType("Size", int)
#: A number of seconds, written in the configuration as ``10s`` or ``1.5``.
Duration = NewType("Duration", float)

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "k": 1024,
    "m": 1024**2,
    "g": 1024**3,
}
_DURATION_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER_UNIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parse_size(value: object) -> Size:
    """Parse a size (``10MiB``, ``64KiB``, ``4096``) into bytes.

    Raises:
        InvalidValue: the value is not a non-negative size.
    """
    if isinstance(value, bool):
        raise InvalidValue(f"expected a size such as 64KiB or 10MiB, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise InvalidValue(f"a size cannot be negative, got {value}")
        return Size(value)
    if isinstance(value, str):
        match = _NUMBER_UNIT.match(value)
        if match:
            unit = match.group(2).lower()
            if unit in _SIZE_UNITS:
                return Size(int(float(match.group(1)) * _SIZE_UNITS[unit]))
            raise InvalidValue(
                f"unknown size unit {match.group(2)!r} in {value!r} (use B, KiB, MiB, GiB, kB, MB or GB)"
            )
    raise InvalidValue(f"expected a size such as 64KiB or 10MiB, got {value!r}")


def parse_duration(value: object) -> Duration:
    """Parse a duration (``500ms``, ``10s``, ``5m``, ``1h``, ``2.5``) into seconds.

    Raises:
        InvalidValue: the value is not a non-negative duration.
    """
    if isinstance(value, bool):
        raise InvalidValue(f"expected a duration such as 10s or 500ms, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise InvalidValue(f"a duration cannot be negative, got {value}")
        return Duration(float(value))
    if isinstance(value, str):
        match = _NUMBER_UNIT.match(value)
        if match:
            unit = match.group(2).lower()
            if unit in _DURATION_UNITS:
                return Duration(float(match.group(1)) * _DURATION_UNITS[unit])
            raise InvalidValue(
                f"unknown duration unit {match.group(2)!r} in {value!r} (use ms, s, m, h or d)"
            )
    raise InvalidValue(f"expected a duration such as 10s or 500ms, got {value!r}")


def format_size(size: int) -> str:
    """Format a byte count the way the configuration reference writes it (``10MiB``)."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def format_duration(seconds: float) -> str:
    """Format seconds the way the configuration reference writes them (``10s``, ``500ms``)."""
    if seconds and seconds < 1:
        return f"{seconds * 1000:g}ms"
    for unit, factor in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= factor and seconds % factor == 0:
            return f"{int(seconds // factor)}{unit}"
    return f"{seconds:g}s"
