"""The hot paths' queries, taken from the store module itself, use indexes on a partitioned
PostgreSQL store of tens of thousands of messages over several days: EXPLAIN (FORMAT JSON) of
each may not hold a Seq Scan of a populated table or partition."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from gateway.store import postgres as pg
from tests.store import T0
from tests.store.conftest import TIMEOUT
from tests.store.test_postgres import schema

__all__ = ["schema"]  # the fixture, shared

DAY = 86_400.0
START = T0 // DAY * DAY
DAYS = 4
PER_DAY = 10_000
NOW = START + DAYS * DAY
SOME_ID = f"m{2 * PER_DAY + 17:08d}"  # in the third day


def _stamp(at: float) -> str:
    return time.strftime("%Y%m%d_%H%M", time.gmtime(at))


# Each hot query and arguments of the right types.
NO_NOTICES: tuple[list[Any], ...] = ([], [], [], [], [])  # a settle's notices' arrays
QUERIES: dict[str, tuple[str, tuple[Any, ...]]] = {
    "get (HTTP status, query_sm)": (pg._GET, (SOME_ID,)),
    "get near the id's time": (pg._GET_NEAR, (SOME_ID, START + DAY, START + DAY + 3600)),
    "history": (pg._HISTORY, (SOME_ID,)),
    "receipt match": (
        pg._MATCH,
        (
            [0, 1],
            [0, 0],
            ["up", "up"],
            [f"k{SOME_ID}", "kunknown"],
            [0, 1],
            ["up", "up"],
            [f"k{SOME_ID}", "unknown"],
            [2, 2],
            [0, 0],
            [NOW, NOW],
            [b"", b""],
            [True, True],
        ),
    ),
    "receipt match: one upstream id": (pg._FIND, ("up", [f"k{SOME_ID}"])),
    "overdue: parts' states": (pg._PARTS_STATES, ([SOME_ID],)),
    "receipt settle": (
        pg._SETTLE_MANY,
        (
            3,
            [0],
            [SOME_ID],
            ["delivered"],
            [None],
            ["shop"],
            ["r"],
            [b""],
            [60.0],
            NOW,
            pg._FINAL,
            ["smpp"],
            *NO_NOTICES,
            pg._LATENCY_BOUNDS,
        ),
    ),
    "record sent": (
        pg._RECORD_SENT,
        (3, [0], [SOME_ID], ["up"], [1], [NOW], [0], ["x1"], [0], ["kx1"], pg._FINAL, [0]),
    ),
    "claim due": (pg._CLAIM, (NOW, 100, 0)),
    "set state": (pg._SET_STATE, (SOME_ID, "sent", NOW, None, 0, None)),
    "overdue sent": (pg._OVERDUE, ("sent", NOW - 3600, 100, None)),
    "overdue sent to one upstream": (pg._OVERDUE, ("sent", NOW - 3600, 100, "up")),
    "pending deliveries": (pg._PENDING, ("shop7", NOW, 100, 0, 0, 30.0)),
    "pending webhooks": (pg._PENDING_WEBHOOKS, ("shop7", NOW, 100, 30.0, 0)),
    "queue depth": (pg._WAITING, ()),
    "retention: keep a day?": (
        pg._KEEPS.format(part=f"messages_p{_stamp(START)}"),
        (pg._UNFINISHED, pg._FINAL, NOW),
    ),
}

# A group of a few hundred (what a busy node writes at once): the planner weighs a hash join
# over sequential scans against index probes by how many ids it expects.
MANY = [f"m{2 * PER_DAY + 17 + 3 * k:08d}" for k in range(300)]
N = len(MANY)
QUERIES |= {
    "receipt settle, a batch of 300": (
        pg._SETTLE_MANY,
        (
            3,
            list(range(N)),
            MANY,
            ["delivered"] * N,
            [None] * N,
            ["shop"] * N,
            ["r"] * N,
            [b""] * N,
            [60.0] * N,
            NOW,
            pg._FINAL,
            ["smpp"] * N,
            *NO_NOTICES,
            pg._LATENCY_BOUNDS,
        ),
    ),
    "record sent, a group of 300": (
        pg._RECORD_SENT,
        (
            3,
            list(range(N)),
            MANY,
            ["up"] * N,
            [1] * N,
            [NOW] * N,
            list(range(N)),
            [f"x{i}" for i in MANY],
            list(range(N)),
            [f"kx{i}" for i in MANY],
            pg._FINAL,
            [0] * N,
        ),
    ),
    "receipt match, a batch of 300": (
        pg._MATCH,
        (
            list(range(N)),
            [0] * N,
            ["up"] * N,
            [f"k{i}" for i in MANY],
            list(range(N)),
            ["up"] * N,
            [f"k{i}" for i in MANY],
            [2] * N,
            [0] * N,
            [NOW] * N,
            [b""] * N,
            [True] * N,
        ),
    ),
}


def _populate_sql() -> list[str]:
    # 97 % delivered, 2 % sent, 1 % waiting; each with its history row, upstream id and receipt
    state = "CASE WHEN g % 100 = 0 THEN 'accepted' WHEN g % 50 = 1 THEN 'sent' ELSE 'delivered' END"
    at = f"{START} + (g / {PER_DAY}) * {DAY} + (g % {PER_DAY}) * 8.0"
    gen = f"generate_series(0, {DAYS * PER_DAY - 1}) AS g"
    return [
        "INSERT INTO messages (id, account, source_addr, source_addr_ton, source_addr_npi, "
        "destination_addr, dest_addr_ton, dest_addr_npi, service_type, esm_class, protocol_id, "
        "priority_flag, registered_delivery, data_coding, short_message, tlvs, route, "
        "accepted_at, state, updated_at, sent_to, country, operator) "
        f"SELECT 'm' || lpad(g::text, 8, '0'), 'shop' || g % 50, 'Shop', 0, 0, "
        f"'49151' || g, 1, 1, '', 0, 0, 0, 1, 0, 'hello', '', 'r', {at}, {state}, "
        f"{at} + 30, 'up', 'DE', 'Telekom' FROM {gen}",
        "INSERT INTO message_history (message_id, at, state, accepted_at) "
        "SELECT id, accepted_at, state, accepted_at FROM messages",
        "INSERT INTO upstream_ids (upstream, key, message_id) "
        "SELECT 'up', 'k' || id, id FROM messages",
        "INSERT INTO receipts (message_id, part, upstream, upstream_id, message_state, error, "
        "received_at) SELECT id, 0, 'up', 'k' || id, 2, 0, updated_at FROM messages "
        "WHERE state = 'delivered'",
        "INSERT INTO deliveries (account, kind, pdu, created_at, expires_at) "
        f"SELECT 'shop' || g % 50, 'receipt', 'x', {NOW} - g, {NOW} + 86400 "
        "FROM generate_series(1, 20000) AS g",
        "ANALYZE",
    ]


@pytest.fixture
def plans(postgres_dsn: str, schema: str) -> Iterator[dict[str, tuple[Any, dict[str, float]]]]:
    """Each query's JSON plan, and the row count of every table in the schema."""

    async def explain() -> dict[str, tuple[Any, dict[str, float]]]:
        store = pg.PostgresStore(postgres_dsn, schema=schema, min_size=1, max_size=1)
        await store.open()
        try:
            for day in range(DAYS):
                await store.maintain(START + day * DAY)
        finally:
            await store.close()
        conn = await asyncpg.connect(postgres_dsn, server_settings={"search_path": schema})
        try:
            for sql in _populate_sql():
                await conn.execute(sql)
            rows = await conn.fetch(
                "SELECT relname, reltuples FROM pg_class WHERE relnamespace = $1::regnamespace "
                "AND relkind = 'r'",
                schema,
            )
            sizes = {r[0]: float(r[1]) for r in rows}
            out = {}
            for name, (sql, args) in QUERIES.items():
                plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
                out[name] = (json.loads(plan), sizes)
            return out
        finally:
            await conn.close()

    yield asyncio.run(asyncio.wait_for(explain(), timeout=TIMEOUT))


