"""The store contract, run against the SQLite backend (PostgreSQL joins with issue 3)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from gateway.smpp.receipt import canonical_ids
from gateway.store.base import MessageState, NewMessage
from gateway.store.sqlite import SqliteStore

T0 = 1_780_000_000.0


def msg(i: int, **kw: object) -> NewMessage:
    fields: dict[str, object] = {
        "id": f"m{i:04d}",
        "account": "shop",
        "source_addr": "Shop",
        "destination_addr": "4915112345678",
        "short_message": f"hello {i}".encode(),
        "registered_delivery": 1,
        "accepted_at": T0 + i,
    }
    fields.update(kw)
    return NewMessage(**fields)  # type: ignore[arg-type]


def run(path: Path, body: Callable[[SqliteStore], Awaitable[None]]) -> SqliteStore:
    store = SqliteStore(path / "db" / "smsgw.sqlite3")

    async def main() -> None:
        await store.open()
        try:
            await asyncio.wait_for(body(store), timeout=30)
        finally:
            await store.close()

    asyncio.run(main())
    return store


def test_accept_get_and_history(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        await store.accept(msg(1, tlvs=b"\x14\x01\x00\x01x"))
        record = await store.get("m0001")
        assert record is not None
        assert record.message == msg(1, tlvs=b"\x14\x01\x00\x01x")
        assert record.state is MessageState.ACCEPTED
        assert await store.get("nope") is None
        assert await store.set_state("m0001", MessageState.SENT, T0 + 5)
        assert not await store.set_state("nope", MessageState.SENT, T0 + 5)
        assert await store.history("m0001") == [
            (T0 + 1, MessageState.ACCEPTED),
            (T0 + 5, MessageState.SENT),
        ]

    run(tmp_path, body)


def test_concurrent_accepts_are_group_committed(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        await asyncio.gather(*(store.accept(msg(i)) for i in range(500)))
        assert store.commits < 100  # many messages per transaction
        due = await store.claim_due(T0 + 1000, limit=1000)
        assert len(due) == 500

    run(tmp_path, body)


def test_a_failing_write_does_not_undo_its_neighbours(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        results = await asyncio.gather(
            store.accept(msg(1)), store.accept(msg(1)), store.accept(msg(2)), return_exceptions=True
        )
        assert results[0] is None
        assert isinstance(results[1], sqlite3.IntegrityError)  # the same id twice
        assert results[2] is None
        assert await store.get("m0002") is not None

    run(tmp_path, body)


def test_accepted_messages_survive_a_reopen(tmp_path: Path) -> None:
    async def first(store: SqliteStore) -> None:
        for i in range(10):
            await store.accept(msg(i))

    run(tmp_path, first)

    async def second(store: SqliteStore) -> None:
        due = await store.claim_due(T0 + 100, limit=100)
        assert [r.message.id for r in due] == [f"m{i:04d}" for i in range(10)]

    run(tmp_path, second)


def test_claim_due_respects_schedule_and_claims_once(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        await store.accept(msg(1))
        await store.accept(msg(2, schedule_at=T0 + 3600))
        first = await store.claim_due(T0 + 10, limit=10)
        assert [r.message.id for r in first] == ["m0001"]
        assert first[0].state is MessageState.DISPATCHING
        assert first[0].attempts == 1
        assert await store.claim_due(T0 + 10, limit=10) == []
        later = await store.claim_due(T0 + 3600, limit=10)
        assert [r.message.id for r in later] == ["m0002"]

    run(tmp_path, body)


def test_upstream_ids_match_whatever_the_spelling(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        await store.accept(msg(1))
        await store.link_upstream_id("carrier-a", canonical_ids("0A1B2C"), "m0001")
        assert await store.find_by_upstream_id("carrier-a", canonical_ids("662316")) == "m0001"
        assert await store.find_by_upstream_id("carrier-a", canonical_ids("0a1b2c")) == "m0001"
        assert await store.find_by_upstream_id("carrier-b", canonical_ids("0A1B2C")) is None

    run(tmp_path, body)


def test_delivery_queue(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        a = await store.enqueue_delivery("shop", "receipt", b"pdu-a", T0, ttl=60)
        b = await store.enqueue_delivery("shop", "mo", b"pdu-b", T0 + 1, ttl=60)
        await store.enqueue_delivery("other", "mo", b"pdu-c", T0, ttl=60)
        pending = await store.pending_deliveries("shop", T0 + 2, limit=10)
        assert [(d.id, d.pdu, d.attempts) for d in pending] == [(a, b"pdu-a", 0), (b, b"pdu-b", 0)]
        await store.delivery_done(a)
        again = await store.pending_deliveries("shop", T0 + 3, limit=10)
        assert [(d.id, d.attempts) for d in again] == [(b, 1)]
        assert await store.pending_deliveries("shop", T0 + 120, limit=10) == []  # expired

    run(tmp_path, body)


def test_purge_keeps_what_is_not_final(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        await store.accept(msg(1))
        await store.accept(msg(2))
        await store.set_state("m0001", MessageState.DELIVERED, T0 + 10)
        await store.enqueue_delivery("shop", "mo", b"x", T0, ttl=1)
        assert await store.purge(T0 + 100) == 2  # m0001 and the expired delivery
        assert await store.get("m0001") is None
        assert await store.get("m0002") is not None

    run(tmp_path, body)


def test_store_must_be_open(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "x.sqlite3")
    with pytest.raises(RuntimeError, match="not open"):
        asyncio.run(store.get("m"))


def test_interrupted_dispatch_is_requeued(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        await store.accept(msg(1))
        await store.accept(msg(2))
        await store.claim_due(T0 + 10, limit=1)  # m0001 claimed, then the process "dies"
        assert await store.requeue_interrupted(T0 + 20) == 1
        again = await store.claim_due(T0 + 30, limit=10)
        assert [r.message.id for r in again] == ["m0001", "m0002"]

    run(tmp_path, body)
