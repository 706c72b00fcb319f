"""The shared store: PostgreSQL through an asyncpg pool, for several gateway nodes.

Theory of operation
-------------------
Every method is one statement (or one short transaction) on a pooled connection, committed
before it returns; with PostgreSQL's default ``synchronous_commit=on`` a returned commit is
durable. Several steps that must hang together - a state change and its history row - are
one statement with data-modifying CTEs, so they commit together in one round trip.

`accept` is the hot path. Callers queue their message and wait on a future; one writer task
takes whatever has queued up (up to `max_batch`), inserts it with a single
``INSERT ... SELECT FROM unnest(...)`` (one transaction, one round trip, one WAL flush) and
only then resolves the futures. When idle a lone message is written at once: no batching
delay is ever added, the batch is simply what arrived while the previous one committed. If a
batch fails on a row's values (a duplicate id, a number out of range), it is split and retried
so only the offending message fails; any other error (the server is gone) fails the batch.

Nodes share the database: `claim_due` locks its rows with ``FOR UPDATE SKIP LOCKED`` so two
nodes never claim the same message, and records the claiming node so `requeue_interrupted`
only takes back its own.

The schema lives in `MIGRATIONS`, applied in order under a transaction-scoped advisory lock
(nodes starting together don't race) and recorded in ``smsgw_schema``. Timestamps are float
seconds (double precision) as in the `Store` interface. With `schema`, every table lives in
that PostgreSQL schema (created if missing) through the pool's ``search_path``.

`messages` and `message_history` are range-partitioned by the message's ``accepted_at`` (one
partition per day, created ahead by `maintain`, a DEFAULT partition for the rest), so retention
drops a day at once; see docs/SCALING.md. With `replica_dsn`, reads that may lag (statistics,
queue depths, history) use a second pool; anything read before a write stays on the primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import operator
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Generic, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from gateway.policy.check import StoreCheck, store_verdict
from gateway.policy.rules import Facts, Verdict
from gateway.store.base import (
    DELIVERY_LEASE,
    INBOUND_DONE,
    INBOUND_TAKEN,
    LATENCY_BOUNDS,
    LATENCY_BUCKETS,
    OUTCOME,
    PREFIX_DIGITS,
    STATS_COUNTERS,
    SUPPRESS_CHUNK,
    BatchRecord,
    BatchState,
    DeadNumber,
    Delivery,
    IncomingReceipt,
    MessageRecord,
    MessageState,
    NewBatch,
    NewDelivery,
    NewMessage,
    OverdueMessage,
    QueueDepths,
    ReceiptMatch,
    ReceiptRecord,
    Settlement,
    StatsRow,
    Store,
    Suppression,
    Usage,
    unique_suppressions,
    usage_windows,
)
from gateway.store.ids import parse_id
from gateway.store.stats import (
    DIM_NAMES,
    KEY_COLUMNS,
    MESSAGE_DIMS,
    VALUE_COLUMNS,
    StatsBatch,
    count_change,
    count_sent,
    place,
    query_sql,
)
from gateway.store.stats import schema as stats_schema
from gateway.telemetry.metrics import Metrics

__all__ = ["MIGRATIONS", "PARTITIONED", "PARTITIONS_AHEAD", "PARTITION_SECONDS", "PostgresStore"]

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE messages (
        id text PRIMARY KEY,
        account text NOT NULL,
        source_addr text NOT NULL,
        source_addr_ton integer NOT NULL,
        source_addr_npi integer NOT NULL,
        destination_addr text NOT NULL,
        dest_addr_ton integer NOT NULL,
        dest_addr_npi integer NOT NULL,
        service_type text NOT NULL,
        esm_class integer NOT NULL,
        protocol_id integer NOT NULL,
        priority_flag integer NOT NULL,
        registered_delivery integer NOT NULL,
        data_coding integer NOT NULL,
        short_message bytea NOT NULL,
        tlvs bytea NOT NULL,
        route text NOT NULL,
        schedule_at double precision,
        expires_at double precision,
        accepted_at double precision NOT NULL,
        state text NOT NULL,
        updated_at double precision NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        error bigint,  -- a command_status is an unsigned 32-bit number
        parts integer NOT NULL DEFAULT 1,
        claimed_by integer
    );
    -- claim_due scans only what waits; purge and requeue_interrupted go by state
    CREATE INDEX messages_due ON messages (accepted_at, id) WHERE state = 'accepted';
    CREATE INDEX messages_state ON messages (state, updated_at);
    CREATE TABLE message_history (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        message_id text NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        at double precision NOT NULL,
        state text NOT NULL
    );
    CREATE INDEX message_history_id ON message_history (message_id, seq);
    CREATE TABLE upstream_ids (
        seq bigint GENERATED ALWAYS AS IDENTITY,  -- the latest link wins
        upstream text NOT NULL,
        key text NOT NULL,
        message_id text NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        part integer NOT NULL DEFAULT 0,
        PRIMARY KEY (upstream, key, message_id)
    );
    CREATE INDEX upstream_ids_message ON upstream_ids (message_id);
    CREATE TABLE receipts (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        message_id text NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        part integer NOT NULL,
        upstream text NOT NULL,
        upstream_id text NOT NULL,
        message_state integer NOT NULL,
        error bigint NOT NULL,
        received_at double precision NOT NULL
    );
    CREATE INDEX receipts_message ON receipts (message_id, seq);
    CREATE TABLE deliveries (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        account text NOT NULL,
        kind text NOT NULL,
        pdu bytea NOT NULL,
        created_at double precision NOT NULL,
        expires_at double precision NOT NULL,
        attempts integer NOT NULL DEFAULT 0
    );
    CREATE INDEX deliveries_account ON deliveries (account, id);
    CREATE INDEX deliveries_expiry ON deliveries (expires_at);
    """,
    # 2: parts of concatenated inbound messages, durable until the message is whole.
    """
    CREATE TABLE inbound_parts (
        key text NOT NULL,
        seq integer NOT NULL,
        total integer NOT NULL,
        pdu bytea NOT NULL,
        received_at double precision NOT NULL,
        PRIMARY KEY (key, seq)
    );
    CREATE INDEX inbound_parts_age ON inbound_parts (received_at);
    """,
    # 3: per-SIM send counters (modem limits): one row per SIM, the current windows only.
    """
    CREATE TABLE sim_usage (
        key text PRIMARY KEY,
        minute bigint NOT NULL,
        per_minute bigint NOT NULL,
        day bigint NOT NULL,
        per_day bigint NOT NULL,
        month bigint NOT NULL,
        per_month bigint NOT NULL
    );
    """,
    # 4: a node leases the deliveries it offers, so another node sharing the database does
    # not offer them as well while the first waits for the application's answer.
    """
    ALTER TABLE deliveries ADD COLUMN leased_by integer;
    ALTER TABLE deliveries ADD COLUMN lease_until double precision NOT NULL DEFAULT 0;
    """,
    # 5: every receipt's raw text, the receipts no message matched, and where a message went
    # (its upstream and part ids as written) so one whose receipt never comes can be asked for.
    """
    ALTER TABLE receipts ADD COLUMN raw bytea NOT NULL DEFAULT '';
    CREATE TABLE unknown_receipts (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        upstream text NOT NULL,
        upstream_id text NOT NULL,
        message_state integer NOT NULL,
        error bigint NOT NULL,
        received_at double precision NOT NULL,
        raw bytea NOT NULL
    );
    CREATE INDEX unknown_receipts_age ON unknown_receipts (received_at);
    ALTER TABLE messages ADD COLUMN sent_to text;
    ALTER TABLE messages ADD COLUMN sent_ids text[];
    CREATE TABLE id_formats (upstream text PRIMARY KEY, sent text, received text);
    """,
    # 6: webhooks ride the same queue: a row's channel, and a failed POST's retry time and error.
    """
    ALTER TABLE deliveries ADD COLUMN channel text NOT NULL DEFAULT 'smpp';
    ALTER TABLE deliveries ADD COLUMN next_at double precision NOT NULL DEFAULT 0;
    ALTER TABLE deliveries ADD COLUMN last_error text;
    CREATE INDEX deliveries_webhook ON deliveries (account, id) WHERE channel = 'webhook';
    """,
    # 7 (issue 10): a batch, its recipients until accepted and its cursor, and its
    # messages by a partial index (others skip it).
    """
    CREATE TABLE batches (
        id text PRIMARY KEY,
        account text NOT NULL,
        state text NOT NULL,
        created_at double precision NOT NULL,
        finished_at double precision,
        total integer NOT NULL,
        size integer NOT NULL,
        accepted_upto integer NOT NULL DEFAULT 0,
        accepted integer NOT NULL DEFAULT 0,
        refused integer NOT NULL DEFAULT 0,
        duplicates integer NOT NULL,
        invalid integer NOT NULL,
        request text NOT NULL,
        report text NOT NULL,
        recipients bytea NOT NULL
    );
    CREATE INDEX batches_accepting ON batches (created_at) WHERE state = 'accepting';
    ALTER TABLE messages ADD COLUMN batch_id text;
    CREATE INDEX messages_batch ON messages (batch_id, state) WHERE batch_id IS NOT NULL;
    """,
    # 8 (issue 11): a message's class, campaign tag and the rule that stopped it; what the
    # sending rules read in the accept batch: opted-out numbers, sends per recipient and
    # class (caps), recent texts (dedup), numbers found dead.
    """
    ALTER TABLE messages ADD COLUMN msg_class text NOT NULL DEFAULT '';
    ALTER TABLE messages ADD COLUMN campaign text NOT NULL DEFAULT '';
    ALTER TABLE messages ADD COLUMN stop_reason text;
    CREATE TABLE suppressions (
        number text NOT NULL,
        scope text NOT NULL DEFAULT '',
        created_at double precision NOT NULL,
        source text NOT NULL,
        PRIMARY KEY (number, scope)
    );
    CREATE TABLE policy_sends (
        number text NOT NULL,
        msg_class text NOT NULL,
        account text NOT NULL,
        sent_at double precision NOT NULL
    );
    CREATE INDEX policy_sends_by ON policy_sends (number, msg_class, sent_at);
    CREATE INDEX policy_sends_age ON policy_sends (sent_at);
    CREATE TABLE policy_dedup (
        key text PRIMARY KEY,
        message_id text NOT NULL,
        created_at double precision NOT NULL
    );
    CREATE INDEX policy_dedup_age ON policy_dedup (created_at);
    CREATE TABLE dead_numbers (
        number text PRIMARY KEY,
        failures integer NOT NULL,
        last_at double precision NOT NULL,
        dead_until double precision
    );
    """,
    # 9 (issue 11): delivery statistics, counted in each state change's transaction; when a
    # message was last handed to an upstream (receipt latency).
    "ALTER TABLE messages ADD COLUMN sent_at double precision;" + stats_schema("bigint", "text"),
    # 10 (issue 12): messages and their history partitioned by accept time, so retention drops
    # whole partitions. A partitioned table's keys must hold the partition key: the primary key
    # becomes (id, accepted_at) (ids are unique by construction, ids.py), history carries its
    # message's accepted_at, and the foreign keys to messages go (purge deletes what hangs off
    # a message itself). Existing rows land in the DEFAULT partition; `_maintain` moves them
    # into a dated partition when it creates one for their range.
    """
    ALTER TABLE upstream_ids DROP CONSTRAINT upstream_ids_message_id_fkey;
    ALTER TABLE receipts DROP CONSTRAINT receipts_message_id_fkey;
    ALTER TABLE message_history RENAME TO message_history_old;
    ALTER INDEX message_history_id RENAME TO message_history_old_id;
    ALTER TABLE messages RENAME TO messages_old;
    ALTER INDEX messages_due RENAME TO messages_old_due;
    ALTER INDEX messages_state RENAME TO messages_old_state;
    ALTER INDEX messages_batch RENAME TO messages_old_batch;
    CREATE TABLE messages (LIKE messages_old INCLUDING DEFAULTS) PARTITION BY RANGE (accepted_at);
    ALTER TABLE messages ADD PRIMARY KEY (id, accepted_at);
    CREATE INDEX messages_due ON messages (accepted_at, id) WHERE state = 'accepted';
    CREATE INDEX messages_state ON messages (state, updated_at);
    CREATE INDEX messages_batch ON messages (batch_id, state) WHERE batch_id IS NOT NULL;
    CREATE TABLE messages_default PARTITION OF messages DEFAULT;
    INSERT INTO messages SELECT * FROM messages_old;
    CREATE SEQUENCE message_history_seq;
    CREATE TABLE message_history (
        seq bigint NOT NULL DEFAULT nextval('message_history_seq'),
        message_id text NOT NULL,
        at double precision NOT NULL,
        state text NOT NULL,
        accepted_at double precision NOT NULL,  -- its message's: the same partition bounds
        PRIMARY KEY (seq, accepted_at)
    ) PARTITION BY RANGE (accepted_at);
    ALTER SEQUENCE message_history_seq OWNED BY message_history.seq;
    CREATE INDEX message_history_id ON message_history (message_id, seq);
    CREATE TABLE message_history_default PARTITION OF message_history DEFAULT;
    INSERT INTO message_history (seq, message_id, at, state, accepted_at)
    SELECT h.seq, h.message_id, h.at, h.state, m.accepted_at
    FROM message_history_old AS h JOIN messages_old AS m ON m.id = h.message_id;
    SELECT setval('message_history_seq', coalesce(max(seq), 0) + 1, false)
    FROM message_history_old;
    DROP TABLE message_history_old;
    DROP TABLE messages_old;
    """,
    # 11 (issue 12): each node's last heartbeat, so another node can take over the messages a
    # dead one had claimed (see `take_over`).
    "CREATE TABLE node_heartbeats (node integer PRIMARY KEY, seen_at double precision NOT NULL);",
    # 12 (issue 13): the destination's country and operator (`stats.place`, computed in Python
    # at accept), so a send group or a settle bumps its stats rows in its own statement. Rows
    # of earlier versions not yet final are filled in as this runs (`_fill_places`).
    "ALTER TABLE messages ADD COLUMN country text, ADD COLUMN operator text;",
)
_PLACES_SINCE = 12  # the migration that added messages.country and .operator

