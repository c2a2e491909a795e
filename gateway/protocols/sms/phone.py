"""Sender and recipient addresses: E.164 normalisation with ``phonenumberslite``.

An SMS address is one of:

* a **phone number**, normalised to E.164 (``+447400123456``) and tagged with its country;
* a **short code** (3 to 8 digits, e.g. ``88088``), which only means something inside one country;
* an **alphanumeric sender ID** (``MyBrand``, up to 11 characters), which is *not* a phone number:
  it is kept exactly as sent, flagged, and can never be replied to;
* anything else the provider sent (``unknown``), kept as sent.

Numbers are accepted when ``phonenumbers.is_possible_number`` holds (a length check per country),
not ``is_valid_number``: validity data lags behind number plans, and test ranges such as UK
``+447700900xxx`` are possible but not valid.

Some providers drop the leading ``+`` (Vonage's ``msisdn``, Plivo's ``From``): pass
``assume_international=True`` for them. A national number (``07400 123456``) needs a
``default_region`` (``"GB"``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers

__all__ = ["PHONE", "SHORT_CODE", "ALPHANUMERIC", "UNKNOWN", "Address", "check_region", "normalize"]

#: Address kinds.
PHONE = "phone"
SHORT_CODE = "short_code"
ALPHANUMERIC = "alphanumeric"
UNKNOWN = "unknown"

_NUMERIC = re.compile(r"\+?[0-9]+")
_FORMATTING = str.maketrans("", "", " -().\u00a0\t")
_REGION = re.compile(r"[A-Z]{2}")
# Short codes: 3 to 6 digits nearly everywhere (US 5-6, UK 5, FR 5, DE 4-5, IN 5-6); a few
# countries use up to 8 (Australia's 19xxxxxx). Longer digit strings are phone numbers.
_SHORT_CODE_MAX_CERTAIN = 6
_SHORT_CODE_MAX = 8


@dataclass(frozen=True)
class Address:
    """One end of an SMS.

    Attributes:
        value: E.164 for a phone number (``+14155552671``), the digits of a short code, or the
            stripped text as sent for an alphanumeric sender ID or an unknown address.
        kind: :data:`PHONE`, :data:`SHORT_CODE`, :data:`ALPHANUMERIC` or :data:`UNKNOWN`.
        country: ISO 3166-1 alpha-2 region (``"GB"``) when known, else ``None``.
        raw: the address exactly as the provider sent it.
    """

    value: str
    kind: str
    country: str | None
    raw: str

    @property
    def is_phone(self) -> bool:
        """Whether this is an E.164 phone number (one can reply to it)."""
        return self.kind == PHONE

    def __str__(self) -> str:
        return self.value


def check_region(region: str | None, what: str = "default_region") -> str | None:
    """Validate and upper-case an ISO 3166-1 alpha-2 region code (``None`` passes).

    Raises:
        ValueError: not a region phonenumbers knows.
    """
    if region is None:
        return None
    upper = region.upper()
    if not _REGION.fullmatch(upper) or upper not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"{what} {region!r} is not an ISO 3166-1 alpha-2 region phonenumbers knows")
    return upper


def _country_of(number: phonenumbers.PhoneNumber) -> str | None:
    region = phonenumbers.region_code_for_number(number)
    if region and region not in ("ZZ", "001"):
        return str(region)
    # Possible but not valid (test ranges, new blocks): fall back to the country code's main region
    # (+44 -> GB, +1 -> US); non-geographic codes (+800, +882) have none.
    if number.country_code is None:
        return None
    main = phonenumbers.region_code_for_country_code(number.country_code)
    return None if main in ("ZZ", "001") else str(main)


def _is_short_code(digits: str, region: str | None) -> bool:
    """A 7-8 digit string that the region's metadata lists as a short code (Australia's 19xxxxxx)."""
    if region is None:
        return False
    try:
        return bool(phonenumbers.is_valid_short_number_for_region(phonenumbers.parse(digits, region), region))
    except phonenumbers.NumberParseException:
        return False


def _try_parse(text: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return number


def _phone(number: phonenumbers.PhoneNumber, raw: str) -> Address:
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return Address(e164, PHONE, _country_of(number), raw)


def normalize(
    raw: str,
    *,
    default_region: str | None = None,
    assume_international: bool = False,
    country_hint: str | None = None,
) -> Address:
    """Classify and normalise one address as a provider sent it.

    Args:
        raw: the address as received (``"+14155552671"``, ``"447400123456"``, ``"88088"``,
            ``"MyBrand"``).
        default_region: region for national-format numbers and for short codes (``"GB"``).
        assume_international: the provider sends international numbers without the ``+``
            (Vonage, Plivo); digit strings are tried as ``+`` + digits first.
        country_hint: the country the provider says the address is in (Twilio's ``FromCountry``),
            used when the number itself does not tell (short codes, alphanumeric IDs).

    Returns:
        An :class:`Address`. This never fails on what a peer sent: what cannot be a phone number
        is kept as sent, with ``kind`` saying what it is.

    Raises:
        ValueError: ``default_region`` is not a region code (a configuration error, ours).
    """
    region = check_region(default_region)
    hint = country_hint.upper() if country_hint and _REGION.fullmatch(country_hint.upper()) else None
    text = raw.strip()
    if text[:4].lower() == "tel:":
        text = text[4:].strip()
    compact = text.translate(_FORMATTING)
    if not _NUMERIC.fullmatch(compact):
        if any(ch.isalpha() for ch in text):
            return Address(text, ALPHANUMERIC, hint, raw)
        return Address(text, UNKNOWN, hint, raw)

    digits = compact.lstrip("+")
    if compact.startswith("+"):
        number = _try_parse(text, None)
        return _phone(number, raw) if number else Address(text, UNKNOWN, hint, raw)
    if len(digits) <= _SHORT_CODE_MAX_CERTAIN or (
        len(digits) <= _SHORT_CODE_MAX and _is_short_code(digits, region)
    ):
        return Address(digits, SHORT_CODE, region or hint, raw)
    if assume_international:
        number = _try_parse("+" + digits, None)
        if number:
            return _phone(number, raw)
    if region:
        number = _try_parse(text, region)
        if number:
            return _phone(number, raw)
    if len(digits) <= _SHORT_CODE_MAX:
        return Address(digits, SHORT_CODE, region or hint, raw)
    return Address(text, UNKNOWN, hint, raw)
