"""The embedded store: SQLite in WAL mode, one writer thread, group commit.

Theory of operation
-------------------
Every operation is a small function of a `sqlite3.Connection`, queued to one thread that owns
the connection. That thread takes whatever has queued up (up to `max_batch`), runs it in one
transaction - each operation inside its own SAVEPOINT, so one failing operation does not undo
its neighbours - commits once, and only then resolves the callers' futures. With
``synchronous=FULL`` a commit is durable when it returns, so a caller whose `accept` returned
may answer submit_sm_resp: nothing it acknowledged is lost to a kill -9 or a power cut. Under
load one fsync covers hundreds of messages; when idle a lone message commits at once (no
batching delay is ever added).

Reads go through the same thread: they are short, and a single connection keeps them
consistent with the writes before them.

The schema lives in `MIGRATIONS`, applied in order and recorded in ``PRAGMA user_version``.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import queue
import sqlite3
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from gateway.policy.check import StoreCheck, store_verdict
from gateway.policy.rules import Cap, Facts, Verdict
from gateway.store.base import (
    DELIVERY_LEASE,
    INBOUND_DONE,
    INBOUND_TAKEN,
    PREFIX_DIGITS,
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
    Suppression,
    Usage,
    usage_windows,
)
from gateway.store.stats import (
    MESSAGE_DIMS,
    Dims,
    StatsBatch,
    count_change,
    count_sent,
    query_sql,
    upsert_sql,
)
from gateway.store.stats import schema as stats_schema
from gateway.telemetry import stages
from gateway.telemetry.metrics import Metrics

__all__ = ["MIGRATIONS", "SqliteStore"]

T = TypeVar("T")

# The final states as SQL, written out: SQLite uses a partial index only when the query
# repeats the index's own terms, so the purge and the index `messages_final` share this text.
# Comparisons, not `state IN (...)`: SQLite evaluates an IN list of more than two constants
# through a temporary b-tree built for each statement run, and every insert or state change
# evaluates a partial index's term for its row - a b-tree built and dropped (two 4 KiB pages
# zeroed) per index per row, 11 of them per message before migration 13.
_OPEN_STATES = tuple(s.value for s in MessageState if not s.final)
_FINAL_SQL = " AND ".join(f"state <> '{state}'" for state in _OPEN_STATES)
_NOT_FINAL = "(" + " OR ".join(f"state = '{state}'" for state in _OPEN_STATES) + ")"

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        source_addr TEXT NOT NULL,
        source_addr_ton INTEGER NOT NULL,
        source_addr_npi INTEGER NOT NULL,
        destination_addr TEXT NOT NULL,
        dest_addr_ton INTEGER NOT NULL,
        dest_addr_npi INTEGER NOT NULL,
        service_type TEXT NOT NULL,
        esm_class INTEGER NOT NULL,
        protocol_id INTEGER NOT NULL,
        priority_flag INTEGER NOT NULL,
        registered_delivery INTEGER NOT NULL,
        data_coding INTEGER NOT NULL,
        short_message BLOB NOT NULL,
        tlvs BLOB NOT NULL,
        route TEXT NOT NULL,
        schedule_at REAL,
        expires_at REAL,
        accepted_at REAL NOT NULL,
        state TEXT NOT NULL,
        updated_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        error INTEGER
    );
    CREATE INDEX messages_due ON messages (state, schedule_at, accepted_at);
    CREATE TABLE message_history (
        message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        at REAL NOT NULL,
        state TEXT NOT NULL
    );
    CREATE INDEX message_history_id ON message_history (message_id);
    CREATE TABLE upstream_ids (
        upstream TEXT NOT NULL,
        key TEXT NOT NULL,
        message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        PRIMARY KEY (upstream, key, message_id)
    );
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        account TEXT NOT NULL,
        kind TEXT NOT NULL,
        pdu BLOB NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX deliveries_account ON deliveries (account, id);
    """,
    # 2: messages sent as several parts, a receipt per part, and which node claimed a message.
    """
    ALTER TABLE messages ADD COLUMN parts INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE messages ADD COLUMN claimed_by INTEGER;
    ALTER TABLE upstream_ids ADD COLUMN part INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE receipts (
        message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        part INTEGER NOT NULL,
        upstream TEXT NOT NULL,
        upstream_id TEXT NOT NULL,
        message_state INTEGER NOT NULL,
        error INTEGER NOT NULL,
        received_at REAL NOT NULL
    );
    CREATE INDEX receipts_message ON receipts (message_id);
    CREATE INDEX upstream_ids_message ON upstream_ids (message_id);
    """,
    # 3: only waiting messages in the due index, so a state change elsewhere never touches it.
    """
    DROP INDEX messages_due;
    CREATE INDEX messages_due ON messages (accepted_at) WHERE state = 'accepted';
    """,
    # 4: parts of concatenated inbound messages, durable until the message is whole.
    """
    CREATE TABLE inbound_parts (
        key TEXT NOT NULL,
        seq INTEGER NOT NULL,
        total INTEGER NOT NULL,
        pdu BLOB NOT NULL,
        received_at REAL NOT NULL,
        PRIMARY KEY (key, seq)
    );
    CREATE INDEX inbound_parts_age ON inbound_parts (received_at);
    """,
    # 5: per-SIM send counters (modem limits): one row per SIM, the current windows only.
    """
    CREATE TABLE sim_usage (
        key TEXT PRIMARY KEY,
        minute INTEGER NOT NULL,
        per_minute INTEGER NOT NULL,
        day INTEGER NOT NULL,
        per_day INTEGER NOT NULL,
        month INTEGER NOT NULL,
        per_month INTEGER NOT NULL
    );
    """,
    # 6: a node leases the deliveries it offers, so another node sharing the database does
    # not offer them as well while the first waits for the application's answer.
    """
    ALTER TABLE deliveries ADD COLUMN leased_by INTEGER;
    ALTER TABLE deliveries ADD COLUMN lease_until REAL NOT NULL DEFAULT 0;
    """,
    # 7: every receipt's raw text, the receipts no message matched, and where a message went
    # (its upstream and part ids as written) so one whose receipt never comes can be asked for.
    """
    ALTER TABLE receipts ADD COLUMN raw BLOB NOT NULL DEFAULT x'';
    CREATE TABLE unknown_receipts (
        upstream TEXT NOT NULL,
        upstream_id TEXT NOT NULL,
        message_state INTEGER NOT NULL,
        error INTEGER NOT NULL,
        received_at REAL NOT NULL,
        raw BLOB NOT NULL
    );
    CREATE INDEX unknown_receipts_age ON unknown_receipts (received_at);
    ALTER TABLE messages ADD COLUMN sent_to TEXT;
    ALTER TABLE messages ADD COLUMN sent_ids TEXT;
    CREATE INDEX messages_sent ON messages (updated_at) WHERE state = 'sent';
    CREATE TABLE id_formats (upstream TEXT PRIMARY KEY, sent TEXT, received TEXT);
    """,
    # 8: webhooks ride the same queue: a row's channel, and a failed POST's retry time and error.
    """
    ALTER TABLE deliveries ADD COLUMN channel TEXT NOT NULL DEFAULT 'smpp';
    ALTER TABLE deliveries ADD COLUMN next_at REAL NOT NULL DEFAULT 0;
    ALTER TABLE deliveries ADD COLUMN last_error TEXT;
    CREATE INDEX deliveries_webhook ON deliveries (account, id) WHERE channel = 'webhook';
    """,
    # 9 (issue 10): a batch, its recipients until accepted and its cursor, and its
    # messages by a partial index (others skip it).
    """
    CREATE TABLE batches (
        id TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at REAL NOT NULL,
        finished_at REAL,
        total INTEGER NOT NULL,
        size INTEGER NOT NULL,
        accepted_upto INTEGER NOT NULL DEFAULT 0,
        accepted INTEGER NOT NULL DEFAULT 0,
        refused INTEGER NOT NULL DEFAULT 0,
        duplicates INTEGER NOT NULL,
        invalid INTEGER NOT NULL,
        request TEXT NOT NULL,
        report TEXT NOT NULL,
        recipients BLOB NOT NULL
    );
    CREATE INDEX batches_accepting ON batches (created_at) WHERE state = 'accepting';
    ALTER TABLE messages ADD COLUMN batch_id TEXT;
    CREATE INDEX messages_batch ON messages (batch_id, state) WHERE batch_id IS NOT NULL;
    """,
    # 10 (issue 11): a message's class, campaign tag and the rule that stopped it; what the
    # sending rules read in the accept batch: opted-out numbers, sends per recipient and
    # class (caps), recent texts (dedup), numbers found dead.
    """
    ALTER TABLE messages ADD COLUMN msg_class TEXT NOT NULL DEFAULT '';
    ALTER TABLE messages ADD COLUMN campaign TEXT NOT NULL DEFAULT '';
    ALTER TABLE messages ADD COLUMN stop_reason TEXT;
    CREATE TABLE suppressions (
        number TEXT NOT NULL,
        scope TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        source TEXT NOT NULL,
        PRIMARY KEY (number, scope)
    ) WITHOUT ROWID;
    CREATE TABLE policy_sends (
        number TEXT NOT NULL,
        msg_class TEXT NOT NULL,
        account TEXT NOT NULL,
        sent_at REAL NOT NULL
    );
    CREATE INDEX policy_sends_by ON policy_sends (number, msg_class, sent_at);
    CREATE INDEX policy_sends_age ON policy_sends (sent_at);
    CREATE TABLE policy_dedup (
        key TEXT PRIMARY KEY,
        message_id TEXT NOT NULL,
        created_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX policy_dedup_age ON policy_dedup (created_at);
    CREATE TABLE dead_numbers (
        number TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        last_at REAL NOT NULL,
        dead_until REAL
    ) WITHOUT ROWID;
    """,
    # 11 (issue 11): delivery statistics, counted in each state change's transaction; when a
    # message was last handed to an upstream (receipt latency).
    "ALTER TABLE messages ADD COLUMN sent_at REAL;" + stats_schema("INTEGER", "TEXT"),
    # 12 (issue 13): what start-up and the retention purge look for, by index instead of a
    # scan of every message: the claimed ones (few: those in flight) and the final ones by
    # age. Creating them reads the table once, at the first start after the upgrade.
    """
    CREATE INDEX messages_claimed ON messages (claimed_by) WHERE state = 'dispatching';
    CREATE INDEX messages_final ON messages (updated_at) WHERE state IN ('delivered',
        'undeliverable', 'expired', 'rejected', 'cancelled', 'failed', 'unknown');
    """,
    # 13 (issue 13): a message's history kept in its own row, appended by the statement that
    # changes its state, instead of a message_history row per change (four for a delivered
    # message: a statement, a foreign-key probe and an index entry each, and as many rows for
    # the purge to delete). History written before stays in message_history and reads first.
    #
    # And `messages_final` with comparisons instead of an IN list (see `_FINAL_SQL`); building
    # it again reads the table once, at the first start after the upgrade.
    f"""
    ALTER TABLE messages ADD COLUMN trail TEXT NOT NULL DEFAULT '';
    DROP INDEX messages_final;
    CREATE INDEX messages_final ON messages (updated_at) WHERE {_FINAL_SQL};
    """,
)