# Partitioned by accept time (migration 10): the parents and their DEFAULT partitions.
PARTITIONED = ("messages", "message_history")
PARTITION_SECONDS = 86_400.0  # one partition per UTC day
PARTITIONS_AHEAD = 3  # partitions created beyond the current one, so inserts rarely hit DEFAULT
_DDL_LOCK_WAIT = "2s"  # longest wait for a partition's DDL lock (lock_timeout)

# NewMessage's fields in order, with their column types (the unnest arrays need them).
_TYPES = {
    "id": "text",
    "account": "text",
    "source_addr": "text",
    "destination_addr": "text",
    "short_message": "bytea",
    "data_coding": "integer",
    "esm_class": "integer",
    "registered_delivery": "integer",
    "source_addr_ton": "integer",
    "source_addr_npi": "integer",
    "dest_addr_ton": "integer",
    "dest_addr_npi": "integer",
    "service_type": "text",
    "protocol_id": "integer",
    "priority_flag": "integer",
    "tlvs": "bytea",
    "route": "text",
    "schedule_at": "double precision",
    "expires_at": "double precision",
    "accepted_at": "double precision",
    "msg_class": "text",
    "campaign": "text",
}
_FIELDS = NewMessage._fields
assert tuple(_TYPES) == _FIELDS, "NewMessage changed: update _TYPES and MIGRATIONS"
_values = operator.attrgetter(*_FIELDS)
_COLUMNS = ", ".join(_FIELDS)

# Errors about one row's values: the rest of its batch can still be written.
_ROW_ERRORS = (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError)

_ACCEPTED = MessageState.ACCEPTED.value
_DISPATCHING = MessageState.DISPATCHING.value
_FINAL = [s.value for s in MessageState if s.final]

# The accept group commit stays one statement: its stats rows (summed in Python, where the
# destination's country and operator are known) are upserted from arrays beside it.
_N_TYPES = len(_TYPES)
_STATS_ARRAYS = ", ".join(
    f"${n}::{'bigint' if c in ('hour', 'accepted') else 'text'}[]"
    for n, c in enumerate((*KEY_COLUMNS, "accepted"), _N_TYPES + 1)
)
_N_PLACES = _N_TYPES + len(KEY_COLUMNS) + 2  # $n of the countries, then the operators
_ACCEPT = f"""
    WITH m AS (
        INSERT INTO messages ({_COLUMNS}, country, operator, state, updated_at)
        SELECT {_COLUMNS}, country, operator, '{_ACCEPTED}', accepted_at
        FROM unnest({", ".join(f"${n}::{t}[]" for n, t in enumerate(_TYPES.values(), 1))},
            ${_N_PLACES}::text[], ${_N_PLACES + 1}::text[])
            AS t ({_COLUMNS}, country, operator)
        RETURNING id, accepted_at
    ), s AS (
        INSERT INTO delivery_stats ({", ".join(KEY_COLUMNS)}, accepted)
        SELECT * FROM unnest({_STATS_ARRAYS})
        ON CONFLICT ({", ".join(KEY_COLUMNS)})
        DO UPDATE SET accepted = delivery_stats.accepted + excluded.accepted
    )
    INSERT INTO message_history (message_id, at, state, accepted_at)
    SELECT id, accepted_at, '{_ACCEPTED}', accepted_at FROM m
"""
_RECORD = f"{_COLUMNS}, state, updated_at, attempts, error, stop_reason"
_INSERT_ONE = (
    f"INSERT INTO messages ({_COLUMNS}, stop_reason, country, operator, state, updated_at) "
    f"VALUES ({', '.join(f'${n}' for n in range(1, len(_TYPES) + 4))}, "
    f"'{_ACCEPTED}', ${_FIELDS.index('accepted_at') + 1})"
)

_ACCEPT_BATCH = f"""
    WITH m AS (
        INSERT INTO messages ({_COLUMNS}, batch_id, country, operator, state, updated_at)
        SELECT {_COLUMNS}, ${len(_TYPES) + 1}, country, operator, '{_ACCEPTED}', accepted_at
        FROM unnest({", ".join(f"${n}::{t}[]" for n, t in enumerate(_TYPES.values(), 1))},
            ${len(_TYPES) + 2}::text[], ${len(_TYPES) + 3}::text[])
            AS t ({_COLUMNS}, country, operator)
        RETURNING id, accepted_at
    )
    INSERT INTO message_history (message_id, at, state, accepted_at)
    SELECT id, accepted_at, '{_ACCEPTED}', accepted_at FROM m
"""

# The cursor moves only from where the caller read it, in the chunk's own transaction: a
# chunk accepted before a crash (or by another node) is never accepted again.
_BATCH_CURSOR = """
    UPDATE batches SET accepted_upto = $2, accepted = accepted + $3, refused = refused + $4,
        report = coalesce($5, report),
        state = CASE WHEN $2 >= size THEN 'done' ELSE state END,
        finished_at = CASE WHEN $2 >= size THEN $6 ELSE finished_at END,
        recipients = CASE WHEN $2 >= size THEN ''::bytea ELSE recipients END
    WHERE id = $1 AND state = 'accepting' AND accepted_upto = $7
    RETURNING id
"""

# Two statements in one transaction: the first waits for a chunk being accepted (its row lock
# on the batch), so the second - a new snapshot under READ COMMITTED - sees that chunk too.
_STOP_BATCH = f"""
    UPDATE batches SET state = '{BatchState.CANCELLED.value}', recipients = ''::bytea,
        finished_at = coalesce(finished_at, $2)
    WHERE id = $1 AND state != '{BatchState.CANCELLED.value}'
"""
_CANCEL_BATCH = f"""
    WITH u AS (
        UPDATE messages SET state = '{MessageState.CANCELLED.value}', updated_at = $2
        WHERE batch_id = $1 AND state = '{_ACCEPTED}'
        RETURNING id, sent_at, {MESSAGE_DIMS}
    ), h AS (
        INSERT INTO message_history (message_id, at, state, accepted_at)
        SELECT id, $2, '{MessageState.CANCELLED.value}', accepted_at FROM u
    )
    SELECT 'accepted', sent_at, {DIM_NAMES} FROM u
"""

_BATCH_COLUMNS = (
    "id, account, state, created_at, finished_at, total, size, accepted_upto, accepted, "
    "refused, duplicates, invalid, request, report"
)

# SKIP LOCKED: rows another node is claiming right now are left to it. MATERIALIZED keeps
# the locking subquery evaluated once, before the update. The update finds its rows by arrays
# (initplans), not a join: a join plans a hash over every partition's rows; this probes the
# primary key of the partitions within the claimed accept times only.
_CLAIM = f"""
    WITH due AS MATERIALIZED (
        SELECT id, accepted_at FROM messages
        WHERE state = '{_ACCEPTED}' AND (schedule_at IS NULL OR schedule_at <= $1)
        ORDER BY accepted_at, id
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE messages AS m
        SET state = '{_DISPATCHING}', updated_at = $1, attempts = m.attempts + 1, claimed_by = $3
        WHERE m.id = ANY(ARRAY(SELECT id FROM due))
            AND m.accepted_at BETWEEN (SELECT min(accepted_at) FROM due)
                AND (SELECT max(accepted_at) FROM due)
        RETURNING m.*
    ), logged AS (
        INSERT INTO message_history (message_id, at, state, accepted_at)
        SELECT id, $1, '{_DISPATCHING}', accepted_at FROM claimed
    )
    SELECT {_RECORD.replace("error", "NULL::bigint")} FROM claimed ORDER BY accepted_at, id
"""

# The row as it was (its old state and stats key), locked, then changed.
_SET_STATE = f"""
    WITH o AS (
        SELECT id, state, sent_at, {MESSAGE_DIMS} FROM messages WHERE id = $1 FOR UPDATE
    ), u AS (
        UPDATE messages AS m
        SET state = $2, updated_at = $3, error = coalesce($4, m.error),
            attempts = m.attempts + $5, schedule_at = coalesce($6, m.schedule_at)
        FROM o WHERE m.id = o.id
        RETURNING m.id, m.accepted_at
    ), h AS (
        INSERT INTO message_history (message_id, at, state, accepted_at)
        SELECT id, $3, $2, accepted_at FROM u
    )
    SELECT state, sent_at, {DIM_NAMES} FROM o
"""

# Lookups by id alone probe each partition's primary-key index once (test_postgres_plans.py
# holds every hot query to index scans). `get` first tries the accept time an id of ours
# carries (ids.py), within `_ID_SLACK`: one or two partitions; ids that don't parse or whose
# message was accepted at another time (a clock stepped back) fall back to all partitions.
_GET = f"SELECT {_RECORD} FROM messages WHERE id = $1"
_GET_NEAR = f"{_GET} AND accepted_at BETWEEN $2 AND $3"
_ID_SLACK = 3600.0
_WAITING = f"SELECT count(*), min(accepted_at) FROM messages WHERE state = '{_ACCEPTED}'"
_HISTORY = "SELECT at, state FROM message_history WHERE message_id = $1 ORDER BY seq"
_OVERDUE = f"""
    SELECT {_RECORD}, sent_to, sent_ids FROM messages
    WHERE state = $1 AND updated_at < $2 AND ($4::text IS NULL OR sent_to = $4)
    ORDER BY updated_at LIMIT $3
"""

# Links only to a stored message; says whether there is one.
_LINK = """
    WITH k AS (SELECT EXISTS (SELECT 1 FROM messages WHERE id = $3) AS known), i AS (
        INSERT INTO upstream_ids (upstream, key, message_id, part)
        SELECT $1, key, $3, $4 FROM unnest($2::text[]) AS key, k WHERE k.known
        ON CONFLICT DO NOTHING
    )
    SELECT known FROM k
"""

# For each key in order, its latest link; the first key that has one wins.
_FIND = """
    SELECT u.message_id, u.part
    FROM unnest($2::text[]) WITH ORDINALITY AS k (key, n)
    JOIN upstream_ids AS u ON u.upstream = $1 AND u.key = k.key
    ORDER BY k.n, u.seq DESC
    LIMIT 1
"""

# `match_receipts` as one statement (one round trip, its own transaction): each receipt's
# first matching key's latest link (k, f: one index probe per key - joined instead, a batch of
# a few hundred planned a sequential scan of upstream_ids), the messages as they were (m), the
# matched ones kept in order (hit, kept), the unmatched ones that say so kept as unknown, and
# each message's parts' latest receipt states before this batch (s), which the caller overlays
# with the batch's own.
_MATCH = f"""
    WITH k AS (
        SELECT * FROM unnest($1::int[], $2::int[], $3::text[], $4::text[])
            AS k (i, n, upstream, key)
    ), f AS MATERIALIZED (
        SELECT DISTINCT ON (k.i) k.i, u.message_id, u.part
        FROM k CROSS JOIN LATERAL (
            SELECT message_id, part FROM upstream_ids
            WHERE upstream = k.upstream AND key = k.key ORDER BY seq DESC LIMIT 1
        ) AS u
        ORDER BY k.i, k.n
    ), m AS MATERIALIZED (
        SELECT {_RECORD}, parts FROM messages
        WHERE id = ANY(ARRAY(SELECT DISTINCT message_id FROM f))
    ), r AS (
        SELECT * FROM unnest($5::int[], $6::text[], $7::text[], $8::int[], $9::bigint[],
            $10::double precision[], $11::bytea[], $12::bool[])
            AS r (i, upstream, upstream_id, message_state, error, received_at, raw, keep_unknown)
    ), hit AS MATERIALIZED (
        SELECT r.*, f.message_id, f.part FROM r JOIN f ON f.i = r.i
        WHERE f.message_id IN (SELECT id FROM m)
    ), kept AS (
        INSERT INTO receipts
            (message_id, part, upstream, upstream_id, message_state, error, received_at, raw)
        SELECT message_id, part, upstream, upstream_id, message_state, error, received_at, raw
        FROM hit ORDER BY i
    ), unknown AS (
        INSERT INTO unknown_receipts (upstream, upstream_id, message_state, error, received_at, raw)
        SELECT upstream, upstream_id, message_state, error, received_at, raw FROM r
        WHERE keep_unknown AND r.i NOT IN (SELECT i FROM hit)
        ORDER BY r.i
    ), s AS (
        SELECT m.id, array_agg(x.part) AS parts, array_agg(x.message_state) AS states
        FROM m JOIN LATERAL (
            SELECT DISTINCT ON (part) part, message_state FROM receipts
            WHERE message_id = m.id ORDER BY part, seq DESC
        ) AS x ON true
        GROUP BY m.id
    )
    SELECT m.*, hit.i, hit.part, s.parts, s.states
    FROM hit JOIN m ON m.id = hit.message_id LEFT JOIN s ON s.id = m.id
    ORDER BY hit.i
"""

