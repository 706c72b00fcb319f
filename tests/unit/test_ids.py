from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.store.ids import EPOCH_MS, MessageIdGenerator, parse_id

T0 = EPOCH_MS / 1000 + 86_400 * 300  # some day in 2025


def test_ids_are_unique_sorted_and_parse_back() -> None:
    gen = MessageIdGenerator(7)
    ids = [gen.next_id(T0 + i / 4000) for i in range(20_000)]  # 4 ids per millisecond
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    when, node, _seq = parse_id(ids[0]) or (0.0, -1, -1)
    assert abs(when - T0) < 0.001
    assert node == 7


def test_clock_going_back_never_repeats() -> None:
    gen = MessageIdGenerator(1)
    first = [gen.next_id(T0 + 10) for _ in range(3)]
    after = [gen.next_id(T0) for _ in range(3)]  # NTP stepped back ten seconds
    assert len(set(first + after)) == 6
    assert first + after == sorted(first + after)


def test_sequence_exhaustion_borrows_the_next_millisecond() -> None:
    gen = MessageIdGenerator(0)
    ids = [gen.next_id(T0) for _ in range(8192 * 2 + 5)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


@given(st.integers(0, 1023), st.integers(0, 1023))
def test_nodes_never_collide(a: int, b: int) -> None:
    assume(a != b)
    ga, gb = MessageIdGenerator(a), MessageIdGenerator(b)
    assert {ga.next_id(T0) for _ in range(50)}.isdisjoint({gb.next_id(T0) for _ in range(50)})


def test_foreign_ids_do_not_parse() -> None:
    assert parse_id("not-an-id-at-all") is None
    assert parse_id("123") is None