_COLUMNS = (
    "id, account, source_addr, destination_addr, short_message, data_coding, esm_class, "
    "registered_delivery, source_addr_ton, source_addr_npi, dest_addr_ton, dest_addr_npi, "
    "service_type, protocol_id, priority_flag, tlvs, route, schedule_at, expires_at, accepted_at, "
    "msg_class, campaign"
)
_RECORD = f"SELECT {_COLUMNS}, state, updated_at, attempts, error, stop_reason FROM messages"
_SEP = "\x1f"  # between the part ids of `sent_ids` (ids are C-strings: never this)


_N = len(NewMessage._fields)  # a record row: the message's columns, then these five
_INSERT_MESSAGE = (
    f"INSERT INTO messages ({_COLUMNS}, state, updated_at, trail) "
    f"VALUES ({', '.join('?' * (_N + 3))})"
)
_ACCEPTED = MessageState.ACCEPTED.value


def _trail(at: float, state: str) -> str:
    """One history entry as `messages.trail` keeps it: repr() reads back as the same float."""
    return f"{at!r} {state};"


def _read_trail(trail: str) -> list[tuple[float, MessageState]]:
    entries = []
    for entry in trail.split(";")[:-1]:
        at, _, state = entry.partition(" ")
        entries.append((float(at), MessageState(state)))
    return entries


def _record(row: tuple[Any, ...]) -> MessageRecord:
    return MessageRecord(
        message=NewMessage(*row[:_N]),
        state=MessageState(row[_N]),
        updated_at=row[_N + 1],
        attempts=row[_N + 2],
        error=row[_N + 3],
        stop_reason=row[_N + 4],
    )


_Op = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]