_PARTS_STATES = """
    SELECT m.id, m.parts, r.part, r.message_state
    FROM messages AS m
    LEFT JOIN LATERAL (
        SELECT DISTINCT ON (part) part, message_state FROM receipts
        WHERE message_id = m.id ORDER BY part, seq DESC
    ) AS r ON true
    WHERE m.id = ANY($1::text[])
"""


# A message row's stats key (as `stats._key` makes it in Python) from the columns of `r`,
# `target` standing in for its own. x / 3600 never rounds up to a whole number x is below
# (3600 < 2**12 keeps their spacings apart), so the hour is Python's x // 3600 * 3600; 0 for
# a time no clock gives, as in Python.
def _stats_key(r: str, target: str) -> str:
    hour = f"floor({r}.accepted_at / 3600) * 3600"
    return (
        f"CASE WHEN abs({hour}) < 2^53 THEN ({hour})::bigint ELSE 0 END AS hour, "
        f"{r}.account, {r}.route, {target} AS target, {r}.msg_class, {r}.campaign, "
        f"{r}.country, {r}.operator, left({r}.destination_addr, $1::int) AS prefix"
    )


_KEYS = ", ".join(KEY_COLUMNS)
# The order `_stats_order` sorts in (code points: the "C" collation, whatever the database's).
_KEY_ORDER = ", ".join(c if c == "hour" else f'{c} COLLATE "C"' for c in KEY_COLUMNS)


def _stats_upsert(source: str, values: dict[str, str], having: str = "true") -> str:
    """A CTE body upserting `values` (column -> aggregate over `source`) per stats key, the
    rows locked in the order every transaction takes them (`_stats_order`)."""
    return f"""
        INSERT INTO delivery_stats ({_KEYS}, {", ".join(values)})
        SELECT {_KEYS}, {", ".join(values.values())} FROM {source}
        GROUP BY {_KEYS} HAVING {having} ORDER BY {_KEY_ORDER}
        ON CONFLICT ({_KEYS})
        DO UPDATE SET {", ".join(f"{c} = delivery_stats.{c} + excluded.{c}" for c in values)}"""


# What a settle adds: the outcome of its final state, and the receipt latency of a delivery.
_OUTCOME_OF = " ".join(f"WHEN '{state.value}' THEN '{c}'" for state, c in OUTCOME.items())
_OUTCOMES = set(OUTCOME.values())
_LATENCY_BOUNDS = list(LATENCY_BOUNDS)
_SETTLE_COUNTS = {
    **{c: f"count(*) FILTER (WHERE outcome = '{c}')" for c in STATS_COUNTERS if c in _OUTCOMES},
    **{f"lat{i}": f"count(*) FILTER (WHERE bucket = {i})" for i in range(LATENCY_BUCKETS)},
}

# "Already final?", "settle" and its stats as one statement (one round trip, no explicit
# transaction): the update takes only messages not final (row locks serialize two nodes or
# two batches), and only what it took gets its history row, its receipt for the application
# and its count. The update finds its rows by an array (an initplan): joined to the arrays,
# a batch of a few hundred planned a sequential scan of every partition. The deliveries of
# the settled messages go first, then the notices ($13-$17), in order. A row written without
# its place (by a node older than migration 12) is returned with its stats key instead.
_M_DIMS = (
    "m.accepted_at, m.account, m.route, coalesce(m.sent_to, '') AS target, m.msg_class, "
    "m.campaign, m.destination_addr"
)
_L_DIMS = "l.accepted_at, l.account, l.route, l.target, l.msg_class, l.campaign, l.destination_addr"
_SETTLE_MANY = f"""
    WITH t AS (
        SELECT * FROM unnest($2::int[], $3::text[], $4::text[], $5::bigint[], $6::text[],
            $7::text[], $8::bytea[], $9::double precision[], $12::text[])
            AS t (i, id, state, error, account, kind, pdu, ttl, channels)
    ), u AS (
        UPDATE messages AS m
        SET state = t.state, updated_at = $10, error = coalesce(t.error, m.error)
        FROM t WHERE m.id = ANY(ARRAY(SELECT id FROM t)) AND m.id = t.id
            AND NOT (m.state = ANY($11::text[]))
        RETURNING m.id, m.sent_at, m.country, m.operator, {_M_DIMS}
    ), h AS (
        INSERT INTO message_history (message_id, at, state, accepted_at)
        SELECT t.id, $10, t.state, u.accepted_at FROM t JOIN u ON u.id = t.id
    ), d AS (
        INSERT INTO deliveries (account, kind, pdu, created_at, expires_at, channel)
        SELECT account, kind, pdu, $10, $10 + ttl, channel FROM (
            SELECT 0 AS source, t.i, c.n, t.account, t.kind, t.pdu, t.ttl, c.channel
            FROM t JOIN u ON u.id = t.id
            CROSS JOIN LATERAL unnest(string_to_array(t.channels, ',')) WITH ORDINALITY
                AS c (channel, n)
            WHERE t.pdu IS NOT NULL
            UNION ALL
            SELECT 1, x.i, c.n, x.account, x.kind, x.pdu, x.ttl, c.channel
            FROM unnest($13::text[], $14::text[], $15::bytea[], $16::double precision[],
                $17::text[]) WITH ORDINALITY AS x (account, kind, pdu, ttl, channels, i)
            CROSS JOIN LATERAL unnest(string_to_array(x.channels, ',')) WITH ORDINALITY
                AS c (channel, n)
        ) AS a
        ORDER BY source, i, n
    ), e AS (
        SELECT {_stats_key("u", "u.target")},
            CASE t.state {_OUTCOME_OF} END AS outcome,
            CASE WHEN t.state = '{MessageState.DELIVERED.value}' AND u.sent_at IS NOT NULL THEN (
                SELECT count(*) FROM unnest($18::double precision[]) AS b (bound)
                WHERE bound < greatest(0, $10 - u.sent_at)
            ) END AS bucket
        FROM t JOIN u ON u.id = t.id
        WHERE u.country IS NOT NULL
    ), s AS ({_stats_upsert("e WHERE outcome IS NOT NULL", _SETTLE_COUNTS)}
    )
    SELECT t.i, t.state, l.id IS NOT NULL, l.sent_at, {_L_DIMS}
    FROM t JOIN u ON u.id = t.id LEFT JOIN u AS l ON l.id = u.id AND l.country IS NULL
"""

# `record_sent` for many messages at once (a group commit), with its stats, as one statement
# (one round trip, no explicit transaction): each input row (i) is a call. The rows are
# locked in id order (one lock order against settles and other nodes), the old target and
# stats key read as they were, the not-final ones marked sent with a history row, and the
# keys of every known message linked (even one that already ended: its later receipts are
# known). Ids are unique within one statement (`_sent_rounds`). Rows are found by arrays
# (initplans), not by a join or a parameter array: with a few hundred ids the planner chose a
# hash join over a sequential scan of every partition (as for the settle above). A message
# handed to another target moves its accepted and sent counts there (`count_sent`); one
# written without its place (an older node's) is returned with its stats key instead.
_SENT_COUNTS = {"accepted": "sum(accepted)", "sent": "sum(sent)"}
_RECORD_SENT = f"""
    WITH t AS (
        SELECT * FROM unnest($2::int[], $3::text[], $4::text[], $5::int[], $6::double precision[])
            AS t (i, id, upstream, parts, at)
    ), p AS (
        SELECT p.i, array_agg(p.part_id ORDER BY p.n) AS ids
        FROM unnest($7::int[], $8::text[]) WITH ORDINALITY AS p (i, part_id, n)
        GROUP BY p.i
    ), o AS MATERIALIZED (
        SELECT m.id, m.state, m.sent_to, m.country, m.operator, {_M_DIMS} FROM messages AS m
        WHERE m.id = ANY(ARRAY(SELECT id FROM t)) ORDER BY m.id FOR UPDATE
    ), u AS (
        UPDATE messages AS m
        SET state = '{MessageState.SENT.value}', updated_at = t.at, parts = t.parts,
            sent_to = t.upstream, sent_ids = coalesce(p.ids, '{{}}'::text[]), sent_at = t.at
        FROM t LEFT JOIN p ON p.i = t.i
        WHERE m.id = ANY(ARRAY(SELECT id FROM o)) AND m.id = t.id
            AND NOT (m.state = ANY($11::text[]))
        RETURNING m.id, m.accepted_at, t.at
    ), h AS (
        INSERT INTO message_history (message_id, at, state, accepted_at)
        SELECT id, at, '{MessageState.SENT.value}', accepted_at FROM u
    ), k AS (
        INSERT INTO upstream_ids (upstream, key, message_id, part)
        SELECT t.upstream, k.key, t.id, k.part
        FROM unnest($9::int[], $10::text[], $12::int[]) WITH ORDINALITY AS k (i, key, part, n)
        JOIN t ON t.i = k.i
        WHERE t.id IN (SELECT id FROM o)
        ORDER BY k.n
        ON CONFLICT DO NOTHING
    ), c AS (
        SELECT o.*, t.upstream FROM t JOIN o ON o.id = t.id
        WHERE NOT (o.state = ANY($11::text[])) AND o.sent_to IS DISTINCT FROM t.upstream
            AND o.country IS NOT NULL
    ), e AS (
        SELECT {_stats_key("c", "c.target")}, -1 AS accepted,
            CASE WHEN c.target <> '' THEN -1 ELSE 0 END AS sent
        FROM c
        UNION ALL
        SELECT {_stats_key("c", "c.upstream")}, 1, 1 FROM c
    ), s AS ({_stats_upsert("e", _SENT_COUNTS, "sum(accepted) <> 0 OR sum(sent) <> 0")}
    )
    SELECT t.i, o.id IS NOT NULL, l.id IS NOT NULL, l.sent_to, {_L_DIMS}
    FROM t LEFT JOIN o ON o.id = t.id
    LEFT JOIN o AS l ON l.id = o.id AND l.country IS NULL AND NOT (l.state = ANY($11::text[]))
"""

_PART_STATES = """
    SELECT m.parts, r.part, r.message_state
    FROM messages AS m
    LEFT JOIN LATERAL (
        SELECT DISTINCT ON (part) part, message_state FROM receipts
        WHERE message_id = m.id ORDER BY part, seq DESC
    ) AS r ON true
    WHERE m.id = $1
"""

# An array, not IN (...): IN plans a hash semi join over a sequential scan of the table.
# Sorted here (RETURNING comes in no order), not in Python.
_PENDING = """
    WITH u AS (
        UPDATE deliveries SET attempts = attempts + 1, leased_by = $5, lease_until = $2 + $6
        WHERE id = ANY(ARRAY(
            SELECT id FROM deliveries
            WHERE account = $1 AND id > $4 AND expires_at > $2
                AND (lease_until <= $2 OR leased_by = $5) AND channel = 'smpp'
            ORDER BY id LIMIT $3
            FOR UPDATE SKIP LOCKED
        ))
        RETURNING id, account, kind, pdu, created_at, expires_at, attempts - 1
    )
    SELECT * FROM u ORDER BY id
"""

_PENDING_WEBHOOKS = """
    WITH u AS (
        UPDATE deliveries SET attempts = attempts + 1, leased_by = $5, lease_until = $2 + $4
        WHERE id = ANY(ARRAY(
            SELECT id FROM deliveries
            WHERE channel = 'webhook' AND account = $1 AND expires_at > $2 AND next_at <= $2
                AND lease_until <= $2
            ORDER BY id LIMIT $3
            FOR UPDATE SKIP LOCKED
        ))
        RETURNING id, account, kind, pdu, created_at, expires_at, attempts, channel
    )
    SELECT * FROM u ORDER BY id
"""

