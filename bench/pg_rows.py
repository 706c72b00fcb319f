"""What one message costs PostgreSQL: rows, bytes on disk and WAL bytes per message.

Pushes N messages through the store API along the path a delivered message takes - accept
(group-committed), claim for dispatch, sent to an upstream, receipt matched, message settled
with a receipt queued for the application, that receipt handed over - in a fresh schema, and
reads PostgreSQL's own counters before and after:

    PYTHONPATH=. .venv/bin/python bench/pg_rows.py --messages 20000
    PYTHONPATH=. .venv/bin/python bench/pg_rows.py --dsn postgresql://u@host/db --keep

Row counts come from pg_stat_user_tables (n_tup_ins/upd/del of the schema's tables and
partitions; the store is closed before each reading, so its sessions have flushed their
counters). Bytes are pg_total_relation_size (heap, indexes, TOAST) summed over the schema.
WAL is pg_current_wal_lsn() before and after: server-wide, so anything else writing to the
server meanwhile is counted too - run it on a quiet server, or take the lowest of a few runs.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import asyncpg

from gateway.store.base import IncomingReceipt, MessageState, NewDelivery, NewMessage, Settlement
from gateway.store.ids import MessageIdGenerator
from gateway.store.postgres import PostgresStore

CHUNK = 500  # messages per claim / receipt batch, about what the dispatcher takes at once

_COUNTERS = """
    SELECT coalesce(sum(n_tup_ins), 0), coalesce(sum(n_tup_upd), 0),
        coalesce(sum(n_tup_del), 0), coalesce(sum(n_tup_hot_upd), 0)
    FROM pg_stat_user_tables WHERE schemaname = $1
"""
_BYTES = """
    SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class AS c
    WHERE c.relnamespace = $1::regnamespace AND c.relkind = 'r'
"""
_PER_TABLE = """
    SELECT regexp_replace(relname, '_(p[0-9_]+|default)$', '') AS t,
        sum(n_tup_ins), sum(n_tup_upd), sum(n_tup_del)
    FROM pg_stat_user_tables WHERE schemaname = $1 GROUP BY 1 ORDER BY 1
"""


async def _reading(dsn: str, schema: str) -> tuple[list[int], int, int, dict[str, list[int]]]:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        counters = [int(v) for v in await conn.fetchrow(_COUNTERS, schema) or ()]
        size = int(await conn.fetchval(_BYTES, schema))
        lsn = await conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
        tables = {
            r[0]: [int(r[1]), int(r[2]), int(r[3])] for r in await conn.fetch(_PER_TABLE, schema)
        }
        return counters, size, int(lsn), tables
    finally:
        await conn.close()


def _message(message_id: str, i: int, now: float) -> NewMessage:
    return NewMessage(
        id=message_id,
        account=f"shop{i % 20}",
        source_addr="Shop",
        destination_addr=f"4915{i:09d}",
        short_message=f"Your code is {i % 1_000_000:06d}. It expires in 10 minutes.".encode(),
        registered_delivery=1,
        route="carrier",
        accepted_at=now,
        expires_at=now + 172_800,
        msg_class="otp",
    )


async def _push(store: PostgresStore, n: int) -> None:
    ids = MessageIdGenerator(node_id=1)
    now = time.time()
    for start in range(0, n, CHUNK):
        batch = [_message(ids.next_id(now), i, now) for i in range(start, min(n, start + CHUNK))]
        await asyncio.gather(*(store.accept(m) for m in batch))
        claimed = await store.claim_due(now, CHUNK)
        await asyncio.gather(*(_sent(store, r.message.id, now) for r in claimed))
        receipts = [
            IncomingReceipt("carrier", (r.message.id.upper(),), r.message.id.upper(), 2, 0, now)
            for r in claimed
        ]
        matches = await store.match_receipts(receipts)
        settlements = [
            Settlement(
                m.record.message.id,
                MessageState.DELIVERED,
                None,
                NewDelivery(m.record.message.account, "receipt", b"x" * 120, 86_400),
            )
            for m in matches
            if m is not None
        ]
        await store.settle_many(settlements, now)
        for account in {s.delivery.account for s in settlements if s.delivery}:
            taken = await store.pending_deliveries(account, now, CHUNK)
            await asyncio.gather(*(store.delivery_done(d.id) for d in taken))


async def _sent(store: PostgresStore, message_id: str, now: float) -> None:
    uid = message_id.upper()  # the carrier's id for it
    await store.record_sent(message_id, "carrier", ((uid,),), now, part_ids=(uid,))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--keep", action="store_true", help="keep the schema afterwards")
    args = parser.parse_args()
    schema = f"smsgw_bench_{uuid.uuid4().hex[:12]}"
    store = PostgresStore(args.dsn, schema=schema, min_size=1, max_size=4)
    await store.open()  # schema, partitions: not counted
    await store.close()
    try:
        before = await _reading(args.dsn, schema)
        store = PostgresStore(args.dsn, schema=schema, min_size=1, max_size=4)
        await store.open()
        started = time.perf_counter()
        await _push(store, args.messages)
        took = time.perf_counter() - started
        await store.close()
        after = await _reading(args.dsn, schema)
    finally:
        if not args.keep:
            conn = await asyncpg.connect(args.dsn)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()
    n = args.messages
    ins, upd, dele, hot = (a - b for a, b in zip(after[0], before[0], strict=True))
    print(f"{n:,} messages, accept -> claim -> sent -> receipt -> settled -> receipt handed over")
    print(f"in {took:.1f} s ({n / took:,.0f} messages/s: one process, 4 connections, no SMPP)")
    print(f"rows inserted  {ins / n:6.2f} per message")
    print(f"rows updated   {upd / n:6.2f} per message ({hot / n:.2f} of them HOT)")
    print(f"rows deleted   {dele / n:6.2f} per message")
    print(f"bytes on disk  {(after[1] - before[1]) / n:8,.0f} per message (tables+indexes+TOAST)")
    print(f"WAL bytes      {(after[2] - before[2]) / n:8,.0f} per message (server-wide)")
    print("per table: inserted / updated / deleted per message")
    for table, counts in sorted(after[3].items()):
        old = before[3].get(table, [0, 0, 0])
        i, u, d = ((a - b) / n for a, b in zip(counts, old, strict=True))
        if i or u or d:
            print(f"  {table:<16} {i:5.2f} / {u:5.2f} / {d:5.2f}")


if __name__ == "__main__":
    asyncio.run(main())
