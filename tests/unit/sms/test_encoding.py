"""GSM-7 / UCS-2 detection and segment counting (3GPP TS 23.038, TS 23.040 concatenation)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.protocols.sms import encoding as enc

GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = "\f^{}\\[~]|€"


def test_default_alphabet_has_127_characters_besides_escape() -> None:
    assert len(set(GSM_BASIC)) == 127
    assert enc.is_gsm7(GSM_BASIC)
    assert enc.gsm7_length(GSM_BASIC) == 127


@pytest.mark.parametrize("char", list(GSM_EXTENSION))
def test_extension_characters_count_double(char: str) -> None:
    assert enc.is_gsm7(char)
    assert enc.gsm7_length(char) == 2
    assert enc.gsm7_length("a" + char) == 3


@pytest.mark.parametrize("char", ["ç", "á", "\x1b", "`", "ő", "😀", "中", "\t"])
def test_characters_outside_gsm7_need_ucs2(char: str) -> None:
    assert not enc.is_gsm7(char)
    assert enc.gsm7_length(char) is None
    assert enc.detect_encoding("hi " + char) == enc.UCS2


@pytest.mark.parametrize(
    ("length", "segments"),
    [(0, 1), (1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)],
)
def test_gsm7_single_part_160_then_153_per_part(length: int, segments: int) -> None:
    info = enc.analyse("a" * length)
    assert info.encoding == enc.GSM7
    assert info.units == length
    assert info.segments == segments
    assert info.per_segment == (160 if length <= 160 else 153)


@pytest.mark.parametrize(
    ("length", "segments"), [(70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)]
)
def test_ucs2_single_part_70_then_67_per_part(length: int, segments: int) -> None:
    info = enc.analyse("ж" * length)
    assert (info.encoding, info.units, info.segments) == (enc.UCS2, length, segments)


def test_extension_characters_fill_a_single_part_twice_as_fast() -> None:
    assert enc.count_segments("€" * 80) == 1      # 160 septets
    assert enc.count_segments("€" * 81) == 2      # 162 septets
    assert enc.count_segments("a" * 159 + "€") == 2


def test_escape_sequence_never_straddles_two_parts() -> None:
    # 152 plain septets then '€' (2 septets): 154 > 153, so '€' opens part 2 ... total 306 septets
    # would fit 2 parts if split freely, but the escape pair cannot be split.
    text = "a" * 152 + "€" + "a" * 152
    assert enc.gsm7_length(text) == 306
    assert enc.count_segments(text) == 3


def test_surrogate_pairs_count_two_units_and_are_not_split() -> None:
    assert enc.ucs2_length("😀") == 2
    assert enc.count_segments("😀" * 35) == 1     # 70 units
    assert enc.count_segments("😀" * 36) == 2     # 72 units
    # 66 units then an emoji: 68 > 67, so the pair moves to part 2; 134 units need 3 parts.
    text = "ж" * 66 + "😀" + "ж" * 66
    assert enc.ucs2_length(text) == 134
    assert enc.count_segments(text) == 3


def test_forced_encoding() -> None:
    assert enc.analyse("hello", enc.UCS2).segments == 1
    assert enc.analyse("a" * 71, enc.UCS2).segments == 2
    with pytest.raises(ValueError, match="GSM-7"):
        enc.analyse("😀", enc.GSM7)
    with pytest.raises(ValueError, match="unknown"):
        enc.analyse("x", "latin-1")


@given(st.text(max_size=600))
def test_segments_are_consistent_with_capacity(text: str) -> None:
    info = enc.analyse(text)
    assert info.segments >= 1
    if info.units <= (160 if info.encoding == enc.GSM7 else 70):
        assert info.segments == 1
    else:
        per = 153 if info.encoding == enc.GSM7 else 67
        # Greedy packing wastes at most one unit per part (a pair that did not fit).
        assert -(-info.units // per) <= info.segments <= -(-info.units // (per - 1))