class SqliteStore:
    """The SQLite backend of `gateway.store.base.Store`.

    Args:
        path: the database file (created with its directory), or ":memory:".
        max_batch: most operations per transaction.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_batch: int = 1024,
        node: int = 0,
        writer: Literal["thread", "process"] = "thread",
        prefix_digits: int = PREFIX_DIGITS,
        lease: float = DELIVERY_LEASE,
    ) -> None:
        self.path = str(path)
        self.lease = lease  # one node per file: kept for `pending_deliveries` as PostgreSQL does
        self.prefix_digits = prefix_digits  # of the destination, kept in delivery_stats
        self.node = node
        self.writer = writer
        self._child: asyncio.subprocess.Process | None = None  # the writer process
        self._reader: asyncio.Task[None] | None = None
        self._waiting: list[_Op] = []  # operations for the next batch (process writer)
        self._sent: deque[list[asyncio.Future[Any]]] = deque()  # batches the process has
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.commits = 0  # transactions committed: tests and metrics see the batching
        self._done_ids: list[int] | None = None  # `delivery_done` ids gathering this turn
        self._done_call: asyncio.Future[None] | None = None  # ... and their one operation
        self.metrics: Metrics | None = None  # the gateway's, when metrics are on

    # -- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._thread is not None or self._child is not None:
            return
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._loop = asyncio.get_running_loop()
        if self.writer == "process":
            await self._open_process()
        else:
            ready: asyncio.Future[None] = self._loop.create_future()
            self._thread = threading.Thread(
                target=self._run, args=(ready,), name="smsgw-sqlite-writer", daemon=True
            )
            self._thread.start()
            await ready
        if self.prefix_digits != PREFIX_DIGITS:  # an operation: it reaches a writer process too
            await self._call(_configure_stats, self.prefix_digits)

    async def close(self) -> None:
        if self._child is not None:
            await self._close_process()
            return
        if self._thread is None:
            return
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    # -- the writer thread --------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path)

    def _run(self, ready: asyncio.Future[None]) -> None:
        loop = self._loop
        assert loop is not None
        try:
            conn = self._connect()
        except Exception as exc:
            loop.call_soon_threadsafe(_settle, ready, None, exc)
            return
        loop.call_soon_threadsafe(_settle, ready, None, None)
        stopping = False
        while not stopping:
            first = self._queue.get()
            batch: list[_Op] = []
            if first is None:
                stopping = True
            else:
                batch.append(first)
            while len(batch) < self.max_batch and not stopping:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                else:
                    batch.append(item)
            if batch:
                self._run_batch(conn, loop, batch)
        conn.close()

    def _run_batch(
        self, conn: sqlite3.Connection, loop: asyncio.AbstractEventLoop, batch: list[_Op]
    ) -> None:
        started = time.perf_counter()
        outcomes = run_ops(conn, [(fn, args) for fn, args, _fut in batch])
        self.commits += 1
        if self.metrics is not None:
            self.metrics.committed(time.perf_counter() - started, len(batch))
        results = [
            (fut, value, error)
            for (_fn, _args, fut), (value, error) in zip(batch, outcomes, strict=True)
        ]
        loop.call_soon_threadsafe(_settle_all, results)  # one wake-up of the loop per batch

    # -- the writer process (writer="process", see gateway.store.writer) -------------------
    # One batch is out at a time; what is called meanwhile makes the next one, so batches grow
    # with the load exactly as the thread's do.

    async def _open_process(self) -> None:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.store.writer",
            self.path,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdout is not None
        started = pickle.loads(await _read_frame(child.stdout))
        if started is not None:
            await child.wait()
            raise started
        self._child = child
        self._reader = asyncio.get_running_loop().create_task(self._read_results())

    async def _close_process(self) -> None:
        while self._sent or self._waiting:  # what was called is written first
            last = self._waiting[-1][2] if self._waiting else self._sent[-1][-1]
            with contextlib.suppress(Exception):
                await asyncio.shield(last)
        child = self._child
        assert child is not None and child.stdin is not None
        with contextlib.suppress(ConnectionError):
            child.stdin.write(_FRAME.pack(0))
            await child.stdin.drain()
            child.stdin.close()
        try:
            await asyncio.wait_for(child.wait(), 30)
        except TimeoutError:
            child.kill()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._child = self._reader = None

    def _send_batch(self) -> None:
        batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
        self._sent.append([fut for _fn, _args, fut in batch])
        child = self._child
        try:
            assert child is not None and child.stdin is not None
            payload = pickle.dumps(
                [(fn, args) for fn, args, _fut in batch], protocol=pickle.HIGHEST_PROTOCOL
            )
            child.stdin.write(_FRAME.pack(len(payload)) + payload)
        except Exception as exc:  # an argument that cannot be sent, or the process is gone
            self._fail(f"store writer unavailable: {exc!r}")

    async def _read_results(self) -> None:
        child = self._child
        assert child is not None and child.stdout is not None
        while True:
            try:
                results = pickle.loads(await _read_frame(child.stdout))
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                # What it had may or may not be committed: those callers get an error (the
                # application is told ESME_RSYSERR and sends again). A new writer takes over.
                self._fail(f"store writer process ended: {exc!r}")
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                await child.wait()
                self._child = None
                try:
                    await self._open_process()
                except Exception as restart_error:
                    self._fail(f"store writer could not be restarted: {restart_error!r}")
                return
            sent = self._sent.popleft()
            self.commits += 1
            for fut, (value, error) in zip(sent, results, strict=True):
                _settle(fut, value, error)
            if self._waiting and len(self._sent) < _IN_FLIGHT:
                self._send_batch()

    def _fail(self, reason: str) -> None:
        failed = [fut for batch in self._sent for fut in batch]
        failed += [fut for _fn, _args, fut in self._waiting]
        self._sent, self._waiting = deque(), []
        for fut in failed:
            _settle(fut, None, RuntimeError(reason))

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._child is not None:
            assert self._loop is not None
            pending: asyncio.Future[T] = self._loop.create_future()
            self._waiting.append((fn, args, pending))
            if len(self._sent) < _IN_FLIGHT:
                self._send_batch()
            return await pending
        if self._loop is None or self._thread is None:
            raise RuntimeError("store is not open")
        fut: asyncio.Future[T] = self._loop.create_future()
        self._queue.put((fn, args, fut))
        return await fut

    # -- operations ---------------------------------------------------------------------------

    async def accept(self, message: NewMessage) -> None:
        await self._call(_accept, message)

    async def accept_checked(self, message: NewMessage, check: StoreCheck, now: float) -> Verdict:
        return await self._call(_accept_checked, message, check, now)

    async def purge_policy(self, sends_before: float, dedup_before: float) -> int:
        return await self._call(_purge_policy, sends_before, dedup_before)

    async def get(self, message_id: str, *, lagging: bool = False) -> MessageRecord | None:
        return await self._call(_get, message_id)

    async def claim_due(self, now: float, limit: int) -> list[MessageRecord]:
        return await self._call(_claim_due, now, limit, self.node)

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
        return await self._call(_set_state, message_id, state, now, (error, retry_at, tried))

    async def history(self, message_id: str) -> list[tuple[float, MessageState]]:
        return await self._call(_history, message_id)

    async def link_upstream_id(
        self, upstream: str, keys: tuple[str, ...], message_id: str, part: int = 0
    ) -> None:
        await self._call(_link, upstream, keys, message_id, part)

    async def find_by_upstream_id(self, upstream: str, keys: tuple[str, ...]) -> str | None:
        found = await self._call(_find, upstream, keys)
        return None if found is None else found[0]

    async def find_part(self, upstream: str, keys: tuple[str, ...]) -> tuple[str, int] | None:
        return await self._call(_find, upstream, keys)

    async def set_parts(self, message_id: str, parts: int) -> None:
        await self._call(_set_parts, message_id, parts)

    async def add_receipt(self, receipt: ReceiptRecord) -> list[int | None]:
        return await self._call(_add_receipt, receipt)

    async def receipts(self, message_id: str, *, lagging: bool = False) -> list[ReceiptRecord]:
        return await self._call(_receipts, message_id)

    async def upstream_ids(self, message_id: str) -> list[tuple[int, str, str]]:
        return await self._call(_upstream_ids, message_id)

    async def add_inbound_part(
        self, key: str, seq: int, total: int, pdu: bytes, now: float
    ) -> list[bytes] | None:
        return await self._call(_add_inbound_part, key, (seq, total, pdu, now))

    async def finish_inbound(self, key: str, deliveries: list[NewDelivery], now: float) -> None:
        await self._call(_finish_inbound, key, deliveries, now)

    async def stale_inbound(self, before: float) -> list[tuple[str, list[bytes]]]:
        return await self._call(_stale_inbound, before)

    async def forget_inbound(self, before: float) -> int:
        return await self._call(_forget_inbound, before)

    async def record_sent(
        self,
        message_id: str,
        upstream: str,
        part_keys: tuple[tuple[str, ...], ...],
        now: float,
        *,
        part_ids: tuple[str, ...] = (),
    ) -> bool:
        return await self._call(_record_sent, message_id, upstream, (part_keys, part_ids), now)

    async def match_receipts(self, receipts: list[IncomingReceipt]) -> list[ReceiptMatch | None]:
        return await self._call(_match_receipts, receipts)

    async def settle(
        self,
        message_id: str,
        state: MessageState,
        now: float,
        *,
        error: int | None = None,
        delivery: NewDelivery | None = None,
    ) -> bool:
        settlement = Settlement(message_id, state, error, delivery)
        return (await self._call(_settle_many, [settlement], now, ()))[0]

    async def settle_many(
        self,
        settlements: list[Settlement],
        now: float,
        *,
        deliveries: tuple[NewDelivery, ...] = (),
    ) -> list[bool]:
        return await self._call(_settle_many, settlements, now, deliveries)

    async def overdue_sent(
        self, before: float, limit: int, *, upstream: str | None = None
    ) -> list[OverdueMessage]:
        return await self._call(_overdue_sent, before, limit, upstream)

    async def unknown_receipts(self, limit: int = 100) -> list[ReceiptRecord]:
        return await self._call(_unknown_receipts, limit)

    async def id_formats(self) -> dict[str, tuple[str | None, str | None]]:
        return await self._call(_id_formats)

    async def save_id_format(self, upstream: str, sent: str | None, received: str | None) -> None:
        await self._call(_save_id_format, upstream, sent, received)

    async def enqueue_delivery(
        self, account: str, kind: str, pdu: bytes, now: float, ttl: float
    ) -> int:
        return await self._call(_enqueue, (account, kind, pdu, now, now + ttl))

    async def pending_deliveries(
        self, account: str, now: float, limit: int, *, after: int = 0
    ) -> list[Delivery]:
        return await self._call(_pending, account, now, limit, (after, self.node, self.lease))

    async def delivery_done(self, delivery_id: int) -> None:
        # The answers that come in one turn of the loop (a read of deliver_sm_resp from a
        # draining bind: hundreds) share one operation: one executemany instead of an
        # operation, a future and a wake-up each.
        if self._done_ids is None:
            self._done_ids = []
            self._done_call = asyncio.ensure_future(self._done_this_turn(self._done_ids))
        self._done_ids.append(delivery_id)
        call = self._done_call
        assert call is not None
        await asyncio.shield(call)

    async def deliveries_done(self, delivery_ids: Sequence[int]) -> None:
        if delivery_ids:
            await self._call(_deliveries_done, list(delivery_ids))

    async def _done_this_turn(self, ids: list[int]) -> None:
        await asyncio.sleep(0)  # the rest of this turn's answers join
        self._done_ids = None
        await self._call(_deliveries_done, ids)

    async def pending_webhooks(
        self, account: str, now: float, limit: int, lease: float
    ) -> list[Delivery]:
        return await self._call(_pending_webhooks, account, now, limit, (lease, self.node))

    async def webhook_failed(self, delivery_id: int, retry_at: float, error: str) -> None:
        await self._call(_webhook_failed, delivery_id, retry_at, error)

    async def release_webhooks(self) -> int:
        return await self._call(_release_webhooks, self.node)

    async def queue_depths(self) -> QueueDepths:
        return await self._call(_queue_depths)

    async def ping(self) -> bool:
        return await self._call(_ping)

    async def purge(self, before: float) -> int:
        # In steps (see `_purge_messages`): each one short, and followed by a pause of
        # _PURGE_REST times its round trip (its wait, its statement, its commit), so the purge
        # has the writer a small share of the time and the live traffic the rest. Its CPU is
        # what crowds the event loop on a small machine: the writer thread then competes with
        # the loop's thread for a core (and, holding the interpreter lock, makes it wait).
        loop = asyncio.get_running_loop()
        gone, limit = 0, _PURGE_FIRST
        while True:
            started = loop.time()
            count, took = await self._call(_purge_messages, before, limit)
            gone += count
            if count < limit:
                break
            await _purge_pause(loop.time() - started)
            if took < _PURGE_TARGET / 2:
                limit = min(_PURGE_MOST, limit * 2)
            elif took > _PURGE_TARGET:
                limit = max(50, limit // 2)
        after: int | None = 0
        while after is not None:
            started = loop.time()
            count, after = await self._call(_purge_deliveries, before, after)
            gone += count
            if after is not None:
                await _purge_pause(loop.time() - started)
        return gone + await self._call(_purge_unknown, before)

    async def requeue_interrupted(self, now: float) -> int:
        return await self._call(_requeue, now, self.node)

    # One node per SQLite file: nobody to take over from, nobody to hand over to.

    async def heartbeat(self, now: float) -> bool:
        return False

    async def take_over(self, now: float, lease: float) -> int:
        return 0

    async def release(self, now: float) -> int:
        return 0

    async def stats(
        self,
        since: float,
        until: float,
        group: tuple[str, ...],
        *,
        where: dict[str, str] | None = None,
    ) -> list[StatsRow]:
        sql, args = query_sql(group, where or {}, lambda _n: "?")
        start = int(since // 3600 * 3600)
        rows = await self._call(_fetch, sql, (start, until, *args))
        return [StatsRow.of_row(group, row) for row in rows]

    async def forget_stats(self, before: float) -> int:
        return await self._call(_forget_stats, before)

    async def change_pending(
        self,
        message_id: str,
        account: str,
        now: float,
        *,
        short_message: bytes | None = None,
        times: tuple[float | None, float] | None = None,
    ) -> bool:
        return await self._call(_change_pending, message_id, account, now, short_message, times)

    async def create_batch(self, batch: NewBatch) -> None:
        await self._call(_create_batch, batch)

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
        if checks is not None:
            return await self._call(
                _accept_batch_checked, batch_id, messages, cursor, (now, report), list(checks)
            )
        return await self._call(_accept_batch, batch_id, messages, cursor, (now, report))

    async def batch(self, batch_id: str) -> BatchRecord | None:
        return await self._call(_batch, batch_id)

    async def batch_recipients(self, batch_id: str) -> bytes:
        return await self._call(_batch_recipients, batch_id)

    async def unfinished_batches(self) -> list[str]:
        return await self._call(_unfinished_batches)

    async def cancel_batch(self, batch_id: str, now: float) -> int:
        return await self._call(_cancel_batch, batch_id, now)

    async def count_usage(self, key: str, now: float, count: int = 1) -> Usage:
        return await self._call(_count_usage, key, usage_windows(now), count)

    async def usage(self, key: str, now: float) -> Usage:
        return await self._call(_usage, key, usage_windows(now))

    async def suppress(self, entries: list[tuple[str, str, str]], now: float) -> int:
        written = 0
        for start in range(0, len(entries), SUPPRESS_CHUNK):
            chunk = entries[start : start + SUPPRESS_CHUNK]
            written += await self._call(_suppress, chunk, now)
        return written

    async def unsuppress(self, entries: list[tuple[str, str | None]]) -> int:
        return await self._call(_unsuppress, entries)

    async def suppression(self, number: str) -> list[Suppression]:
        return await self._call(_suppression, number)

    async def suppressions_page(
        self, after: tuple[str, str] | None, limit: int
    ) -> list[Suppression]:
        return await self._call(_suppressions_page, after, limit)

    async def record_dead_failures(
        self,
        failed: list[str],
        now: float,
        *,
        after: int,
        period: float,
        delivered: list[str] | None = None,
    ) -> list[str]:
        return await self._call(_dead_failures, failed, delivered or [], now, (after, period))

    async def dead_numbers_page(self, after: str | None, limit: int) -> list[DeadNumber]:
        return await self._call(_dead_numbers_page, after, limit)


class _Connection(sqlite3.Connection):
    """The writer's connection, with the statistics its transaction has counted so far."""

    stats: StatsBatch

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stats = StatsBatch()


