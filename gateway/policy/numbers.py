"""What a destination number is, by phonenumbers' metadata: valid or not, mobile or fixed
line, its time zones, operator and region (pure; the metadata ships with the package).

Numbers reach the policy normalised by the number plan (`gateway.routing`): international
digits without the ``+``. A number phonenumbers cannot place (a short code, a national number
with no country code configured) is `Kind.UNKNOWN`: the rules that need the country skip it
rather than refuse it, so a gateway without `numbers.country_code` keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

import phonenumbers
from phonenumbers import PhoneNumberType, timezone

__all__ = ["Kind", "NumberInfo", "number_info", "preload"]

_T = PhoneNumberType
_UNKNOWN_ZONE = "Etc/Unknown"


class Kind(Enum):
    MOBILE = "mobile"
    FIXED_LINE = "fixed_line"
    FIXED_OR_MOBILE = "fixed_line_or_mobile"  # the plan does not tell (US, CA)
    OTHER = "other"  # VoIP, pager, premium, toll free, shared cost...
    INVALID = "invalid"  # impossible, or not a number of its country's plan
    UNKNOWN = "unknown"  # not placed: no country code


_KINDS = {
    _T.MOBILE: Kind.MOBILE,
    _T.FIXED_LINE: Kind.FIXED_LINE,
    _T.FIXED_LINE_OR_MOBILE: Kind.FIXED_OR_MOBILE,
}


@dataclass(frozen=True, slots=True)
class NumberInfo:
    kind: Kind
    country: str | None = None  # ISO 3166 region, e.g. "CN"
    zones: tuple[str, ...] = ()  # IANA time zones; several for a number spanning many
    digits: str = ""

    # Operator and area are looked up only when asked: no rule needs them, and the carrier
    # and geocoder lookups cost as much as the rest of `number_info` together.
    @property
    def operator(self) -> str:
        """The carrier the number range was given to (not ported numbers)."""
        return _place(self.digits)[0] if self.kind is not Kind.INVALID else ""

    @property
    def area(self) -> str:
        """The geocoder's region, where it has one."""
        return _place(self.digits)[1] if self.kind is not Kind.INVALID else ""

    @property
    def can_receive_sms(self) -> bool | None:
        """False for a fixed line or an invalid number, None when not known."""
        if self.kind in (Kind.INVALID, Kind.FIXED_LINE):
            return False
        return None if self.kind is Kind.UNKNOWN else True


@lru_cache(maxsize=65_536)
def number_info(digits: str) -> NumberInfo:
    """What `digits` (international, no ``+``) is; cached, since OTP and marketing repeat
    recipients."""
    if not digits.isdigit():
        return NumberInfo(Kind.UNKNOWN)
    try:
        parsed = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return NumberInfo(Kind.UNKNOWN)
    region = phonenumbers.region_code_for_number(parsed)
    if region in (None, "ZZ"):
        return NumberInfo(Kind.UNKNOWN)
    # number_type is UNKNOWN exactly when is_valid_number is false (both ask the region's
    # patterns), so one call answers both.
    kind = phonenumbers.number_type(parsed)
    if kind is _T.UNKNOWN or not phonenumbers.is_possible_number(parsed):
        return NumberInfo(Kind.INVALID, region, digits=digits)
    # time_zones_for_number would ask number_type again: the type in hand picks the lookup.
    if phonenumbers.is_number_type_geographical(kind, parsed.country_code or 0):
        found = timezone.time_zones_for_geographical_number(parsed)
    else:
        found = timezone.time_zones_for_number(parsed)
    zones = tuple(z for z in found if z != _UNKNOWN_ZONE)
    return NumberInfo(_KINDS.get(kind, Kind.OTHER), region, zones, digits)


@lru_cache(maxsize=4096)
def _place(digits: str) -> tuple[str, str]:
    # Imported here: their data take a third of the gateway's import time (start-up), and
    # only a statistics query by operator or area asks for them.
    from phonenumbers import carrier, geocoder  # noqa: PLC0415

    parsed = phonenumbers.parse("+" + digits, None)
    return carrier.name_for_number(parsed, "en"), geocoder.description_for_number(parsed, "en")


def preload() -> None:
    """Load every region's numbering metadata now (about 50 ms), not at the first number of
    each country while messages wait."""
    phonenumbers.PhoneMetadata.load_all()
