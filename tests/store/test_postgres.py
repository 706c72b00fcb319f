"""What only the PostgreSQL backend promises: its schema option, migrations that several nodes
may start at once, and a batch of accepts in which values PostgreSQL refuses fail alone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

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