def _stats(conn: sqlite3.Connection) -> StatsBatch:
    # A bare connection (a test's) counts into a batch nobody writes.
    return conn.stats if isinstance(conn, _Connection) else StatsBatch()


_UPSERT_STATS = upsert_sql(lambda _n: "?")


def _write_stats(conn: sqlite3.Connection) -> None:
    if isinstance(conn, _Connection) and conn.stats.rows:
        conn.executemany(_UPSERT_STATS, conn.stats.take())


def connect(path: str) -> sqlite3.Connection:
    """The writer's connection: WAL, synchronous=FULL, foreign keys, migrations applied."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, factory=_Connection)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # a returned commit survives a power cut
    conn.execute("PRAGMA foreign_keys=ON")
    # 64 MB of page cache (the default is 2 MB): a suppression list of millions and the hot
    # ends of the message indexes stay in memory instead of being parsed again from the OS's
    # page cache for every lookup.
    conn.execute("PRAGMA cache_size=-65536")
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        conn.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")
    return conn


Ops = list[tuple[Callable[..., Any], tuple[Any, ...]]]


def run_ops(conn: sqlite3.Connection, ops: Ops) -> list[tuple[Any, BaseException | None]]:
    """One transaction for `ops`: each one's (result, error). Savepoints only when an
    operation fails: the batch is then run again with each one isolated."""
    try:
        return _ops_transaction(conn, ops, isolate=False)
    except _OpFailed:
        return _ops_transaction(conn, ops, isolate=True)
    except sqlite3.Error as exc:  # the commit itself failed: nobody's write is durable
        return [(None, exc) for _op in ops]


def _ops_transaction(
    conn: sqlite3.Connection, ops: Ops, *, isolate: bool
) -> list[tuple[Any, BaseException | None]]:
    results: list[tuple[Any, BaseException | None]] = []
    stats = _stats(conn)
    timed = stages.enabled()  # the benchmark's account of each operation's time
    try:
        conn.execute("BEGIN IMMEDIATE")
        i, count = 0, len(ops)
        while i < count:
            fn, args = ops[i]
            if not isolate:
                started = stages.begin()  # 0.0 unless the benchmark times the writer
                try:
                    if fn is _accept_checked:
                        # A run of checked accepts reads its facts with one query per kind.
                        j = i + 1
                        while j < count and ops[j][0] is _accept_checked:
                            j += 1
                        verdicts = _accept_checked_run(conn, [a for _, a in ops[i:j]])
                        results.extend((v, None) for v in verdicts)
                        i = j
                        if timed:
                            stages.end("store.accept_checked", started)
                        continue
                    results.append((fn(conn, *args), None))
                except Exception as exc:
                    raise _OpFailed from exc
                if timed:
                    stages.end("store." + fn.__name__.lstrip("_"), started)
                i += 1
                continue
            i += 1
            conn.execute("SAVEPOINT op")
            counted = stats.copy()  # a failed operation's counts go with its writes
            try:
                value = fn(conn, *args)
            except Exception as exc:
                conn.execute("ROLLBACK TO op")
                stats.rows = counted.rows
                results.append((None, exc))
            else:
                results.append((value, None))
            conn.execute("RELEASE op")
        started = stages.begin()
        _write_stats(conn)
        if timed:
            stages.end("store._stats", started)
            started = stages.begin()
        conn.execute("COMMIT")
        if timed:
            stages.end("store.COMMIT", started)
    except BaseException:
        stats.rows = {}
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return results


_FRAME = struct.Struct(">I")
# Batches the writer process may hold at once: while it commits one, the next is already
# there, so it never waits for the event loop to turn round.
_IN_FLIGHT = 3


async def _read_frame(stream: asyncio.StreamReader) -> bytes:
    (length,) = _FRAME.unpack(await stream.readexactly(4))
    return await stream.readexactly(length)


class _OpFailed(Exception):
    """An operation of a batch raised: the batch is run again, isolating each operation."""


def _settle_all(results: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for fut, value, error in results:
        _settle(fut, value, error)


def _settle(fut: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if fut.cancelled():
        return  # the caller went away; the write stands
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(value)


# -- the statements, run on the writer thread ----------------------------------------------------


def _accept(conn: sqlite3.Connection, m: NewMessage) -> None:
    at = m.accepted_at
    conn.execute(_INSERT_MESSAGE, (*m, _ACCEPTED, at, _trail(at, _ACCEPTED)))
    _count_new(conn, m)


def _dims(m: NewMessage) -> Dims:
    return (m.accepted_at, m.account, m.route, "", m.msg_class, m.campaign, m.destination_addr)


def _count_new(conn: sqlite3.Connection, m: NewMessage) -> None:
    _stats(conn).add(_dims(m), "accepted")


# A state change's stats need the message's key and old state: read with the row's update.
_OLD = f"SELECT state, sent_at, {MESSAGE_DIMS} FROM messages WHERE id = ?"


def _count_change(
    conn: sqlite3.Connection, old: tuple[Any, ...] | None, state: str, now: float
) -> None:
    if old is not None:
        count_change(_stats(conn), old[2:], (old[0], state), now, old[1])


def _get(conn: sqlite3.Connection, message_id: str) -> MessageRecord | None:
    row = conn.execute(f"{_RECORD} WHERE id = ?", (message_id,)).fetchone()
    return None if row is None else _record(row)


def _claim_due(conn: sqlite3.Connection, now: float, limit: int, node: int) -> list[MessageRecord]:
    rows = conn.execute(
        # `state = 'accepted'` written out: SQLite uses a partial index only for a literal.
        f"{_RECORD} WHERE state = 'accepted' AND (schedule_at IS NULL OR schedule_at <= ?) "
        "ORDER BY accepted_at LIMIT ?",
        (now, limit),
    ).fetchall()
    if not rows:
        return []
    dispatching = MessageState.DISPATCHING.value
    entry = _trail(now, dispatching)
    conn.executemany(
        "UPDATE messages SET state = ?, updated_at = ?, attempts = attempts + 1, claimed_by = ?, "
        "trail = trail || ? WHERE id = ?",
        [(dispatching, now, node, entry, row[0]) for row in rows],
    )
    return [
        MessageRecord(
            NewMessage(*row[:_N]), MessageState.DISPATCHING, now, row[_N + 2] + 1, None, row[_N + 4]
        )
        for row in rows
    ]


def _set_state(
    conn: sqlite3.Connection,
    message_id: str,
    state: MessageState,
    now: float,
    extra: tuple[int | None, float | None, bool] = (None, None, True),
) -> bool:
    error, retry_at, tried = extra  # (error code, due again at, a send was tried)
    bump = 1 if state is MessageState.DISPATCHING else 0 if tried else -1
    old = conn.execute(_OLD, (message_id,)).fetchone()
    if old is None:
        return False
    conn.execute(
        "UPDATE messages SET state = ?, updated_at = ?, error = coalesce(?, error), "
        "attempts = attempts + ?, schedule_at = coalesce(?, schedule_at), trail = trail || ? "
        "WHERE id = ?",
        (state.value, now, error, bump, retry_at, _trail(now, state.value), message_id),
    )
    _count_change(conn, old, state.value, now)
    return True


def _history(conn: sqlite3.Connection, message_id: str) -> list[tuple[float, MessageState]]:
    rows = conn.execute(  # written before migration 13
        "SELECT at, state FROM message_history WHERE message_id = ? ORDER BY rowid",
        (message_id,),
    ).fetchall()
    found = conn.execute("SELECT trail FROM messages WHERE id = ?", (message_id,)).fetchone()
    kept = [(at, MessageState(state)) for at, state in rows]
    return kept + _read_trail(found[0]) if found else kept


def _link(
    conn: sqlite3.Connection, upstream: str, keys: tuple[str, ...], message_id: str, part: int
) -> None:
    conn.executemany(
        "INSERT OR IGNORE INTO upstream_ids (upstream, key, message_id, part) VALUES (?, ?, ?, ?)",
        [(upstream, key, message_id, part) for key in keys],
    )


def _find(conn: sqlite3.Connection, upstream: str, keys: tuple[str, ...]) -> tuple[str, int] | None:
    for key in keys:  # in order: the exact string key first
        row = conn.execute(
            "SELECT message_id, part FROM upstream_ids WHERE upstream = ? AND key = ? "
            "ORDER BY rowid DESC LIMIT 1",
            (upstream, key),
        ).fetchone()
        if row is not None:
            return str(row[0]), int(row[1])
    return None


def _set_parts(conn: sqlite3.Connection, message_id: str, parts: int) -> None:
    conn.execute("UPDATE messages SET parts = ? WHERE id = ?", (parts, message_id))


def _add_receipt(conn: sqlite3.Connection, r: ReceiptRecord) -> list[int | None]:
    conn.execute(
        "INSERT INTO receipts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            r.message_id,
            r.part,
            r.upstream,
            r.upstream_id,
            r.message_state,
            r.error,
            r.received_at,
            r.raw,
        ),
    )
    return _part_states(conn, r.message_id)


def _add_inbound_part(
    conn: sqlite3.Connection, key: str, part: tuple[int, int, bytes, float]
) -> list[bytes] | None:
    seq, total, pdu, now = part
    if conn.execute(_MARKED, (key,)).fetchone() is not None:
        if conn.execute(_SAME_PART, (key, seq, pdu)).fetchone() is not None:
            return []  # sent again after its message was taken: not a new message
        conn.execute("DELETE FROM inbound_parts WHERE key = ?", (key,))  # reference reused
    conn.execute("INSERT OR REPLACE INTO inbound_parts VALUES (?, ?, ?, ?, ?)", (key, *part))
    rows = conn.execute(
        "SELECT seq, pdu FROM inbound_parts WHERE key = ? AND seq > 0 AND total = ? ORDER BY seq",
        (key, total),
    ).fetchall()
    if len(rows) < total:
        return None
    conn.execute(
        "INSERT INTO inbound_parts VALUES (?, 0, ?, ?, ?)", (key, total, INBOUND_TAKEN, now)
    )
    return [pdu for _seq, pdu in rows]


def _finish_inbound(
    conn: sqlite3.Connection, key: str, deliveries: list[NewDelivery], now: float
) -> None:
    for d in deliveries:
        _enqueue_new(conn, d, now)
    if key:
        conn.execute(
            "INSERT OR REPLACE INTO inbound_parts VALUES (?, 0, 0, ?, ?)",
            (key, INBOUND_DONE, now),
        )


def _stale_inbound(conn: sqlite3.Connection, before: float) -> list[tuple[str, list[bytes]]]:
    keys = [
        row[0]
        for row in conn.execute(
            "SELECT key FROM inbound_parts WHERE key NOT IN "
            "(SELECT key FROM inbound_parts WHERE seq = 0 AND pdu = ?) "
            "GROUP BY key HAVING min(received_at) < ?",
            (INBOUND_DONE, before),
        )
    ]
    return [
        (
            key,
            [
                row[0]
                for row in conn.execute(
                    "SELECT pdu FROM inbound_parts WHERE key = ? AND seq > 0 ORDER BY seq", (key,)
                )
            ],
        )
        for key in keys
    ]


def _forget_inbound(conn: sqlite3.Connection, before: float) -> int:
    return int(
        conn.execute(
            "DELETE FROM inbound_parts WHERE key IN (SELECT key FROM inbound_parts "
            "WHERE received_at < ? AND seq = 0 AND pdu = ?)",
            (before, INBOUND_DONE),
        ).rowcount
    )


_MARKED = "SELECT 1 FROM inbound_parts WHERE key = ? AND seq = 0"
_SAME_PART = "SELECT 1 FROM inbound_parts WHERE key = ? AND seq = ? AND pdu = ?"


def _record_sent(
    conn: sqlite3.Connection,
    message_id: str,
    upstream: str,
    parts: tuple[tuple[tuple[str, ...], ...], tuple[str, ...]],
    now: float,
) -> bool:
    part_keys, part_ids = parts
    sent = MessageState.SENT.value
    old = conn.execute(
        f"SELECT sent_to, {MESSAGE_DIMS} FROM messages WHERE id = ? AND {_NOT_FINAL}", (message_id,)
    ).fetchone()
    cur = conn.execute(
        "UPDATE messages SET state = ?, updated_at = ?, parts = ?, sent_to = ?, sent_ids = ?, "
        f"sent_at = ?, trail = trail || ? WHERE id = ? AND {_NOT_FINAL}",
        (
            sent,
            now,
            max(1, len(part_keys)),
            upstream,
            _SEP.join(part_ids),
            now,
            _trail(now, sent),
            message_id,
        ),
    )
    if cur.rowcount:
        count_sent(_stats(conn), old[1:], old[0], upstream)
    elif conn.execute("SELECT 1 FROM messages WHERE id = ?", (message_id,)).fetchone() is None:
        return False
    # linked even when the message already ended: its later receipts are then known, not lost
    conn.executemany(
        "INSERT OR IGNORE INTO upstream_ids (upstream, key, message_id, part) VALUES (?, ?, ?, ?)",
        [(upstream, key, message_id, part) for part, keys in enumerate(part_keys) for key in keys],
    )
    return True


def _part_states(conn: sqlite3.Connection, message_id: str) -> list[int | None]:
    found = conn.execute("SELECT parts FROM messages WHERE id = ?", (message_id,)).fetchone()
    states: list[int | None] = [None] * (found[0] if found else 1)
    for part, state in conn.execute(
        "SELECT part, message_state FROM receipts WHERE message_id = ? ORDER BY rowid",
        (message_id,),
    ):
        if 0 <= part < len(states):
            states[part] = state
    return states


# A receipt's key to its message: the part, and the message as it is (NULLs once purged) and
# its part count, in one statement instead of three. The latest link by max(rowid), not
# ORDER BY rowid DESC LIMIT 1: that sorts in a temporary b-tree built for each receipt.
_FIND_RECORD = (
    "SELECT u.message_id, u.part, "
    + ", ".join(f"m.{c.strip()}" for c in _COLUMNS.split(","))
    + ", m.state, m.updated_at, m.attempts, m.error, m.stop_reason, m.parts "
    "FROM upstream_ids u LEFT JOIN messages m ON m.id = u.message_id "
    "WHERE u.rowid = (SELECT max(rowid) FROM upstream_ids WHERE upstream = ?1 AND key = ?2)"
)


def _match_receipts(
    conn: sqlite3.Connection, receipts: list[IncomingReceipt]
) -> list[ReceiptMatch | None]:
    found: list[tuple[MessageRecord, int] | None] = []
    records: dict[str, MessageRecord | None] = {}  # as it was before this batch
    parts: dict[str, int] = {}
    last: dict[str, tuple[int, int]] = {}  # message id: (part, state) of its latest receipt
    for r in receipts:
        row = None
        for key in r.keys:  # in order: the exact string key first
            row = conn.execute(_FIND_RECORD, (r.upstream, key)).fetchone()
            if row is not None:
                break
        if row is None:
            record = None
        else:
            message_id, part = str(row[0]), int(row[1])
            if message_id not in records:
                exists = row[2] is not None
                records[message_id] = _record(row[2:-1]) if exists else None
                parts[message_id] = row[-1] if exists else 1
            record = records[message_id]
        if row is None or record is None:
            found.append(None)
            if r.keep_unknown:
                conn.execute(
                    "INSERT INTO unknown_receipts VALUES (?, ?, ?, ?, ?, ?)",
                    (r.upstream, r.upstream_id, r.message_state, r.error, r.received_at, r.raw),
                )
            continue
        conn.execute(
            "INSERT INTO receipts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                message_id,
                part,
                r.upstream,
                r.upstream_id,
                r.message_state,
                r.error,
                r.received_at,
                r.raw,
            ),
        )
        last[message_id] = (part, r.message_state)
        found.append((record, part))
    states: dict[str, list[int | None]] = {}
    for message_id, (part, state) in last.items():
        if parts[message_id] == 1 and part == 0:
            # One part, and the receipt just kept is its latest: no need to read them back.
            states[message_id] = [state]
        else:
            states[message_id] = _part_states(conn, message_id)
    return [
        None if hit is None else ReceiptMatch(hit[0], hit[1], states[hit[0].message.id])
        for hit in found
    ]


def _settle_many(
    conn: sqlite3.Connection,
    settlements: list[Settlement],
    now: float,
    deliveries: tuple[NewDelivery, ...],
) -> list[bool]:
    done: list[bool] = []
    for s in settlements:
        # "already final?" and "settle" in one statement: only one settlement ever wins
        state = s.state.value
        old = conn.execute(
            "UPDATE messages SET state = ?, updated_at = ?, error = coalesce(?, error), "
            f"trail = trail || ? WHERE id = ? AND {_NOT_FINAL} "
            f"RETURNING 'sent', sent_at, {MESSAGE_DIMS}",
            (state, now, s.error, _trail(now, state), s.message_id),
        ).fetchone()
        if old is None:
            done.append(False)
            continue
        _count_change(conn, old, state, now)
        if s.delivery is not None:
            _enqueue_new(conn, s.delivery, now)
        done.append(True)
    for d in deliveries:
        _enqueue_new(conn, d, now)
    return done


def _overdue_sent(
    conn: sqlite3.Connection, before: float, limit: int, upstream: str | None
) -> list[OverdueMessage]:
    rows = conn.execute(
        f"{_RECORD.replace(' FROM messages', ', sent_to, sent_ids FROM messages')} "
        "WHERE state = 'sent' AND updated_at < ? AND coalesce(? = sent_to, 1) "
        "ORDER BY updated_at LIMIT ?",
        (before, upstream, limit),
    ).fetchall()
    return [
        OverdueMessage(
            _record(row[: _N + 5]),
            row[_N + 5] or "",
            tuple(row[_N + 6].split(_SEP)) if row[_N + 6] else (),
            _part_states(conn, row[0]),
        )
        for row in rows
    ]


def _id_formats(conn: sqlite3.Connection) -> dict[str, tuple[str | None, str | None]]:
    return {row[0]: (row[1], row[2]) for row in conn.execute("SELECT * FROM id_formats")}


def _save_id_format(
    conn: sqlite3.Connection, upstream: str, sent: str | None, received: str | None
) -> None:
    conn.execute("INSERT OR REPLACE INTO id_formats VALUES (?, ?, ?)", (upstream, sent, received))


def _unknown_receipts(conn: sqlite3.Connection, limit: int) -> list[ReceiptRecord]:
    rows = conn.execute(
        "SELECT upstream, upstream_id, message_state, error, received_at, raw "
        "FROM unknown_receipts ORDER BY rowid DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [ReceiptRecord("", -1, *row) for row in rows]


def _upstream_ids(conn: sqlite3.Connection, message_id: str) -> list[tuple[int, str, str]]:
    rows = conn.execute(
        "SELECT part, upstream, key FROM upstream_ids WHERE message_id = ? AND key LIKE 's:%' "
        "ORDER BY part, upstream, key",
        (message_id,),
    ).fetchall()
    return [(int(p), str(u), str(k)) for p, u, k in rows]


def _receipts(conn: sqlite3.Connection, message_id: str) -> list[ReceiptRecord]:
    rows = conn.execute(
        "SELECT * FROM receipts WHERE message_id = ? ORDER BY rowid", (message_id,)
    ).fetchall()
    return [ReceiptRecord(*row) for row in rows]


def _enqueue(conn: sqlite3.Connection, row: tuple[str, str, bytes, float, float]) -> int:
    cur = conn.execute(
        "INSERT INTO deliveries (account, kind, pdu, created_at, expires_at) "
        "VALUES (?, ?, ?, ?, ?)",
        row,
    )
    return int(cur.lastrowid or 0)


def _enqueue_new(conn: sqlite3.Connection, d: NewDelivery, now: float) -> None:
    for channel in d.channels:
        conn.execute(
            "INSERT INTO deliveries (account, kind, pdu, created_at, expires_at, channel) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (d.account, d.kind, d.pdu, now, now + d.ttl, channel),
        )


def _pending(
    conn: sqlite3.Connection,
    account: str,
    now: float,
    limit: int,
    where: tuple[int, int, float],
) -> list[Delivery]:
    after, node, lease = where
    rows = conn.execute(
        "SELECT id, account, kind, pdu, created_at, expires_at, attempts FROM deliveries "
        "WHERE account = ? AND id > ? AND expires_at > ? AND (lease_until <= ? OR leased_by = ?) "
        "AND channel = 'smpp' ORDER BY id LIMIT ?",
        (account, after, now, now, node, limit),
    ).fetchall()
    if rows:  # the same rows, by the same filter over their id range: one statement
        conn.execute(
            "UPDATE deliveries SET attempts = attempts + 1, leased_by = ?, lease_until = ? "
            "WHERE account = ? AND id BETWEEN ? AND ? AND expires_at > ? "
            "AND (lease_until <= ? OR leased_by = ?) AND channel = 'smpp'",
            (node, now + lease, account, rows[0][0], rows[-1][0], now, now, node),
        )
    return [Delivery(*row) for row in rows]


def _pending_webhooks(
    conn: sqlite3.Connection, account: str, now: float, limit: int, lease: tuple[float, int]
) -> list[Delivery]:
    seconds, node = lease
    rows = conn.execute(
        "UPDATE deliveries SET attempts = attempts + 1, leased_by = ?, lease_until = ? "
        "WHERE id IN (SELECT id FROM deliveries WHERE channel = 'webhook' AND account = ? "
        "AND expires_at > ? AND next_at <= ? AND lease_until <= ? ORDER BY id LIMIT ?) "
        "RETURNING id, account, kind, pdu, created_at, expires_at, attempts, channel",
        (node, now + seconds, account, now, now, now, limit),
    ).fetchall()
    return sorted((Delivery(*row) for row in rows), key=lambda d: d.id)


def _webhook_failed(
    conn: sqlite3.Connection, delivery_id: int, retry_at: float, error: str
) -> None:
    conn.execute(
        "UPDATE deliveries SET next_at = ?, last_error = ?, lease_until = 0, leased_by = NULL "
        "WHERE id = ?",
        (retry_at, error[:500], delivery_id),
    )


def _release_webhooks(conn: sqlite3.Connection, node: int) -> int:
    return int(
        conn.execute(
            "UPDATE deliveries SET lease_until = 0, leased_by = NULL "
            "WHERE channel = 'webhook' AND leased_by = ? AND lease_until > 0",
            (node,),
        ).rowcount
    )


def _deliveries_done(conn: sqlite3.Connection, ids: list[int]) -> None:
    conn.executemany("DELETE FROM deliveries WHERE id = ?", [(i,) for i in ids])


def _change_pending(  # noqa: PLR0917 - the writer calls its functions with positional arguments
    conn: sqlite3.Connection,
    message_id: str,
    account: str,
    now: float,
    short_message: bytes | None,
    times: tuple[float | None, float] | None,
) -> bool:
    """Cancel (no `short_message`) or replace the body (and with `times` the schedule and
    expiry) of a message not yet handed to an upstream; False when it is unknown, another
    account's, or already on its way."""
    if short_message is None:
        cancelled = MessageState.CANCELLED.value
        old = conn.execute(
            "UPDATE messages SET state = ?, updated_at = ?, trail = trail || ? "
            f"WHERE id = ? AND account = ? AND state = ? RETURNING 'accepted', sent_at, "
            f"{MESSAGE_DIMS}",
            (cancelled, now, _trail(now, cancelled), message_id, account, _ACCEPTED),
        ).fetchone()
        if old is not None:
            _count_change(conn, old, cancelled, now)
        return old is not None
    elif times is None:
        cur = conn.execute(
            "UPDATE messages SET short_message = ?, updated_at = ? "
            "WHERE id = ? AND account = ? AND state = ?",
            (short_message, now, message_id, account, _ACCEPTED),
        )
    else:
        cur = conn.execute(
            "UPDATE messages SET short_message = ?, updated_at = ?, schedule_at = ?, "
            "expires_at = ? WHERE id = ? AND account = ? AND state = ?",
            (short_message, now, *times, message_id, account, _ACCEPTED),
        )
    return cur.rowcount == 1


