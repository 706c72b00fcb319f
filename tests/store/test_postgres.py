"""What only the PostgreSQL backend promises: its schema option, migrations that several nodes
may start at once, and a batch of accepts in which values PostgreSQL refuses fail alone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from gateway.store.base import IncomingReceipt, MessageState, NewDelivery, Settlement
from gateway.store.postgres import MIGRATIONS, PARTITIONS_AHEAD, PostgresStore
from tests.store import T0, msg
from tests.store.conftest import TIMEOUT


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    """A schema name nobody uses yet; dropped afterwards."""
    name = f"smsgw_test_{uuid.uuid4().hex[:16]}"
    yield name

    async def drop() -> None:
        conn = await asyncpg.connect(postgres_dsn, timeout=10)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await conn.close(timeout=10)

    asyncio.run(asyncio.wait_for(drop(), timeout=TIMEOUT))


def test_nodes_starting_together_migrate_once(postgres_dsn: str, schema: str) -> None:
    stores = [PostgresStore(postgres_dsn, node=n, schema=schema, min_size=1) for n in range(6)]

    async def main() -> None:
        try:
            await asyncio.gather(*(s.open() for s in stores))
            await stores[0].accept(msg(1))
            for s in stores:
                assert await s.get("m0001") is not None
            conn = await asyncpg.connect(postgres_dsn, timeout=10)
            try:
                versions = await conn.fetch(f'SELECT version FROM "{schema}".smsgw_schema')
                tables = await conn.fetch(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
                    schema,
                )
            finally:
                await conn.close(timeout=10)
            assert [v["version"] for v in versions] == [len(MIGRATIONS)]
            # the partitions of messages and message_history (migration 10) aside
            names = {t["table_name"] for t in tables}
            parts = {n for n in names if n.startswith(("messages_", "message_history_"))}
            assert {"messages_default", "message_history_default"} <= parts
            assert len(parts) == 2 * (2 + PARTITIONS_AHEAD)  # DEFAULT, now, those ahead
            assert names - parts == {
                "smsgw_schema",
                "messages",
                "message_history",
                "upstream_ids",
                "receipts",
                "deliveries",
                "inbound_parts",
                "sim_usage",
                "unknown_receipts",
                "id_formats",
                "batches",
                "suppressions",
                "policy_sends",
                "policy_dedup",
                "dead_numbers",
                "delivery_stats",
                "node_heartbeats",
            }
        finally:
            await asyncio.gather(*(s.close() for s in stores))

    asyncio.run(asyncio.wait_for(main(), timeout=TIMEOUT))


def test_values_postgres_refuses_fail_only_their_message(postgres_dsn: str, schema: str) -> None:
    store = PostgresStore(postgres_dsn, schema=schema)
    batch = [msg(i) for i in range(200)]
    batch[17] = msg(17, esm_class=2**40)  # beyond a 32-bit integer column
    batch[150] = msg(150, account="sh\x00p")  # PostgreSQL text holds no NUL

    async def main() -> None:
        await store.open()
        try:
            results = await asyncio.gather(
                *(store.accept(m) for m in batch), return_exceptions=True
            )
            failed = {m.id: r for m, r in zip(batch, results, strict=True) if r is not None}
            assert sorted(failed) == ["m0017", "m0150"]
            assert all(isinstance(e, asyncpg.DataError) for e in failed.values())
            assert store.commits < 40  # split in halves, not retried one by one
            due = await store.claim_due(T0 + 1000, limit=1000)
            assert len(due) == 198
        finally:
            await store.close()

    asyncio.run(asyncio.wait_for(main(), timeout=TIMEOUT))


def test_concurrent_record_sent_are_group_committed(postgres_dsn: str, schema: str) -> None:
    """Sends recorded together share a transaction, and each reads as if recorded alone, in
    order: a message recorded twice (re-sent elsewhere) ends with the second's target, its
    history and statistics counting both; an unknown id is refused and links nothing."""
    store = PostgresStore(postgres_dsn, schema=schema)
    count = 300

    async def main() -> None:
        await store.open()
        try:
            await asyncio.gather(*(store.accept(msg(i)) for i in range(1, count + 1)))
            assert len(await store.claim_due(T0 + 1000, limit=1000)) == count
            await store.settle("m0002", MessageState.DELIVERED, T0 + 1001)  # a receipt first
            calls = [
                store.record_sent(
                    f"m{i:04d}",
                    "up",
                    ((f"a{i}",), (f"b{i}", f"B{i}")),
                    T0 + 1002,
                    part_ids=(f"a{i}", f"b{i}"),
                )
                for i in range(1, count + 1)
            ]
            calls.append(store.record_sent("nope", "up", (("n1",),), T0 + 1002))
            calls.append(store.record_sent("m0001", "up2", (("c1",),), T0 + 1003))
            results = await asyncio.gather(*calls)
            assert results == [True] * count + [False, True]
            assert store.sent_commits <= 5  # not one per call
            first = await store.get("m0001")
            assert first is not None and first.state is MessageState.SENT
            assert first.updated_at == T0 + 1003
            assert [s for _at, s in await store.history("m0001")].count(MessageState.SENT) == 2
            ended = await store.get("m0002")
            assert ended is not None and ended.state is MessageState.DELIVERED  # not reopened
            assert await store.find_part("up", ("b2",)) == ("m0002", 1)  # linked all the same
            assert await store.find_part("up", ("B7",)) == ("m0007", 1)
            assert await store.find_part("up2", ("c1",)) == ("m0001", 0)
            assert await store.find_part("up", ("n1",)) is None
            overdue = await store.overdue_sent(T0 + 2000, 1000)
            assert {o.record.message.id: o.part_ids for o in overdue}["m0005"] == ("a5", "b5")
            rows = await store.stats(T0 - 3600, T0 + 7200, ("target",))
            sent = {row.key["target"]: row.sent for row in rows if row.sent}
            assert sent == {"up": count - 2, "up2": 1}  # m0002 ended first; m0001 moved
        finally:
            await store.close()

    asyncio.run(asyncio.wait_for(main(), timeout=TIMEOUT))


def test_receipts_wait_for_the_sends_recorded_before_them(postgres_dsn: str, schema: str) -> None:
    """A carrier's receipt often comes before the send group that links its id commits: a
    match made after a record_sent call (not yet committed) sees that send, so every receipt
    is looked up once; one whose id was never sent is kept as unknown all the same."""
    store = PostgresStore(postgres_dsn, schema=schema)
    count = 200

    async def main() -> None:
        await store.open()
        try:
            await asyncio.gather(*(store.accept(msg(i)) for i in range(1, count + 1)))
            assert len(await store.claim_due(T0 + 1000, limit=1000)) == count
            loop = asyncio.get_running_loop()
            sends = [
                loop.create_task(store.record_sent(f"m{i:04d}", "up", ((f"u{i}",),), T0 + 1001))
                for i in range(1, count + 1)
            ]
            await asyncio.sleep(0)  # every call queued; the first group is being written
            assert not all(s.done() for s in sends)
            receipts = [
                IncomingReceipt("up", (f"u{i}",), f"u{i}", 2, 0, T0 + 1002, b"raw")
                for i in range(1, count + 1)
            ]
            receipts.append(
                IncomingReceipt("up", ("nope",), "nope", 2, 0, T0 + 1002, b"?", keep_unknown=True)
            )
            matches = await store.match_receipts(receipts)
            assert [m.record.message.id if m else None for m in matches] == [
                f"m{i:04d}" for i in range(1, count + 1)
            ] + [None]
            assert store.receipt_lookups == count + 1  # each looked up once
            assert await asyncio.gather(*sends) == [True] * count
            assert [r.upstream_id for r in await store.unknown_receipts()] == ["nope"]
        finally:
            await store.close()

    asyncio.run(asyncio.wait_for(main(), timeout=TIMEOUT))


async def _sends_and_settles(store: PostgresStore) -> None:
    """Sends (one group re-sending a message elsewhere) and settles of m0001..m0008."""
    assert len(await store.claim_due(T0 + 1000, limit=100)) == 8
    assert (
        await asyncio.gather(
            *(store.record_sent(f"m{i:04d}", "up1", ((f"u{i}",),), T0 + 10) for i in range(1, 7)),
            store.record_sent("m0003", "up2", (("u3b",),), T0 + 11),  # a second round
        )
        == [True] * 7
    )
    assert await store.record_sent("m0004", "up2", (("u4b",),), T0 + 12)  # a group of one
    receipt = NewDelivery("shop", "receipt", b"s", 60.0, ("smpp", "webhook"))
    done = await store.settle_many(
        [
            Settlement("m0001", MessageState.DELIVERED, None, receipt),
            Settlement("m0002", MessageState.UNDELIVERABLE, 11, receipt),
            Settlement("m0003", MessageState.DELIVERED),
            Settlement("m0008", MessageState.EXPIRED),  # never sent
        ],
        T0 + 80,  # m0001 took 70 s
        deliveries=(NewDelivery("shop", "receipt", b"n", 60.0),),
    )
    assert done == [True] * 4
    assert await store.settle_many([Settlement("m0001", MessageState.FAILED)], T0 + 81) == [False]
    assert await store.settle("m0004", MessageState.DELIVERED, T0 + 12.5)
    pending = await store.pending_deliveries("shop", T0 + 90, 10)
    assert [d.pdu for d in pending] == [b"s", b"s", b"n"]  # the settled ones', then the notice


def test_stats_of_sends_and_settles_older_rows_and_the_migration(
    postgres_dsn: str, schema: str
) -> None:
    """A send group and a settle count their messages in their own statement, by the place
    kept at accept; messages written before migration 12 (filled in as it runs) or by an
    older node (no place: counted after) end with the same statistics, to the hour."""
    hour = T0 // 3600 * 3600
    # a hair before an hour, one at it, one at no time a clock gives
    ats = {1: hour + 3600 - 2**-19, 2: hour + 3600.0, 5: float("nan")}
    numbers = ["4915112345678", "33612345678", "447700900123", "12025550123", "+49x", "", "1", "4"]
    messages = [
        msg(i, accepted_at=ats.get(i, T0 + i), destination_addr=numbers[i - 1], campaign=f"c{i}")
        for i in range(1, 9)
    ]
    groups = ("hour", "account", "route", "target", "class", "campaign", "country", "operator")
    reference = f"{schema}_ref"

    async def stats(store: PostgresStore) -> list[tuple[tuple[tuple[str, object], ...], object]]:
        rows = await store.stats(-(2.0**60), 2.0**60, (*groups, "prefix"))
        return sorted((tuple(sorted(r.key.items())), r.as_dict()) for r in rows)  # type: ignore[type-var]

    async def main() -> None:
        expected = PostgresStore(postgres_dsn, schema=reference)
        await expected.open()
        try:
            for m in messages:
                await expected.accept(m)
            await _sends_and_settles(expected)
            want = await stats(expected)
        finally:
            await expected.close()
        conn = await asyncpg.connect(postgres_dsn, timeout=10)
        try:
            await conn.execute(f'DROP SCHEMA "{reference}" CASCADE')
        finally:
            await conn.close(timeout=10)
        assert {dict(key)["country"] for key, _counts in want} >= {"DE", "FR", "US", ""}

        store = PostgresStore(postgres_dsn, schema=schema)
        await store.open()
        try:
            for m in messages[:4]:
                await store.accept(m)
        finally:
            await store.close()
        conn = await asyncpg.connect(postgres_dsn, server_settings={"search_path": schema})
        try:  # back to version 11: the places were not kept then
            await conn.execute("ALTER TABLE messages DROP COLUMN country, DROP COLUMN operator")
            await conn.execute("UPDATE smsgw_schema SET version = 11")
        finally:
            await conn.close(timeout=10)
        store = PostgresStore(postgres_dsn, schema=schema)
        await store.open()  # migration 12
        try:
            for m in messages[4:]:
                await store.accept(m)
            pool = store._open_pool()
            filled = await pool.fetchval("SELECT count(*) FROM messages WHERE country IS NOT NULL")
            assert filled == 8
            # as an older node writes them: no place
            await pool.execute(
                "UPDATE messages SET country = NULL, operator = NULL WHERE id IN ('m0002', 'm0007')"
            )
            await _sends_and_settles(store)
            assert await stats(store) == want
        finally:
            await store.close()

    asyncio.run(asyncio.wait_for(main(), timeout=TIMEOUT))
