"""SMPP time strings: schedule_delivery_time and validity_period (SMPP v3.4 section 7.1.1).

Theory of operation
-------------------
A time field is empty (no time) or 16 characters:

* absolute ``YYMMDDhhmmsstnnp``: a local date and time, ``t`` tenths of a second, ``nn`` the
  distance of that local time from UTC in quarter hours (00-48) and ``p`` its direction
  (``+`` local time is ahead of UTC, ``-`` behind). ``YY`` is read as 20YY.
* relative ``YYMMDDhhmmss000R``: that long after `now`. Years and months are calendar steps
  (a month after 31 January is the last day of February); days, hours, minutes and seconds
  are plain durations, so ``000000480000000R`` (48 hours, common in the wild) is accepted.
  ``tnn`` must be ``000`` as the specification writes it.

Anything else raises `SmppTimeError`, a ValueError: the accept pipeline answers it with
ESME_RINVSCHED or ESME_RINVEXPIRY. Pure: `now` is passed in (epoch seconds).
"""

from __future__ import annotations

import calendar
import math
from datetime import UTC, datetime, timedelta

__all__ = ["SmppTimeError", "format_smpp_time", "parse_smpp_time", "relative_smpp_time"]

_QUARTER = 900  # seconds
_MAX_QUARTERS = 48


class SmppTimeError(ValueError):
    """A time string that is not SMPP v3.4 section 7.1.1."""


def parse_smpp_time(value: str, now: float) -> float | None:
    """The epoch time `value` names, or None when it is empty.

    Args:
        value: the field as it came (the C-string without its NUL).
        now: epoch seconds; the origin of a relative time.

    Returns:
        Epoch seconds (tenths included), or None for an empty field.

    Raises:
        SmppTimeError: wrong length, a non-digit, an impossible date or time, a UTC offset
            over 48 quarter hours, an unknown direction, or a relative time with tnn != 000.
    """
    if not value:
        return None
    if len(value) != 16:
        raise SmppTimeError(f"{value!r}: an SMPP time has 16 characters, not {len(value)}")
    digits, p = value[:15], value[15]
    if not (digits.isascii() and digits.isdigit()):
        raise SmppTimeError(f"{value!r}: the first 15 characters must be digits")
    yy, mo, dd, hh, mi, ss = (int(digits[i : i + 2]) for i in range(0, 12, 2))
    if p == "R":
        if digits[12:] != "000":
            raise SmppTimeError(f"{value!r}: a relative time ends in 000R")
        return _relative(now, yy * 12 + mo, ((dd * 24 + hh) * 60 + mi) * 60 + ss)
    if p not in "+-":
        raise SmppTimeError(f"{value!r}: the last character must be '+', '-' or 'R'")
    year = 2000 + yy
    if not 1 <= mo <= 12:
        raise SmppTimeError(f"{value!r}: month {mo:02d}")
    if not 1 <= dd <= calendar.monthrange(year, mo)[1]:
        raise SmppTimeError(f"{value!r}: day {dd:02d} of {year}-{mo:02d}")
    if hh > 23 or mi > 59 or ss > 59:
        raise SmppTimeError(f"{value!r}: time {hh:02d}:{mi:02d}:{ss:02d}")
    quarters = int(digits[13:])
    if quarters > _MAX_QUARTERS:
        raise SmppTimeError(f"{value!r}: UTC offset of {quarters} quarter hours (at most 48)")
    local = calendar.timegm((year, mo, dd, hh, mi, ss, 0, 0, 0)) + int(digits[12]) / 10
    offset = quarters * _QUARTER
    return local - offset if p == "+" else local + offset


def _relative(now: float, months: int, seconds: int) -> float:
    if not months:
        return now + seconds
    start = datetime.fromtimestamp(now, UTC)
    month0 = start.month - 1 + months
    year, month = start.year + month0 // 12, month0 % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    shifted = start.replace(year=year, month=month, day=day)
    return (shifted + timedelta(seconds=seconds)).timestamp()


def format_smpp_time(epoch: float, quarter_hours: int = 0) -> str:
    """`epoch` as an absolute SMPP time, in UTC shifted by `quarter_hours` (-48..48).

    Tenths of a second are truncated.

    Raises:
        ValueError: the time is outside 2000-2099 (two-digit years) or the offset out of range.
    """
    if not -_MAX_QUARTERS <= quarter_hours <= _MAX_QUARTERS:
        raise ValueError(f"UTC offset of {quarter_hours} quarter hours (at most 48 either way)")
    # Round first: 1700000000.3 * 10 is 16999999999.999998 in binary floating point.
    tenths = math.floor(round((epoch + quarter_hours * _QUARTER) * 10, 3))
    seconds, tenth = divmod(tenths, 10)
    t = datetime.fromtimestamp(seconds, UTC)
    if not 2000 <= t.year <= 2099:
        raise ValueError(f"{t.year} does not fit an SMPP time's two-digit year")
    sign = "-" if quarter_hours < 0 else "+"
    return f"{t:%y%m%d%H%M%S}{tenth}{abs(quarter_hours):02d}{sign}"


def relative_smpp_time(seconds: int) -> str:
    """A relative SMPP time of `seconds` (0 up to 99 days, 23:59:59).

    Raises:
        ValueError: negative, or too long for the DD field.
    """
    minutes, ss = divmod(seconds, 60)
    hours, mi = divmod(minutes, 60)
    days, hh = divmod(hours, 24)
    if seconds < 0 or days > 99:
        raise ValueError(f"{seconds} seconds does not fit a relative SMPP time")
    return f"0000{days:02d}{hh:02d}{mi:02d}{ss:02d}000R"
