"""PostgreSQL's time partitions (migration 10): an existing database converted with its rows,
rows moved out of DEFAULT when their partition is made, retention dropping whole partitions only
when every message in them is final, and reads through a read-only replica DSN."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from gateway.store.base import MessageState, ReceiptRecord
from gateway.store.ids import MessageIdGenerator
from gateway.store.postgres import MIGRATIONS, PostgresStore
from tests.store import T0, msg
from tests.store.conftest import TIMEOUT
from tests.store.test_postgres import schema

__all__ = ["schema"]  # the fixture, shared

DAY = 86_400.0
START = T0 // DAY * DAY  # msg(i) is accepted at T0 + i: the partition starting here


def _run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), timeout=TIMEOUT))


async def _partitions(conn: asyncpg.Connection, schema: str, parent: str) -> dict[str, int]:
    """Each partition of `parent` and its row count."""
    names = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass($1)",
        f'"{schema}".{parent}',
    )
    return {n[0]: await conn.fetchval(f'SELECT count(*) FROM "{schema}"."{n[0]}"') for n in names}


def test_a_populated_database_is_converted(postgres_dsn: str, schema: str) -> None:
    async def body() -> None:
        conn = await asyncpg.connect(postgres_dsn, server_settings={"search_path": schema})
        try:
            # the schema as it was before partitioning, with a message, its history and receipt
            await conn.execute(f'CREATE SCHEMA "{schema}"')
            await conn.execute("CREATE TABLE smsgw_schema (version integer NOT NULL)")
            await conn.execute("INSERT INTO smsgw_schema VALUES (9)")
            for script in MIGRATIONS[:9]:
                await conn.execute(script)
            old = PostgresStore(postgres_dsn, schema=schema, min_size=1)
            for i in (1, 2):
                await conn.execute(
                    "INSERT INTO messages (id, account, source_addr, source_addr_ton, "
                    "source_addr_npi, destination_addr, dest_addr_ton, dest_addr_npi, "
                    "service_type, esm_class, protocol_id, priority_flag, registered_delivery, "
                    "data_coding, short_message, tlvs, route, accepted_at, state, updated_at) "
                    "VALUES ($1, 'shop', 'Shop', 0, 0, '49151', 0, 0, '', 0, 0, 0, 1, 0, "
                    "'hi', '', 'r', $2, 'accepted', $2)",
                    f"m{i:04d}",
                    T0 + i,
                )
                await conn.execute(
                    "INSERT INTO message_history (message_id, at, state) "
                    "VALUES ($1, $2, 'accepted')",
                    f"m{i:04d}",
                    T0 + i,
                )
            await conn.execute(
                "INSERT INTO receipts (message_id, part, upstream, upstream_id, message_state, "
                "error, received_at) VALUES ('m0001', 0, 'up', 'x', 2, 0, $1)",
                T0 + 5,
            )
            await old.open()  # migration 10
            try:
                assert await conn.fetchval("SELECT max(version) FROM smsgw_schema") == len(
                    MIGRATIONS
                )
                assert (await old.get("m0002")) is not None
                assert await old.history("m0001") == [(T0 + 1, MessageState.ACCEPTED)]
                assert [r.upstream_id for r in await old.receipts("m0001")] == ["x"]
                await old.set_state("m0001", MessageState.SENT, T0 + 6)
                assert [s for _at, s in await old.history("m0001")] == [
                    MessageState.ACCEPTED,
                    MessageState.SENT,
                ]
                # a partition for their day takes them out of DEFAULT, history alike
                await old.maintain(T0)
                for parent in ("messages", "message_history"):
                    counts = await _partitions(conn, schema, parent)
                    assert counts[f"{parent}_default"] == 0
                    assert sum(counts.values()) == (2 if parent == "messages" else 3)
                assert [s for _at, s in await old.history("m0001")] == [
                    MessageState.ACCEPTED,
                    MessageState.SENT,
                ]
                # the history sequence continues after the copied rows
                await old.set_state("m0001", MessageState.DELIVERED, T0 + 7)
                assert len(await old.history("m0001")) == 3
            finally:
                await old.close()
        finally:
            await conn.close()

    _run(body)


def test_purge_drops_only_partitions_whose_messages_are_all_final(
    postgres_dsn: str, schema: str
) -> None:
    store = PostgresStore(postgres_dsn, schema=schema, min_size=1)

    async def body() -> None:
        await store.open()
        conn = await asyncpg.connect(postgres_dsn)
        try:
            await store.maintain(T0)
            await store.maintain(T0 - DAY)  # the day before, too
            await store.accept(msg(1))  # today, final below
            await store.accept(msg(2, accepted_at=T0 - DAY))  # yesterday, final
            await store.accept(msg(3, accepted_at=T0 - DAY))  # yesterday, still waiting
            await store.add_receipt(ReceiptRecord("m0002", 0, "up", "y", 2, 0, T0 - DAY))
            await store.link_upstream_id("up", ("y",), "m0002")
            # no foreign keys to a partitioned table, refused all the same (as SQLite does)
            with pytest.raises(asyncpg.ForeignKeyViolationError):
                await store.link_upstream_id("up", ("z",), "nope")
            with pytest.raises(asyncpg.ForeignKeyViolationError):
                await store.add_receipt(ReceiptRecord("nope", 0, "up", "z", 2, 0, T0))
            await store.set_state("m0001", MessageState.DELIVERED, T0 + 10)
            await store.set_state("m0002", MessageState.DELIVERED, T0 - DAY + 5)
            # yesterday holds a message not final: kept whole, its final row deleted as before
            assert await store.purge(START) == 1
            assert await store.get("m0003") is not None
            assert await store.get("m0002") is None
            assert await store.receipts("m0002") == []
            assert await store.find_by_upstream_id("up", ("y",)) is None
            day_before = f"messages_p{_stamp(START - DAY)}"
            assert day_before in await _partitions(conn, schema, "messages")
            # once it is final too, yesterday's partitions are dropped, history with them
            await store.set_state("m0003", MessageState.DELIVERED, T0 - DAY + 10)
            assert await store.purge(START) == 1
            assert day_before not in await _partitions(conn, schema, "messages")
            history = await _partitions(conn, schema, "message_history")
            assert f"message_history_p{_stamp(START - DAY)}" not in history
            assert await store.history("m0003") == []
            assert await store.get("m0001") is not None  # today's is younger than the cutoff
        finally:
            await conn.close()
            await store.close()

    _run(body)


def _stamp(at: float) -> str:
    return time.strftime("%Y%m%d_%H%M", time.gmtime(at))


def test_reads_go_to_the_replica_and_writes_to_the_primary(postgres_dsn: str, schema: str) -> None:
    # the "replica" is the same database through read-only sessions: a write there would fail
    sep = "&" if "?" in postgres_dsn else "?"
    replica = f"{postgres_dsn}{sep}options=-c%20default_transaction_read_only%3Don"
    store = PostgresStore(postgres_dsn, schema=schema, min_size=1, replica_dsn=replica)

    async def body() -> None:
        await store.open()
        try:
            assert store._replica is not None
            async with store._replica.acquire() as conn:
                with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                    await conn.execute("INSERT INTO id_formats VALUES ('x', NULL, NULL)")
            await store.accept(msg(1))
            await store.set_state("m0001", MessageState.SENT, T0 + 2)
            assert [s for _at, s in await store.history("m0001")] == [
                MessageState.ACCEPTED,
                MessageState.SENT,
            ]
            depths = await store.queue_depths()
            assert depths.waiting == 0
            assert await store.stats(T0, T0 + 3600, ("account",)) != []
            assert await store.purge(T0 + 100) == 0  # a write path, on the primary
        finally:
            await store.close()

    _run(body)


def test_get_finds_a_message_whether_or_not_its_id_tells_its_accept_time(
    postgres_dsn: str, schema: str
) -> None:
    store = PostgresStore(postgres_dsn, schema=schema, min_size=1)
    ids = MessageIdGenerator(node_id=3)

    async def body() -> None:
        await store.open()
        try:
            await store.maintain(T0)
            near = ids.next_id(T0 + 5)  # as the server makes them: the same clock reading
            far = ids.next_id(T0 + 6)  # ... but accepted a day earlier (a clock stepped back)
            await store.accept(msg(1, id=near, accepted_at=T0 + 5))
            await store.accept(msg(2, id=far, accepted_at=T0 - DAY))
            found = [await store.get(i) for i in (near, far, "m-plain", ids.next_id(T0 + 7))]
            assert [r.message.accepted_at if r else None for r in found] == [
                T0 + 5,
                T0 - DAY,
                None,
                None,
            ]
        finally:
            await store.close()

    _run(body)


def test_a_locked_table_delays_new_partitions_not_the_start(postgres_dsn: str, schema: str) -> None:
    first = PostgresStore(postgres_dsn, schema=schema, min_size=1)
    more = PostgresStore(postgres_dsn, schema=schema, min_size=1, partitions_ahead=5)

    async def body() -> None:
        await first.open()
        conn = await asyncpg.connect(postgres_dsn, server_settings={"search_path": schema})
        try:
            before = await _partitions(conn, schema, "messages")
            tx = conn.transaction()
            await tx.start()
            await conn.execute("LOCK TABLE messages IN ACCESS SHARE MODE")  # a long reader
            await more.open()  # would add two partitions: gives up after the lock wait
            assert await _partitions(conn, schema, "messages") == before
            await more.accept(msg(1))  # DEFAULT
            with pytest.raises(asyncpg.LockNotAvailableError):
                await more.maintain(time.time())
            await tx.rollback()
            await more.maintain(time.time())  # the next purge's turn
            assert len(await _partitions(conn, schema, "messages")) == len(before) + 2
            assert await more.get("m0001") is not None
        finally:
            await conn.close()
            await more.close()
            await first.close()

    _run(body)


def test_lagging_reads_are_the_replicas(postgres_dsn: str, schema: str) -> None:
    """A replica that has not caught up at all (a database of its own with the schema but
    none of the rows): query_sm's and the HTTP status's reads (`lagging=True`) see it, every
    read before a write sees the primary."""
    replica_db = f"replica_{schema[-12:]}"
    replica = postgres_dsn.rsplit("/", 1)[0] + f"/{replica_db}"

    async def body() -> None:
        admin = await asyncpg.connect(postgres_dsn, timeout=10)
        await admin.execute(f'CREATE DATABASE "{replica_db}"')
        try:
            behind = PostgresStore(replica, schema=schema, min_size=1)  # the schema, no rows
            await behind.open()
            await behind.close()
            store = PostgresStore(postgres_dsn, schema=schema, min_size=1, replica_dsn=replica)
            await store.open()
            try:
                await store.accept(msg(1))
                assert (await store.get("m0001")) is not None  # the primary's
                assert await store.get("m0001", lagging=True) is None  # the replica's
                assert await store.receipts("m0001", lagging=True) == []
            finally:
                await store.close()
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{replica_db}" WITH (FORCE)')
            await admin.close()

    _run(body)
