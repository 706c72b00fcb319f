"""The `Store` contract (gateway/store/base.py), run against every backend by the `db` fixture.

Each test is a sync function whose coroutine `body(store)` runs on the fixture's loop.
"""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.smpp.receipt import canonical_ids
from gateway.store.base import (
    DELIVERY_LEASE,
    IncomingReceipt,
    MessageState,
    NewDelivery,
    NewMessage,
    QueueDepths,
    ReceiptRecord,
    Settlement,
    Usage,
    usage_windows,
)
from tests.store import T0, msg
from tests.store.conftest import AnyStore, Db

# -- accept and get -------------------------------------------------------------------------------


def test_accept_get_and_history(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        await store.accept(msg(1, tlvs=b"\x14\x01\x00\x01x"))
        record = await store.get("m0001")
        assert record is not None
        assert record.message == msg(1, tlvs=b"\x14\x01\x00\x01x")
        assert record.state is MessageState.ACCEPTED
        assert record.updated_at == T0 + 1
        assert record.attempts == 0
        assert record.error is None
        assert await store.get("nope") is None
        assert await store.set_state("m0001", MessageState.SENT, T0 + 5)
        assert not await store.set_state("nope", MessageState.SENT, T0 + 5)
        assert await store.history("m0001") == [
            (T0 + 1, MessageState.ACCEPTED),
            (T0 + 5, MessageState.SENT),
        ]
        assert await store.history("nope") == []

    db.run(body)


def test_every_field_round_trips(db: Db) -> None:
    full = NewMessage(
        id="0123456789abcdef",
        account="bank",
        source_addr="BANK",
        destination_addr="+4915112345678",
        short_message=bytes(range(256)),
        data_coding=8,
        esm_class=0x40,
        registered_delivery=0x11,
        source_addr_ton=5,
        source_addr_npi=0,
        dest_addr_ton=1,
        dest_addr_npi=1,
        service_type="CMT",
        protocol_id=0x7F,
        priority_flag=3,
        tlvs=b"\x04\x24\x00\x03abc\x02\x04\x00\x02\x00\x07",
        route="carrier-a",
        schedule_at=T0 + 60.125,
        expires_at=T0 + 86_400.5,
        accepted_at=T0 + 0.001,
    )
    bare = NewMessage(id="bare", account="", source_addr="", destination_addr="", short_message=b"")

    async def body(store: AnyStore) -> None:
        await store.accept(full)
        await store.accept(bare)
        got_full, got_bare = await store.get(full.id), await store.get(bare.id)
        assert got_full is not None
        assert got_full.message == full
        assert got_bare is not None
        assert got_bare.message == bare
        assert got_bare.message.schedule_at is None
        assert got_bare.message.expires_at is None
        assert got_bare.updated_at == 0.0

    db.run(body)


_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
_INT32 = st.integers(-(2**31), 2**31 - 1)
_FLOAT = st.floats(allow_nan=False)  # NaN is no point in time (and SQLite stores it as NULL)
_MESSAGES = st.builds(
    NewMessage,
    id=_TEXT,
    account=_TEXT,
    source_addr=_TEXT,
    destination_addr=_TEXT,
    short_message=st.binary(max_size=300),
    data_coding=_INT32,
    esm_class=_INT32,
    registered_delivery=_INT32,
    source_addr_ton=_INT32,
    source_addr_npi=_INT32,
    dest_addr_ton=_INT32,
    dest_addr_npi=_INT32,
    service_type=_TEXT,
    protocol_id=_INT32,
    priority_flag=_INT32,
    tlvs=st.binary(max_size=100),
    route=_TEXT,
    schedule_at=st.none() | _FLOAT,
    expires_at=st.none() | _FLOAT,
    accepted_at=_FLOAT,
    msg_class=_TEXT,
    campaign=_TEXT,
)


def test_any_message_round_trips(db: Db) -> None:
    """Any value a field's SQL type holds (text without NUL, 32-bit ints, non-NaN floats)."""
    serial = itertools.count()

    @settings(max_examples=60)
    @given(message=_MESSAGES)
    def check(message: NewMessage) -> None:
        unique = message._replace(id=f"{next(serial)}:{message.id}")

        async def body(store: AnyStore) -> None:
            await store.accept(unique)
            record = await store.get(unique.id)
            assert record is not None
            assert record.message == unique
            assert record.updated_at == unique.accepted_at

        db.run(body)

    check()


def test_concurrent_accepts_are_group_committed(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        before = store.commits
        await asyncio.gather(*(store.accept(msg(i)) for i in range(500)))
        assert store.commits - before < 100  # many messages per transaction
        due = await store.claim_due(T0 + 1000, limit=1000)
        assert len(due) == 500

    db.run(body)


def test_a_lone_accept_commits_on_its_own(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        before = store.commits
        await store.accept(msg(1))
        assert store.commits == before + 1
        assert await store.get("m0001") is not None

    db.run(body)


def test_a_thousand_concurrent_accepts_are_all_stored(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        messages = [msg(i, short_message=bytes([i % 256]) * (i % 160)) for i in range(1000)]
        await asyncio.gather(*(store.accept(m) for m in messages))
        stored = await asyncio.gather(*(store.get(m.id) for m in messages))
        assert [r.message if r else None for r in stored] == messages

    db.run(body)


def test_a_failing_write_does_not_undo_its_neighbours(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        results = await asyncio.gather(
            store.accept(msg(1)), store.accept(msg(1)), store.accept(msg(2)), return_exceptions=True
        )
        assert results[0] is None
        assert isinstance(results[1], db.integrity_error)  # the same id twice
        assert results[2] is None
        assert await store.get("m0002") is not None
        assert await store.history("m0001") == [(T0 + 1, MessageState.ACCEPTED)]

    db.run(body)


def test_one_duplicate_in_a_big_batch_fails_alone(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        await store.accept(msg(500))
        batch = [msg(i) for i in range(1000)]  # m0500 is already there
        results = await asyncio.gather(*(store.accept(m) for m in batch), return_exceptions=True)
        failed = [m.id for m, r in zip(batch, results, strict=True) if r is not None]
        assert failed == ["m0500"]
        assert isinstance(results[500], db.integrity_error)
        assert len(await store.claim_due(T0 + 2000, limit=2000)) == 1000

    db.run(body)


def test_close_writes_the_accepts_already_queued(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        tasks = [asyncio.create_task(store.accept(msg(i))) for i in range(50)]
        await asyncio.sleep(0)  # every task has queued its message
        await store.close()
        assert await asyncio.gather(*tasks) == [None] * 50
        reopened = await db.open_store()
        assert len(await reopened.claim_due(T0 + 100, limit=100)) == 50

    db.run(body)


def test_store_must_be_open(db: Db) -> None:
    async def body(_store: AnyStore) -> None:
        unopened = db.make(0)
        with pytest.raises(RuntimeError, match="not open"):
            await unopened.get("m")
        with pytest.raises(RuntimeError, match="not open"):
            await unopened.accept(msg(1))

    db.run(body)


def test_accepted_messages_survive_a_reopen(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        for i in range(10):
            await store.accept(msg(i))
        reopened = await db.reopen()
        due = await reopened.claim_due(T0 + 100, limit=100)
        assert [r.message.id for r in due] == [f"m{i:04d}" for i in range(10)]

    db.run(body)


def test_migrations_are_idempotent(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        await store.accept(msg(1))
        await store.link_upstream_id("up", ("k",), "m0001")
        await store.enqueue_delivery("shop", "mo", b"pdu", T0, ttl=60)
        for _ in range(3):  # each open applies nothing twice and keeps every row
            store = await db.reopen()
        assert await store.get("m0001") is not None
        assert await store.find_part("up", ("k",)) == ("m0001", 0)
        assert [d.pdu for d in await store.pending_deliveries("shop", T0, limit=5)] == [b"pdu"]

    db.run(body)


# -- state, history and retries -------------------------------------------------------------------


def test_history_keeps_the_order_of_the_changes(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        await store.accept(msg(1))
        await store.claim_due(T0 + 2, limit=1)
        await store.set_state("m0001", MessageState.SENT, T0 + 3)
        await store.set_state("m0001", MessageState.DELIVERED, T0 + 1.5)  # a clock step back
        assert await store.history("m0001") == [
            (T0 + 1, MessageState.ACCEPTED),
            (T0 + 2, MessageState.DISPATCHING),
            (T0 + 3, MessageState.SENT),
            (T0 + 1.5, MessageState.DELIVERED),
        ]
        record = await store.get("m0001")
        assert record is not None
        assert (record.state, record.updated_at) == (MessageState.DELIVERED, T0 + 1.5)

    db.run(body)


def test_set_state_error_and_retry_at(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        await store.accept(msg(1))
        [claimed] = await store.claim_due(T0 + 10, limit=5)
        assert claimed.attempts == 1
        assert await store.set_state(
            "m0001", MessageState.ACCEPTED, T0 + 11, error=0x58, retry_at=T0 + 100
        )
        record = await store.get("m0001")
        assert record is not None
        assert (record.state, record.error, record.attempts) == (MessageState.ACCEPTED, 0x58, 1)
        assert record.message.schedule_at == T0 + 100
        assert await store.claim_due(T0 + 99.9, limit=5) == []  # backing off
        [again] = await store.claim_due(T0 + 100, limit=5)
        assert (again.message.id, again.state, again.attempts) == (
            "m0001",
            MessageState.DISPATCHING,
            2,
        )
        # a later change without an error keeps the last one; an unsigned 32-bit status fits
        assert await store.set_state("m0001", MessageState.SENT, T0 + 101)
        record = await store.get("m0001")
        assert record is not None
        assert (record.state, record.error) == (MessageState.SENT, 0x58)
        assert await store.set_state("m0001", MessageState.FAILED, T0 + 102, error=0xFFFFFFFF)
        record = await store.get("m0001")
        assert record is not None
        assert (record.state, record.error, record.attempts) == (MessageState.FAILED, 0xFFFFFFFF, 2)

    db.run(body)


def test_set_state_dispatching_counts_an_attempt(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        await store.accept(msg(1))
        assert await store.set_state("m0001", MessageState.DISPATCHING, T0 + 2)
        assert await store.set_state("m0001", MessageState.ACCEPTED, T0 + 3)
        assert await store.set_state("m0001", MessageState.DISPATCHING, T0 + 4)
        record = await store.get("m0001")
        assert record is not None
        assert (record.state, record.attempts) == (MessageState.DISPATCHING, 2)
        # no target was usable: back to waiting, and the claim does not count
        assert await store.set_state("m0001", MessageState.ACCEPTED, T0 + 5, tried=False)
        record = await store.get("m0001")
        assert record is not None
        assert (record.state, record.attempts) == (MessageState.ACCEPTED, 1)
        assert (await store.history("m0001"))[-1] == (T0 + 5, MessageState.ACCEPTED)
        [claimed] = await store.claim_due(T0 + 6, limit=1)
        assert claimed.attempts == 2

    db.run(body)


# -- claims ---------------------------------------------------------------------------------------


def test_claim_due_respects_schedule_and_claims_once(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        await store.accept(msg(1))
        await store.accept(msg(2, schedule_at=T0 + 3600))
        first = await store.claim_due(T0 + 10, limit=10)
        assert [r.message.id for r in first] == ["m0001"]
        assert first[0].state is MessageState.DISPATCHING
        assert first[0].attempts == 1
        assert first[0].updated_at == T0 + 10
        assert first[0].message == msg(1)
        assert await store.claim_due(T0 + 10, limit=10) == []
        assert await store.claim_due(T0 + 3599.5, limit=10) == []
        later = await store.claim_due(T0 + 3600, limit=10)
        assert [r.message.id for r in later] == ["m0002"]
        stored = await store.get("m0001")
        assert stored is not None
        assert (stored.state, stored.attempts) == (MessageState.DISPATCHING, 1)
        assert (await store.history("m0001"))[-1] == (T0 + 10, MessageState.DISPATCHING)

    db.run(body)


def test_claim_due_oldest_first_within_the_limit(db: Db) -> None:
    order = list(range(20))
    random.Random(7).shuffle(order)

    async def body(store: AnyStore) -> None:
        for i in order:  # stored out of order: accepted_at decides
            await store.accept(msg(i))
        await store.set_state("m0003", MessageState.SENT, T0 + 50)  # not waiting any more
        first = await store.claim_due(T0 + 100, limit=5)
        assert [r.message.id for r in first] == ["m0000", "m0001", "m0002", "m0004", "m0005"]
        rest = await store.claim_due(T0 + 100, limit=100)
        assert [r.message.id for r in rest] == [f"m{i:04d}" for i in range(6, 20)]
        assert await store.claim_due(T0 + 100, limit=0) == []

    db.run(body)


def test_two_nodes_never_claim_the_same_message(db: Db) -> None:
    rounds, per_round = 15, 60

    async def drain(store: AnyStore, now: float, out: list[str]) -> None:
        for _ in range(per_round + 1):  # each claim that finds work takes at least one
            got = await store.claim_due(now, limit=3)
            if not got:
                return
            out.extend(r.message.id for r in got)
        raise AssertionError("claims never ran dry")

    async def body(store: AnyStore) -> None:
        one, two = await db.open_store(node=1), await db.open_store(node=2)
        totals = [0, 0]
        for n in range(rounds):
            batch = [msg(n * per_round + i) for i in range(per_round)]
            await asyncio.gather(*(store.accept(m) for m in batch))
            now = T0 + (n + 1) * per_round
            got_one: list[str] = []
            got_two: list[str] = []
            await asyncio.gather(drain(one, now, got_one), drain(two, now, got_two))
            assert not set(got_one) & set(got_two)
            assert sorted(got_one + got_two) == sorted(m.id for m in batch)
            totals[0] += len(got_one)
            totals[1] += len(got_two)
        assert all(totals), totals  # both really competed
        records = await asyncio.gather(*(store.get(f"m{i:04d}") for i in range(rounds * per_round)))
        assert all(records)
        assert {(r.state, r.attempts) for r in records if r} == {(MessageState.DISPATCHING, 1)}

    db.run(body)


def test_requeue_interrupted_takes_back_only_this_nodes_claims(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        one, two = await db.open_store(node=1), await db.open_store(node=2)
        for i in range(5):
            await store.accept(msg(i))
        assert [r.message.id for r in await one.claim_due(T0 + 10, limit=2)] == ["m0000", "m0001"]
        assert [r.message.id for r in await two.claim_due(T0 + 10, limit=2)] == ["m0002", "m0003"]
        await store.set_state("m0004", MessageState.DISPATCHING, T0 + 10)  # claimed by nobody
        assert await one.requeue_interrupted(T0 + 20) == 3  # its own two and the unowned one
        states = {m: (await store.get(m)) for m in ("m0000", "m0001", "m0002", "m0003", "m0004")}
        assert {m: r.state for m, r in states.items() if r} == {
            "m0000": MessageState.ACCEPTED,
            "m0001": MessageState.ACCEPTED,
            "m0002": MessageState.DISPATCHING,
            "m0003": MessageState.DISPATCHING,
            "m0004": MessageState.ACCEPTED,
        }
        assert (await store.history("m0000"))[-1] == (T0 + 20, MessageState.ACCEPTED)
        assert await one.requeue_interrupted(T0 + 21) == 0
        assert await two.requeue_interrupted(T0 + 22) == 2
        again = await store.claim_due(T0 + 30, limit=10)
        assert [r.message.id for r in again] == [f"m{i:04d}" for i in range(5)]
        assert [r.attempts for r in again] == [2, 2, 2, 2, 2]

    db.run(body)


def test_interrupted_dispatch_is_requeued(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        await store.accept(msg(1))
        await store.accept(msg(2))
        await store.claim_due(T0 + 10, limit=1)  # m0001 claimed, then the process "dies"
        assert await store.requeue_interrupted(T0 + 20) == 1
        again = await store.claim_due(T0 + 30, limit=10)
        assert [r.message.id for r in again] == ["m0001", "m0002"]

    db.run(body)


# -- upstream ids, parts and receipts -------------------------------------------------------------


def test_upstream_ids_match_whatever_the_spelling(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        await store.accept(msg(1))
        await store.link_upstream_id("carrier-a", canonical_ids("0A1B2C"), "m0001")
        assert await store.find_by_upstream_id("carrier-a", canonical_ids("662316")) == "m0001"
        assert await store.find_by_upstream_id("carrier-a", canonical_ids("0a1b2c")) == "m0001"
        assert await store.find_by_upstream_id("carrier-b", canonical_ids("0A1B2C")) is None

    db.run(body)


def test_find_part_first_key_wins_then_the_latest_link(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        for i in (1, 2, 3):
            await store.accept(msg(i))
        await store.link_upstream_id("up", ("A", "B"), "m0001", part=0)
        await store.link_upstream_id("up", ("B",), "m0002", part=1)  # B reused later
        await store.link_upstream_id("up", ("C", "C"), "m0003", part=2)  # a repeated key
        assert await store.find_part("up", ("B",)) == ("m0002", 1)  # the latest link
        assert await store.find_part("up", ("A", "B")) == ("m0001", 0)  # the first key
        assert await store.find_part("up", ("B", "A")) == ("m0002", 1)
        assert await store.find_part("up", ("X", "C", "A")) == ("m0003", 2)
        assert await store.find_part("up", ("X",)) is None
        assert await store.find_part("up", ()) is None
        assert await store.find_part("other", ("A",)) is None
        assert await store.find_by_upstream_id("up", ("B", "A")) == "m0002"
        assert await store.find_by_upstream_id("up", ("X",)) is None
        await store.link_upstream_id("up", ("A",), "m0001", part=0)  # linked again: no-op
        assert await store.find_part("up", ("A",)) == ("m0001", 0)

    db.run(body)


def test_parts_and_per_part_receipts(db: Db) -> None:
    def receipt(part: int, state: int, at: float, error: int = 0) -> ReceiptRecord:
        return ReceiptRecord("m0001", part, "up", f"u{part}", state, error, at)

    async def body(store: AnyStore) -> None:
        await store.accept(msg(1))
        await store.accept(msg(2))
        await store.set_parts("m0001", 3)
        first = receipt(1, 2, T0 + 5)
        assert await store.add_receipt(first) == [None, 2, None]
        assert await store.add_receipt(receipt(0, 5, T0 + 6, error=0x0B)) == [5, 2, None]
        assert await store.add_receipt(receipt(1, 8, T0 + 4)) == [5, 8, None]  # latest, not newest
        assert await store.add_receipt(receipt(7, 2, T0 + 7)) == [5, 8, None]  # no such part
        assert await store.add_receipt(receipt(2, 2, T0 + 8)) == [5, 8, 2]
        assert await store.receipts("m0001") == [
            first,
            receipt(0, 5, T0 + 6, error=0x0B),
            receipt(1, 8, T0 + 4),
            receipt(7, 2, T0 + 7),
            receipt(2, 2, T0 + 8),
        ]
        one = ReceiptRecord("m0002", 0, "up", "x", 2, 0, T0 + 9)  # parts never set: one
        assert await store.add_receipt(one) == [2]
        assert await store.receipts("m0002") == [one]
        assert await store.receipts("nope") == []
        with pytest.raises(db.integrity_error):  # a receipt belongs to a stored message
            await store.add_receipt(ReceiptRecord("nope", 0, "up", "y", 2, 0, T0))

    db.run(body)


def test_upstream_ids_of_a_message_by_part(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        await store.accept(msg(1))
        await store.accept(msg(2))
        await store.link_upstream_id("up", ("s:ab12", "n:43794"), "m0001", part=1)
        await store.link_upstream_id("up", ("s:7f",), "m0001", part=0)
        await store.link_upstream_id("other", ("s:x9",), "m0002")
        assert await store.upstream_ids("m0001") == [(0, "up", "s:7f"), (1, "up", "s:ab12")]
        assert await store.upstream_ids("m0002") == [(0, "other", "s:x9")]
        assert await store.upstream_ids("nope") == []

    db.run(body)


# -- deliveries -----------------------------------------------------------------------------------


def test_delivery_queue(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        a = await store.enqueue_delivery("shop", "receipt", b"pdu-a", T0, ttl=60)
        b = await store.enqueue_delivery("shop", "mo", b"pdu-b", T0 + 1, ttl=60)
        await store.enqueue_delivery("other", "mo", b"pdu-c", T0, ttl=60)
        pending = await store.pending_deliveries("shop", T0 + 2, limit=10)
        assert [(d.id, d.pdu, d.attempts) for d in pending] == [(a, b"pdu-a", 0), (b, b"pdu-b", 0)]
        await store.delivery_done(a)
        again = await store.pending_deliveries("shop", T0 + 3, limit=10)
        assert [(d.id, d.attempts) for d in again] == [(b, 1)]
        assert await store.pending_deliveries("shop", T0 + 120, limit=10) == []  # expired

    db.run(body)


def test_deliveries_done_removes_a_read_of_answers_at_once(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        ids = [
            await store.enqueue_delivery("shop", "receipt", bytes([n]), T0, 60) for n in range(5)
        ]
        other = await store.enqueue_delivery("other", "mo", b"x", T0, ttl=60)
        await store.deliveries_done([])  # nothing answered: nothing happens
        await store.deliveries_done([ids[0], ids[3], ids[1]])
        await store.deliveries_done([ids[3], 10**12])  # done twice, or unknown: ignored
        left = await store.pending_deliveries("shop", T0 + 1, limit=10)
        assert [d.id for d in left] == [ids[2], ids[4]]
        assert [d.id for d in await store.pending_deliveries("other", T0 + 1, limit=10)] == [other]

    db.run(body)


def test_deliveries_order_limit_expiry_and_attempts(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        ids = [
            await store.enqueue_delivery("shop", kind, bytes([n]) * 3, T0 + n, ttl=10 * (n + 1))
            for n, kind in enumerate(["receipt", "mo", "receipt", "mo"])
        ]
        assert ids == sorted(set(ids))  # ids grow
        first = await store.pending_deliveries("shop", T0 + 5, limit=2)
        assert first[0].account == "shop"
        assert [(d.id, d.kind, d.pdu, d.created_at, d.expires_at, d.attempts) for d in first] == [
            (ids[0], "receipt", b"\x00" * 3, T0, T0 + 10, 0),
            (ids[1], "mo", b"\x01" * 3, T0 + 1, T0 + 21, 0),
        ]
        later = await store.pending_deliveries("shop", T0 + 10, limit=10)  # ids[0] expires at T0+10
        assert [(d.id, d.attempts) for d in later] == [(ids[1], 1), (ids[2], 0), (ids[3], 0)]
        await store.delivery_done(ids[2])
        await store.delivery_done(ids[2])  # done twice, or an unknown id: nothing happens
        last = await store.pending_deliveries("shop", T0 + 10, limit=10)
        assert [(d.id, d.attempts) for d in last] == [(ids[1], 2), (ids[3], 1)]
        assert await store.pending_deliveries("nobody", T0, limit=10) == []

    db.run(body)


# -- cancel_sm and replace_sm ---------------------------------------------------------------------


def test_change_pending_cancels_and_replaces_only_what_waits(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        for i in (1, 2, 3):
            await store.accept(msg(i))
        # replace: only the owner, only while accepted
        assert not await store.change_pending("m0001", "thief", T0 + 5, short_message=b"x")
        assert await store.change_pending("m0001", "shop", T0 + 5, short_message=b"new body")
        record = await store.get("m0001")
        assert record is not None
        assert (record.message.short_message, record.state) == (b"new body", MessageState.ACCEPTED)
        assert record.updated_at == T0 + 5
        # cancel: only the owner, only while accepted, once
        assert not await store.change_pending("m0002", "thief", T0 + 6)
        assert await store.change_pending("m0002", "shop", T0 + 6)
        record = await store.get("m0002")
        assert record is not None
        assert record.state is MessageState.CANCELLED
        assert (await store.history("m0002"))[-1] == (T0 + 6, MessageState.CANCELLED)
        assert not await store.change_pending("m0002", "shop", T0 + 7)
        assert not await store.change_pending("m0002", "shop", T0 + 7, short_message=b"y")
        # once an upstream may have it, it is too late
        await store.claim_due(T0 + 10, limit=10)  # claims m0001 and m0003
        assert not await store.change_pending("m0003", "shop", T0 + 11)
        assert not await store.change_pending("m0003", "shop", T0 + 11, short_message=b"z")
        record = await store.get("m0003")
        assert record is not None
        assert (record.state, record.message.short_message) == (
            MessageState.DISPATCHING,
            b"hello 3",
        )
        assert not await store.change_pending("nope", "shop", T0 + 12)

    db.run(body)


def test_change_pending_replaces_schedule_and_validity(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        await store.accept(msg(1, schedule_at=T0 + 3600, expires_at=T0 + 7200))
        await store.accept(msg(2, schedule_at=T0 + 3600, expires_at=T0 + 7200))
        # a body alone keeps the times
        assert await store.change_pending("m0001", "shop", T0 + 5, short_message=b"body")
        record = await store.get("m0001")
        assert record is not None
        assert (record.message.schedule_at, record.message.expires_at) == (T0 + 3600, T0 + 7200)
        assert await store.change_pending(
            "m0001", "shop", T0 + 6, short_message=b"body", times=(T0 + 60.5, T0 + 900.25)
        )
        record = await store.get("m0001")
        assert record is not None
        assert (record.message.schedule_at, record.message.expires_at) == (T0 + 60.5, T0 + 900.25)
        # due now (no schedule): the dispatcher claims it at once
        assert await store.change_pending(
            "m0002", "shop", T0 + 7, short_message=b"now", times=(None, T0 + 500)
        )
        assert [r.message.id for r in await store.claim_due(T0 + 8, limit=10)] == ["m0002"]
        record = await store.get("m0002")
        assert record is not None
        assert (record.message.schedule_at, record.message.expires_at) == (None, T0 + 500)
        assert not await store.change_pending(  # claimed: too late
            "m0002", "shop", T0 + 9, short_message=b"late", times=(T0 + 60, T0 + 600)
        )
        assert not await store.change_pending(
            "m0001", "thief", T0 + 9, short_message=b"x", times=(None, T0 + 600)
        )

    db.run(body)


# -- purge ----------------------------------------------------------------------------------------


def test_purge_keeps_what_is_not_final(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        await store.accept(msg(1))
        await store.accept(msg(2))
        await store.set_state("m0001", MessageState.DELIVERED, T0 + 10)
        await store.enqueue_delivery("shop", "mo", b"x", T0, ttl=1)
        assert await store.purge(T0 + 100) == 2  # m0001 and the expired delivery
        assert await store.get("m0001") is None
        assert await store.get("m0002") is not None

    db.run(body)


def test_purge_cascades_and_respects_the_cutoff(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        for i in range(1, 6):
            await store.accept(msg(i))
        await store.link_upstream_id("up", ("k1",), "m0001")
        await store.add_receipt(ReceiptRecord("m0001", 0, "up", "k1", 2, 0, T0 + 9))
        await store.set_state("m0001", MessageState.DELIVERED, T0 + 10)  # final, old
        await store.set_state("m0002", MessageState.FAILED, T0 + 200)  # final, too recent
        await store.set_state("m0003", MessageState.SENT, T0 + 10)  # old, waits for a receipt
        await store.claim_due(T0 + 10, limit=10)  # m0004, m0005: in flight
        await store.set_state("m0005", MessageState.EXPIRED, T0 + 11)
        kept = await store.enqueue_delivery("shop", "mo", b"kept", T0, ttl=150)
        await store.enqueue_delivery("shop", "mo", b"gone", T0, ttl=50)
        assert await store.purge(T0 + 100) == 3  # m0001, m0005, one delivery
        assert [await store.get(f"m000{i}") is None for i in range(1, 6)] == [
            True,
            False,
            False,
            False,
            True,
        ]
        assert await store.history("m0001") == []
        assert await store.receipts("m0001") == []
        assert await store.find_part("up", ("k1",)) is None
        assert [d.id for d in await store.pending_deliveries("shop", T0, limit=5)] == [kept]
        # the purged id is free again: nothing of the old message is left behind
        await store.accept(msg(1))
        assert await store.history("m0001") == [(T0 + 1, MessageState.ACCEPTED)]
        assert await store.purge(T0 + 100) == 0

    db.run(body)


# -- the one-write hot paths ----------------------------------------------------------------------


def test_record_sent_links_every_part_and_marks_sent(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        await store.accept(msg(1))
        await store.accept(msg(2))
        parts = (canonical_ids("0A"), canonical_ids("0B"), canonical_ids("0C"))
        assert await store.record_sent("m0001", "up", parts, T0 + 5)
        assert await store.record_sent("m0002", "up", (canonical_ids("77"),), T0 + 6)
        assert not await store.record_sent("nope", "up", (canonical_ids("78"),), T0 + 6)
        assert await store.find_part("up", canonical_ids("11")) == ("m0001", 1)  # 0x0B
        assert await store.find_part("up", canonical_ids("0c")) == ("m0001", 2)
        assert await store.find_part("up", canonical_ids("077")) == ("m0002", 0)
        assert await store.find_part("up", canonical_ids("78")) is None
        record = await store.get("m0001")
        assert record is not None and record.state is MessageState.SENT
        assert (await store.history("m0001"))[-1] == (T0 + 5, MessageState.SENT)
        # the part count came with it: a receipt reports three parts
        (matched,) = await store.match_receipts([incoming("0A", 2, T0 + 7)])
        assert matched is not None
        assert matched.states == [2, None, None]

    db.run(body)


def incoming(upstream_id: str, state: int, at: float, **kw: object) -> IncomingReceipt:
    fields: dict[str, object] = {
        "upstream": "up",
        "keys": canonical_ids(upstream_id),
        "upstream_id": upstream_id,
        "message_state": state,
        "error": 0,
        "received_at": at,
        "raw": f"id:{upstream_id} stat:{state}".encode(),
    }
    fields.update(kw)
    return IncomingReceipt(**fields)  # type: ignore[arg-type]


def test_match_receipts_keeps_them_and_returns_the_message_before(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        await store.accept(msg(1))
        assert await store.record_sent("m0001", "up", (canonical_ids("1F"),), T0 + 2)
        assert await store.match_receipts([incoming("1F", 2, T0, upstream="other")]) == [None]
        (matched,) = await store.match_receipts([incoming("31", 5, T0 + 3, error=9)])
        assert matched is not None
        assert matched.record.message == msg(1)
        assert matched.record.state is MessageState.SENT
        assert (matched.part, matched.states) == (0, [5])
        assert await store.receipts("m0001") == [
            ReceiptRecord("m0001", 0, "up", "31", 5, 9, T0 + 3, b"id:31 stat:5")
        ]
        assert await store.match_receipts([]) == []

    db.run(body)


def test_match_receipts_in_one_batch(db: Db) -> None:
    """Many receipts, one call: each matched (or not) on its own, the states of every part
    as they stand after the whole batch, raw texts kept, unknown ones kept and listed."""

    async def body(store: AnyStore) -> None:
        await store.accept(msg(1))
        await store.accept(msg(2))
        parts = (canonical_ids("A1"), canonical_ids("A2"))
        assert await store.record_sent("m0001", "up", parts, T0 + 2, part_ids=("A1", "A2"))
        assert await store.record_sent("m0002", "up", (canonical_ids("B1"),), T0 + 2)
        batch = [
            incoming("a1", 2, T0 + 3),
            incoming("dead", 5, T0 + 3, raw=b"id:dead stat:junk"),
            incoming("0B1", 8, T0 + 3),
            incoming("A2", 5, T0 + 4),
            incoming("beef", 2, T0 + 4, keep_unknown=False),
        ]
        one, unknown, two, one_again, looked_up = await store.match_receipts(batch)
        assert unknown is None and looked_up is None
        assert one is not None and one_again is not None and two is not None
        assert (one.record.message.id, one.part, one.states) == ("m0001", 0, [2, 5])
        assert (one_again.part, one_again.states) == (1, [2, 5])
        assert (two.record.message.id, two.states) == ("m0002", [8])
        assert [r.raw for r in await store.receipts("m0001")] == [b"id:a1 stat:2", b"id:A2 stat:5"]
        assert await store.unknown_receipts() == [
            ReceiptRecord("", -1, "up", "dead", 5, 0, T0 + 3, b"id:dead stat:junk")
        ]
        assert await store.purge(T0 + 10) == 1  # the unknown receipt is old
        assert await store.unknown_receipts() == []

    db.run(body)


def test_settle_sets_state_and_queues_the_delivery_together(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        await store.accept(msg(1))
        await store.accept(msg(2))
        delivery = NewDelivery("shop", "receipt", b"\x00\x01pdu", 60.0)
        assert await store.settle(
            "m0001", MessageState.UNDELIVERABLE, T0 + 4, error=7, delivery=delivery
        )
        record = await store.get("m0001")
        assert record is not None
        assert (record.state, record.error) == (MessageState.UNDELIVERABLE, 7)
        (queued,) = await store.pending_deliveries("shop", T0 + 5, 10)
        assert (queued.kind, queued.pdu, queued.expires_at) == ("receipt", b"\x00\x01pdu", T0 + 64)
        # an unknown message queues nothing
        assert not await store.settle("nope", MessageState.DELIVERED, T0, delivery=delivery)
        assert len(await store.pending_deliveries("shop", T0 + 5, 10)) == 1
        assert await store.settle("m0002", MessageState.DELIVERED, T0 + 6)  # no delivery
        assert len(await store.pending_deliveries("shop", T0 + 5, 10)) == 1

    db.run(body)


def test_settle_never_ends_a_message_twice(db: Db) -> None:
    """'Already final?' and 'settle' are one step: of many settlements racing for one
    message - in one batch, in concurrent calls, from two nodes - exactly one wins, and only
    its receipt is queued."""

    async def body(store: AnyStore) -> None:
        other = await db.open_store(node=1)
        for i in range(1, 4):
            await store.accept(msg(i))
        await store.set_state("m0001", MessageState.SENT, T0 + 2)

        def receipt(stat: bytes) -> NewDelivery:
            return NewDelivery("shop", "receipt", stat, 60.0)

        states = [MessageState.UNDELIVERABLE, MessageState.DELIVERED] * 10
        won = await asyncio.gather(
            *(
                (store if i % 2 else other).settle(
                    "m0001", state, T0 + 3, delivery=receipt(state.value.encode())
                )
                for i, state in enumerate(states)
            )
        )
        assert sum(won) == 1
        record = await store.get("m0001")
        assert record is not None
        winner = states[won.index(True)]
        assert record.state is winner
        queued = await store.pending_deliveries("shop", T0 + 4, 100)
        assert [d.pdu for d in queued] == [winner.value.encode()]
        assert [s for _at, s in await store.history("m0001")].count(winner) == 1
        # in one batch: the first settlement of a message wins, the rest find it final
        notice = NewDelivery("shop", "receipt", b"intermediate", 60.0)
        done = await store.settle_many(
            [
                Settlement("m0002", MessageState.DELIVERED, None, receipt(b"2-first")),
                Settlement("m0002", MessageState.REJECTED, 3, receipt(b"2-second")),
                Settlement("m0003", MessageState.UNKNOWN, None, receipt(b"3")),
                Settlement("m0001", MessageState.DELIVERED, None, receipt(b"1-late")),
                Settlement("nope", MessageState.DELIVERED, None, receipt(b"none")),
            ],
            T0 + 5,
            deliveries=(notice,),
        )
        assert done == [True, False, True, False, False]
        queued = await store.pending_deliveries("shop", T0 + 6, 100, after=queued[-1].id)
        assert sorted(d.pdu for d in queued) == [b"2-first", b"3", b"intermediate"]
        two = await store.get("m0002")
        assert two is not None and (two.state, two.error) == (MessageState.DELIVERED, None)
        three = await store.get("m0003")
        assert three is not None and three.state is MessageState.UNKNOWN

    db.run(body)


def test_record_sent_never_reopens_a_message_that_ended(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        await store.accept(msg(1))
        await store.settle("m0001", MessageState.FAILED, T0 + 2)
        assert await store.record_sent("m0001", "up", (canonical_ids("77"),), T0 + 3)
        record = await store.get("m0001")
        assert record is not None and record.state is MessageState.FAILED
        assert await store.find_part("up", canonical_ids("77")) == ("m0001", 0)  # still linked
        assert [s for _at, s in await store.history("m0001")] == [
            MessageState.ACCEPTED,
            MessageState.FAILED,
        ]

    db.run(body)


def test_overdue_sent_lists_what_waits_for_a_receipt(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        for i in range(1, 5):
            await store.accept(msg(i))
        parts = (canonical_ids("C1"), canonical_ids("C2"))
        await store.record_sent("m0001", "up", parts, T0 + 10, part_ids=("C1", "C2"))
        await store.record_sent("m0002", "up2", (canonical_ids("D1"),), T0 + 5, part_ids=("D1",))
        await store.record_sent("m0003", "up", (canonical_ids("E1"),), T0 + 50, part_ids=("E1",))
        await store.record_sent("m0004", "up", (canonical_ids("F1"),), T0 + 6, part_ids=("F1",))
        await store.settle("m0004", MessageState.DELIVERED, T0 + 7)
        await store.match_receipts([incoming("C2", 2, T0 + 11)])
        overdue = await store.overdue_sent(T0 + 20, 10)
        assert [(o.record.message.id, o.upstream, o.part_ids, o.states) for o in overdue] == [
            ("m0002", "up2", ("D1",), [None]),
            ("m0001", "up", ("C1", "C2"), [None, 2]),
        ]
        assert overdue[0].record.state is MessageState.SENT
        assert len(await store.overdue_sent(T0 + 20, 1)) == 1
        by_up2 = await store.overdue_sent(T0 + 20, 10, upstream="up2")
        assert [o.record.message.id for o in by_up2] == ["m0002"]
        assert await store.overdue_sent(T0 + 20, 10, upstream="nope") == []
        assert await store.overdue_sent(T0 + 5, 10) == []

    db.run(body)


def test_learnt_id_spellings_are_kept(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        assert await store.id_formats() == {}
        await store.save_id_format("up", "hex", None)
        await store.save_id_format("up", "hex", "decimal")
        await store.save_id_format("other", None, "text")
        store = await db.reopen()
        assert await store.id_formats() == {"up": ("hex", "decimal"), "other": (None, "text")}

    db.run(body)


def test_pending_deliveries_page_on_after_an_id(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        ids = [await store.enqueue_delivery("shop", "mo", bytes([i]), T0, 60) for i in range(5)]
        await store.enqueue_delivery("other", "mo", b"x", T0, 60)
        assert [d.id for d in await store.pending_deliveries("shop", T0, 10)] == ids
        page = await store.pending_deliveries("shop", T0, 2, after=ids[1])
        assert [d.id for d in page] == ids[2:4]
        assert await store.pending_deliveries("shop", T0, 10, after=ids[4]) == []

    db.run(body)


def test_inbound_parts_are_kept_until_whole(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        assert await store.add_inbound_part("a|b|7", 2, 3, b"two", T0) is None
        assert await store.add_inbound_part("a|b|7", 2, 3, b"TWO", T0 + 1) is None  # again
        assert await store.add_inbound_part("x|y|1", 1, 2, b"other", T0) is None
        assert await store.add_inbound_part("a|b|7", 3, 3, b"three", T0 + 2) is None
        whole = await store.add_inbound_part("a|b|7", 1, 3, b"one", T0 + 3)
        assert whole == [b"one", b"TWO", b"three"]
        await store.finish_inbound("a|b|7", [NewDelivery("shop", "mo", b"mo-pdu", 60.0)], T0 + 4)
        (queued,) = await store.pending_deliveries("shop", T0 + 5, 10)
        assert (queued.kind, queued.pdu) == ("mo", b"mo-pdu")
        # finished: a part sent again is recognised, not the start of a new message
        assert await store.add_inbound_part("a|b|7", 1, 3, b"one", T0 + 6) == []
        stale = await store.stale_inbound(T0 + 1)
        assert stale == [("x|y|1", [b"other"])]
        assert await store.stale_inbound(T0) == []
        await store.finish_inbound("x|y|1", [], T0 + 7)
        assert await store.stale_inbound(T0 + 100) == []
        # a different part under a finished key: the sender reused the reference
        assert await store.add_inbound_part("a|b|7", 1, 3, b"uno", T0 + 8) is None
        assert [key for key, _ in await store.stale_inbound(T0 + 100)] == ["a|b|7"]

    db.run(body)


def test_finished_inbound_parts_are_remembered_until_forgotten(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        assert await store.add_inbound_part("a|b|7", 1, 2, b"one", T0) is None
        assert await store.add_inbound_part("a|b|7", 2, 2, b"two", T0) == [b"one", b"two"]
        # a copy of the last part while the first is being handed on: taken already
        assert await store.add_inbound_part("a|b|7", 2, 2, b"two", T0) == []
        await store.finish_inbound("a|b|7", [NewDelivery("shop", "mo", b"mo", 60.0)], T0 + 1)
        assert await store.add_inbound_part("a|b|7", 1, 2, b"one", T0 + 2) == []
        assert await store.forget_inbound(T0 + 1) == 0  # done at T0 + 1: not before it
        assert await store.forget_inbound(T0 + 2) == 3  # two parts and the marker
        # forgotten: the same part now starts a new message
        assert await store.add_inbound_part("a|b|7", 1, 2, b"one", T0 + 3) is None
        assert len(await store.pending_deliveries("shop", T0 + 3, 10)) == 1

    db.run(body)


def test_two_copies_of_the_last_inbound_part_at_once_complete_it_once(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        other = await db.open_store()  # another connection (PostgreSQL) or the same writer
        for i in range(20):
            key = f"a|b|8:{i}|2"
            assert await store.add_inbound_part(key, 1, 2, b"one", T0) is None
            results = await asyncio.gather(
                store.add_inbound_part(key, 2, 2, b"two", T0),
                other.add_inbound_part(key, 2, 2, b"two", T0),
            )
            assert sorted(results, key=len) == [[], [b"one", b"two"]], i

    db.run(body)


def test_a_message_taken_but_never_finished_goes_stale(db: Db) -> None:
    # The process died between taking the whole message and queueing it: the carrier resends
    # the last part (not answered), which is recognised; the timeout then delivers it.
    async def body(store: AnyStore) -> None:
        assert await store.add_inbound_part("a|b|7", 1, 2, b"one", T0) is None
        assert await store.add_inbound_part("a|b|7", 2, 2, b"two", T0) == [b"one", b"two"]
        assert await store.add_inbound_part("a|b|7", 2, 2, b"two", T0 + 1) == []
        assert await store.stale_inbound(T0 + 1) == [("a|b|7", [b"one", b"two"])]

    db.run(body)


def test_sim_usage_counts_per_window_and_survives_a_reopen(db: Db) -> None:
    start = 1_700_000_000.0 - 1_700_000_000.0 % 86_400 + 3600  # 01:00 UTC, mid-month
    assert usage_windows(start)[2] == usage_windows(start + 86_400)[2]

    async def body(store: AnyStore) -> None:
        assert await store.usage("sim-a", start) == Usage()
        assert await store.count_usage("sim-a", start) == Usage(1, 1, 1)
        assert await store.count_usage("sim-a", start + 1, 2) == Usage(3, 3, 3)
        assert await store.count_usage("sim-b", start + 2) == Usage(1, 1, 1)  # its own row
        store = await db.reopen()
        assert await store.usage("sim-a", start + 3) == Usage(3, 3, 3)
        # the next minute starts the minute over, the day and month go on
        assert await store.usage("sim-a", start + 60) == Usage(0, 3, 3)
        assert await store.count_usage("sim-a", start + 61) == Usage(1, 4, 4)
        # the next day
        assert await store.count_usage("sim-a", start + 86_400) == Usage(1, 1, 5)
        # concurrent sends all count
        await asyncio.gather(*(store.count_usage("sim-c", start) for _ in range(50)))
        assert await store.usage("sim-c", start) == Usage(50, 50, 50)

    db.run(body)


def test_sim_usage_month_turns_over() -> None:
    end_of_january = 1_706_745_599.0  # 2024-01-31 23:59:59 UTC
    jan = usage_windows(end_of_january)
    feb = usage_windows(end_of_january + 1)
    assert feb[2] == jan[2] + 1 and feb[1] == jan[1] + 1 and feb[0] == jan[0] + 1


def test_a_node_leases_the_deliveries_it_offers(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        one, two = await db.open_store(node=1), await db.open_store(node=2)
        ids = [
            await store.enqueue_delivery("shop", "receipt", bytes([i]), T0, 600) for i in range(4)
        ]
        assert [d.id for d in await one.pending_deliveries("shop", T0, 2)] == ids[:2]
        # node 2 sees only what node 1 has not leased; node 1 still sees its own
        assert [d.id for d in await two.pending_deliveries("shop", T0 + 1, 10)] == ids[2:]
        assert [d.id for d in await one.pending_deliveries("shop", T0 + 2, 10)] == ids[:2]
        await one.delivery_done(ids[0])
        # once a lease runs out (node 1 died), another node offers the rest again
        later = T0 + 2 + DELIVERY_LEASE + 1
        assert [d.id for d in await two.pending_deliveries("shop", later, 10)] == ids[1:]

    db.run(body)


def test_queue_depths_count_what_waits(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        assert await store.queue_depths() == QueueDepths(0, None, {})
        for i in (1, 2, 3):
            await store.accept(msg(i))
        assert await store.set_state("m0001", MessageState.SENT, T0 + 5)  # no longer waiting
        await store.enqueue_delivery("shop", "receipt", b"a", T0 + 7, ttl=60)
        await store.enqueue_delivery("shop", "mo", b"b", T0 + 8, ttl=60)
        await store.enqueue_delivery("other", "mo", b"c", T0 + 9, ttl=60)
        depths = await store.queue_depths()
        assert depths == QueueDepths(2, T0 + 2, {"shop": (2, T0 + 7), "other": (1, T0 + 9)})

    db.run(body)


# -- webhook deliveries (the same queue, channel "webhook") --------------------------------------

BOTH = ("smpp", "webhook")


def test_webhook_rows_are_queued_with_the_smpp_row_and_kept_apart(db: Db) -> None:
    """settle / settle_many / finish_inbound queue one row per channel in their one write;
    the SMPP path never sees a webhook row, nor the webhook path an SMPP one."""

    async def body(store: AnyStore) -> None:
        await store.accept(msg(1))
        await store.accept(msg(2))
        both = NewDelivery("shop", "receipt", b"receipt-1", 60.0, BOTH)
        assert await store.settle("m0001", MessageState.DELIVERED, T0 + 1, delivery=both)
        # a settlement that loses queues on no channel
        assert not await store.settle("m0001", MessageState.FAILED, T0 + 1, delivery=both)
        only_hook = NewDelivery("shop", "receipt", b"receipt-2", 60.0, ("webhook",))
        assert await store.settle_many(
            [Settlement("m0002", MessageState.EXPIRED, None, only_hook)],
            T0 + 2,
            deliveries=(NewDelivery("shop", "receipt", b"note", 60.0, BOTH),),
        ) == [True]
        await store.finish_inbound(
            "",
            [
                NewDelivery("shop", "mo", b"mo-part", 60.0),
                NewDelivery("shop", "mo", b"mo-all", 60.0, ("webhook",)),
            ],
            T0 + 3,
        )
        smpp = await store.pending_deliveries("shop", T0 + 4, 10)
        assert [d.pdu for d in smpp] == [b"receipt-1", b"note", b"mo-part"]
        hooks = await store.pending_webhooks("shop", T0 + 4, 10, lease=30.0)
        assert [(d.pdu, d.kind, d.channel, d.attempts) for d in hooks] == [
            (b"receipt-1", "receipt", "webhook", 1),
            (b"receipt-2", "receipt", "webhook", 1),
            (b"note", "receipt", "webhook", 1),
            (b"mo-all", "mo", "webhook", 1),
        ]
        assert hooks[0].expires_at == T0 + 61
        assert await store.pending_webhooks("other", T0 + 4, 10, lease=30.0) == []
        depths = await store.queue_depths()
        assert depths.deliveries["shop"][0] == 7  # both channels wait

    db.run(body)


def test_webhook_lease_retry_and_done(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        for n in range(3):
            await store.settle_many(
                [],
                T0,
                deliveries=(NewDelivery("shop", "receipt", bytes([n]), 100.0, ("webhook",)),),
            )
        first = await store.pending_webhooks("shop", T0 + 1, 2, lease=30.0)
        assert [d.pdu for d in first] == [b"\x00", b"\x01"]
        # leased: nobody gets them again until the lease ends, not even this node
        again = await store.pending_webhooks("shop", T0 + 2, 10, lease=30.0)
        assert [d.pdu for d in again] == [b"\x02"]
        other = await db.open_store(1)
        assert await other.pending_webhooks("shop", T0 + 3, 10, lease=30.0) == []
        # a failure releases the lease; due again only at its retry time
        await store.webhook_failed(first[0].id, T0 + 20, "HTTP 500")
        assert await store.pending_webhooks("shop", T0 + 19, 10, lease=30.0) == []
        retried = await other.pending_webhooks("shop", T0 + 20, 10, lease=30.0)
        assert [(d.id, d.attempts) for d in retried] == [(first[0].id, 2)]
        # done: gone for good
        await store.delivery_done(first[1].id)
        # leases ended: what is left (and not done) comes back, never the done one
        late = await store.pending_webhooks("shop", T0 + 60, 10, lease=30.0)
        assert sorted(d.pdu for d in late) == [b"\x00", b"\x02"]
        # expired rows are never offered
        await store.webhook_failed(late[0].id, T0 + 61, "HTTP 503")
        assert await store.pending_webhooks("shop", T0 + 100, 10, lease=30.0) == []

    db.run(body)


def test_release_webhooks_ends_only_this_nodes_leases(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        for n in range(2):
            await store.settle_many(
                [], T0, deliveries=(NewDelivery("shop", "mo", bytes([n]), 100.0, ("webhook",)),)
            )
        mine = await store.pending_webhooks("shop", T0, 1, lease=30.0)
        other = await db.open_store(1)
        theirs = await other.pending_webhooks("shop", T0, 1, lease=30.0)
        assert {mine[0].pdu, theirs[0].pdu} == {b"\x00", b"\x01"}
        restarted = await db.reopen()  # node 0 again, after a stop mid-POST
        assert await restarted.release_webhooks() == 1
        back = await restarted.pending_webhooks("shop", T0 + 1, 10, lease=30.0)
        assert [(d.id, d.attempts) for d in back] == [(mine[0].id, 2)]
        assert await restarted.release_webhooks() == 1  # (it leased it again just now)
        # node 1's lease stands
        assert [d.id for d in await restarted.pending_webhooks("shop", T0 + 2, 10, 30.0)] == [
            mine[0].id
        ]

    db.run(body)
