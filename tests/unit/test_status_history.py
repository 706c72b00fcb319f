"""The status page's pure data: throughput history, rates, delivery rates, and the totals
read back from the metrics counters."""

from __future__ import annotations

import pytest

from gateway.telemetry.history import History, Rates, Totals, delivery_rates
from gateway.telemetry.metrics import Metrics
from gateway.telemetry.sources import totals


def test_history_keeps_differences_of_the_last_points() -> None:
    h = History(points=3, interval=10.0)
    h.record(0.0, Totals(5, 4, 3))  # the baseline: no point yet
    assert h.series() == {"interval": 10.0, "points": []}
    h.record(10.0, Totals(7, 4, 4))
    h.record(20.0, Totals(7, 6, 4))
    assert h.series()["points"] == [[10.0, 2, 0, 1], [20.0, 0, 2, 0]]
    h.record(30.0, Totals(8, 6, 4))
    h.record(40.0, Totals(9, 6, 4))
    assert [p[0] for p in h.series()["points"]] == [20.0, 30.0, 40.0]  # 3 kept


def test_history_never_draws_a_negative_point() -> None:
    h = History()
    h.record(0.0, Totals(10, 10, 10))
    h.record(10.0, Totals(1, 0, 0))  # counters rebuilt
    assert h.series()["points"] == [[10.0, 0.0, 0.0, 0.0]]


def test_rates_span_at_least_min_span() -> None:
    r = Rates(min_span=1.0)
    assert r.rate("a", 0, 100.0) == 0.0
    assert r.rate("a", 5, 100.5) == 0.0  # too soon: the last rate (none yet)
    assert r.rate("a", 10, 102.0) == pytest.approx(5.0)  # 10 over 2 s
    assert r.rate("a", 11, 102.2) == pytest.approx(5.0)  # too soon: still the last one
    assert r.rate("a", 11, 104.0) == pytest.approx(0.5)  # 1 over 2 s
    assert r.rate("a", 0, 106.0) == 0.0  # a reset counter is not a negative rate
    assert r.rate("b", 3, 106.0) == 0.0  # keys are apart


def test_rates_forget_keys_gone() -> None:
    r = Rates()
    r.rate("a", 1, 0.0)
    r.rate("b", 1, 0.0)
    r.forget({"a"})
    r.rate("a", 3, 2.0)
    assert r.rate("b", 7, 2.0) == 0.0  # b starts over


def test_delivery_rates_per_route_and_target() -> None:
    rows = delivery_rates(
        {
            ("sent", "otp", "bank:b"): 10,
            ("delivered", "otp", "bank:b"): 6,
            ("failed", "otp", "bank:b"): 1,
            ("expired", "otp", "bank:b"): 1,
            ("sent", "otp", "carrier"): 2,
            ("sent", "all", "carrier"): 3,
            ("delivered", "all", "carrier"): 3,
        }
    )
    assert rows == [
        {"route": "all", "target": "carrier", "sent": 3, "delivered": 3, "failed": 0,
         "expired": 0, "rate": 1.0},
        {"route": "otp", "target": "bank:b", "sent": 10, "delivered": 6, "failed": 1,
         "expired": 1, "rate": 0.75},
        {"route": "otp", "target": "carrier", "sent": 2, "delivered": 0, "failed": 0,
         "expired": 0, "rate": None},  # nothing ended yet: no rate, not 0 %
    ]  # fmt: skip


def test_totals_read_back_from_the_counters() -> None:
    m = Metrics()
    assert totals(m) == Totals(0, 0, 0)
    m.accept("shop", 3)
    m.accept("other")
    for outcome in ("sent", "sent", "delivered", "failed"):
        m.ended(outcome, "all", "carrier")
    m.ended("sent", "otp", "bank:b")
    assert totals(m) == Totals(4, 3, 1)
    assert m.outcome_counts()[("sent", "all", "carrier")] == 2
