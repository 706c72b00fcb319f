"""What only the SQLite backend promises: its file, its migrations in PRAGMA user_version, and
an upgrade from the first schema."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from gateway.store.base import MessageState, ReceiptRecord
from gateway.store.sqlite import MIGRATIONS, SqliteStore
from tests.store import T0, msg


def test_the_file_and_its_directory_are_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "smsgw.sqlite3"

    async def main() -> None:
        store = SqliteStore(path)
        await store.open()
        try:
            await asyncio.wait_for(store.accept(msg(1)), timeout=30)
        finally:
            await store.close()

    asyncio.run(main())
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT id, state FROM messages").fetchall() == [("m0001", "accepted")]


def test_a_first_schema_database_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:  # a database written before migration 2
        conn.executescript(f"BEGIN; {MIGRATIONS[0]}; PRAGMA user_version=1; COMMIT;")
        conn.execute(
            "INSERT INTO messages VALUES "
            "('old', 'shop', 'Shop', 0, 0, '49151', 1, 1, '', 0, 0, 0, 1, 0, x'6869', x'', "
            "'r', NULL, NULL, ?, 'dispatching', ?, 1, NULL)",
            (T0, T0),
        )
        conn.execute("INSERT INTO upstream_ids VALUES ('up', 'k', 'old')")
    conn.close()

    async def main() -> None:
        store = SqliteStore(path, node=3)
        await store.open()
        try:
            record = await store.get("old")
            assert record is not None
            assert (record.message.short_message, record.state) == (b"hi", MessageState.DISPATCHING)
            assert await store.find_part("up", ("k",)) == ("old", 0)  # part 0 by default
            states = await store.add_receipt(ReceiptRecord("old", 0, "up", "k", 2, 0, T0 + 1))
            assert states == [2]  # one part by default
            assert await store.requeue_interrupted(T0 + 2) == 1  # claimed by no node: ours
        finally:
            await store.close()

    asyncio.run(asyncio.wait_for(main(), timeout=30))
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
    conn.close()


def test_a_writer_process_that_dies_is_replaced(tmp_path: Path) -> None:
    """writer="process": if the writer is killed, what it had fails loudly (nothing is
    answered as stored that may not be), and a new writer takes over."""

    async def main() -> None:
        store = SqliteStore(tmp_path / "db.sqlite3", writer="process")
        await store.open()
        try:
            await store.accept(msg(1))
            child = store._child
            assert child is not None
            child.kill()
            for _ in range(200):  # bounded: until a new writer answers
                try:
                    await store.accept(msg(2))
                    break
                except RuntimeError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("no new writer")
            assert store._child is not None and store._child.pid != child.pid
            assert (await store.get("m0001")) is not None  # committed before the kill
            assert (await store.get("m0002")) is not None
        finally:
            await store.close()

    asyncio.run(asyncio.wait_for(main(), 60))