def _scans(node: Any) -> Iterator[tuple[str, str]]:
    """(node type, relation) of every scan in a plan tree."""
    if isinstance(node, dict):
        if "Relation Name" in node:
            yield node.get("Node Type", "target"), node["Relation Name"]
        for value in node.values():
            yield from _scans(value)
    elif isinstance(node, list):
        for value in node:
            yield from _scans(value)


def test_the_data_spans_several_partitions(
    plans: dict[str, tuple[Any, dict[str, float]]],
) -> None:
    _plan, sizes = plans["get (HTTP status, query_sm)"]
    filled = [n for n, rows in sizes.items() if n.startswith("messages_p") and rows >= PER_DAY]
    assert len(filled) == DAYS, sizes
    assert sizes["messages_default"] == 0


@pytest.mark.parametrize("name", list(QUERIES))
def test_hot_query_uses_indexes(name: str, plans: dict[str, tuple[Any, dict[str, float]]]) -> None:
    plan, sizes = plans[name]
    scans = list(_scans(plan))
    assert scans, plan
    # a sequential scan is allowed only of what is (nearly) empty: DEFAULT, partitions ahead
    full = [(kind, rel) for kind, rel in scans if kind == "Seq Scan" and sizes.get(rel, 0) > 100]
    assert not full, (full, json.dumps(plan, indent=1)[:3000])


def test_a_lookup_near_the_ids_time_reads_one_partition(
    plans: dict[str, tuple[Any, dict[str, float]]],
) -> None:
    plan, _sizes = plans["get near the id's time"]
    assert {rel for _kind, rel in _scans(plan)} == {f"messages_p{_stamp(START + DAY)}"}
