"""Quiet hours in the recipient's local time (pure: the clock and the zones are passed in).

A window such as 21:00-08:00 is quiet every day; it may wrap midnight. A number that spans
several time zones (phonenumbers gives Russia's mobiles 16) is quiet while any of its zones is:
a message waits until the window is open in all of them. Local times are resolved with
`zoneinfo` on each calendar day, so DST changes move the instants, not the rule: 08:00 stays
08:00 local on the day the clocks change. A local time that does not exist that day (in the
spring gap) is read as the instant the clocks jumped to (fold=0 then normalised), one that
happens twice (autumn) as its first occurrence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

__all__ = ["QuietHours", "is_quiet", "release_at"]

_SEARCH_DAYS = 4  # far enough for any two windows to meet, if they ever do


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Quiet from `start` to `end` local time each day (`end` <= `start` wraps midnight)."""

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise ValueError("quiet hours need a start and an end that differ")

    def quiet_local(self, local: time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _local(at: float, zone: str) -> datetime:
    return datetime.fromtimestamp(at, _zone(zone))


def is_quiet(at: float, zones: Sequence[str], window: QuietHours) -> bool:
    """Whether `at` (epoch seconds) is inside quiet hours in any of `zones`."""
    return any(window.quiet_local(_local(at, z).time()) for z in zones)


def _instant(day: date, at: time, zone: str) -> float:
    """Epoch seconds of local `at` on `day` in `zone` (a time in the spring gap: the jump)."""
    naive = datetime.combine(day, at)
    aware = naive.replace(tzinfo=_zone(zone), fold=0)
    # Round-trip through UTC: a non-existent local time comes back as a real one.
    return aware.astimezone(UTC).timestamp()


def release_at(at: float, zones: Sequence[str], window: QuietHours) -> float | None:
    """When a message that arrives at `at` may go: None when it may go now (outside quiet
    hours in every zone), else the first instant the window is open in all of `zones`. When
    the zones' open hours never meet (zones far apart and a long window), the latest of the
    zones' next openings: every zone has then reached its morning, though the first zones
    to open may be in their evening's quiet hours again."""
    if not zones or not is_quiet(at, zones, window):
        return None
    candidates: list[float] = []
    for zone in zones:
        today = _local(at, zone).date()
        for offset in range(-1, _SEARCH_DAYS):
            instant = _instant(today + timedelta(days=offset), window.end, zone)
            if instant > at:
                candidates.append(instant)
    for instant in sorted(set(candidates)):
        if not is_quiet(instant, zones, window):
            return instant
    # Never open everywhere at once: at the latest first opening among the zones.
    firsts = [min(c for c in _openings(at, zone, window)) for zone in zones]
    return max(firsts)


def _openings(at: float, zone: str, window: QuietHours) -> list[float]:
    today = _local(at, zone).date()
    found = [_instant(today + timedelta(days=d), window.end, zone) for d in range(-1, 3)]
    return [f for f in found if f > at] or [at]
