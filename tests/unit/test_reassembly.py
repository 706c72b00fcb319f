"""Reassembly of concatenated messages (gateway.sms.reassembly). The clock is passed in."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sms.coding import Encoding, decode_text
from gateway.sms.reassembly import Reassembled, Reassembler
from gateway.sms.segment import segment


def add(
    r: Reassembler[str],
    seq: int,
    total: int,
    body: bytes,
    *,
    now: float = 0.0,
    sender: str = "4915112345678",
    recipient: str = "4930901820",
    ref: int = 42,
    ref_bits: int = 8,
    meta: str = "meta",
) -> list[Reassembled[str]]:
    return r.add(
        sender=sender,
        recipient=recipient,
        ref=ref,
        total=total,
        seq=seq,
        body=body,
        meta=meta,
        now=now,
        ref_bits=ref_bits,
    )


@settings(max_examples=200)
@given(
    st.lists(st.binary(min_size=1, max_size=8), min_size=1, max_size=12).flatmap(
        lambda bodies: st.tuples(st.just(bodies), st.permutations(list(enumerate(bodies, start=1))))
    )
)
def test_parts_in_any_order_give_the_whole(
    args: tuple[list[bytes], list[tuple[int, bytes]]],
) -> None:
    bodies, order = args
    r: Reassembler[str] = Reassembler(timeout=60)
    done: list[Reassembled[str]] = []
    for step, (seq, body) in enumerate(order):
        out = add(r, seq, len(bodies), body, now=float(step), meta=f"first={seq}")
        if step < len(order) - 1:
            assert out == []
        done.extend(out)
    assert len(done) == 1
    msg = done[0]
    assert msg.bodies == tuple(bodies)
    assert msg.body() == b"".join(bodies)
    assert not msg.partial
    assert msg.missing == ()
    assert (msg.sender, msg.recipient, msg.ref, msg.total) == (
        "4915112345678",
        "4930901820",
        42,
        len(bodies),
    )
    assert msg.meta == f"first={order[0][0]}"  # meta of the first part that arrived
    assert msg.first_seen == 0.0
    assert len(r) == 0
    assert r.next_deadline() is None


@settings(max_examples=50)
@given(
    st.text(min_size=200, max_size=700).flatmap(
        lambda text: st.tuples(st.just(text), st.randoms(use_true_random=False))
    )
)
def test_segmented_text_comes_back(args: tuple[str, random.Random]) -> None:
    text, rnd = args
    seg = segment(text, ref=77)
    parts = list(enumerate(seg.bodies, start=1))
    rnd.shuffle(parts)
    r: Reassembler[Encoding] = Reassembler()
    done = []
    for seq, body in parts:
        done += r.add(
            sender="a",
            recipient="b",
            ref=77,
            total=seg.total,
            seq=seq,
            body=body,
            meta=seg.encoding,
            now=0.0,
        )
    assert len(done) == 1
    assert decode_text(done[0].body(), done[0].meta, seg.alphabet) == text


def test_single_part_message_comes_straight_out() -> None:
    r: Reassembler[str] = Reassembler()
    (msg,) = add(r, 1, 1, b"hello", now=5.0)
    assert msg.bodies == (b"hello",)
    assert msg.total == 1 and not msg.partial
    assert len(r) == 0 and r.next_deadline() is None


def test_duplicates_are_ignored_first_copy_wins() -> None:
    r: Reassembler[str] = Reassembler()
    assert add(r, 1, 3, b"one") == []
    assert add(r, 1, 3, b"ONE-RETRANSMITTED") == []  # does not count as part 2
    assert add(r, 2, 3, b"two") == []
    assert add(r, 2, 3, b"two") == []
    (msg,) = add(r, 3, 3, b"three")
    assert msg.bodies == (b"one", b"two", b"three")
    # A late duplicate after completion starts nothing that completes by itself.
    assert add(r, 3, 3, b"three", now=1.0) == []
    assert len(r) == 1


def test_same_reference_from_two_senders_kept_apart() -> None:
    r: Reassembler[str] = Reassembler()
    assert add(r, 1, 2, b"A1", sender="111") == []
    assert add(r, 1, 2, b"B1", sender="222") == []
    assert add(r, 2, 2, b"C2", sender="111", recipient="other") == []  # other recipient
    assert add(r, 2, 2, b"D2", sender="111", ref_bits=16) == []  # 16-bit reference 42
    assert add(r, 2, 3, b"E2", sender="111") == []  # same ref, another total
    assert len(r) == 5
    (a,) = add(r, 2, 2, b"A2", sender="111")
    (b,) = add(r, 2, 2, b"B2", sender="222")
    assert (a.sender, a.body()) == ("111", b"A1A2")
    assert (b.sender, b.body()) == ("222", b"B1B2")
    assert len(r) == 3


def test_timeout_releases_partial_with_missing_parts() -> None:
    r: Reassembler[str] = Reassembler(timeout=30)
    add(r, 2, 4, b"two", now=100.0)
    add(r, 4, 4, b"four", now=110.0)
    assert r.next_deadline() == 130.0
    assert r.expire(129.999) == []
    (msg,) = r.expire(130.0)
    assert msg.partial
    assert msg.missing == (1, 3)
    assert msg.bodies == (None, b"two", None, b"four")
    assert msg.body() == b"twofour"
    assert msg.first_seen == 100.0
    assert len(r) == 0
    assert r.next_deadline() is None
    assert r.expire(1e9) == []
    # A late part after the release starts a new message rather than resurrecting the old one.
    assert add(r, 1, 4, b"one", now=131.0) == []
    assert r.next_deadline() == 161.0


def test_next_deadline_follows_the_oldest_pending_message() -> None:
    r: Reassembler[str] = Reassembler(timeout=10)
    assert r.next_deadline() is None
    add(r, 1, 2, b"x", ref=1, now=0.0)
    add(r, 1, 2, b"x", ref=2, now=3.0)
    add(r, 1, 2, b"x", ref=3, now=7.0)
    assert r.next_deadline() == 10.0
    add(r, 2, 2, b"y", ref=1, now=8.0)  # completes the oldest
    assert r.next_deadline() == 13.0
    released = r.expire(14.0)
    assert [m.ref for m in released] == [2]
    assert r.next_deadline() == 17.0
    add(r, 2, 2, b"y", ref=3, now=15.0)
    assert r.next_deadline() is None


def test_expire_releases_everything_due_in_deadline_order() -> None:
    r: Reassembler[str] = Reassembler(timeout=5)
    for i in range(10):
        add(r, 1, 2, b"x", ref=i, now=float(9 - i))
    released = r.expire(100.0)
    assert [m.ref for m in released] == list(range(9, -1, -1))
    assert all(m.missing == (2,) for m in released)
    assert len(r) == 0


def test_max_pending_releases_the_oldest() -> None:
    r: Reassembler[str] = Reassembler(timeout=300, max_pending=3)
    for i in range(3):
        assert add(r, 1, 2, b"x", ref=i, now=float(i)) == []
    assert len(r) == 3
    out = add(r, 1, 2, b"x", ref=3, now=3.0)
    assert [(m.ref, m.missing) for m in out] == [(0, (2,))]
    assert len(r) == 3
    # The part that completes a message still held is not disturbed by the cap.
    (done,) = add(r, 2, 2, b"y", ref=2, now=4.0)
    assert done.ref == 2 and not done.partial
    # A part for an existing message does not push anything out.
    assert add(r, 2, 3, b"z", ref=1, now=5.0) == []
    assert len(r) == 3
    out = add(r, 1, 2, b"x", ref=9, now=6.0)
    assert [m.ref for m in out] == [1]


@settings(max_examples=100)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(1, 3)), max_size=60))
def test_max_pending_is_never_exceeded(adds: list[tuple[int, int]]) -> None:
    r: Reassembler[str] = Reassembler(timeout=1000, max_pending=4)
    for now, (ref, seq) in enumerate(adds):
        add(r, seq, 3, b"x", ref=ref, now=float(now))
        assert len(r) <= 4


@pytest.mark.parametrize(("seq", "total"), [(0, 2), (3, 2), (-1, 2), (1, 0)])
def test_part_number_out_of_range(seq: int, total: int) -> None:
    r: Reassembler[str] = Reassembler()
    with pytest.raises(ValueError):
        add(r, seq, total, b"x")
    assert len(r) == 0


def test_surrogate_pair_split_by_sender_decodes_after_joining() -> None:
    # "A😀B" in UTF-16BE is 0041 D83D DE00 0042; a careless sender cuts between the halves.
    r: Reassembler[str] = Reassembler()
    assert add(r, 1, 2, bytes.fromhex("0041D83D")) == []
    (msg,) = add(r, 2, 2, bytes.fromhex("DE000042"))
    assert decode_text(msg.body(), Encoding.UCS2) == "A\U0001f600B"


def test_escape_pair_split_by_sender_decodes_after_joining() -> None:
    # "5€" as septets 35 1B 65, cut after the escape.
    r: Reassembler[str] = Reassembler()
    add(r, 1, 2, b"5\x1b")
    (msg,) = add(r, 2, 2, b"\x65!")
    assert decode_text(msg.body(), Encoding.GSM7) == "5\u20ac!"