def _configure_stats(conn: sqlite3.Connection, prefix_digits: int) -> None:
    _stats(conn).prefix_digits = prefix_digits


def _fetch(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    return conn.execute(sql, args).fetchall()


def _forget_stats(conn: sqlite3.Connection, before: float) -> int:
    # an hour goes once all of it is before `before`
    return int(
        conn.execute("DELETE FROM delivery_stats WHERE hour + 3600 <= ?", (before,)).rowcount
    )


def _ping(conn: sqlite3.Connection) -> bool:
    """Through the writer, so a stuck or dead writer shows; a read-only file says no."""
    return not conn.execute("PRAGMA query_only").fetchone()[0] and conn.total_changes >= 0


def _queue_depths(conn: sqlite3.Connection) -> QueueDepths:
    # Both read an index only (messages_due is partial: waiting messages alone).
    waiting, oldest = conn.execute(
        "SELECT count(*), min(accepted_at) FROM messages WHERE state = 'accepted'"
    ).fetchone()
    rows = conn.execute(
        "SELECT account, count(*), min(created_at) FROM deliveries GROUP BY account"
    ).fetchall()
    return QueueDepths(waiting, oldest, {a: (n, at) for a, n, at in rows})


def _requeue(conn: sqlite3.Connection, now: float, node: int) -> int:
    ids = [
        row[0]
        for row in conn.execute(
            # `state = 'dispatching'` written out: the partial index messages_claimed.
            "SELECT id FROM messages WHERE state = 'dispatching' AND coalesce(claimed_by, ?) = ?",
            (node, node),
        )
    ]
    for message_id in ids:
        _set_state(conn, message_id, MessageState.ACCEPTED, now)
    return len(ids)


def _accept_checked(
    conn: sqlite3.Connection, m: NewMessage, check: StoreCheck, now: float
) -> Verdict:
    """Store `m` through the store's side of the sending rules (or not, by the verdict):
    a run of one (`run_ops` hands consecutive ones over as one run)."""
    return _accept_checked_run(conn, [(m, check, now)])[0]


_CHUNK = 500  # numbers per IN (...): far below SQLite's variable limit


def _chunks(values: Sequence[str]) -> list[Sequence[str]]:
    return [values[k : k + _CHUNK] for k in range(0, len(values), _CHUNK)]


def _marks(values: Sequence[str]) -> str:
    return ", ".join("?" * len(values))


def _accept_checked_run(conn: sqlite3.Connection, items: list[tuple[Any, ...]]) -> list[Verdict]:
    """`_accept_checked` for each of `items` (message, check, now), in order, with the same
    verdicts: the facts of the whole run are read with one query per kind (dead, opted out,
    dedup, each class's cap window) instead of four to six per message, and what an earlier
    message of the run adds (a send counted, a dedup key) is seen by the later ones."""
    checked = [(m, c, now) for m, c, now in items if c.stopped is None]
    numbers = sorted({m.destination_addr for m, _, _ in checked})
    dead: dict[str, float] = {}
    suppressed: dict[str, set[str]] = {}
    for chunk in _chunks(numbers):
        marks = _marks(chunk)
        dead.update(
            conn.execute(
                f"SELECT number, dead_until FROM dead_numbers WHERE number IN ({marks}) "
                "AND dead_until IS NOT NULL",
                chunk,
            ).fetchall()
        )
        if any(c.rule.opt_out for _, c, _ in checked):
            for number, scope in conn.execute(
                f"SELECT number, scope FROM suppressions WHERE number IN ({marks})", chunk
            ):
                suppressed.setdefault(number, set()).add(scope)
    keys = sorted({c.dedup_key for _, c, _ in checked if c.dedup_key is not None and c.rule.dedup})
    dedup: dict[str, tuple[str, float]] = {}
    for chunk in _chunks(keys):
        for key, message_id, created in conn.execute(
            f"SELECT key, message_id, created_at FROM policy_dedup WHERE key IN ({_marks(chunk)})",
            chunk,
        ):
            dedup[key] = (message_id, created)
    # Sends counted per (number, class, account): the rows inside the window of the run's
    # latest message as counts, and the few between its earliest and latest window start
    # one by one, so each message counts exactly the sends its own window holds.
    counted: dict[tuple[str, float], dict[tuple[str, str], int]] = {}
    edge: dict[tuple[str, float], list[tuple[str, str, float]]] = {}
    nows = [now for _, _, now in checked]
    for msg_class, window in sorted(
        {(m.msg_class, cap.window) for m, c, _ in checked for cap in c.rule.caps}
    ):
        class_numbers = sorted(
            {m.destination_addr for m, _, _ in checked if m.msg_class == msg_class}
        )
        late, early = max(nows) - window, min(nows) - window
        counts: dict[tuple[str, str], int] = {}  # (number, account) and (number, ""): all
        rows: list[tuple[str, str, float]] = []
        for chunk in _chunks(class_numbers):
            marks = _marks(chunk)
            for number, account, n in conn.execute(
                f"SELECT number, account, count(*) FROM policy_sends WHERE number IN ({marks}) "
                "AND msg_class = ? AND sent_at > ? GROUP BY number, account",
                (*chunk, msg_class, late),
            ):
                counts[number, account] = n
                counts[number, ""] = counts.get((number, ""), 0) + n
            if early < late:
                rows += conn.execute(
                    "SELECT number, account, sent_at FROM policy_sends "
                    f"WHERE number IN ({marks}) AND msg_class = ? AND sent_at > ? "
                    "AND sent_at <= ?",
                    (*chunk, msg_class, early, late),
                ).fetchall()
        counted[msg_class, window] = counts
        edge[msg_class, window] = rows

    verdicts: list[Verdict] = []
    stored: list[NewMessage] = []
    stops: list[tuple[str, str]] = []
    added: list[tuple[str, str, str, float]] = []  # this run's sends: number, class, account, at
    for m, check, now in items:
        if check.stopped is not None:
            facts = Facts()
        else:
            number, rule = m.destination_addr, check.rule
            sent: dict[Cap, int] = {}
            for cap in rule.caps:
                who = m.account if cap.per_account else ""  # "": every account's sends count
                since = now - cap.window
                n = counted[m.msg_class, cap.window].get((number, who), 0)
                for num, account, at in edge[m.msg_class, cap.window]:
                    n += num == number and at > since and (not who or account == who)
                for num, cls, account, at in added:
                    n += (
                        num == number
                        and cls == m.msg_class
                        and at > since
                        and (not who or account == who)
                    )
                sent[cap] = n
            scopes = suppressed.get(number)
            first = dedup.get(check.dedup_key) if check.dedup_key is not None else None
            until = dead.get(number)
            facts = Facts(
                suppressed=scopes is not None and ("" in scopes or check.scope in scopes),
                dead=until is not None and until > now,
                sent=sent,
                duplicate_of=first[0]
                if first is not None and first[1] > now - check.dedup_window
                else None,
            )
        verdict = store_verdict(check, facts)
        verdicts.append(verdict)
        if verdict.duplicate_of is not None:
            continue
        if verdict.stop is not None:
            if verdict.stop not in check.refuse:
                stored.append(m)
                stops.append((verdict.stop.value, m.id))
            continue
        stored.append(m)
        if check.rule.caps:
            added.append((m.destination_addr, m.msg_class, m.account, now))
        if check.dedup_key is not None and check.rule.dedup:
            dedup[check.dedup_key] = (m.id, now)
    conn.executemany(
        _INSERT_MESSAGE,
        [(*m, _ACCEPTED, m.accepted_at, _trail(m.accepted_at, _ACCEPTED)) for m in stored],
    )
    for m in stored:
        _count_new(conn, m)
    if stops:
        conn.executemany("UPDATE messages SET stop_reason = ? WHERE id = ?", stops)
    new_keys = {
        c.dedup_key: dedup[c.dedup_key]
        for m, c, _ in items
        if c.dedup_key is not None and c.rule.dedup and dedup.get(c.dedup_key, ("",))[0] == m.id
    }
    if new_keys:
        conn.executemany(
            "INSERT OR REPLACE INTO policy_dedup VALUES (?, ?, ?)",
            [(key, mid, at) for key, (mid, at) in new_keys.items()],
        )
    if added:
        conn.executemany("INSERT INTO policy_sends VALUES (?, ?, ?, ?)", added)
    return verdicts


def _purge_policy(conn: sqlite3.Connection, sends_before: float, dedup_before: float) -> int:
    gone = conn.execute("DELETE FROM policy_sends WHERE sent_at < ?", (sends_before,)).rowcount
    gone += conn.execute("DELETE FROM policy_dedup WHERE created_at < ?", (dedup_before,)).rowcount
    return int(gone)


# The retention purge goes in bounded steps, each an operation of its own: it shares the
# group commits of the live traffic instead of holding the writer (and every submit_sm_resp
# behind it) for the minutes a purge of millions takes in one statement.
# Seconds a step's statement aims at; the next step's size follows how long the last took.
_PURGE_TARGET = 0.005
_PURGE_FIRST = 500  # messages in the first step
_PURGE_MOST = 20_000
_PURGE_REST = 4  # a pause of this many times a step's round trip follows it
_PURGE_PAUSE_MOST = 1.0  # seconds: the longest pause between two steps
_DELIVERY_SPAN = 20_000  # delivery ids a step looks at (no index on their expiry)


async def _purge_pause(took: float) -> None:
    await asyncio.sleep(min(_PURGE_PAUSE_MOST, _PURGE_REST * took))


def _purge_messages(conn: sqlite3.Connection, before: float, limit: int) -> tuple[int, float]:
    """Up to `limit` final messages last changed before `before` (their history, upstream ids
    and receipts by cascade), oldest first: (how many, seconds it took)."""
    started = time.perf_counter()
    gone = conn.execute(
        "DELETE FROM messages WHERE rowid IN (SELECT rowid FROM messages "
        f"WHERE {_FINAL_SQL} AND updated_at < ? ORDER BY updated_at LIMIT ?)",
        (before, limit),
    ).rowcount
    return int(gone), time.perf_counter() - started


def _purge_deliveries(
    conn: sqlite3.Connection, before: float, after: int
) -> tuple[int, int | None]:
    """Expired deliveries among the ids just above `after`: (how many, where the next step
    starts, None at the end)."""
    last = conn.execute(
        "SELECT max(id) FROM (SELECT id FROM deliveries WHERE id > ? ORDER BY id LIMIT ?)",
        (after, _DELIVERY_SPAN),
    ).fetchone()[0]
    if last is None:
        return 0, None
    gone = conn.execute(
        "DELETE FROM deliveries WHERE id > ? AND id <= ? AND expires_at < ?",
        (after, last, before),
    ).rowcount
    return int(gone), int(last)


def _purge_unknown(conn: sqlite3.Connection, before: float) -> int:
    return int(
        conn.execute("DELETE FROM unknown_receipts WHERE received_at < ?", (before,)).rowcount
    )


# In an UPDATE every column on the right-hand side is the row's old value, so each count is
# compared with its old window before the window moves on.
_COUNT_USAGE = """
    INSERT INTO sim_usage (key, minute, per_minute, day, per_day, month, per_month)
    VALUES (?1, ?2, ?5, ?3, ?5, ?4, ?5)
    ON CONFLICT (key) DO UPDATE SET
        per_minute = CASE WHEN minute = ?2 THEN per_minute + ?5 ELSE ?5 END,
        per_day = CASE WHEN day = ?3 THEN per_day + ?5 ELSE ?5 END,
        per_month = CASE WHEN month = ?4 THEN per_month + ?5 ELSE ?5 END,
        minute = ?2, day = ?3, month = ?4
    RETURNING per_minute, per_day, per_month
"""


def _count_usage(
    conn: sqlite3.Connection, key: str, windows: tuple[int, int, int], count: int
) -> Usage:
    row = conn.execute(_COUNT_USAGE, (key, *windows, count)).fetchone()
    return Usage(*row)


def _usage(conn: sqlite3.Connection, key: str, windows: tuple[int, int, int]) -> Usage:
    row = conn.execute(
        "SELECT minute, per_minute, day, per_day, month, per_month FROM sim_usage WHERE key = ?",
        (key,),
    ).fetchone()
    if row is None:
        return Usage()
    minute, day, month = windows
    return Usage(
        row[1] if row[0] == minute else 0,
        row[3] if row[2] == day else 0,
        row[5] if row[4] == month else 0,
    )


# -- batches --------------------------------------------------------------------------------------

_ACCEPTING = BatchState.ACCEPTING.value
_BATCH_COLUMNS = (
    "id, account, state, created_at, finished_at, total, size, accepted_upto, accepted, "
    "refused, duplicates, invalid, request, report"
)


def _create_batch(conn: sqlite3.Connection, b: NewBatch) -> None:
    conn.execute(
        "INSERT INTO batches (id, account, state, created_at, total, size, duplicates, invalid, "
        "request, report, recipients) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            b.id,
            b.account,
            _ACCEPTING,
            b.created_at,
            b.total,
            b.size,
            b.duplicates,
            b.invalid,
            b.request,
            b.report,
            b.recipients,
        ),
    )


