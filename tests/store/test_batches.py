"""The batch part of the `Store` contract, on every backend: create, accept chunk by chunk
behind a cursor (never twice), progress by state, resume list, and cancel."""

from __future__ import annotations

import asyncio

from gateway.store.base import BatchState, MessageState, NewBatch
from tests.store import T0, msg
from tests.store.conftest import AnyStore, Db


def _batch(batch_id: str = "b1", size: int = 4) -> NewBatch:
    return NewBatch(
        id=batch_id,
        account="shop",
        created_at=T0,
        total=size + 2,
        size=size,
        duplicates=1,
        invalid=1,
        request='{"text": "hi {name}"}',
        report='{"duplicates": ["491"]}',
        recipients=b"packed",
    )


def test_batch_is_accepted_chunk_by_chunk_behind_its_cursor(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        await store.create_batch(_batch())
        record = await store.batch("b1")
        assert record is not None
        assert (record.state, record.accepted_upto, record.accepted, record.states) == (
            BatchState.ACCEPTING,
            0,
            0,
            {},
        )
        assert (record.total, record.size, record.duplicates, record.invalid) == (6, 4, 1, 1)
        assert await store.batch_recipients("b1") == b"packed"
        assert await store.unfinished_batches() == ["b1"]

        assert await store.accept_batch("b1", [msg(1), msg(2)], (0, 2, 0), T0 + 1)
        # the same chunk again (a resume that read the cursor before a crash): refused
        assert not await store.accept_batch("b1", [msg(3), msg(4)], (0, 2, 0), T0 + 1)
        assert await store.get("m0003") is None
        # the last chunk: one recipient refused by the pipeline, a new report
        assert await store.accept_batch("b1", [msg(3)], (2, 4, 1), T0 + 2, report='{"x": 1}')
        record = await store.batch("b1")
        assert record is not None
        assert record.state is BatchState.DONE
        assert (record.accepted_upto, record.accepted, record.refused) == (4, 3, 1)
        assert record.finished_at == T0 + 2
        assert record.report == '{"x": 1}'
        assert record.states == {MessageState.ACCEPTED: 3}
        assert await store.batch_recipients("b1") == b""  # not kept once accepted
        assert await store.unfinished_batches() == []
        assert not await store.accept_batch("b1", [msg(5)], (4, 5, 0), T0 + 3)  # done

        await store.set_state("m0001", MessageState.DELIVERED, T0 + 5)
        record = await store.batch("b1")
        assert record is not None
        assert record.states == {MessageState.ACCEPTED: 2, MessageState.DELIVERED: 1}
        assert await store.batch("nope") is None
        assert await store.batch_recipients("nope") == b""

    db.run(body)


def test_batch_survives_a_reopen_and_resumes_at_its_cursor(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        await store.create_batch(_batch())
        assert await store.accept_batch("b1", [msg(1)], (0, 1, 0), T0 + 1)
        store = await db.reopen()
        assert await store.unfinished_batches() == ["b1"]
        record = await store.batch("b1")
        assert record is not None
        assert record.accepted_upto == 1
        assert await store.batch_recipients("b1") == b"packed"

    db.run(body)


def test_cancel_batch_cancels_what_waits_and_stops_accepting(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        await store.create_batch(_batch())
        await store.accept(msg(9))  # not the batch's: untouched
        assert await store.accept_batch("b1", [msg(1), msg(2), msg(3)], (0, 3, 0), T0 + 1)
        await store.set_state("m0001", MessageState.SENT, T0 + 2)
        assert await store.cancel_batch("b1", T0 + 3) == 2
        assert await store.cancel_batch("b1", T0 + 4) == 0
        record = await store.batch("b1")
        assert record is not None
        assert record.state is BatchState.CANCELLED
        assert record.finished_at == T0 + 3
        assert record.states == {MessageState.SENT: 1, MessageState.CANCELLED: 2}
        assert not await store.accept_batch("b1", [msg(4)], (3, 4, 0), T0 + 5)
        assert await store.unfinished_batches() == []
        assert (await store.history("m0002"))[-1] == (T0 + 3, MessageState.CANCELLED)
        other = await store.get("m0009")
        assert other is not None
        assert other.state is MessageState.ACCEPTED
        assert await store.cancel_batch("nope", T0) == 0

    db.run(body)


def test_batch_messages_are_dispatched_like_any_other(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        await store.create_batch(_batch(size=2))
        assert await store.accept_batch("b1", [msg(1), msg(2)], (0, 2, 0), T0 + 1)
        claimed = await store.claim_due(T0 + 10, 10)
        assert [r.message for r in claimed] == [msg(1), msg(2)]

    db.run(body)


def test_a_cancel_racing_a_chunk_leaves_nothing_of_the_batch_waiting(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        for round_ in range(5):
            batch_id = f"b{round_}"
            await store.create_batch(_batch(batch_id, size=400))
            chunk = [msg(round_ * 1000 + i) for i in range(200)]
            other = await db.open_store()  # another connection (or node) cancels meanwhile
            _accepted, _cancelled = await asyncio.gather(
                store.accept_batch(batch_id, chunk, (0, 200, 0), T0 + 1),
                other.cancel_batch(batch_id, T0 + 2),
            )
            record = await store.batch(batch_id)
            assert record is not None
            assert record.state is BatchState.CANCELLED
            assert MessageState.ACCEPTED not in record.states, record.states

    db.run(body)
