"""Quiet hours in the recipient's time zones: midnight, DST changes, zones far apart."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.policy.quiet import QuietHours, is_quiet, release_at

NIGHT = QuietHours(time(21), time(8))


def at(text: str, zone: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


def local(ts: float, zone: str) -> str:
    return datetime.fromtimestamp(ts, ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


def test_a_message_at_23_waits_for_08_local() -> None:
    sent = at("2026-12-03 23:00", "Asia/Shanghai")
    released = release_at(sent, ["Asia/Shanghai"], NIGHT)
    assert released is not None and local(released, "Asia/Shanghai") == "2026-12-04 08:00"


def test_outside_quiet_hours_goes_now_and_the_edges() -> None:
    zone = ["Europe/Berlin"]
    assert release_at(at("2026-12-03 12:00", "Europe/Berlin"), zone, NIGHT) is None
    assert release_at(at("2026-12-03 08:00", "Europe/Berlin"), zone, NIGHT) is None  # end: open
    assert release_at(at("2026-12-03 20:59", "Europe/Berlin"), zone, NIGHT) is None
    edge = at("2026-12-03 21:00", "Europe/Berlin")  # start: quiet
    assert local(release_at(edge, zone, NIGHT) or 0, "Europe/Berlin") == "2026-12-04 08:00"
    after_midnight = at("2026-12-04 00:30", "Europe/Berlin")
    assert (
        local(release_at(after_midnight, zone, NIGHT) or 0, "Europe/Berlin") == "2026-12-04 08:00"
    )


def test_a_window_that_does_not_wrap_midnight() -> None:
    lunch = QuietHours(time(12), time(14))
    zone = ["Europe/Paris"]
    assert release_at(at("2026-12-03 11:59", "Europe/Paris"), zone, lunch) is None
    held = release_at(at("2026-12-03 13:00", "Europe/Paris"), zone, lunch)
    assert held is not None and local(held, "Europe/Paris") == "2026-12-03 14:00"


def test_dst_changes_keep_08_local() -> None:
    zone = ["Europe/Berlin"]
    # The night the clocks go forward (29 March 2026) and back (25 October 2026).
    for night, morning in (
        ("2026-03-28 23:30", "2026-03-29 08:00"),
        ("2026-10-24 23:30", "2026-10-25 08:00"),
    ):
        released = release_at(at(night, "Europe/Berlin"), zone, NIGHT)
        assert released is not None and local(released, "Europe/Berlin") == morning
    spring = QuietHours(time(1), time(2, 30))  # ends inside the spring gap (02:00-03:00)
    released = release_at(at("2026-03-29 01:30", "Europe/Berlin"), zone, spring)
    assert released is not None and local(released, "Europe/Berlin") == "2026-03-29 03:30"


def test_a_number_in_several_zones_waits_until_all_are_open() -> None:
    zones = ["Europe/Moscow", "Asia/Vladivostok"]  # UTC+3 and UTC+10
    sent = at("2026-12-03 07:00", "Europe/Moscow")  # 14:00 in Vladivostok, quiet in Moscow
    released = release_at(sent, zones, NIGHT)
    assert released is not None
    assert local(released, "Europe/Moscow") == "2026-12-03 08:00"
    evening = at("2026-12-03 19:00", "Europe/Moscow")  # 02:00 in Vladivostok
    released = release_at(evening, zones, NIGHT)
    assert released is not None and not is_quiet(released, zones, NIGHT)
    assert local(released, "Europe/Moscow") == "2026-12-04 08:00"  # 15:00 in Vladivostok


def test_zones_whose_open_hours_never_meet_take_the_latest_morning() -> None:
    long_night = QuietHours(time(18), time(10))  # 8 open hours a day
    zones = ["America/Los_Angeles", "Asia/Tokyo"]  # 17 hours apart: never open together
    sent = at("2026-12-03 12:00", "Asia/Tokyo")  # open in Tokyo, 19:00 in Los Angeles: quiet
    released = release_at(sent, zones, long_night)
    assert released is not None and released > sent
    opened = {z: local(released, z)[-5:] for z in zones}
    assert "10:00" in opened.values()


def test_empty_window_is_refused() -> None:
    with pytest.raises(ValueError, match="differ"):
        QuietHours(time(8), time(8))


ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Asia/Shanghai",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Pacific/Chatham",
]


@settings(max_examples=300, deadline=None)
@given(
    start=st.integers(0, 23),
    end=st.integers(0, 23),
    when=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31)),
    zones=st.lists(st.sampled_from(ZONES), min_size=1, max_size=3, unique=True),
)
def test_the_release_is_open_everywhere_and_nothing_earlier_is(
    start: int, end: int, when: datetime, zones: list[str]
) -> None:
    if start == end:
        return
    window = QuietHours(time(start), time(end))
    now = when.replace(tzinfo=UTC).timestamp()
    released = release_at(now, zones, window)
    if released is None:
        assert not is_quiet(now, zones, window)
        return
    assert released > now
    if not is_quiet(released, zones, window):
        # Nothing open everywhere before it: checked every 15 minutes back to `now`.
        probe = released - 900
        while probe > now:
            assert is_quiet(probe, zones, window), (local(probe, zones[0]), zones)
            probe -= 900
    assert released - now <= timedelta(days=3).total_seconds()