def _accept_batch(
    conn: sqlite3.Connection,
    batch_id: str,
    messages: list[NewMessage],
    cursor: tuple[int, int, int],
    extra: tuple[float, str | None],
) -> bool:
    start, upto, refused = cursor
    now, report = extra
    # The cursor moves only from where the caller read it, in the chunk's own transaction:
    # a chunk accepted before a crash (or by another node) is never accepted again.
    cur = conn.execute(
        "UPDATE batches SET accepted_upto = ?1, accepted = accepted + ?2, "
        "refused = refused + ?3, report = coalesce(?4, report), "
        "state = CASE WHEN ?1 >= size THEN 'done' ELSE state END, "
        "finished_at = CASE WHEN ?1 >= size THEN ?5 ELSE finished_at END, "
        "recipients = CASE WHEN ?1 >= size THEN x'' ELSE recipients END "
        "WHERE id = ?6 AND state = 'accepting' AND accepted_upto = ?7",
        (upto, len(messages), refused, report, now, batch_id, start),
    )
    if not cur.rowcount:
        return False
    conn.executemany(
        f"INSERT INTO messages ({_COLUMNS}, batch_id, state, updated_at, trail) "
        f"VALUES ({', '.join('?' * (_N + 4))})",
        [
            (*m, batch_id, _ACCEPTED, m.accepted_at, _trail(m.accepted_at, _ACCEPTED))
            for m in messages
        ],
    )
    for m in messages:
        _count_new(conn, m)
    return True