_CANCEL = f"""
    WITH u AS (
        UPDATE messages SET state = '{MessageState.CANCELLED.value}', updated_at = $3
        WHERE id = $1 AND account = $2 AND state = '{_ACCEPTED}'
        RETURNING id, sent_at, {MESSAGE_DIMS}
    ), h AS (
        INSERT INTO message_history (message_id, at, state, accepted_at)
        SELECT id, $3, '{MessageState.CANCELLED.value}', accepted_at FROM u
    )
    SELECT 'accepted', sent_at, {DIM_NAMES} FROM u
"""

_REQUEUE = f"""
    WITH u AS (
        UPDATE messages SET state = '{_ACCEPTED}', updated_at = $1
        WHERE state = '{_DISPATCHING}' AND coalesce(claimed_by, $2) = $2
        RETURNING id, accepted_at
    )
    INSERT INTO message_history (message_id, at, state, accepted_at)
    SELECT id, $1, '{_ACCEPTED}', accepted_at FROM u
"""


# xmax = 0: the row was inserted, not updated - this node's row had been removed (a takeover).
_HEARTBEAT = """
    INSERT INTO node_heartbeats (node, seen_at) VALUES ($1, $2)
    ON CONFLICT (node) DO UPDATE SET seen_at = excluded.seen_at
    RETURNING xmax = 0
"""

# The silent node's row is deleted in the same statement: of two nodes taking over at once,
# the second waits on that row's lock, then finds it gone and takes nothing.
_TAKE_OVER = f"""
    WITH dead AS (
        DELETE FROM node_heartbeats
        WHERE seen_at < $1::double precision - $2::double precision AND node <> $3
        RETURNING node
    ), u AS (
        UPDATE messages SET state = '{_ACCEPTED}', updated_at = $1
        WHERE state = '{_DISPATCHING}' AND claimed_by IN (SELECT node FROM dead)
        RETURNING id, accepted_at
    )
    INSERT INTO message_history (message_id, at, state, accepted_at)
    SELECT id, $1, '{_ACCEPTED}', accepted_at FROM u
"""

_MARKED = "SELECT 1 FROM inbound_parts WHERE key = $1 AND seq = 0"
_SAME_PART = "SELECT 1 FROM inbound_parts WHERE key = $1 AND seq = $2 AND pdu = $3"


# Every counter row of a transaction in one statement (arrays, one per column), in the order
# given: `_write_stats` sorts them, so every transaction on every node takes one lock order.
_STATS_ALL = (*KEY_COLUMNS, *VALUE_COLUMNS)
_UPSERT_STATS = f"""
    INSERT INTO delivery_stats ({", ".join(_STATS_ALL)})
    SELECT * FROM unnest({
    ", ".join(
        f"${n}::{'bigint' if c == 'hour' or c in VALUE_COLUMNS else 'text'}[]"
        for n, c in enumerate(_STATS_ALL, 1)
    )
})
    ON CONFLICT ({", ".join(KEY_COLUMNS)})
    DO UPDATE SET {", ".join(f"{c} = delivery_stats.{c} + excluded.{c}" for c in VALUE_COLUMNS)}
"""

# A parent's dated partitions and their bounds (DEFAULT has no FROM and is left out).
_PARTITIONS = """
    SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
    FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
    WHERE i.inhparent = to_regclass($1)
"""
_BOUNDS = re.compile(r"FROM \('?([^')]+)'?\) TO \('?([^')]+)'?\)")

# Whether a day partition must stay: a message in it not final, or one changed since the cutoff.
_UNFINISHED = [s.value for s in MessageState if not s.final]
# Scalar subqueries in the index's order, not EXISTS (which drops ORDER BY and LIMIT): the
# plan stays an index probe even where such rows are common.
_KEEPS = """
    SELECT (
        SELECT state FROM {part} WHERE state = ANY($1::text[]) ORDER BY state, updated_at LIMIT 1
    ) IS NOT NULL OR (
        SELECT state FROM {part} WHERE state = ANY($2::text[]) AND updated_at >= $3
        ORDER BY state, updated_at LIMIT 1
    ) IS NOT NULL
"""

# Retention's leftover path, row by row (the DEFAULT partition, partitions still holding
# unfinished messages): without foreign keys, what hangs off a message goes with it here.
_PURGE_ROWS = """
    WITH d AS (
        DELETE FROM messages WHERE updated_at < $1 AND state = ANY($2::text[])
        RETURNING id, accepted_at
    ), h AS (
        DELETE FROM message_history AS h USING d
        WHERE h.message_id = d.id AND h.accepted_at = d.accepted_at
    ), r AS (
        DELETE FROM receipts WHERE message_id IN (SELECT id FROM d)
    ), u AS (
        DELETE FROM upstream_ids WHERE message_id IN (SELECT id FROM d)
    )
    SELECT count(*) FROM d
"""


def _stats_order(row: tuple[object, ...]) -> tuple[object, ...]:
    """Counter rows are upserted in the order of their keys in every transaction (accepts,
    sends, settles) on every node: their row locks are always taken in one order."""
    return row[: len(KEY_COLUMNS)]


async def _write_stats(conn: PoolConnectionProxy, batch: StatsBatch) -> None:
    rows = batch.take()
    if rows:
        # One lock order for every transaction on every node: two settles upserting the same
        # rows in other orders deadlocked (seen under bench/nodes.py: receipts refused).
        rows.sort(key=_stats_order)
        await conn.execute(_UPSERT_STATS, *(list(column) for column in zip(*rows, strict=True)))


def _accept_stats(messages: Sequence[NewMessage], prefix_digits: int) -> list[list[object]]:
    """The stats arrays of `_ACCEPT`: each key column, then the accepted count."""
    batch = StatsBatch(prefix_digits)
    for m in messages:
        dims = (m.accepted_at, m.account, m.route, "", m.msg_class, m.campaign, m.destination_addr)
        batch.add(dims, "accepted")
    rows = sorted(((*key, values[0]) for key, values in batch.rows.items()), key=_stats_order)
    return [list(column) for column in zip(*rows, strict=True)] or [[]] * 10


def _places(messages: Sequence[NewMessage]) -> tuple[list[str], list[str]]:
    """The country and operator columns of `messages` (the arrays of an insert)."""
    places = [place(m.destination_addr) for m in messages]
    return [p[0] for p in places], [p[1] for p in places]


async def _fill_places(conn: PoolConnectionProxy) -> None:
    """Migration `_PLACES_SINCE`: the country and operator of the messages written before it
    that are not final yet (their sends and settles count them by these columns)."""
    rows = await conn.fetch(
        "SELECT DISTINCT destination_addr FROM messages "
        "WHERE country IS NULL AND NOT (state = ANY($1::text[]))",
        _FINAL,
    )
    places = [place(row[0]) for row in rows]
    await conn.execute(
        "UPDATE messages AS m SET country = p.country, operator = p.operator "
        "FROM unnest($1::text[], $2::text[], $3::text[]) AS p (destination, country, operator) "
        "WHERE m.destination_addr = p.destination AND m.country IS NULL "
        "AND NOT (m.state = ANY($4::text[]))",
        [row[0] for row in rows],
        [p[0] for p in places],
        [p[1] for p in places],
        _FINAL,
    )


async def _count_new(
    conn: PoolConnectionProxy, messages: Sequence[NewMessage], prefix_digits: int
) -> None:
    batch = StatsBatch(prefix_digits)
    for m in messages:
        dims = (m.accepted_at, m.account, m.route, "", m.msg_class, m.campaign, m.destination_addr)
        batch.add(dims, "accepted")
    await _write_stats(conn, batch)


async def _count_ends(
    conn: PoolConnectionProxy, rows: Sequence[asyncpg.Record], batch: StatsBatch, now: float
) -> None:
    """Rows of (old state, sent_at, dims...) that were cancelled."""
    state = MessageState.CANCELLED
    for row in rows:
        count_change(batch, tuple(row)[2:], (row[0], state.value), now, row[1])
    await _write_stats(conn, batch)


def _delivery_rows(
    deliveries: Sequence[NewDelivery], now: float
) -> list[tuple[str, str, bytes, float, float, str]]:
    """One row per delivery and channel (`NewDelivery.channels`)."""
    return [
        (d.account, d.kind, d.pdu, now, now + d.ttl, channel)
        for d in deliveries
        for channel in d.channels
    ]


async def _checked(
    conn: PoolConnectionProxy, m: NewMessage, check: StoreCheck, now: float, prefix_digits: int
) -> Verdict:
    """`Store.accept_checked` in a transaction the caller holds."""
    # Under a lock on the recipient and class: two nodes accepting for one number wait for
    # each other, so a cap of one lets one through.
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))", f"{m.destination_addr}|{m.msg_class}"
    )
    facts = Facts()
    if check.stopped is None:
        facts = await _policy_facts(conn, m, check, now)
    verdict = store_verdict(check, facts)
    if verdict.duplicate_of is not None:
        return verdict
    if verdict.stop is not None and verdict.stop in check.refuse:
        return verdict
    stop = verdict.stop.value if verdict.stop is not None else None
    await conn.execute(_INSERT_ONE, *_values(m), stop, *place(m.destination_addr))
    await conn.execute(
        "INSERT INTO message_history (message_id, at, state, accepted_at) VALUES ($1, $2, $3, $2)",
        m.id,
        m.accepted_at,
        _ACCEPTED,
    )
    await _count_new(conn, [m], prefix_digits)
    if stop is not None:
        return verdict
    if check.rule.caps:
        await conn.execute(
            "INSERT INTO policy_sends VALUES ($1, $2, $3, $4)",
            m.destination_addr,
            m.msg_class,
            m.account,
            now,
        )
    if check.dedup_key is not None and check.rule.dedup:
        await conn.execute(
            "INSERT INTO policy_dedup VALUES ($1, $2, $3) ON CONFLICT (key) DO UPDATE "
            "SET message_id = excluded.message_id, created_at = excluded.created_at",
            check.dedup_key,
            m.id,
            now,
        )
    return verdict


async def _policy_facts(
    conn: PoolConnectionProxy, m: NewMessage, check: StoreCheck, now: float
) -> Facts:
    number = m.destination_addr
    dead = await conn.fetchval(
        "SELECT 1 FROM dead_numbers WHERE number = $1 AND dead_until > $2", number, now
    )
    suppressed = None
    if check.rule.opt_out:
        suppressed = await conn.fetchval(
            "SELECT 1 FROM suppressions WHERE number = $1 AND scope IN ('', $2) LIMIT 1",
            number,
            check.scope,
        )
    duplicate = None
    if check.dedup_key is not None and check.rule.dedup:
        duplicate = await conn.fetchval(
            "SELECT message_id FROM policy_dedup WHERE key = $1 AND created_at > $2",
            check.dedup_key,
            now - check.dedup_window,
        )
    sent = {}
    for cap in check.rule.caps:
        sent[cap] = int(
            await conn.fetchval(
                "SELECT count(*) FROM policy_sends WHERE number = $1 AND msg_class = $2 "
                "AND sent_at > $3 AND ($4 = '' OR account = $4)",
                number,
                m.msg_class,
                now - cap.window,
                m.account if cap.per_account else "",
            )
        )
    return Facts(
        suppressed=suppressed is not None,
        dead=dead is not None,
        sent=sent,
        duplicate_of=duplicate,
    )


def _count(status: str) -> int:
    """Rows a command touched, from its status tag ("INSERT 0 3", "UPDATE 1", "DELETE 2")."""
    return int(status.rsplit(" ", 1)[-1])


_N = len(NewMessage._fields)  # a record row: the message's columns, then these five


_STATES = {s.value: s for s in MessageState}  # MessageState(v) costs ten times this lookup


def _record(row: asyncpg.Record) -> MessageRecord:
    values = tuple(row)
    return MessageRecord(
        message=NewMessage(*values[:_N]),
        state=_STATES[values[_N]],
        updated_at=values[_N + 1],
        attempts=values[_N + 2],
        error=values[_N + 3],
        stop_reason=values[_N + 4],
    )


async def _partitions(
    conn: PoolConnectionProxy, parent: str
) -> list[tuple[str, tuple[float, float]]]:
    """`parent`'s dated partitions: (name, (from, to))."""
    found = []
    for name, bound in await conn.fetch(_PARTITIONS, parent):
        match = _BOUNDS.search(bound)
        if match is not None:
            found.append((str(name), (float(match[1]), float(match[2]))))
    return found


