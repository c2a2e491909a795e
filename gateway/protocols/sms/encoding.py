"""SMS character encodings and segment counting (sans-IO, standard library only).

An SMS carries 140 octets of user data. Text is sent in one of two encodings:

* **GSM-7** (3GPP TS 23.038 §6.2.1, the "GSM 7 bit default alphabet"): 160 septets in a single
  message. Characters of the *extension table* (``^ { } \\ [ ~ ] | €`` and form feed) are sent as
  an escape septet plus one more, so they count **double**.
* **UCS-2** (really UTF-16 on modern handsets): 70 code units in a single message. Characters outside
  the Basic Multilingual Plane (most emoji) take a surrogate *pair*, so they count double too.

A longer text is split into concatenated parts, each losing 6 octets to the user data header (UDH):
153 septets (GSM-7) or 67 code units (UCS-2) per part. A part never ends in the middle of an
escape sequence or a surrogate pair, so the count here packs greedily, as handsets and the
providers do (Twilio's segment calculator, Vonage's and Telnyx's ``parts`` agree on this).

National language shift tables (Turkish, Spanish, Portuguese, Indian languages) are not modelled:
a text that needs them is counted as UCS-2, which is what the providers do unless told otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "GSM7",
    "UCS2",
    "BINARY",
    "SegmentInfo",
    "is_gsm7",
    "gsm7_length",
    "ucs2_length",
    "detect_encoding",
    "analyse",
    "count_segments",
]

#: Encoding names used throughout the SMS package (and in the ``sms`` ASGI scope).
GSM7 = "GSM-7"
UCS2 = "UCS-2"
BINARY = "binary"

# 3GPP TS 23.038 §6.2.1: the default alphabet, in code order 0x00..0x7F. 0x1B is the escape to the
# extension table and is not a character by itself, so it is left out.
_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ" "ÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# 3GPP TS 23.038 §6.2.1.1: the default extension table (each costs escape + character = 2 septets).
_GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

_SINGLE_GSM7 = 160
_MULTI_GSM7 = 153
_SINGLE_UCS2 = 70
_MULTI_UCS2 = 67


@dataclass(frozen=True)
class SegmentInfo:
    """How a text travels as SMS.

    Attributes:
        encoding: :data:`GSM7` or :data:`UCS2`.
        units: septets (GSM-7) or UTF-16 code units (UCS-2) the whole text needs.
        segments: the number of SMS parts (at least 1, also for the empty text).
        per_segment: the capacity of one part in ``units`` (160/153 or 70/67).
    """

    encoding: str
    units: int
    segments: int
    per_segment: int


def is_gsm7(text: str) -> bool:
    """Whether every character of ``text`` is in the GSM-7 default alphabet or its extension."""
    return all(ch in _GSM7_BASIC or ch in _GSM7_EXTENSION for ch in text)


def _gsm7_costs(text: str) -> list[int] | None:
    costs = []
    for ch in text:
        if ch in _GSM7_BASIC:
            costs.append(1)
        elif ch in _GSM7_EXTENSION:
            costs.append(2)
        else:
            return None
    return costs


def _ucs2_costs(text: str) -> list[int]:
    # Characters above U+FFFF need a UTF-16 surrogate pair. Lone surrogates (which a str can hold
    # but no provider sends) are counted as one unit each.
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def gsm7_length(text: str) -> int | None:
    """Septets ``text`` needs in GSM-7 (extension characters count 2), or ``None`` if it cannot be."""
    costs = _gsm7_costs(text)
    return None if costs is None else sum(costs)


def ucs2_length(text: str) -> int:
    """UTF-16 code units ``text`` needs (characters outside the BMP count 2)."""
    return sum(_ucs2_costs(text))


def detect_encoding(text: str) -> str:
    """:data:`GSM7` when the text fits the GSM-7 alphabet, else :data:`UCS2`."""
    return GSM7 if is_gsm7(text) else UCS2


def _pack(costs: list[int], single: int, multi: int) -> int:
    total = sum(costs)
    if total <= single:
        return 1
    segments, used = 1, 0
    for cost in costs:
        # An escape sequence or a surrogate pair never straddles two parts.
        if used + cost > multi:
            segments += 1
            used = 0
        used += cost
    return segments


def analyse(text: str, encoding: str | None = None) -> SegmentInfo:
    """Encoding, size and segment count of ``text``.

    Args:
        text: the message text.
        encoding: force :data:`GSM7` or :data:`UCS2`; by default the cheapest that fits is chosen.

    Raises:
        ValueError: ``encoding`` is unknown, or GSM-7 was forced on a text it cannot carry.
    """
    if encoding is None:
        encoding = detect_encoding(text)
    if encoding == GSM7:
        costs = _gsm7_costs(text)
        if costs is None:
            raise ValueError("the text has characters outside the GSM-7 alphabet")
        return SegmentInfo(GSM7, sum(costs), _pack(costs, _SINGLE_GSM7, _MULTI_GSM7),
                           _SINGLE_GSM7 if sum(costs) <= _SINGLE_GSM7 else _MULTI_GSM7)
    if encoding == UCS2:
        costs = _ucs2_costs(text)
        total = sum(costs)
        return SegmentInfo(UCS2, total, _pack(costs, _SINGLE_UCS2, _MULTI_UCS2),
                           _SINGLE_UCS2 if total <= _SINGLE_UCS2 else _MULTI_UCS2)
    raise ValueError(f"unknown SMS encoding {encoding!r}; expected {GSM7!r} or {UCS2!r}")


def count_segments(text: str, encoding: str | None = None) -> int:
    """The number of SMS parts ``text`` is sent as (see :func:`analyse`)."""
    return analyse(text, encoding).segments