def _accept_batch_checked(  # noqa: PLR0917 - the writer calls its functions positionally
    conn: sqlite3.Connection,
    batch_id: str,
    messages: list[NewMessage],
    cursor: tuple[int, int, int],
    extra: tuple[float, str | None],
    checks: list[StoreCheck],
) -> bool:
    """`_accept_batch` with the messages through the sending rules (`_accept_checked_run`)."""
    start, upto, refused = cursor
    if not _accept_batch(conn, batch_id, [], (start, upto, refused), extra):
        return False
    now = extra[0]
    verdicts = _accept_checked_run(
        conn, [(m, c, now) for m, c in zip(messages, checks, strict=True)]
    )
    kept = [
        (batch_id, m.id)
        for m, c, v in zip(messages, checks, verdicts, strict=True)
        if v.duplicate_of is None and (v.stop is None or v.stop not in c.refuse)
    ]
    conn.executemany("UPDATE messages SET batch_id = ? WHERE id = ?", kept)
    stored, dropped = len(kept), len(messages) - len(kept)
    conn.execute(
        "UPDATE batches SET accepted = accepted + ?, refused = refused + ? WHERE id = ?",
        (stored, dropped, batch_id),
    )
    return True


def _batch(conn: sqlite3.Connection, batch_id: str) -> BatchRecord | None:
    row = conn.execute(f"SELECT {_BATCH_COLUMNS} FROM batches WHERE id = ?", (batch_id,)).fetchone()
    if row is None:
        return None
    states = {
        MessageState(state): n
        for state, n in conn.execute(
            "SELECT state, count(*) FROM messages WHERE batch_id = ? GROUP BY state", (batch_id,)
        )
    }
    return BatchRecord.of_row(tuple(row), states)