async def _add_partition(conn: PoolConnectionProxy, parent: str, lo: float, hi: float) -> None:
    name = _quote(f"{parent}_p{time.strftime('%Y%m%d_%H%M', time.gmtime(lo))}")
    default = _quote(f"{parent}_default")
    stray = await conn.fetchval(
        f"SELECT EXISTS (SELECT 1 FROM {default} WHERE accepted_at >= $1 AND accepted_at < $2)",
        lo,
        hi,
    )
    if not stray:
        await conn.execute(
            f"CREATE TABLE {name} PARTITION OF {parent} FOR VALUES FROM ({lo!r}) TO ({hi!r})"
        )
        return
    # Locked first: no insert may put a row of this range into DEFAULT before the attach.
    await conn.execute(f"LOCK TABLE {default} IN ACCESS EXCLUSIVE MODE")
    await conn.execute(f"CREATE TABLE {name} (LIKE {parent} INCLUDING DEFAULTS)")
    await conn.execute(
        f"WITH moved AS (DELETE FROM {default} WHERE accepted_at >= $1 AND accepted_at < $2 "
        f"RETURNING *) INSERT INTO {name} SELECT * FROM moved",
        lo,
        hi,
    )
    await conn.execute(
        f"ALTER TABLE {parent} ATTACH PARTITION {name} FOR VALUES FROM ({lo!r}) TO ({hi!r})"
    )


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """A connection going back to the pool needs no reset query: the store sets no session
    state (only ``SET LOCAL``, transaction-scoped advisory locks, ``ON COMMIT DROP`` tables),
    and asyncpg still rolls back a transaction left open. The default reset (``RESET ALL``,
    ``UNLISTEN *``, ...) cost a round trip on every release."""


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _lock_key(schema: str | None) -> int:
    """A stable 64-bit advisory lock key per schema: migrations of one schema serialize."""
    digest = hashlib.blake2b(f"smsgw-migrations:{schema or ''}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


_In = TypeVar("_In")
_Out = TypeVar("_Out")


async def _retry_deadlock(write: Callable[[_In], Awaitable[_Out]], arg: _In) -> _Out:
    """`write(arg)` - one transaction - again if PostgreSQL broke a deadlock by rolling it
    back (two transactions, another node's perhaps, locked two messages in other orders): it
    holds nothing then, and a second try almost always goes through."""
    for _attempt in range(_DEADLOCK_TRIES - 1):
        try:
            return await write(arg)
        except asyncpg.DeadlockDetectedError:
            continue
    return await write(arg)


_DEADLOCK_TRIES = 3
_Pending = tuple[NewMessage, "asyncio.Future[None]"]
_Checked = tuple[NewMessage, StoreCheck, float, "asyncio.Future[Verdict]"]


def _settle_verdict(fut: asyncio.Future[Verdict], outcome: Verdict | BaseException) -> None:
    if fut.done():
        return
    if isinstance(outcome, BaseException):
        fut.set_exception(outcome)
    else:
        fut.set_result(outcome)


class _Group(Generic[_In, _Out]):
    """A group commit of one kind of call: callers queue an item and wait on a future; a
    writer task writes whatever queued while the last group was written (up to `most`) with
    one call of `write`, which returns one result per item (or raises, failing them all).
    When idle a lone call is written at once: no delay is ever added. With `parallel` > 1, up
    to that many groups are written at once (on as many connections): one commits while the
    next is written, so a group's latency is not added to the queue's."""

    def __init__(
        self, write: Callable[[list[_In]], Awaitable[list[_Out]]], most: int, parallel: int = 1
    ) -> None:
        self._write = write
        self._most = most
        self._parallel = parallel
        self._queue: list[tuple[_In, asyncio.Future[_Out]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        # Calls are numbered as they queue; groups take them in order, so each group is a
        # range of numbers. `_done` is the highest number up to which every call is written
        # (groups in parallel may end out of order: `_writing` holds each one's last number).
        self._issued = 0
        self._done = 0
        self._writing: dict[int, bool] = {}  # a group's last number -> ended
        self._barriers: list[tuple[int, int, asyncio.Future[None]]] = []  # heap by number

    async def call(self, item: _In) -> _Out:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[_Out] = loop.create_future()
        self._queue.append((item, fut))
        self._issued += 1
        if len(self._tasks) < self._parallel:
            task = loop.create_task(self._run())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await fut

    async def written(self) -> None:
        """Wait until every call made before this one has been written (or has failed)."""
        upto = self._issued
        if self._done >= upto:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._barriers, (upto, id(waiter), waiter))
        await waiter

    async def _run(self) -> None:
        try:
            while self._queue:
                group, self._queue = self._queue[: self._most], self._queue[self._most :]
                last = self._issued - len(self._queue)
                self._writing[last] = False
                try:
                    results = await self._write([item for item, _fut in group])
                except BaseException as exc:  # cancelled: no caller may wait forever
                    for _item, fut in group:
                        _settle_any(fut, exc)
                    self._ended(last)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_item, fut), result in zip(group, results, strict=True):
                    if not fut.done():  # the caller went away: its write stands
                        fut.set_result(result)
                self._ended(last)
        finally:
            # Off the list the moment the queue is found empty (the done callback runs a turn
            # later): a call queued in between starts a writer, not wait for the next call.
            task = asyncio.current_task()
            if task is not None:
                self._tasks.discard(task)

    def _ended(self, last: int) -> None:
        """A group ended: move `_done` past every group ended in order, wake the barriers."""
        self._writing[last] = True
        for number in sorted(self._writing):
            if not self._writing[number]:
                break
            del self._writing[number]
            self._done = number
        while self._barriers and self._barriers[0][0] <= self._done:
            waiter = heapq.heappop(self._barriers)[2]
            if not waiter.done():
                waiter.set_result(None)

    async def drain(self) -> None:
        """Wait until everything queued is written."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))


# A `record_sent` call: message id, upstream, each part's keys, now, part ids.
_SentCall = tuple[str, str, tuple[tuple[str, ...], ...], float, tuple[str, ...]]


def _sent_rounds(calls: list[_SentCall]) -> list[list[int]]:
    """The calls' indexes in rounds of distinct message ids, in order: a message sent twice
    in one group is written twice, the second time seeing the first (as one after the other)."""
    rounds: list[list[int]] = []
    seen: list[set[str]] = []
    for i, call in enumerate(calls):
        n = 0
        while n < len(seen) and call[0] in seen[n]:
            n += 1
        if n == len(seen):
            rounds.append([])
            seen.append(set())
        rounds[n].append(i)
        seen[n].add(call[0])
    return rounds


def _sent_arrays(calls: list[_SentCall], indexes: list[int]) -> list[object]:
    """`_RECORD_SENT`'s arguments for these calls (all but the final states, $10)."""
    ids: list[str] = []
    upstreams: list[str] = []
    parts: list[int] = []
    ats: list[float] = []
    part_of: list[int] = []
    part_ids: list[str] = []
    key_of: list[int] = []
    keys: list[str] = []
    key_parts: list[int] = []
    for i in indexes:
        message_id, upstream, part_keys, now, sent_ids = calls[i]
        ids.append(message_id)
        upstreams.append(upstream)
        parts.append(max(1, len(part_keys)))
        ats.append(now)
        for part_id in sent_ids:
            part_of.append(i)
            part_ids.append(part_id)
        for part, each in enumerate(part_keys):
            for key in each:
                key_of.append(i)
                keys.append(key)
                key_parts.append(part)
    return [indexes, ids, upstreams, parts, ats, part_of, part_ids, key_of, keys, key_parts]


class PostgresStore:
    """The PostgreSQL backend of `gateway.store.base.Store`.

    Args:
        dsn: a libpq connection string or URI.
        node: this gateway node's number; its claims are its own.
        min_size: connections the pool keeps open.
        max_size: most connections the pool opens.
        schema: keep the tables in this PostgreSQL schema (created if missing) instead of
            the connection's default.
        max_batch: most accepted messages per transaction.
        replica_dsn: a read replica (or a read-only role) for the reads that may lag -
            statistics, queue depths, a message's history and upstream ids, unknown
            receipts - on its own pool of the same size; None: all queries go to `dsn`.
        partition_seconds: the period of one messages/history partition.
        partitions_ahead: partitions kept created beyond the current one.
    """

    def __init__(
        self,
        dsn: str,
        *,
        node: int = 0,
        min_size: int = 2,
        max_size: int = 10,
        schema: str | None = None,
        max_batch: int = 1024,
        prefix_digits: int = PREFIX_DIGITS,
        replica_dsn: str | None = None,
        partition_seconds: float = PARTITION_SECONDS,
        partitions_ahead: int = PARTITIONS_AHEAD,
        lease: float = DELIVERY_LEASE,
    ) -> None:
        if partition_seconds < 60 or partition_seconds % 60:
            raise ValueError("partition_seconds must be whole minutes (partition names)")
        self.dsn = dsn
        self.replica_dsn = replica_dsn
        self.partition_seconds = partition_seconds
        self.partitions_ahead = partitions_ahead
        self._replica: asyncpg.Pool | None = None
        self.lease = lease  # seconds a delivery offered by this node stays its own
        self.prefix_digits = prefix_digits  # of the destination, kept in delivery_stats
        self.node = node
        self.min_size = min_size
        self.max_size = max_size
        self.schema = schema
        self.max_batch = max_batch
        self._pool: asyncpg.Pool | None = None
        self._accepts: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self.commits = 0  # accept transactions committed: tests and metrics see the batching
        self.sent_commits = 0  # record_sent groups committed (one transaction each)
        self.receipt_lookups = 0  # receipts match_receipts looked up (one looked up twice: 2)
        self.metrics: Metrics | None = None  # the gateway's, when metrics are on
        self._done: list[tuple[int, asyncio.Future[None]]] = []  # delivery_done, batched
        self._done_writer: asyncio.Task[None] | None = None
        self._checked: list[_Checked] = []  # accept_checked, group-committed
        self._checked_writer: asyncio.Task[None] | None = None
        # record_sent, group-committed; two groups at once (see _Group)
        self._sent = _Group(self._write_sent, max_batch, parallel=2)

    # -- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        settings = {} if self.schema is None else {"search_path": _quote(self.schema)}
        pool = await asyncpg.create_pool(
            self.dsn,
            min_size=self.min_size,
            max_size=self.max_size,
            server_settings=settings,
            reset=_keep_session,
        )
        replica = None
        try:
            async with pool.acquire() as conn:
                await self._migrate(conn)
                # busy tables: start anyway, DEFAULT takes the rows until the next purge
                with contextlib.suppress(asyncpg.LockNotAvailableError):
                    await self._maintain(conn, time.time())
            if self.replica_dsn is not None:
                replica = await asyncpg.create_pool(
                    self.replica_dsn,
                    min_size=self.min_size,
                    max_size=self.max_size,
                    server_settings=settings,
                    reset=_keep_session,
                )
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        self._replica = replica
        self._closing = False
        self._accepts = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_accepts(), name="smsgw-postgres-writer")

    async def _migrate(self, conn: PoolConnectionProxy) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(self.schema))
            if self.schema is not None:
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(self.schema)}")
            await conn.execute("CREATE TABLE IF NOT EXISTS smsgw_schema (version integer NOT NULL)")
            version = await conn.fetchval("SELECT max(version) FROM smsgw_schema")
            if version is None:
                version = 0
                await conn.execute("INSERT INTO smsgw_schema (version) VALUES (0)")
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                await conn.execute(script)
                if number == _PLACES_SINCE:
                    await _fill_places(conn)
                await conn.execute("UPDATE smsgw_schema SET version = $1", number)

    async def close(self) -> None:
        pool, writer = self._pool, self._writer
        if pool is None or self._closing:
            return
        self._closing = True  # new calls fail from now on; queued accepts are still written
        if writer is not None:
            self._accepts.put_nowait(None)
            await writer
            self._writer = None
        await self._sent.drain()  # sends in hand are recorded first
        if self._done_writer is not None:
            await asyncio.wait([self._done_writer])  # answered deliveries are removed first
            self._done_writer = None
        if self._checked_writer is not None:
            await asyncio.wait([self._checked_writer])  # checked accepts are written first
            self._checked_writer = None
        self._pool = None
        replica, self._replica = self._replica, None
        for each in (pool, replica):
            if each is None:
                continue
            try:
                await asyncio.wait_for(each.close(), timeout=30)
            except TimeoutError:  # a connection was never given back: don't hang the shutdown
                each.terminate()

    def _open_pool(self) -> asyncpg.Pool:
        if self._pool is None or self._closing:
            raise RuntimeError("store is not open")
        return self._pool

    def _read_pool(self) -> asyncpg.Pool:
        """The replica's pool for read-only queries, else the primary's. A replica lags: only
        reads whose answer may be a moment old come here, never a read before a write."""
        pool = self._open_pool()
        return pool if self._replica is None else self._replica

    # -- group commit for accept ------------------------------------------------------------------

    async def _write_accepts(self) -> None:
        stopping = False
        while not stopping:
            first = await self._accepts.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._accepts.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            try:
                await self._commit_accepts(batch)
            except BaseException as exc:  # cancelled: no caller may wait forever
                for _message, fut in batch:
                    _settle(fut, exc)
                raise

    async def _commit_accepts(self, batch: list[_Pending]) -> None:
        try:
            await _retry_deadlock(self._insert, [message for message, _fut in batch])
        except _ROW_ERRORS as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            # Some message is bad (a duplicate id, a value out of range): halve the batch until
            # only the offenders fail - a few statements for one bad message in a thousand.
            half = len(batch) // 2
            await self._commit_accepts(batch[:half])
            await self._commit_accepts(batch[half:])
        except Exception as exc:  # the server went away or the like: nothing was written
            for _message, fut in batch:
                _settle(fut, exc)
        else:
            for _message, fut in batch:
                _settle(fut, None)

    async def _insert(self, messages: list[NewMessage]) -> None:
        pool = self._pool
        assert pool is not None  # close() waits for the writer before it drops the pool
        rows = [_values(m) for m in messages]
        started = time.perf_counter()
        await pool.execute(
            _ACCEPT,
            *(list(column) for column in zip(*rows, strict=True)),
            *_accept_stats(messages, self.prefix_digits),
            *_places(messages),
        )
        self.commits += 1
        if self.metrics is not None:  # the accept batches: what groups here is what scales
            self.metrics.committed(time.perf_counter() - started, len(messages))

    # -- operations ---------------------------------------------------------------------------

    async def accept(self, message: NewMessage) -> None:
        self._open_pool()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._accepts.put_nowait((message, fut))
        await fut

    async def accept_checked(self, message: NewMessage, check: StoreCheck, now: float) -> Verdict:
        # Group-committed like accept: the messages that arrive while one transaction runs
        # go together in the next one.
        self._open_pool()
        fut: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        self._checked.append((message, check, now, fut))
        if self._checked_writer is None or self._checked_writer.done():
            self._checked_writer = asyncio.create_task(self._write_checked())
        return await fut

    async def _write_checked(self) -> None:
        pool = self._pool
        assert pool is not None
        while self._checked:
            batch, self._checked = self._checked[: self.max_batch], self._checked[self.max_batch :]
            # One lock order (recipient, class) on every node: two nodes' batches cannot
            # deadlock on each other's locks; a stable sort keeps arrival order per recipient.
            batch.sort(key=lambda item: (item[0].destination_addr, item[0].msg_class))
            try:
                async with pool.acquire() as conn, conn.transaction():
                    verdicts = [
                        await _checked(conn, m, check, now, self.prefix_digits)
                        for m, check, now, _fut in batch
                    ]
            except Exception as exc:
                if len(batch) == 1:
                    _settle_verdict(batch[0][3], exc)
                    continue
                # A bad message (a duplicate id), or a deadlock after all: each alone.
                for m, check, now, fut in batch:
                    try:
                        async with pool.acquire() as conn, conn.transaction():
                            _settle_verdict(
                                fut, await _checked(conn, m, check, now, self.prefix_digits)
                            )
                    except Exception as alone:
                        _settle_verdict(fut, alone)
                continue
            self.commits += 1
            for (_m, _check, _now, fut), verdict in zip(batch, verdicts, strict=True):
                _settle_verdict(fut, verdict)

    async def _accept_checked_in(
        self,
        conn: PoolConnectionProxy,
        batch_id: str,
        messages: list[NewMessage],
        checks: Sequence[StoreCheck],
        now: float,
    ) -> None:
        """A batch chunk's messages through the rules, in the chunk's transaction."""
        stored = dropped = 0
        for m, check in zip(messages, checks, strict=True):
            verdict = await _checked(conn, m, check, now, self.prefix_digits)
            if verdict.duplicate_of is None and (
                verdict.stop is None or verdict.stop not in check.refuse
            ):
                await conn.execute(
                    "UPDATE messages SET batch_id = $1 WHERE id = $2", batch_id, m.id
                )
                stored += 1
            else:
                dropped += 1
        await conn.execute(
            "UPDATE batches SET accepted = accepted + $1, refused = refused + $2 WHERE id = $3",
            stored,
            dropped,
            batch_id,
        )

    async def purge_policy(self, sends_before: float, dedup_before: float) -> int:
        pool = self._open_pool()
        gone = _count(
            await pool.execute("DELETE FROM policy_sends WHERE sent_at < $1", sends_before)
        )
        gone += _count(
            await pool.execute("DELETE FROM policy_dedup WHERE created_at < $1", dedup_before)
        )
        return gone

    async def get(self, message_id: str, *, lagging: bool = False) -> MessageRecord | None:
        pool = self._read_pool() if lagging else self._open_pool()
        parsed = parse_id(message_id)
        if parsed is not None:
            at = parsed[0]
            row = await pool.fetchrow(_GET_NEAR, message_id, at - _ID_SLACK, at + _ID_SLACK)
            if row is not None:
                return _record(row)
        row = await pool.fetchrow(_GET, message_id)
        return None if row is None else _record(row)

    async def claim_due(self, now: float, limit: int) -> list[MessageRecord]:
        # As SQLite does: a claim is a fresh attempt, the last one's error is not reported
        # (_CLAIM reads it as NULL).
        rows = await self._open_pool().fetch(_CLAIM, now, limit, self.node)
        return [_record(row) for row in rows]

    async def set_state(
        self,
        message_id: str,
        state: MessageState,
        now: float,
        *,
        error: int | None = None,
        retry_at: float | None = None,
        tried: bool = True,
    ) -> bool:
        bump = 1 if state is MessageState.DISPATCHING else 0 if tried else -1
        async with self._open_pool().acquire() as conn, conn.transaction():
            old = await conn.fetchrow(
                _SET_STATE, message_id, state.value, now, error, bump, retry_at
            )
            if old is None:
                return False
            batch = StatsBatch(self.prefix_digits)
            count_change(batch, tuple(old)[2:], (old[0], state.value), now, old[1])
            await _write_stats(conn, batch)
        return True

    async def history(self, message_id: str) -> list[tuple[float, MessageState]]:
        rows = await self._read_pool().fetch(
            _HISTORY,
            message_id,
        )
        return [(row[0], MessageState(row[1])) for row in rows]

    async def link_upstream_id(
        self, upstream: str, keys: tuple[str, ...], message_id: str, part: int = 0
    ) -> None:
        known = await self._open_pool().fetchval(_LINK, upstream, list(keys), message_id, part)
        if not known:  # as the foreign key did before partitioning (migration 10)
            raise asyncpg.ForeignKeyViolationError(f"no message {message_id!r}")

    async def find_by_upstream_id(self, upstream: str, keys: tuple[str, ...]) -> str | None:
        found = await self.find_part(upstream, keys)
        return None if found is None else found[0]

    async def find_part(self, upstream: str, keys: tuple[str, ...]) -> tuple[str, int] | None:
        row = await self._open_pool().fetchrow(_FIND, upstream, list(keys))
        return None if row is None else (str(row[0]), int(row[1]))

    async def set_parts(self, message_id: str, parts: int) -> None:
        await self._open_pool().execute(
            "UPDATE messages SET parts = $2 WHERE id = $1", message_id, parts
        )

    async def add_receipt(self, receipt: ReceiptRecord) -> list[int | None]:
        r = receipt
        async with self._open_pool().acquire() as conn, conn.transaction():
            # The foreign key went with partitioning (migration 10): refused here instead.
            inserted = await conn.execute(
                "INSERT INTO receipts (message_id, part, upstream, upstream_id, message_state, "
                "error, received_at, raw) SELECT $1, $2, $3, $4, $5, $6, $7, $8 "
                "WHERE EXISTS (SELECT 1 FROM messages WHERE id = $1)",
                r.message_id,
                r.part,
                r.upstream,
                r.upstream_id,
                r.message_state,
                r.error,
                r.received_at,
                r.raw,
            )
            if not _count(inserted):
                raise asyncpg.ForeignKeyViolationError(f"no message {r.message_id!r}")
            rows = await conn.fetch(_PART_STATES, r.message_id)
        states: list[int | None] = [None] * (rows[0][0] if rows else 1)
        for _parts, part, state in rows:
            if part is not None and 0 <= part < len(states):
                states[part] = state
        return states

    async def upstream_ids(self, message_id: str) -> list[tuple[int, str, str]]:
        rows = await self._read_pool().fetch(
            "SELECT part, upstream, key FROM upstream_ids WHERE message_id = $1 "
            "AND key LIKE 's:%' ORDER BY part, upstream, key",
            message_id,
        )
        return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    async def receipts(self, message_id: str, *, lagging: bool = False) -> list[ReceiptRecord]:
        pool = self._read_pool() if lagging else self._open_pool()
        rows = await pool.fetch(
            "SELECT message_id, part, upstream, upstream_id, message_state, error, received_at, "
            "raw FROM receipts WHERE message_id = $1 ORDER BY seq",
            message_id,
        )
        return [ReceiptRecord(*row) for row in rows]

    async def add_inbound_part(
        self, key: str, seq: int, total: int, pdu: bytes, now: float
    ) -> list[bytes] | None:
        async with self._open_pool().acquire() as conn, conn.transaction():
            if await conn.fetchval(_MARKED, key) is not None:
                if await conn.fetchval(_SAME_PART, key, seq, pdu) is not None:
                    return []  # sent again after its message was taken
                await conn.execute("DELETE FROM inbound_parts WHERE key = $1", key)
            await conn.execute(
                "INSERT INTO inbound_parts VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key, seq) "
                "DO UPDATE SET total = $3, pdu = $4, received_at = $5",
                key,
                seq,
                total,
                pdu,
                now,
            )
            rows = await conn.fetch(
                "SELECT pdu FROM inbound_parts WHERE key = $1 AND seq > 0 AND total = $2 "
                "ORDER BY seq",
                key,
                total,
            )
            if len(rows) < total:
                return None
            # Two copies of the last part in two transactions: the marker's key decides.
            status = await conn.execute(
                "INSERT INTO inbound_parts VALUES ($1, 0, $2, $3, $4) "
                "ON CONFLICT (key, seq) DO NOTHING",
                key,
                total,
                INBOUND_TAKEN,
                now,
            )
        return [bytes(row[0]) for row in rows] if _count(status) == 1 else []

    async def finish_inbound(self, key: str, deliveries: list[NewDelivery], now: float) -> None:
        async with self._open_pool().acquire() as conn, conn.transaction():
            if deliveries:
                await conn.executemany(
                    "INSERT INTO deliveries (account, kind, pdu, created_at, expires_at, channel) "
                    "VALUES ($1, $2, $3, $4, $5, $6)",
                    _delivery_rows(deliveries, now),
                )
            if key:
                await conn.execute(
                    "INSERT INTO inbound_parts VALUES ($1, 0, 0, $2, $3) ON CONFLICT (key, seq) "
                    "DO UPDATE SET pdu = $2, received_at = $3",
                    key,
                    INBOUND_DONE,
                    now,
                )

    async def stale_inbound(self, before: float) -> list[tuple[str, list[bytes]]]:
        rows = await self._open_pool().fetch(
            "SELECT key, array_agg(pdu ORDER BY seq) FILTER (WHERE seq > 0) FROM inbound_parts "
            "WHERE key NOT IN (SELECT key FROM inbound_parts WHERE seq = 0 AND pdu = $2) "
            "GROUP BY key HAVING min(received_at) < $1",
            before,
            INBOUND_DONE,
        )
        return [(row[0], [bytes(p) for p in row[1] or ()]) for row in rows]

    async def forget_inbound(self, before: float) -> int:
        status = await self._open_pool().execute(
            "DELETE FROM inbound_parts WHERE key IN (SELECT key FROM inbound_parts "
            "WHERE received_at < $1 AND seq = 0 AND pdu = $2)",
            before,
            INBOUND_DONE,
        )
        return _count(status)

    async def record_sent(
        self,
        message_id: str,
        upstream: str,
        part_keys: tuple[tuple[str, ...], ...],
        now: float,
        *,
        part_ids: tuple[str, ...] = (),
    ) -> bool:
        # Group-committed: the sends recorded while the last group was written go together,
        # one statement and one commit for all of them (`_RECORD_SENT`).
        self._open_pool()
        return await self._sent.call((message_id, upstream, part_keys, now, part_ids))

    async def _write_sent(self, calls: list[_SentCall]) -> list[bool]:
        return await _retry_deadlock(self._write_sent_once, calls)

    async def _write_sent_once(self, calls: list[_SentCall]) -> list[bool]:
        pool = self._pool
        assert pool is not None  # close() drains the group before it drops the pool
        known = [False] * len(calls)
        older = StatsBatch(self.prefix_digits)  # rows an older node wrote (no place)
        rounds = _sent_rounds(calls)
        async with pool.acquire() as conn:
            if len(rounds) == 1:  # one statement, its own transaction
                await self._record_round(conn, calls, rounds[0], known, older)
            else:  # a message recorded twice: each round sees the one before, all or nothing
                async with conn.transaction():
                    for indexes in rounds:
                        await self._record_round(conn, calls, indexes, known, older)
                    await _write_stats(conn, older)
        self.sent_commits += 1
        await self._older_stats(older)
        return known

    async def _record_round(
        self,
        conn: PoolConnectionProxy,
        calls: list[_SentCall],
        indexes: list[int],
        known: list[bool],
        older: StatsBatch,
    ) -> None:
        args = _sent_arrays(calls, indexes)
        rows = await conn.fetch(_RECORD_SENT, self.prefix_digits, *args[:9], _FINAL, args[9])
        for row in rows:
            i = row[0]
            known[i] = row[1]
            if row[2]:
                count_sent(older, tuple(row)[4:], row[3], calls[i][1])

    async def _older_stats(self, batch: StatsBatch) -> None:
        """The counts of messages an older node wrote without their place (`_PLACES_SINCE`),
        which the statement that changed them could not make: in a statement of their own,
        after it (only while nodes of both versions run)."""
        if not batch.rows:
            return

        async def write(rows: StatsBatch) -> None:
            async with self._open_pool().acquire() as conn:
                await _write_stats(conn, rows.copy())

        await _retry_deadlock(write, batch)

    async def match_receipts(self, receipts: list[IncomingReceipt]) -> list[ReceiptMatch | None]:
        if not receipts:
            return []
        # Carriers send a receipt right after its submit_sm_resp, before the send group that
        # links its id commits: looked up at once, most would miss and be looked up again
        # once the sends were recorded. The sends recorded before the batch came go first.
        await self._sent.written()
        self.receipt_lookups += len(receipts)
        flat = [
            (i, n, r.upstream, key) for i, r in enumerate(receipts) for n, key in enumerate(r.keys)
        ]
        keys = [list(column) for column in zip(*flat, strict=True)] if flat else [[]] * 4
        rows = await self._open_pool().fetch(
            _MATCH,
            *keys,
            list(range(len(receipts))),
            [r.upstream for r in receipts],
            [r.upstream_id for r in receipts],
            [r.message_state for r in receipts],
            [r.error for r in receipts],
            [r.received_at for r in receipts],
            [r.raw for r in receipts],
            [r.keep_unknown for r in receipts],
        )
        records: dict[str, MessageRecord] = {}
        states: dict[str, list[int | None]] = {}
        for row in rows:
            message_id = row[0]
            if message_id not in records:
                records[message_id] = _record(row)
                parts = states[message_id] = [None] * row[_N + 5]
                for part, state in zip(row[_N + 8] or (), row[_N + 9] or (), strict=True):
                    if 0 <= part < len(parts):
                        parts[part] = state
        # This batch's receipts came after every one kept before: in order, each is its
        # part's latest (as if read back after the insert).
        for row in rows:
            parts, part = states[row[0]], row[_N + 7]
            if 0 <= part < len(parts):
                parts[part] = receipts[row[_N + 6]].message_state
        out: list[ReceiptMatch | None] = [None] * len(receipts)
        for row in rows:
            out[row[_N + 6]] = ReceiptMatch(records[row[0]], row[_N + 7], states[row[0]])
        return out

    async def settle(
        self,
        message_id: str,
        state: MessageState,
        now: float,
        *,
        error: int | None = None,
        delivery: NewDelivery | None = None,
    ) -> bool:
        return (await self.settle_many([Settlement(message_id, state, error, delivery)], now))[0]

    async def settle_many(
        self,
        settlements: list[Settlement],
        now: float,
        *,
        deliveries: tuple[NewDelivery, ...] = (),
    ) -> list[bool]:
        # One row per message: a second settlement in the same batch finds it final.
        first: dict[str, int] = {}
        for i, s in enumerate(settlements):
            first.setdefault(s.message_id, i)
        rows = [(i, settlements[i]) for i in first.values()]
        pool = self._open_pool()
        taken = await _retry_deadlock(self._settle_once, (pool, rows, now, deliveries))
        return [i in taken for i in range(len(settlements))]

    async def _settle_once(
        self,
        args: tuple[asyncpg.Pool, list[tuple[int, Settlement]], float, tuple[NewDelivery, ...]],
    ) -> set[int]:
        pool, rows, now, notices = args
        if not rows and not notices:
            return set()
        settled = await pool.fetch(
            _SETTLE_MANY,
            self.prefix_digits,
            [i for i, _s in rows],
            [s.message_id for _i, s in rows],
            [s.state.value for _i, s in rows],
            [s.error for _i, s in rows],
            [s.delivery.account if s.delivery else None for _i, s in rows],
            [s.delivery.kind if s.delivery else None for _i, s in rows],
            [s.delivery.pdu if s.delivery else None for _i, s in rows],
            [s.delivery.ttl if s.delivery else None for _i, s in rows],
            now,
            _FINAL,
            [",".join(s.delivery.channels) if s.delivery else None for _i, s in rows],
            [d.account for d in notices],
            [d.kind for d in notices],
            [d.pdu for d in notices],
            [d.ttl for d in notices],
            [",".join(d.channels) for d in notices],
            _LATENCY_BOUNDS,
        )
        older = StatsBatch(self.prefix_digits)
        for row in settled:
            if row[2]:
                count_change(older, tuple(row)[4:], ("sent", row[1]), now, row[3])
        await self._older_stats(older)
        return {row[0] for row in settled}

    async def overdue_sent(
        self, before: float, limit: int, *, upstream: str | None = None
    ) -> list[OverdueMessage]:
        async with self._open_pool().acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                _OVERDUE,
                MessageState.SENT.value,
                before,
                limit,
                upstream,
            )
            states: dict[str, list[int | None]] = {}
            if rows:
                for row in await conn.fetch(_PARTS_STATES, [row[0] for row in rows]):
                    parts = states.setdefault(row[0], [None] * row[1])
                    if row[2] is not None and 0 <= row[2] < len(parts):
                        parts[row[2]] = row[3]
        return [
            OverdueMessage(
                _record(row),
                row[_N + 5] or "",
                tuple(row[_N + 6] or ()),
                states.get(row[0], [None]),
            )
            for row in rows
        ]

    async def id_formats(self) -> dict[str, tuple[str | None, str | None]]:
        rows = await self._open_pool().fetch("SELECT upstream, sent, received FROM id_formats")
        return {row[0]: (row[1], row[2]) for row in rows}

    async def save_id_format(self, upstream: str, sent: str | None, received: str | None) -> None:
        await self._open_pool().execute(
            "INSERT INTO id_formats VALUES ($1, $2, $3) "
            "ON CONFLICT (upstream) DO UPDATE SET sent = $2, received = $3",
            upstream,
            sent,
            received,
        )

    async def unknown_receipts(self, limit: int = 100) -> list[ReceiptRecord]:
        rows = await self._read_pool().fetch(
            "SELECT upstream, upstream_id, message_state, error, received_at, raw "
            "FROM unknown_receipts ORDER BY seq DESC LIMIT $1",
            limit,
        )
        return [ReceiptRecord("", -1, *row) for row in rows]

    async def enqueue_delivery(
        self, account: str, kind: str, pdu: bytes, now: float, ttl: float
    ) -> int:
        delivery_id = await self._open_pool().fetchval(
            "INSERT INTO deliveries (account, kind, pdu, created_at, expires_at) "
            "VALUES ($1, $2, $3, $4, $5) RETURNING id",
            account,
            kind,
            pdu,
            now,
            now + ttl,
        )
        return int(delivery_id)

    async def pending_deliveries(
        self, account: str, now: float, limit: int, *, after: int = 0
    ) -> list[Delivery]:
        rows = await self._open_pool().fetch(
            _PENDING, account, now, limit, after, self.node, self.lease
        )
        return [Delivery(*row) for row in rows]

    async def pending_webhooks(
        self, account: str, now: float, limit: int, lease: float
    ) -> list[Delivery]:
        rows = await self._open_pool().fetch(
            _PENDING_WEBHOOKS, account, now, limit, lease, self.node
        )
        return [Delivery(*row) for row in rows]

    async def webhook_failed(self, delivery_id: int, retry_at: float, error: str) -> None:
        await self._open_pool().execute(
            "UPDATE deliveries SET next_at = $2, last_error = $3, lease_until = 0, "
            "leased_by = NULL WHERE id = $1",
            delivery_id,
            retry_at,
            error[:500],
        )

    async def release_webhooks(self) -> int:
        return _count(
            await self._open_pool().execute(
                "UPDATE deliveries SET lease_until = 0, leased_by = NULL "
                "WHERE channel = 'webhook' AND leased_by = $1 AND lease_until > 0",
                self.node,
            )
        )

    async def delivery_done(self, delivery_id: int) -> None:
        # Group commit, as for accept: the answers that came while the last delete ran go in
        # the next one. One statement per batch instead of one pool round trip per answer
        # keeps the lag of a removal (after which a restart no longer offers it) at about one
        # statement, even under a receipt burst.
        self._open_pool()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._done.append((delivery_id, fut))
        if self._done_writer is None or self._done_writer.done():
            self._done_writer = asyncio.get_running_loop().create_task(self._write_done())
        await fut

    async def deliveries_done(self, delivery_ids: Sequence[int]) -> None:
        # Already one group (a read's answers): one statement, without the per-id futures.
        if delivery_ids:
            await self._open_pool().execute(
                "DELETE FROM deliveries WHERE id = ANY($1::bigint[])", list(delivery_ids)
            )

    async def _write_done(self) -> None:
        while self._done:
            batch, self._done = self._done[: self.max_batch], self._done[self.max_batch :]
            pool = self._pool
            try:
                assert pool is not None  # close() waits for this task before it drops the pool
                await pool.execute(
                    "DELETE FROM deliveries WHERE id = ANY($1::bigint[])", [i for i, _f in batch]
                )
            except BaseException as exc:
                for _i, fut in batch:
                    _settle(fut, exc)
                if not isinstance(exc, Exception):
                    raise
            else:
                for _i, fut in batch:
                    _settle(fut, None)

    async def purge(self, before: float) -> int:
        await self.maintain(time.time())
        gone = await self._drop_partitions(before)
        async with self._open_pool().acquire() as conn, conn.transaction():
            gone += int(await conn.fetchval(_PURGE_ROWS, before, _FINAL))
            gone += _count(
                await conn.execute("DELETE FROM deliveries WHERE expires_at < $1", before)
            )
            gone += _count(
                await conn.execute("DELETE FROM unknown_receipts WHERE received_at < $1", before)
            )
        return gone

    # -- partitions -------------------------------------------------------------------------------

    async def maintain(self, now: float) -> None:
        """Create the partitions for `now`'s period and `partitions_ahead` more, if missing.

        Rows already in DEFAULT for a new partition's range are moved into it before it is
        attached (ATTACH refuses while DEFAULT holds rows of that range). Under the migration
        lock, so nodes doing this together don't race.

        Raises:
            asyncpg.LockNotAvailableError: a table stayed locked for `_DDL_LOCK_WAIT`.
        """
        async with self._open_pool().acquire() as conn:
            await self._maintain(conn, now)

    async def _maintain(self, conn: PoolConnectionProxy, now: float) -> None:
        step = self.partition_seconds
        start = now // step * step
        wanted = [
            (start + k * step, start + (k + 1) * step) for k in range(self.partitions_ahead + 1)
        ]
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(self.schema))
            # Adding a partition locks its parent exclusively: waiting long in the lock queue
            # would stall every hot query queued behind it. Failing is cheap (DEFAULT takes the
            # rows; the next purge tries again).
            await conn.execute(f"SET LOCAL lock_timeout = '{_DDL_LOCK_WAIT}'")
            for parent in PARTITIONED:
                have = [bounds for _name, bounds in await _partitions(conn, parent)]
                for lo, hi in wanted:
                    if any(a < hi and lo < b for a, b in have):
                        continue  # covered (or overlapped, after a change of period)
                    await _add_partition(conn, parent, lo, hi)

    async def _drop_partitions(self, before: float) -> int:
        """Drop the dated partitions entirely older than `before` whose messages are all final.

        A partition holding any message not final (or changed since `before`) is kept whole;
        the row-deleting purge takes its final rows. Returns the messages dropped.
        """
        gone = 0
        async with self._open_pool().acquire() as conn:
            history = {b: n for n, b in await _partitions(conn, "message_history")}
            for name, (lo, hi) in sorted(await _partitions(conn, "messages"), key=lambda p: p[1]):
                if hi > before:
                    continue
                async with conn.transaction():
                    # a short lock wait: DROP takes the parent's lock, hot paths must not queue
                    await conn.execute(f"SET LOCAL lock_timeout = '{_DDL_LOCK_WAIT}'")
                    # Two probes of the (state, updated_at) index, not a scan: a day kept for
                    # one waiting message is checked again at every purge.
                    keeps = _KEEPS.format(part=_quote(name))
                    if await conn.fetchval(keeps, _UNFINISHED, _FINAL, before):
                        continue
                    count = await conn.fetchval(f"SELECT count(*) FROM {_quote(name)}")
                    ids = f"SELECT id FROM {_quote(name)}"
                    await conn.execute(f"DELETE FROM receipts WHERE message_id IN ({ids})")
                    await conn.execute(f"DELETE FROM upstream_ids WHERE message_id IN ({ids})")
                    await conn.execute(f"DROP TABLE {_quote(name)}")
                    if (lo, hi) in history:
                        await conn.execute(f"DROP TABLE {_quote(history[lo, hi])}")
                    gone += int(count)
        return gone

    async def ping(self) -> bool:
        # A hot standby (a replica DSN by mistake) is read-only: not ready to accept.
        return not await self._open_pool().fetchval("SELECT pg_is_in_recovery()")

    async def queue_depths(self) -> QueueDepths:
        pool = self._read_pool()
        row = await pool.fetchrow(_WAITING)
        rows = await pool.fetch(
            "SELECT account, count(*), min(created_at) FROM deliveries GROUP BY account"
        )
        assert row is not None  # an aggregate always has its row
        return QueueDepths(int(row[0]), row[1], {r[0]: (int(r[1]), float(r[2])) for r in rows})

    async def requeue_interrupted(self, now: float) -> int:
        return _count(await self._open_pool().execute(_REQUEUE, now, self.node))

    async def heartbeat(self, now: float) -> bool:
        return bool(await self._open_pool().fetchval(_HEARTBEAT, self.node, now))

    async def take_over(self, now: float, lease: float) -> int:
        return _count(await self._open_pool().execute(_TAKE_OVER, now, lease, self.node))

    async def release(self, now: float) -> int:
        if self._pool is None or self._closing:  # a second stop: handed over already
            return 0
        async with self._open_pool().acquire() as conn, conn.transaction():
            count = _count(await conn.execute(_REQUEUE, now, self.node))
            count += _count(
                await conn.execute(
                    "UPDATE deliveries SET lease_until = 0, leased_by = NULL "
                    "WHERE leased_by = $1 AND lease_until > 0",
                    self.node,
                )
            )
            await conn.execute("DELETE FROM node_heartbeats WHERE node = $1", self.node)
        return count

    async def stats(
        self,
        since: float,
        until: float,
        group: tuple[str, ...],
        *,
        where: dict[str, str] | None = None,
    ) -> list[StatsRow]:
        sql, args = query_sql(group, where or {}, lambda n: f"${n}")
        start = int(since // 3600 * 3600)
        rows = await self._read_pool().fetch(sql, start, until, *args)
        return [StatsRow.of_row(group, tuple(row)) for row in rows]

    async def forget_stats(self, before: float) -> int:
        return _count(
            await self._open_pool().execute(
                "DELETE FROM delivery_stats WHERE hour + 3600 <= $1", before
            )
        )

    async def change_pending(
        self,
        message_id: str,
        account: str,
        now: float,
        *,
        short_message: bytes | None = None,
        times: tuple[float | None, float] | None = None,
    ) -> bool:
        pool = self._open_pool()
        if short_message is None:
            async with pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(_CANCEL, message_id, account, now)
                await _count_ends(conn, rows, StatsBatch(self.prefix_digits), now)
            return bool(rows)
        if times is None:
            status = await pool.execute(
                "UPDATE messages SET short_message = $4, updated_at = $3 "
                f"WHERE id = $1 AND account = $2 AND state = '{_ACCEPTED}'",
                message_id,
                account,
                now,
                short_message,
            )
        else:
            status = await pool.execute(
                "UPDATE messages SET short_message = $4, updated_at = $3, schedule_at = $5, "
                f"expires_at = $6 WHERE id = $1 AND account = $2 AND state = '{_ACCEPTED}'",
                message_id,
                account,
                now,
                short_message,
                *times,
            )
        return _count(status) == 1

    async def create_batch(self, batch: NewBatch) -> None:
        await self._open_pool().execute(
            "INSERT INTO batches (id, account, state, created_at, total, size, duplicates, "
            "invalid, request, report, recipients) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            batch.id,
            batch.account,
            BatchState.ACCEPTING.value,
            batch.created_at,
            batch.total,
            batch.size,
            batch.duplicates,
            batch.invalid,
            batch.request,
            batch.report,
            batch.recipients,
        )

    async def accept_batch(
        self,
        batch_id: str,
        messages: list[NewMessage],
        cursor: tuple[int, int, int],
        now: float,
        *,
        report: str | None = None,
        checks: Sequence[StoreCheck] | None = None,
    ) -> bool:
        start, upto, refused = cursor
        async with self._open_pool().acquire() as conn, conn.transaction():
            counted = len(messages) if checks is None else 0
            moved = await conn.fetchval(
                _BATCH_CURSOR, batch_id, upto, counted, refused, report, now, start
            )
            if moved is None:
                return False
            if checks is not None:
                await self._accept_checked_in(conn, batch_id, messages, checks, now)
            elif messages:
                rows = [_values(m) for m in messages]
                await conn.execute(
                    _ACCEPT_BATCH,
                    *(list(c) for c in zip(*rows, strict=True)),
                    batch_id,
                    *_places(messages),
                )
                await _count_new(conn, messages, self.prefix_digits)
        return True

    async def batch(self, batch_id: str) -> BatchRecord | None:
        pool = self._open_pool()
        row = await pool.fetchrow(f"SELECT {_BATCH_COLUMNS} FROM batches WHERE id = $1", batch_id)
        if row is None:
            return None
        counts = await pool.fetch(
            "SELECT state, count(*) FROM messages WHERE batch_id = $1 GROUP BY state", batch_id
        )
        return BatchRecord.of_row(tuple(row), {MessageState(r[0]): int(r[1]) for r in counts})

    async def batch_recipients(self, batch_id: str) -> bytes:
        found = await self._open_pool().fetchval(
            "SELECT recipients FROM batches WHERE id = $1", batch_id
        )
        return b"" if found is None else bytes(found)

    async def unfinished_batches(self) -> list[str]:
        rows = await self._open_pool().fetch(
            "SELECT id FROM batches WHERE state = 'accepting' ORDER BY created_at"
        )
        return [r[0] for r in rows]

    async def cancel_batch(self, batch_id: str, now: float) -> int:
        async with self._open_pool().acquire() as conn, conn.transaction():
            await conn.execute(_STOP_BATCH, batch_id, now)
            rows = await conn.fetch(_CANCEL_BATCH, batch_id, now)
            await _count_ends(conn, rows, StatsBatch(self.prefix_digits), now)
            return len(rows)

    async def count_usage(self, key: str, now: float, count: int = 1) -> Usage:
        row = await self._open_pool().fetchrow(_COUNT_USAGE, key, *usage_windows(now), count)
        assert row is not None  # an upsert with RETURNING returns its row
        return Usage(row[0], row[1], row[2])

    async def usage(self, key: str, now: float) -> Usage:
        minute, day, month = usage_windows(now)
        row = await self._open_pool().fetchrow(
            "SELECT minute, per_minute, day, per_day, month, per_month FROM sim_usage "
            "WHERE key = $1",
            key,
        )
        if row is None:
            return Usage()
        return Usage(
            row[1] if row[0] == minute else 0,
            row[3] if row[2] == day else 0,
            row[5] if row[4] == month else 0,
        )

    async def suppress(self, entries: list[tuple[str, str, str]], now: float) -> int:
        entries = unique_suppressions(entries)
        if len(entries) <= _SMALL:
            numbers, scopes, sources = (
                (list(c) for c in zip(*entries, strict=True)) if entries else ([], [], [])
            )
            status = await self._open_pool().execute(_SUPPRESS_SMALL, numbers, scopes, sources, now)
            return _count(status)
        # Many: COPY into a temporary table, then one upsert from it per chunk's transaction.
        written = 0
        async with self._open_pool().acquire() as conn:
            for start in range(0, len(entries), _COPY_CHUNK):
                async with conn.transaction():
                    await conn.execute(
                        "CREATE TEMPORARY TABLE suppress_in (number text, scope text, source text) "
                        "ON COMMIT DROP"
                    )
                    await conn.copy_records_to_table(
                        "suppress_in", records=entries[start : start + _COPY_CHUNK]
                    )
                    written += _count(await conn.execute(_SUPPRESS_COPIED, now))
        return written

    async def unsuppress(self, entries: list[tuple[str, str | None]]) -> int:
        numbers = [n for n, _s in entries]
        scopes = [s for _n, s in entries]
        status = await self._open_pool().execute(
            "DELETE FROM suppressions s USING unnest($1::text[], $2::text[]) AS u(number, scope) "
            "WHERE s.number = u.number AND (u.scope IS NULL OR s.scope = u.scope)",
            numbers,
            scopes,
        )
        return _count(status)

    async def suppression(self, number: str) -> list[Suppression]:
        rows = await self._open_pool().fetch(
            "SELECT number, scope, created_at, source FROM suppressions WHERE number = $1 "
            "ORDER BY scope",
            number,
        )
        return [Suppression(*row) for row in rows]

    async def suppressions_page(
        self, after: tuple[str, str] | None, limit: int
    ) -> list[Suppression]:
        columns = "SELECT number, scope, created_at, source FROM suppressions"
        pool = self._open_pool()
        if after is None:
            rows = await pool.fetch(f"{columns} ORDER BY number, scope LIMIT $1", limit)
        else:
            rows = await pool.fetch(
                f"{columns} WHERE (number, scope) > ($1, $2) ORDER BY number, scope LIMIT $3",
                *after,
                limit,
            )
        return [Suppression(*row) for row in rows]

    async def record_dead_failures(
        self,
        failed: list[str],
        now: float,
        *,
        after: int,
        period: float,
        delivered: list[str] | None = None,
    ) -> list[str]:
        counts: dict[str, int] = {}
        for number in failed:
            counts[number] = counts.get(number, 0) + 1
        async with self._open_pool().acquire() as conn, conn.transaction():
            if delivered:
                await conn.execute(
                    "DELETE FROM dead_numbers WHERE number = ANY($1::text[])", delivered
                )
            if not counts:
                return []
            rows = await conn.fetch(
                _DEAD_FAILURES, list(counts), list(counts.values()), now, after, period
            )
        return [row[0] for row in rows if row[1] == now + period]

    async def dead_numbers_page(self, after: str | None, limit: int) -> list[DeadNumber]:
        rows = await self._open_pool().fetch(
            "SELECT number, failures, last_at, dead_until FROM dead_numbers WHERE number > $1 "
            "ORDER BY number LIMIT $2",
            "" if after is None else after,
            limit,
        )
        return [DeadNumber(*row) for row in rows]


_SMALL = 1000  # suppressions written with one statement; more go through COPY
_COPY_CHUNK = 10 * SUPPRESS_CHUNK  # COPY is fast: bigger transactions, still bounded
_SUPPRESS_SMALL = """
    INSERT INTO suppressions (number, scope, created_at, source)
    SELECT number, scope, $4::float8, source FROM unnest($1::text[], $2::text[], $3::text[])
        AS u(number, scope, source)
    ON CONFLICT (number, scope) DO UPDATE SET
        created_at = EXCLUDED.created_at, source = EXCLUDED.source
"""
_SUPPRESS_COPIED = """
    INSERT INTO suppressions (number, scope, created_at, source)
    SELECT number, scope, $1::float8, source FROM suppress_in
    ON CONFLICT (number, scope) DO UPDATE SET
        created_at = EXCLUDED.created_at, source = EXCLUDED.source
"""
_DEAD_FAILURES = """
    INSERT INTO dead_numbers AS d (number, failures, last_at, dead_until)
    SELECT number, n, $3::float8, CASE WHEN n >= $4::int THEN $3::float8 + $5::float8 END
    FROM unnest($1::text[], $2::int[]) AS u(number, n)
    ON CONFLICT (number) DO UPDATE SET
        failures = d.failures + EXCLUDED.failures,
        last_at = $3,
        dead_until = CASE WHEN d.failures + EXCLUDED.failures >= $4 THEN $3 + $5
                     ELSE d.dead_until END
    RETURNING number, dead_until
"""

# In an UPDATE every column on the right-hand side is the row's old value, so each count is
# compared with its old window before the window moves on.
_COUNT_USAGE = """
    INSERT INTO sim_usage AS u (key, minute, per_minute, day, per_day, month, per_month)
    VALUES ($1, $2, $5, $3, $5, $4, $5)
    ON CONFLICT (key) DO UPDATE SET
        per_minute = CASE WHEN u.minute = $2 THEN u.per_minute + $5 ELSE $5 END,
        per_day = CASE WHEN u.day = $3 THEN u.per_day + $5 ELSE $5 END,
        per_month = CASE WHEN u.month = $4 THEN u.per_month + $5 ELSE $5 END,
        minute = $2, day = $3, month = $4
    RETURNING per_minute, per_day, per_month
"""


def _settle_any(fut: asyncio.Future[_Out], error: BaseException) -> None:
    if fut.done():
        return
    if isinstance(error, Exception):
        fut.set_exception(error)
    else:
        fut.cancel()


def _settle(fut: asyncio.Future[None], error: BaseException | None) -> None:
    if fut.done():
        return  # settled already, or the caller went away (its write stands)
    if error is None:
        fut.set_result(None)
    elif isinstance(error, Exception):
        fut.set_exception(error)
    else:
        fut.cancel()


if TYPE_CHECKING:  # mypy checks that the class fills in the whole protocol

    def _is_a_store(store: PostgresStore) -> Store:
        return store
