from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.server.limits import TokenBucket


def test_rate_and_burst() -> None:
    bucket = TokenBucket(10, burst=5)
    assert [bucket.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert not bucket.take(0.05)  # half a token
    assert bucket.take(0.1)
    assert sum(bucket.take(1.0 + i / 100) for i in range(100)) == pytest.approx(14, abs=1)


def test_clock_going_back_refills_nothing() -> None:
    bucket = TokenBucket(1, burst=1, now=100.0)
    assert bucket.take(100.0)
    assert not bucket.take(50.0)
    assert not bucket.take(100.5)
    assert bucket.take(101.0)


@given(st.floats(0.5, 1000), st.lists(st.floats(0, 10), min_size=1, max_size=200))
def test_never_more_than_rate_times_time_plus_burst(rate: float, gaps: list[float]) -> None:
    bucket = TokenBucket(rate)
    now, taken = 0.0, 0
    for gap in gaps:
        now += gap
        taken += bucket.take(now)
    assert taken <= bucket.burst + rate * now + 1e-6


def test_bad_rate() -> None:
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(0)