def _batch_recipients(conn: sqlite3.Connection, batch_id: str) -> bytes:
    row = conn.execute("SELECT recipients FROM batches WHERE id = ?", (batch_id,)).fetchone()
    return b"" if row is None else bytes(row[0])


def _unfinished_batches(conn: sqlite3.Connection) -> list[str]:
    return [
        row[0]
        for row in conn.execute(
            "SELECT id FROM batches WHERE state = 'accepting' ORDER BY created_at"
        )
    ]


def _cancel_batch(conn: sqlite3.Connection, batch_id: str, now: float) -> int:
    conn.execute(
        "UPDATE batches SET state = ?, recipients = x'', finished_at = coalesce(finished_at, ?) "
        "WHERE id = ? AND state != 'cancelled'",
        (BatchState.CANCELLED.value, now, batch_id),
    )
    cancelled = MessageState.CANCELLED.value
    rows = conn.execute(
        "UPDATE messages SET state = ?, updated_at = ?, trail = trail || ? "
        f"WHERE batch_id = ? AND state = ? RETURNING 'accepted', sent_at, {MESSAGE_DIMS}",
        (cancelled, now, _trail(now, cancelled), batch_id, _ACCEPTED),
    ).fetchall()
    for old in rows:
        _count_change(conn, old, cancelled, now)
    return len(rows)


# -- suppressions and dead numbers ----------------------------------------------------------------

_SUPPRESS = """
    INSERT INTO suppressions (number, scope, created_at, source) VALUES (?, ?, ?, ?)
    ON CONFLICT (number, scope) DO UPDATE SET
        created_at = excluded.created_at, source = excluded.source
"""


def _suppress(conn: sqlite3.Connection, entries: list[tuple[str, str, str]], now: float) -> int:
    before = conn.total_changes
    conn.executemany(_SUPPRESS, ((n, s, now, src) for n, s, src in entries))
    return conn.total_changes - before


def _unsuppress(conn: sqlite3.Connection, entries: list[tuple[str, str | None]]) -> int:
    before = conn.total_changes
    for number, scope in entries:
        if scope is None:
            conn.execute("DELETE FROM suppressions WHERE number = ?", (number,))
        else:
            conn.execute("DELETE FROM suppressions WHERE number = ? AND scope = ?", (number, scope))
    return conn.total_changes - before


def _suppression(conn: sqlite3.Connection, number: str) -> list[Suppression]:
    rows = conn.execute(
        "SELECT number, scope, created_at, source FROM suppressions WHERE number = ? "
        "ORDER BY scope",
        (number,),
    )
    return [Suppression(*row) for row in rows]


def _suppressions_page(
    conn: sqlite3.Connection, after: tuple[str, str] | None, limit: int
) -> list[Suppression]:
    columns = "SELECT number, scope, created_at, source FROM suppressions"
    if after is None:
        rows = conn.execute(f"{columns} ORDER BY number, scope LIMIT ?", (limit,))
    else:
        rows = conn.execute(
            f"{columns} WHERE (number, scope) > (?, ?) ORDER BY number, scope LIMIT ?",
            (*after, limit),
        )
    return [Suppression(*row) for row in rows]


_DEAD_FAILURE = """
    INSERT INTO dead_numbers AS d (number, failures, last_at, dead_until)
    VALUES (?1, ?2, ?3, CASE WHEN ?2 >= ?4 THEN ?3 + ?5 END)
    ON CONFLICT (number) DO UPDATE SET
        failures = d.failures + ?2,
        last_at = ?3,
        dead_until = CASE WHEN d.failures + ?2 >= ?4 THEN ?3 + ?5 ELSE d.dead_until END
    RETURNING number, dead_until
"""


def _dead_failures(
    conn: sqlite3.Connection,
    failed: list[str],
    delivered: list[str],
    now: float,
    rule: tuple[int, float],
) -> list[str]:
    after, period = rule
    conn.executemany("DELETE FROM dead_numbers WHERE number = ?", ((n,) for n in delivered))
    counts: dict[str, int] = {}
    for number in failed:
        counts[number] = counts.get(number, 0) + 1
    dead = []
    for number, count in counts.items():
        _n, until = conn.execute(_DEAD_FAILURE, (number, count, now, after, period)).fetchone()
        if until == now + period:
            dead.append(number)
    return dead


def _dead_numbers_page(conn: sqlite3.Connection, after: str | None, limit: int) -> list[DeadNumber]:
    rows = conn.execute(
        "SELECT number, failures, last_at, dead_until FROM dead_numbers WHERE number > ? "
        "ORDER BY number LIMIT ?",
        ("" if after is None else after, limit),
    )
    return [DeadNumber(*row) for row in rows]
