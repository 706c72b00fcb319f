"""Destination numbers to the digits routes are written in: E.164 without the ``+``.

Applications write numbers every way: ``+4915112345678``, ``004915112345678``, national
``015112345678``, with spaces, dashes, dots or brackets. Routing compares digit prefixes, so all
of these must become ``4915112345678`` first. The rules are a country's dialling plan, given
once in the config (`NumberPlan`); anything that is not a plausible number after cleaning is
refused rather than guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NumberPlan", "normalize", "sender_key"]

_SEPARATORS = str.maketrans("", "", " -.()/\t")


@dataclass(frozen=True, slots=True)
class NumberPlan:
    """How national and international numbers are dialled where the gateway sends from.

    Attributes:
        country_code: the default country's calling code (``"49"``); empty: national numbers
            cannot be told from international ones and are taken as international.
        national_prefix: the trunk prefix of national numbers (``"0"`` in most countries).
        international_prefix: the exit code before a country code (``"00"``; ``"011"`` in
            North America).
    """

    country_code: str = ""
    national_prefix: str = "0"
    international_prefix: str = "00"

    def __post_init__(self) -> None:
        for name in ("country_code", "national_prefix", "international_prefix"):
            value = getattr(self, name)
            if value and not (value.isascii() and value.isdigit()):
                raise ValueError(f"{name} must be digits, got {value!r}")


def normalize(number: str, plan: NumberPlan = NumberPlan()) -> str | None:
    """E.164 digits without ``+`` for `number`, or None when it is not a phone number.

    ``+`` and the international prefix mark an international number; the national prefix,
    with a country code configured, a national one. Short codes and numbers already written
    as bare international digits pass through as their digits.
    """
    digits = number.translate(_SEPARATORS)
    if digits.startswith("+"):
        digits = digits[1:]
        international = True
    else:
        international = False
    if not digits or not (digits.isascii() and digits.isdigit()) or len(digits) > 20:
        return None
    if international:
        return digits
    if plan.international_prefix and digits.startswith(plan.international_prefix):
        rest = digits[len(plan.international_prefix) :]
        return rest or None
    if plan.country_code and plan.national_prefix and digits.startswith(plan.national_prefix):
        return plan.country_code + digits[len(plan.national_prefix) :]
    return digits


def sender_key(address: str, plan: NumberPlan = NumberPlan()) -> str:
    """A sender id as an opt-out's scope: a numeric one normalised like any number (so the
    MO's "+4930123" and the app's "030123" are one sender), an alphanumeric one as written."""
    address = address.strip()
    return normalize(address, plan) or address
