"""Destination numbers by phonenumbers' metadata."""

from __future__ import annotations

import phonenumbers
from hypothesis import given
from hypothesis import strategies as st
from phonenumbers import timezone

from gateway.policy.numbers import Kind, number_info


def test_mobiles_fixed_lines_and_invalid_numbers() -> None:
    cn = number_info("8613800138000")
    assert cn.kind is Kind.MOBILE and cn.country == "CN" and cn.zones == ("Asia/Shanghai",)
    assert cn.operator == "China Mobile" and cn.can_receive_sms
    de = number_info("4930123456")
    assert de.kind is Kind.FIXED_LINE and de.can_receive_sms is False and "Berlin" in de.area
    assert number_info("4915112345678").kind is Kind.MOBILE
    assert number_info("861380013800").kind is Kind.INVALID  # one digit short
    us = number_info("12125550123")
    assert us.kind is Kind.FIXED_OR_MOBILE and us.zones == ("America/New_York",)


def test_numbers_it_cannot_place_are_unknown_not_refused() -> None:
    for digits in ("12345", "99123456", "", "abc", "0151123456"):
        info = number_info(digits)
        assert info.kind in (Kind.UNKNOWN, Kind.INVALID)
        assert info.kind is Kind.UNKNOWN or info.country is not None


def test_a_number_spanning_many_zones_has_them_all() -> None:
    ru = number_info("79161234567")
    assert ru.kind is Kind.MOBILE and len(ru.zones) > 5 and "Europe/Moscow" in ru.zones


@given(
    st.sampled_from(sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)),
    st.text("0123456789", min_size=5, max_size=11),
)
def test_kind_and_zones_as_phonenumbers_own_calls_give_them(code: int, rest: str) -> None:
    # number_info asks the region's patterns once and picks the zone lookup by that type:
    # the same answers as is_valid_number and time_zones_for_number.
    digits = f"{code}{rest}"
    info = number_info(digits)
    parsed = phonenumbers.parse("+" + digits, None)
    valid = phonenumbers.is_possible_number(parsed) and phonenumbers.is_valid_number(parsed)
    if info.kind is Kind.UNKNOWN:
        return
    assert (info.kind is not Kind.INVALID) == valid
    if valid:
        zones = tuple(z for z in timezone.time_zones_for_number(parsed) if z != "Etc/Unknown")
        assert info.zones == zones
