"""What only the SQLite backend promises: its file, its migrations in PRAGMA user_version, and
an upgrade from the first schema."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

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


def test_history_written_before_migration_13_reads_first(tmp_path: Path) -> None:
    """A message in flight across the upgrade: its history rows stay where they were and the
    state changes after it go to the row's trail, read after them, in order."""
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:
        for number, script in enumerate(MIGRATIONS[:12], start=1):
            conn.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")
        conn.execute(
            "INSERT INTO messages (id, account, source_addr, source_addr_ton, source_addr_npi, "
            "destination_addr, dest_addr_ton, dest_addr_npi, service_type, esm_class, "
            "protocol_id, priority_flag, registered_delivery, data_coding, short_message, tlvs, "
            "route, accepted_at, state, updated_at, attempts) VALUES ('old', 'shop', 'Shop', 0, "
            "0, '49151', 1, 1, '', 0, 0, 0, 1, 0, x'6869', x'', 'r', ?, 'dispatching', ?, 1)",
            (T0, T0 + 1),
        )
        conn.executemany(
            "INSERT INTO message_history VALUES ('old', ?, ?)",
            [(T0, "accepted"), (T0 + 1, "dispatching")],
        )
    conn.close()

    async def main() -> None:
        store = SqliteStore(path)
        await store.open()
        try:
            assert await store.record_sent("old", "up", (("k",),), T0 + 2.5)
            assert await store.set_state("old", MessageState.DELIVERED, T0 + 3.25)
            await store.accept(msg(4))
            assert await store.history("old") == [
                (T0, MessageState.ACCEPTED),
                (T0 + 1, MessageState.DISPATCHING),
                (T0 + 2.5, MessageState.SENT),
                (T0 + 3.25, MessageState.DELIVERED),
            ]
            assert await store.history("m0004") == [(T0 + 4, MessageState.ACCEPTED)]
        finally:
            await store.close()

    asyncio.run(asyncio.wait_for(main(), timeout=30))
    with sqlite3.connect(path) as conn:  # nothing new in the old table
        assert conn.execute("SELECT count(*) FROM message_history").fetchone() == (2,)
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


# -- the retention purge in steps, and what start-up and the purge find by index (issue 13) -----

_OLD_PURGE = (  # the purge before issue 13: three statements in one operation
    "DELETE FROM messages WHERE updated_at < :before AND state IN ({final})",
    "DELETE FROM deliveries WHERE expires_at < :before",
    "DELETE FROM unknown_receipts WHERE received_at < :before",
)
_TABLES = (
    "messages",
    "message_history",
    "upstream_ids",
    "receipts",
    "deliveries",
    "unknown_receipts",
)
_STATES = [s.value for s in MessageState]


def _fill(path: Path, count: int) -> None:
    """`count` messages in every state, changed over 1,000 s, each with history, an upstream
    id and a receipt; as many deliveries expiring over the same time; unknown receipts."""
    with sqlite3.connect(path) as conn:
        for i in range(count):
            at = T0 + (i * 7919) % 1000  # not in id order
            conn.execute(
                "INSERT INTO messages (id, account, source_addr, source_addr_ton, "
                "source_addr_npi, destination_addr, dest_addr_ton, dest_addr_npi, service_type, "
                "esm_class, protocol_id, priority_flag, registered_delivery, data_coding, "
                "short_message, tlvs, route, accepted_at, state, updated_at) VALUES "
                "(?, 'shop', 'Shop', 0, 0, '49151', 1, 1, '', 0, 0, 0, 1, 0, x'6869', x'', "
                "'r', ?, ?, ?)",
                (f"m{i:05d}", at - 5, _STATES[i % len(_STATES)], at),
            )
            conn.execute("INSERT INTO message_history VALUES (?, ?, 'accepted')", (f"m{i:05d}", at))
            conn.execute(
                "INSERT INTO upstream_ids (upstream, key, message_id) VALUES ('up', ?, ?)",
                (str(i), f"m{i:05d}"),
            )
            conn.execute(
                "INSERT INTO receipts (message_id, part, upstream, upstream_id, message_state, "
                "error, received_at) VALUES (?, 0, 'up', ?, 2, 0, ?)",
                (f"m{i:05d}", str(i), at),
            )
            conn.execute(
                "INSERT INTO deliveries (account, kind, pdu, created_at, expires_at, channel) "
                "VALUES ('shop', 'receipt', x'00', ?, ?, ?)",
                (at - 60, at, ("smpp", "webhook")[i % 2]),
            )
            if i % 10 == 0:
                conn.execute(
                    "INSERT INTO unknown_receipts VALUES ('up', ?, 2, 0, ?, x'')", (str(i), at)
                )
    conn.close()


