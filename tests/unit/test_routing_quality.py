"""The quality strategy: rates over a rolling window, demotion with hysteresis, probing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.routing.quality import QualityBoard, QualitySettings, Transition
from gateway.routing.table import Target

A, B, C = Target("a"), Target("b"), Target("c")
S = QualitySettings(window=600, min_sample=10, demote_below=0.8, promote_above=0.9, probe_share=0.1)


def feed(board: QualityBoard, target: str, now: float, good: int, bad: int) -> list[Transition]:
    events = []
    for i in range(good + bad):
        event = board.record(target, now, delivered=i < good, latency=1.0)
        if event is not None:
            events.append(event)
    return events


def test_the_better_target_leads_and_a_new_one_is_given_a_chance() -> None:
    board = QualityBoard(S)
    feed(board, "a", 0, good=9, bad=11)  # 45 %: demoted
    feed(board, "b", 0, good=19, bad=1)  # 95 %
    assert board.order([A, B, C], 0, pick=1) == (C, B, A)  # c unmeasured counts as good
    assert board.rate("a", 0) == pytest.approx(0.45) and board.demoted("a")


def test_demotion_and_promotion_have_hysteresis() -> None:
    board = QualityBoard(S)
    assert feed(board, "a", 0, good=8, bad=2) == []  # 80 %: not below the threshold
    events = feed(board, "a", 0, good=0, bad=1)  # 8/11 = 73 %
    assert events == [Transition("a", demoted=True, rate=pytest.approx(8 / 11))]
    assert feed(board, "a", 0, good=9, bad=0) == []  # 17/20 = 85 %: not yet back
    events = feed(board, "a", 0, good=10, bad=0)
    assert events and not events[0].demoted  # 27/30 = 90 %


def test_old_outcomes_leave_the_window() -> None:
    board = QualityBoard(S)
    feed(board, "a", 0, good=0, bad=20)
    assert board.rate("a", 0) == 0.0
    assert board.rate("a", 601 + 60) is None  # the bad minute is gone: not enough outcomes
    feed(board, "a", 700, good=20, bad=0)
    assert not board.demoted("a") and board.rate("a", 700) == 1.0


def test_a_demoted_target_is_probed_with_its_share() -> None:
    board = QualityBoard(S)
    feed(board, "a", 0, good=0, bad=20)
    feed(board, "b", 0, good=20, bad=0)
    leaders = [board.order([A, B], 0, pick)[0].name for pick in range(100)]
    assert leaders.count("a") == 10  # probe_share 0.1


def test_latency_breaks_ties() -> None:
    board = QualityBoard(S)
    for _ in range(20):
        board.record("a", 0, delivered=True, latency=5.0)
        board.record("b", 0, delivered=True, latency=1.0)
    assert board.order([A, B], 0, pick=1) == (B, A)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        QualitySettings(demote_below=0.9, promote_above=0.8)


@given(st.lists(st.tuples(st.sampled_from("abc"), st.booleans()), max_size=300), st.integers(0, 99))
def test_every_target_is_ordered_once(outcomes: list[tuple[str, bool]], pick: int) -> None:
    board = QualityBoard(S)
    for name, ok in outcomes:
        board.record(name, 0, delivered=ok)
    order = board.order([A, B, C], 0, pick)
    assert sorted(t.name for t in order) == ["a", "b", "c"]
