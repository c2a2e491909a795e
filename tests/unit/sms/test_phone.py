"""Address classification and E.164 normalisation (phonenumberslite)."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.protocols.sms.phone import ALPHANUMERIC, PHONE, SHORT_CODE, UNKNOWN, Address, normalize

UK_MOBILE = "+447400123456"  # phonenumbers.example_number_for_type("GB", MOBILE)


def test_example_number_is_what_phonenumbers_says() -> None:
    example = phonenumbers.example_number_for_type("GB", phonenumbers.PhoneNumberType.MOBILE)
    assert phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164) == UK_MOBILE


@pytest.mark.parametrize(
    ("raw", "kwargs", "value", "country"),
    [
        ("+14155552671", {}, "+14155552671", "US"),
        (" +1 (415) 555-2671 ", {}, "+14155552671", "US"),
        ("+447400123456", {}, UK_MOBILE, "GB"),
        ("tel:+447400123456", {}, UK_MOBILE, "GB"),
        # Providers that drop the '+' (Vonage msisdn, Plivo From).
        ("447400123456", {"assume_international": True}, UK_MOBILE, "GB"),
        ("14843472194", {"assume_international": True}, "+14843472194", "US"),
        # National formats need a default region.
        ("07400 123456", {"default_region": "GB"}, UK_MOBILE, "GB"),
        ("07400123456", {"default_region": "gb"}, UK_MOBILE, "GB"),
        ("(415) 555-2671", {"default_region": "US"}, "+14155552671", "US"),
        ("0044 7400 123456", {"default_region": "GB"}, UK_MOBILE, "GB"),
        # Without '+' but with assume_international, a national number still works via the region.
        ("07400123456", {"assume_international": True, "default_region": "GB"}, UK_MOBILE, "GB"),
        # Possible but not valid (UK drama range): accepted, country from the unique country code.
        ("+447700900123", {}, "+447700900123", "GB"),
    ],
)
def test_phone_numbers_normalise_to_e164(raw: str, kwargs: dict, value: str, country: str) -> None:
    address = normalize(raw, **kwargs)
    assert address == Address(value, PHONE, country, raw)
    assert address.is_phone
    assert str(address) == value


def test_possible_but_invalid_numbers_get_the_country_codes_main_region() -> None:
    # +1 555 01xx numbers are fictional: possible, not valid; +1's main region is US.
    assert not phonenumbers.is_valid_number(phonenumbers.parse("+15555550123"))
    assert normalize("+15555550123") == Address("+15555550123", PHONE, "US", "+15555550123")


def test_non_geographic_numbers_have_no_country() -> None:
    address = normalize("+80012345678")
    assert (address.kind, address.country) == (PHONE, None)


@pytest.mark.parametrize(
    ("raw", "kwargs", "value", "country"),
    [
        ("88088", {}, "88088", None),
        ("88088", {"default_region": "GB"}, "88088", "GB"),
        ("266", {"assume_international": True}, "266", None),
        ("123456", {"assume_international": True}, "123456", None),
        ("19123456", {"default_region": "AU"}, "19123456", "AU"),  # AU 8-digit short code
        ("72345", {"country_hint": "us"}, "72345", "US"),
    ],
)
def test_short_codes_are_kept_and_flagged(raw: str, kwargs: dict, value: str, country: str | None) -> None:
    address = normalize(raw, **kwargs)
    assert (address.value, address.kind, address.country) == (value, SHORT_CODE, country)
    assert not address.is_phone


@pytest.mark.parametrize("raw", ["MyBrand", "INFO", "Acme Bank", "VERIFY-ME", "Bank2Go"])
def test_alphanumeric_sender_ids_are_kept_as_is_and_flagged(raw: str) -> None:
    address = normalize(raw, default_region="GB", assume_international=True, country_hint="GB")
    assert address.value == raw
    assert address.raw == raw
    assert address.kind == ALPHANUMERIC
    assert address.country == "GB"  # the hint (Twilio's FromCountry) is all we know
    assert not address.is_phone


@pytest.mark.parametrize(
    ("raw", "kwargs"),
    [
        ("+12345", {}),                       # too short for +1
        ("+999123456789", {}),                # no such country code
        ("4155552671", {}),                   # national US number, no region: do not guess
        ("", {}),
        ("   ", {}),
        ("+", {}),
        ("++44", {}),
        ("#123", {}),
    ],
)
def test_what_cannot_be_normalised_is_kept_as_unknown(raw: str, kwargs: dict) -> None:
    address = normalize(raw, **kwargs)
    assert address.kind == UNKNOWN
    assert address.raw == raw
    assert address.value == raw.strip()


def test_bad_default_region_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="region"):
        normalize("+14155552671", default_region="XX")
    with pytest.raises(ValueError, match="region"):
        normalize("+14155552671", default_region="GBR")


@given(st.text(max_size=40), st.booleans(), st.sampled_from([None, "GB", "US", "DE", "IN"]))
def test_normalize_never_raises_on_peer_input(raw: str, international: bool, region: str | None) -> None:
    address = normalize(raw, default_region=region, assume_international=international)
    assert address.raw == raw
    assert address.kind in (PHONE, SHORT_CODE, ALPHANUMERIC, UNKNOWN)
    if address.kind == PHONE:
        assert address.value.startswith("+") and address.value[1:].isdigit()
        assert phonenumbers.is_possible_number(phonenumbers.parse(address.value))


@given(st.integers(min_value=2000000000, max_value=9999999999))
def test_e164_round_trip_for_nanp_numbers(national: int) -> None:
    e164 = f"+1{national}"
    address = normalize(e164)
    if address.kind == PHONE:
        assert address.value == e164
        assert normalize(e164[1:], assume_international=True).value == e164
