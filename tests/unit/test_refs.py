"""Concatenation reference allocation (gateway.sms.refs)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sms.refs import ReferenceAllocator, ReferencesExhausted


def test_references_rotate_per_destination() -> None:
    a = ReferenceAllocator(seed=0)
    first = a.allocate("A")
    refs = [first] + [a.allocate("A") for _ in range(9)]
    assert refs == [(first + i) % 256 for i in range(10)]
    # Another destination has its own counter: A's sequence is not disturbed by B.
    b0 = a.allocate("B")
    assert a.allocate("A") == (first + 10) % 256
    assert a.allocate("B") == (b0 + 1) % 256
    assert a.in_flight("A") == frozenset((first + i) % 256 for i in range(11))


def test_released_references_come_round_again() -> None:
    a = ReferenceAllocator()
    refs = []
    for _ in range(600):  # more than twice round the 8-bit space
        ref = a.allocate("A")
        refs.append(ref)
        a.release("A", ref)
    assert all(0 <= r <= 255 for r in refs)
    assert all((y - x) % 256 == 1 for x, y in itertools.pairwise(refs))
    assert a.in_flight("A") == frozenset()


def test_new_destinations_start_apart() -> None:
    a = ReferenceAllocator(bits=16, seed=1234)
    starts = [a.allocate(f"dest{i}") for i in range(50)]
    assert len(set(starts)) == 50


def test_seed_moves_the_start() -> None:
    assert ReferenceAllocator(seed=1).allocate("A") != ReferenceAllocator(seed=2).allocate("A")


def test_in_flight_references_are_skipped() -> None:
    a = ReferenceAllocator()
    held = a.allocate("A")
    for _ in range(255 * 3):  # wrap round several times while `held` stays in flight
        ref = a.allocate("A")
        assert ref != held
        a.release("A", ref)
    assert a.in_flight("A") == frozenset({held})


def test_exhaustion_8bit() -> None:
    a = ReferenceAllocator()
    refs = [a.allocate("A") for _ in range(256)]
    assert sorted(refs) == list(range(256))
    with pytest.raises(ReferencesExhausted):
        a.allocate("A")
    assert a.allocate("B") in range(256)  # other destinations are unaffected
    a.release("A", 77)
    assert a.allocate("A") == 77  # the only free one
    with pytest.raises(ReferencesExhausted):
        a.allocate("A")


def test_16bit_mode() -> None:
    a = ReferenceAllocator(bits=16, seed=0xFFF0)
    refs = [a.allocate("A") for _ in range(300)]
    assert len(set(refs)) == 300
    assert all(0 <= r <= 0xFFFF for r in refs)
    assert any(r > 0xFF for r in refs)
    assert all((y - x) % 65536 == 1 for x, y in itertools.pairwise(refs))


def test_16bit_exhaustion() -> None:
    a = ReferenceAllocator(bits=16)
    refs = {a.allocate("A") for _ in range(65536)}
    assert len(refs) == 65536
    with pytest.raises(ReferencesExhausted):
        a.allocate("A")


@pytest.mark.parametrize("bits", [0, 7, 9, 32])
def test_bad_width(bits: int) -> None:
    with pytest.raises(ValueError):
        ReferenceAllocator(bits=bits)


def test_release_of_unknown_is_harmless() -> None:
    a = ReferenceAllocator()
    a.release("nobody", 3)
    ref = a.allocate("A")
    a.release("A", (ref + 1) % 256)
    assert a.in_flight("A") == frozenset({ref})
    assert a.in_flight("nobody") == frozenset()


def test_eviction_forgets_idle_destinations_first() -> None:
    a = ReferenceAllocator(max_destinations=2)
    ra = a.allocate("A")  # in flight
    rb = a.allocate("B")
    a.release("B", rb)
    a.allocate("C")  # over the limit: B (idle) goes, A (in flight) stays
    assert a.in_flight("A") == frozenset({ra})
    a.release("A", ra)
    assert a.in_flight("A") == frozenset()


def test_eviction_keeps_the_new_destination_when_all_others_are_busy() -> None:
    # Every remembered destination has a reference in flight: the allocator may exceed
    # max_destinations, but it must not forget the destination it just handed a reference to.
    a = ReferenceAllocator(max_destinations=1)
    ra = a.allocate("A")
    rb = a.allocate("B")
    assert a.in_flight("A") == frozenset({ra})
    assert a.in_flight("B") == frozenset({rb})
    # ... so B's next reference skips the one in flight and continues B's rotation.
    assert a.allocate("B") == (rb + 1) % 256


@settings(max_examples=100)
@given(
    st.lists(
        st.tuples(st.sampled_from(["alloc", "release"]), st.sampled_from("ABCDE"), st.integers()),
        max_size=300,
    ),
    st.integers(1, 6),
)
def test_allocations_never_collide_with_references_in_flight(
    ops: list[tuple[str, str, int]], max_destinations: int
) -> None:
    # Model: what the caller believes is in flight per destination.
    a = ReferenceAllocator(max_destinations=max_destinations)
    model: dict[str, set[int]] = {}
    for op, dest, pick in ops:
        held = model.setdefault(dest, set())
        if op == "alloc":
            ref = a.allocate(dest)
            assert 0 <= ref <= 255
            assert ref not in held, f"{dest}: {ref} handed out twice"
            held.add(ref)
        elif held:
            ref = sorted(held)[pick % len(held)]
            a.release(dest, ref)
            held.discard(ref)
        assert a.in_flight(dest) == frozenset(held)


def test_rotate_moves_on_and_holds_nothing() -> None:
    a = ReferenceAllocator(seed=0)
    refs = [a.rotate("A") for _ in range(1000)]  # never exhausted, however many
    assert all((y - x) % 256 == 1 for x, y in itertools.pairwise(refs))
    assert a.in_flight("A") == frozenset()


def test_rotate_skips_references_allocate_holds() -> None:
    a = ReferenceAllocator(seed=0)
    held = a.allocate("A")
    assert all(a.rotate("A") != held for _ in range(600))
    assert a.in_flight("A") == frozenset({held})


def test_rotate_with_every_reference_held_still_answers() -> None:
    a = ReferenceAllocator()
    for _ in range(256):
        a.allocate("A")
    assert 0 <= a.rotate("A") <= 255


def test_memory_is_bounded_by_max_destinations_over_200000_destinations() -> None:
    a = ReferenceAllocator(max_destinations=1000)
    for i in range(200_000):
        a.rotate(f"4915{i:09d}")
    assert len(a) == 1000


def test_a_stream_of_new_destinations_keeps_the_busy_ones() -> None:
    # 1,000 destinations with a reference in flight and a stream of new ones: each new one
    # evicts an idle destination; the busy ones are kept (past the limit if need be).
    a = ReferenceAllocator(max_destinations=1000)
    busy = [f"busy{i}" for i in range(1000)]
    held = {name: a.allocate(name) for name in busy}
    for i in range(20_000):
        a.release(f"new{i}", a.allocate(f"new{i}"))
    assert len(a) <= 1001
    assert all(a.in_flight(name) == frozenset({held[name]}) for name in busy)
