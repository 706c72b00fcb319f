"""The pure parts of delivery statistics: time arguments, quantiles from the latency
histogram, summing hours for the status page."""

from __future__ import annotations

import pytest

from gateway.http.stats import parse_time
from gateway.store.base import LATENCY_BUCKETS, StatsRow, latency_bucket
from gateway.telemetry.delivery import summed

NOW = 1_780_000_000.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", NOW - 86_400),
        ("-24h", NOW - 86_400),
        ("30m", NOW - 1800),
        ("7d", NOW - 7 * 86_400),
        ("90s", NOW - 90),
        ("2026-06-01T00:00:00Z", 1_780_272_000.0),
        ("2026-06-01T02:00:00+02:00", 1_780_272_000.0),
    ],
)
def test_parse_time(text: str, expected: float) -> None:
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-06-01T00:00:00", "24x", ""])
def test_parse_time_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text, NOW)


def test_quantiles_interpolate_in_the_bucket() -> None:
    latency = [0] * LATENCY_BUCKETS
    latency[latency_bucket(1.5)] = 10  # (1, 2]
    latency[latency_bucket(100)] = 10  # (60, 120]
    row = StatsRow({}, delivered=20, latency=tuple(latency))
    assert row.latency_p50 == pytest.approx(2.0)
    assert row.latency_p95 == pytest.approx(60 + 60 * 0.9)
    last = [0] * LATENCY_BUCKETS
    last[-1] = 1
    assert StatsRow({}, latency=tuple(last)).latency_p95 == 3600.0  # "over an hour"


def test_summed_keeps_hours_from_since() -> None:
    def row(hour: int, route: str, delivered: int) -> StatsRow:
        return StatsRow(
            {"hour": hour, "route": route, "target": "t"},
            accepted=delivered,
            sent=delivered,
            delivered=delivered,
        )

    rows = [row(0, "a", 1), row(3600, "a", 2), row(7200, "a", 4), row(7200, "b", 8)]
    out = summed(rows, 3600 + 10, ("route", "target"))
    assert [(r.key, r.delivered) for r in out] == [
        ({"route": "a", "target": "t"}, 6),
        ({"route": "b", "target": "t"}, 8),
    ]
    assert out[0].delivery_rate == 1.0 and out[0].pending == 0