def _rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(path) as conn:
        out = {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall()) for t in _TABLES}
    conn.close()
    return out


def test_the_purge_in_steps_deletes_exactly_what_one_statement_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.store import sqlite as sqlite_store  # noqa: PLC0415

    # Small steps, so the run takes many: of messages (growing) and of delivery ids.
    monkeypatch.setattr(sqlite_store, "_PURGE_FIRST", 7)
    monkeypatch.setattr(sqlite_store, "_DELIVERY_SPAN", 50)
    path, reference = tmp_path / "steps.sqlite3", tmp_path / "one.sqlite3"

    async def make() -> None:
        store = SqliteStore(path)
        await store.open()
        await store.close()

    asyncio.run(make())
    _fill(path, 1200)
    reference.write_bytes(path.read_bytes())
    before = T0 + 600
    with sqlite3.connect(reference) as conn:
        conn.execute("PRAGMA foreign_keys=ON")
        final = ", ".join(f"'{s.value}'" for s in MessageState if s.final)
        expected = sum(
            conn.execute(sql.format(final=final), {"before": before}).rowcount for sql in _OLD_PURGE
        )
    conn.close()

    async def purge() -> int:
        store = SqliteStore(path)
        await store.open()
        try:
            return await store.purge(before)
        finally:
            await store.close()

    assert asyncio.run(asyncio.wait_for(purge(), 60)) == expected > 0
    assert _rows(path) == _rows(reference)


def test_start_up_and_the_purge_read_indexes_not_the_table(tmp_path: Path) -> None:
    from gateway.store import sqlite as sqlite_store  # noqa: PLC0415

    # The purge's term is the partial index's own text: every state but the open ones, which
    # it names exactly, as comparisons (an IN list costs a temporary b-tree per row written).
    final_sql = sqlite_store._FINAL_SQL
    named = {part.split("<>")[1].strip(" '") for part in final_sql.split(" AND ")}
    assert named == {s.value for s in MessageState if not s.final}
    not_final = sqlite_store._NOT_FINAL
    assert {part.split("=")[1].strip(" ')") for part in not_final.split(" OR ")} == named
    assert " IN " not in final_sql + not_final
    path = tmp_path / "plans.sqlite3"

    async def make() -> None:
        store = SqliteStore(path)
        await store.open()
        await store.close()

    asyncio.run(make())
    with sqlite3.connect(path) as conn:

        def plan(sql: str, *args: object) -> str:
            return " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args))

        assert "messages_final" in plan(
            f"SELECT rowid FROM messages WHERE {final_sql} AND updated_at < ? "
            "ORDER BY updated_at LIMIT ?",
            T0,
            10,
        )
        assert "messages_claimed" in plan(
            "SELECT id FROM messages WHERE state = 'dispatching' AND coalesce(claimed_by, ?) = ?",
            0,
            0,
        )
    conn.close()


def test_a_message_s_writes_build_no_temporary_b_trees(tmp_path: Path) -> None:
    """Each statement a message's life runs (accept, claim, sent, receipt, settle), as SQLite
    compiles it: no temporary b-tree but the one RETURNING needs. Each costs a b-tree created
    and dropped per row; IN lists and sorts for one row made 11 per message before."""
    from gateway.store import sqlite as sqlite_store  # noqa: PLC0415
    from gateway.store.base import IncomingReceipt, NewDelivery, Settlement  # noqa: PLC0415

    conn = sqlite_store.connect(str(tmp_path / "plans.sqlite3"))
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    sqlite_store._accept(conn, msg(1))
    sqlite_store._claim_due(conn, T0 + 2, 10, 0)
    sqlite_store._record_sent(conn, "m0001", "up", ((("k1",),), ("k1",)), T0 + 3)
    receipt = IncomingReceipt("up", ("k1",), "k1", 2, 0, T0 + 4)
    assert sqlite_store._match_receipts(conn, [receipt])[0] is not None
    delivery = NewDelivery("shop", "receipt", b"pdu", 3600.0)
    settlement = Settlement("m0001", MessageState.DELIVERED, None, delivery)
    assert sqlite_store._settle_many(conn, [settlement], T0 + 5, ()) == [True]
    conn.set_trace_callback(None)
    built = {}
    for sql in statements:
        ops = [row[1] for row in conn.execute(f"EXPLAIN {sql}")]
        built[sql.split(" WHERE")[0][:60]] = ops.count("OpenEphemeral")
    returning = [s for s in statements if " RETURNING " in s]
    assert len(returning) == 1  # the settle: "already final?" and the change in one statement
    assert sum(built.values()) == 1, built
    conn.close()
