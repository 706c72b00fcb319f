"""SMPP v3.4 section 7.1.1 time strings: absolute, relative, malformed."""

from __future__ import annotations

import calendar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.smpp.times import (
    SmppTimeError,
    format_smpp_time,
    parse_smpp_time,
    relative_smpp_time,
)

NOW = calendar.timegm((2024, 1, 31, 12, 0, 0, 0, 0, 0))


def test_empty_is_none() -> None:
    assert parse_smpp_time("", NOW) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("240131120000000+", (2024, 1, 31, 12, 0, 0)),
        ("240131120000500+", (2024, 1, 31, 12, 0, 0.5)),
        # Local time 4 quarter hours (1 h) ahead of UTC: 13:00 local is 12:00 UTC.
        ("240131130000004+", (2024, 1, 31, 12, 0, 0)),
        # 8 quarter hours behind UTC: 10:00 local is 12:00 UTC.
        ("240131100000008-", (2024, 1, 31, 12, 0, 0)),
        ("240229235959048+", (2024, 2, 29, 11, 59, 59)),  # leap day, offset 12 h
        ("991231235959900+", (2099, 12, 31, 23, 59, 59.9)),
    ],
)
def test_absolute(value: str, expected: tuple[int, int, int, int, int, float]) -> None:
    *whole, seconds = expected
    want = calendar.timegm((*whole, 0, 0, 0, 0)) + seconds  # type: ignore[arg-type]
    assert parse_smpp_time(value, NOW) == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("000000000000000R", 0),
        ("000000000130000R", 90),
        ("000001000000000R", 86400),
        ("000000480000000R", 48 * 3600),  # hours past 23: a duration, not a clock time
        ("000014000000000R", 14 * 86400),
    ],
)
def test_relative_durations(value: str, seconds: int) -> None:
    assert parse_smpp_time(value, NOW) == NOW + seconds


def test_relative_months_are_calendar_steps() -> None:
    # One month after 31 January 2024 is the last day of February (a leap year).
    feb = calendar.timegm((2024, 2, 29, 12, 0, 0, 0, 0, 0))
    assert parse_smpp_time("000100000000000R", NOW) == feb
    next_year = calendar.timegm((2025, 1, 31, 12, 0, 0, 0, 0, 0))
    assert parse_smpp_time("010000000000000R", NOW) == next_year
    assert parse_smpp_time("001300000000000R", NOW) == calendar.timegm(
        (2025, 2, 28, 12, 0, 0, 0, 0, 0)
    )


@pytest.mark.parametrize(
    "value",
    [
        "2401311200000",  # too short
        "240131120000000+0",  # too long
        "24013112000000+",  # 15 characters
        "2401311200000a0+",  # a letter
        "24013112000 000+",  # a space
        "２40131120000000+",  # a non-ASCII digit
        "241331120000000+",  # month 13
        "240031120000000+",  # month 0
        "240100120000000+",  # day 0
        "230229120000000+",  # 29 February in a common year
        "240431120000000+",  # 31 April
        "240131240000000+",  # hour 24
        "240131126000000+",  # minute 60
        "240131120060000+",  # second 60
        "240131120000049+",  # 49 quarter hours
        "240131120000099-",
        "240131120000000*",  # unknown direction
        "240131120000000r",  # relative is upper-case R
        "000001000000100R",  # relative with tenths
        "000001000000001R",  # relative with an offset
    ],
)
def test_malformed(value: str) -> None:
    with pytest.raises(SmppTimeError):
        parse_smpp_time(value, NOW)


def test_error_is_a_value_error() -> None:
    assert issubclass(SmppTimeError, ValueError)


def test_format_utc() -> None:
    assert format_smpp_time(NOW) == "240131120000000+"
    assert format_smpp_time(NOW + 0.75) == "240131120000700+"
    assert format_smpp_time(NOW, 4) == "240131130000004+"
    assert format_smpp_time(NOW, -8) == "240131100000008-"


def test_format_out_of_range() -> None:
    with pytest.raises(ValueError, match="two-digit year"):
        format_smpp_time(calendar.timegm((1999, 12, 31, 23, 59, 59, 0, 0, 0)))
    with pytest.raises(ValueError, match="quarter hours"):
        format_smpp_time(NOW, 49)


# 2000-01-01 .. 2099-12-30 (a day of margin for offsets), in tenths of a second.
_LOW, _HIGH = 946_684_800 + 86400, 4_102_444_800 - 86400
tenths = st.integers(_LOW * 10, _HIGH * 10)
quarters = st.integers(-48, 48)


@given(tenths=tenths, quarter_hours=quarters)
def test_absolute_round_trip(tenths: int, quarter_hours: int) -> None:
    epoch = tenths / 10
    text = format_smpp_time(epoch, quarter_hours)
    assert len(text) == 16
    assert parse_smpp_time(text, 0.0) == pytest.approx(epoch, abs=1e-6)


@given(tenths=tenths, quarter_hours=quarters)
def test_string_round_trip(tenths: int, quarter_hours: int) -> None:
    # Every string we write reads back to itself when written with the same offset.
    text = format_smpp_time(tenths / 10, quarter_hours)
    parsed = parse_smpp_time(text, 0.0)
    assert parsed is not None
    assert format_smpp_time(parsed, quarter_hours) == text


@given(seconds=st.integers(0, 99 * 86400 + 86399), now=st.integers(_LOW, _HIGH))
def test_relative_round_trip(seconds: int, now: int) -> None:
    assert parse_smpp_time(relative_smpp_time(seconds), float(now)) == now + seconds


def test_relative_out_of_range() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        relative_smpp_time(100 * 86400)
    with pytest.raises(ValueError, match="does not fit"):
        relative_smpp_time(-1)


@given(st.text(max_size=20))
def test_anything_parses_or_raises_smpp_time_error(value: str) -> None:
    try:
        result = parse_smpp_time(value, float(NOW))
    except SmppTimeError:
        return
    assert result is None or isinstance(result, float)
