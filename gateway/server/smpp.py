"""The asyncio shell around `Session` for applications' binds (we are the SMSC).

Boring on purpose (see httpcore's ``_receive_event``): read a chunk, feed the session, handle
its events, write what it produced, re-arm its timer. All protocol decisions live in `Session`;
this file only does I/O, authentication and hands requests to the accept pipeline.

The accept pipeline: check the fields (`gateway.server.validate`: addresses, data_coding,
registered_delivery, schedule and validity times), normalise the destination, find a route
(none: ESME_RINVDSTADR), store the message durably, and only then answer submit_sm_resp with
our message id. submit_multi stores one message per SME destination, each with its own id,
all durable before the answer; its message_id is the first accepted one's, and unsuccess_smes
lists the destinations that failed (distribution lists, which we do not have, among them).
query_sm is answered from the store; cancel_sm and replace_sm succeed while no upstream has
the message yet, and replace_sm sets a new schedule and validity as well as the text. All three
check source_addr against the message ("used for verification", SMPP v3.4 4.8.1-4.10.1): a
message is found only by the account that sent it and with the source_addr it was submitted
with - an empty source_addr only finds a message submitted with an empty one (the SMSC's
default address), since the spec gives no wildcard for it (cancel_sm's destination_addr, which
may be NULL when message_id is given, is checked only when present). Anything else an
application may send is answered ESME_RSYSERR rather than left hanging.

One read may end a session (an unbind, a framing error): `Session` then answers what came
before and nothing after, so a request event is never answered on a closed session.

With `listen.tls_port` set, a second listener speaks the same protocol over TLS
(`listen.tls_cert` / `listen.tls_key`) to the same accounts and pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from gateway.config import AccountConfig, GatewayConfig
from gateway.routing import NumberPlan, RouteTable, normalize
from gateway.server.auth import Authenticator
from gateway.server.limits import TokenBucket
from gateway.server.rules import AcceptRules, Refused
from gateway.server.validate import ADDRESS_MAX, Rejected, check_replace, check_submit
from gateway.smpp.codec import encode_tlvs
from gateway.smpp.constants import CommandStatus
from gateway.smpp.errors import LocalSmppError
from gateway.smpp.pdu import (
    COMMAND_IDS,
    BindTransmitter,
    CancelSm,
    CancelSmResp,
    DataSm,
    DataSmResp,
    QuerySm,
    QuerySmResp,
    ReplaceSm,
    ReplaceSmResp,
    SmeAddress,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnsuccessSme,
    response_class,
)
from gateway.smpp.session import (
    BindRequested,
    Closed,
    Request,
    RequestTimedOut,
    Response,
    Role,
    Session,
    State,
)
from gateway.smpp.tlv import tlv_raw
from gateway.store.base import Delivery, NewMessage, Store
from gateway.store.ids import MessageIdGenerator
from gateway.telemetry import logging as telemetry
from gateway.telemetry import stages
from gateway.telemetry.events import Events
from gateway.telemetry.metrics import Metrics

__all__ = ["SmppServer"]

_FINISHED_MEMORY = 8192  # far more than the deletes done during one pending read
_BOUND_STATES = frozenset({State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX})
_UNBIND_WAIT = 2.0  # seconds a client has to answer our unbind at shutdown (smpplib never does)
_REDELIVER = 5.0  # seconds: look again for deliveries that failed or timed out


def _flush(conn: _Connection, writer: asyncio.StreamWriter) -> None:
    started = stages.begin()
    conn.flush_due = False
    out = conn.session.data_to_send()
    if out and not writer.is_closing():
        writer.write(out)
    stages.end("app.write", started)
    if not conn.session.is_open():
        conn.wake()  # that answer was the last one owed before an unbind: end the loop


class _Connection:
    """One client connection: its session and what it has in flight."""

    __slots__ = (
        "accepted",
        "accepting",
        "account",
        "bind_type",
        "flush_due",
        "inflight",
        "more",
        "peer",
        "receiving",
        "retired",
        "session",
        "waker",
        "woken",
    )

    def __init__(self, session: Session, peer: str = "") -> None:
        self.session = session
        self.peer = peer  # host:port, for the status page
        self.accepted = 0  # messages accepted on this bind: the status page samples its rate
        self.account: AccountConfig | None = None
        self.bind_type = ""  # bind_transmitter / _receiver / _transceiver, once bound
        self.receiving = False  # bound RX or TRX: deliver_sm may go to it
        self.inflight: dict[int, int] = {}  # sequence_number -> delivery id
        self.more = False  # its last look found deliveries: more may be queued, look again
        # Woken (deliveries queued, shutdown, reload): a flag, and a future for the loop to wait
        # on while it waits - not an Event and a task for each wait, since with many binds each
        # one's memory and each turn's cost count.
        self.woken = False
        self.waker: asyncio.Future[None] | None = None
        self.accepting: set[asyncio.Task[None]] = set()  # submits being stored
        self.flush_due = False  # answers are waiting for one write at the end of this turn
        self.retired = False  # its account was removed by a reload: drain and unbind it

    def wake(self) -> None:
        """Have the connection's loop take a turn (at once if it is waiting)."""
        self.woken = True
        if self.waker is not None and not self.waker.done():
            self.waker.set_result(None)


log = structlog.get_logger("smsgw.server")


class _ReadAhead:
    """An account's queued deliveries read ahead of its binds, oldest first (see `_push`)."""

    __slots__ = ("cursor", "generation", "more", "reading", "rows")

    def __init__(self) -> None:
        self.rows: deque[Delivery] = deque()
        self.cursor = 0  # the last delivery id read
        self.more = True  # the last read filled its page: there may be more behind it
        # The next page, being read. One read at a time per account: PostgreSQL's skips the
        # rows another read of ours has locked, so two at once would each miss some.
        self.reading: asyncio.Task[None] | None = None
        self.generation = 0  # counts rewinds: a page read before one does not move the cursor


_READ = 65536
_REJECT_DELAY = 1.0  # seconds between a refused bind and closing: slows password guessing


class SmppServer:
    """Accepts application binds and submit_sm / data_sm into the store.

    Args:
        config: accounts, routes, number plan, node id.
        store: an open `Store`.
        clock: wall-clock seconds (message timestamps and ids); tests pass their own.
        on_accept: called after each message is stored (wakes the dispatcher).
    """

    def __init__(
        self,
        config: GatewayConfig,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        on_accept: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.on_accept = on_accept
        self.metrics: Metrics | None = None
        self.events = Events.off()  # the gateway's MQTT events (set by the app)
        self.store = store
        self.clock = clock
        self.auth = Authenticator(config.accounts)
        self.routes: RouteTable = config.route_table()
        self.plan: NumberPlan = config.numbers.plan()
        self.ids = MessageIdGenerator(config.node_id)
        self.rules = AcceptRules(config)
        self._server: asyncio.Server | None = None
        self._tls_server: asyncio.Server | None = None
        self.tls_port: int | None = None  # where the TLS listener is, once started
        self._tasks: set[asyncio.Task[None]] = set()
        # account -> its bound connections, in the order they are offered deliveries (an
        # insertion-ordered dict as an ordered set: the one woken goes to the back)
        self._bound: dict[str, dict[_Connection, None]] = {}
        self._rescan_timer: asyncio.TimerHandle | None = None
        self._inflight: set[int] = set()  # delivery ids sent and not yet settled in the store
        # Delivery ids the store has just deleted: a `pending_deliveries` read that started
        # before the delete may still return them. Ids only grow, so a bounded memory will do.
        self._finished: OrderedDict[int, None] = OrderedDict()
        self._tasks_settling: set[asyncio.Task[None]] = set()
        self._answered: list[int] = []  # delivery ids answered this turn, for `_settle`
        self._stopping = False
        # account -> its queued deliveries read ahead of its binds (see `_push`)
        self._ahead: dict[str, _ReadAhead] = {}
        self._buckets = {
            a.system_id: TokenBucket(a.throughput) for a in config.accounts if a.throughput
        }  # one per account, shared by all its binds

    async def start(self, host: str | None = None, port: int | None = None) -> int:
        """Listen; returns the plain port (pass port 0 for an ephemeral one).

        With `listen.tls_port` configured, also listen with TLS there (0: ephemeral); its
        port is then `tls_port`.

        Raises:
            OSError: cannot listen, or cannot read the certificate or key (ssl.SSLError).
        """
        listen = self.config.listen
        host = host if host is not None else listen.host
        context = self._tls_context() if listen.tls_port is not None else None
        self._server = await asyncio.start_server(
            self._connection, host, port if port is not None else listen.port
        )
        if context is not None:
            self._tls_server = await asyncio.start_server(
                self._connection,
                host,
                listen.tls_port,
                ssl=context,
                ssl_handshake_timeout=listen.bind_timeout,
            )
            self.tls_port = int(self._tls_server.sockets[0].getsockname()[1])
            log.info("listening with TLS", host=host, port=self.tls_port)
        self._rescan_timer = asyncio.get_running_loop().call_later(_REDELIVER, self._rescan)
        sock = self._server.sockets[0]
        return int(sock.getsockname()[1])

    def _rescan(self) -> None:
        """Every `_REDELIVER` seconds each account's queue gets a look from the start, by one of
        its binds (not a timer per bind: with many binds those cost store reads when idle), so
        deliveries refused, left unanswered or queued unnoticed go out again."""
        self._rescan_timer = asyncio.get_running_loop().call_later(_REDELIVER, self._rescan)
        for account in list(self._bound):
            self.notify(account, rewind=True)

    def _tls_context(self) -> ssl.SSLContext:
        listen = self.config.listen
        assert listen.tls_cert is not None and listen.tls_key is not None  # config checks it
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(listen.tls_cert, listen.tls_key)
        return context

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting connections; let each bound session finish storing and answering
        what it has read, then unbind it (waiting `_UNBIND_WAIT` for unbind_resp); close
        whatever is left after `grace` seconds."""
        for server in (self._server, self._tls_server):
            if server is not None:
                server.close()
                await server.wait_closed()
        self._stopping = True
        if self._rescan_timer is not None:
            self._rescan_timer.cancel()
        for conns in self._bound.values():
            for conn in conns:
                conn.wake()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._tasks_settling:  # answered deliveries still being deleted from the store
            await asyncio.wait(set(self._tasks_settling), timeout=10)

    def binds(self) -> dict[str, dict[str, int]]:
        """Bound sessions per account and bind type (``bound_tx`` ...), for `smsgw status`."""
        out: dict[str, dict[str, int]] = {}
        for account, conns in self._bound.items():
            for conn in conns:
                kind = out.setdefault(account, {})
                state = conn.session.state.value
                kind[state] = kind.get(state, 0) + 1
        return out

    def bind_rows(self) -> list[dict[str, Any]]:
        """Each bound session, for the status page: account, bind type, peer, window in use
        (submits being stored and not answered yet) of the account's window, and `accepted`,
        a running count the page samples into messages per second."""
        return [
            {
                "key": id(conn),
                "account": account,
                "type": conn.bind_type.removeprefix("bind_"),
                "peer": conn.peer,
                "window_used": len(conn.accepting),
                "window": conn.account.window if conn.account is not None else 0,
                "accepted": conn.accepted,
            }
            for account, conns in sorted(self._bound.items())
            for conn in conns
        ]

    def reconfigure(self, config: GatewayConfig) -> None:
        """Apply a reloaded config's accounts, routes, number plan and message rules.

        Existing binds of a kept account take its new limits (window, throughput) at once;
        those of a removed account are drained and unbound. A changed password, bind type or
        CIDR applies from the next bind: a live bind was allowed when it was made. The listen
        settings stay the running ones (they need a restart).
        """
        self.config = config.model_copy(update={"listen": self.config.listen})
        auth = Authenticator(config.accounts)
        auth.bound = self.auth.bound
        self.auth = auth
        self.routes = config.route_table()
        self.plan = config.numbers.plan()
        self.rules = AcceptRules(config)
        old_buckets = self._buckets
        self._buckets = {}
        for account in config.accounts:
            if account.throughput:
                bucket = old_buckets.get(account.system_id)
                same = bucket is not None and bucket.rate == account.throughput
                self._buckets[account.system_id] = (
                    bucket if bucket is not None and same else TokenBucket(account.throughput)
                )
        for system_id, conns in self._bound.items():
            new = auth.accounts.get(system_id)
            for conn in conns:
                if new is None:
                    conn.retired = True
                    conn.wake()
                else:
                    conn.account = new

    def listening(self) -> bool:
        """Whether the SMPP listener is up (readiness)."""
        return self._server is not None and self._server.is_serving()

    def take_token(self, system_id: str, now: float, count: int = 1) -> bool:
        """Spend `count` of the account's throughput tokens (shared by its binds and its
        HTTP requests), all or none; False when over its rate: refuse (throttled)."""
        bucket = self._buckets.get(system_id)
        return bucket is None or bucket.take(now, count)

    def retry_after(self, system_id: str, count: int = 1) -> float:
        """Seconds until the account has `count` tokens again (inf: more than its burst)."""
        bucket = self._buckets.get(system_id)
        return 0.0 if bucket is None else bucket.wait(count)

    def notify(self, account: str, *, rewind: bool = False) -> None:
        """Deliveries were queued for `account`: wake one of its receiving binds with room in
        its window, taking them in turn. One is enough: a bind whose look fills its window
        wakes the next (`_wake_binds`), so a backlog spreads over the binds while a trickle
        costs one store read, not one per bind.

        Args:
            rewind: page from the start, not on from the last delivery offered. Nodes
                sharing a store commit their deliveries in an order that is not their ids'
                (a lower id may become visible after a higher one was offered), so a notice
                that another node may have written gets a full look.
        """
        if rewind:
            self._rewind(account)
        self._wake_binds(account)

    def _wake_binds(self, account: str, rows: int = 1) -> None:
        """Wake the account's next receiving binds with room in their windows, in turn (each
        woken goes to the back), until their room covers `rows` deliveries; none when every
        window is full: those binds look again as answers come."""
        conns = self._bound.get(account)
        if not conns:
            return
        woken: list[_Connection] = []
        for conn in conns:
            own = conn.account
            if (
                conn.receiving
                and own is not None
                and not conn.session.closing
                and len(conn.inflight) < own.window
            ):
                woken.append(conn)
                rows -= own.window - len(conn.inflight)
                if rows <= 0:
                    break
        for conn in woken:
            del conns[conn]
            conns[conn] = None
            conn.wake()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        peer = writer.get_extra_info("peername") or ("?", 0)
        loop = asyncio.get_running_loop()
        listen = self.config.listen
        conn = _Connection(
            Session(
                Role.SMSC,
                now=loop.time(),
                bind_timeout=listen.bind_timeout,
                enquire_link_interval=listen.enquire_link_interval,
                inactivity_timeout=listen.inactivity_timeout,
                response_timeout=listen.response_timeout,
                max_pdu_length=listen.max_pdu_length,
            ),
            peer=f"{peer[0]}:{peer[1]}" if len(peer) >= 2 else str(peer),
        )
        session = conn.session
        read: asyncio.Task[bytes] | None = None
        unbind_by: float | None = None  # shutting down: when to stop waiting for unbind_resp
        try:
            while session.is_open():
                if (self._stopping or conn.retired) and unbind_by is None:
                    unbind_by = await self._unbind_for_shutdown(conn, writer)
                if unbind_by is not None and loop.time() >= unbind_by:
                    break
                window = conn.account.window if conn.account is not None else 1
                if len(conn.accepting) >= window:  # window full: stop reading the socket
                    await asyncio.wait(set(conn.accepting), return_when=asyncio.FIRST_COMPLETED)
                if read is None:
                    read = loop.create_task(reader.read(_READ))
                if conn.waker is None:
                    conn.waker = loop.create_future()
                if conn.woken and not conn.waker.done():
                    conn.waker.set_result(None)
                deadline = session.next_deadline()
                timeout = None if deadline is None else max(0.0, deadline - loop.time())
                if unbind_by is not None:
                    left = max(0.0, unbind_by - loop.time())
                    timeout = left if timeout is None else min(timeout, left)
                waits: set[asyncio.Future[Any]] = {read, conn.waker}
                done, _ = await asyncio.wait(
                    waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if conn.waker.done():
                    conn.waker = None
                if read in done:
                    data, read = read.result(), None
                    started = stages.begin()
                    session.receive_data(data, loop.time())
                    stages.end("app.read", started)
                else:
                    session.handle_timer(loop.time())
                look = conn.woken or conn.more  # deliveries may be waiting for this bind
                conn.woken = False
                while (event := session.next_event()) is not None:
                    if not session.is_open() and isinstance(event, BindRequested | Request):
                        continue  # never answer on a closed session
                    if isinstance(event, BindRequested):
                        conn.account = await self._bind(conn, event.pdu, peer[0], writer)
                        look = True  # a new receiver: offer it what is queued
                    elif isinstance(event, Request):
                        await self._request(conn, event.pdu, writer, loop.time())
                    elif isinstance(event, Response):
                        started = stages.begin()
                        self._delivered(conn, event)
                        stages.end("app.deliver", started)
                    elif isinstance(event, RequestTimedOut):
                        # Unanswered in time: offered again at the next look from the start
                        # (at least once; an app that answers late may see it twice).
                        timed_out = conn.inflight.pop(event.request.sequence_number, None)
                        if timed_out is not None:
                            self._inflight.discard(timed_out)
                            self._rewind(conn.account.system_id if conn.account else "")
                            look = True  # its place in the window is free again
                    elif isinstance(event, Closed):
                        log.info("session closed", peer=peer[0], reason=event.reason)
                if look and conn.receiving and session.is_open() and not session.closing:
                    await self._look(conn, loop.time())
                out = session.data_to_send()
                if out:
                    writer.write(out)
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.info("connection lost", peer=peer[0], error=str(exc))
        except asyncio.CancelledError:
            # Shutdown: end quietly (asyncio's stream callback reports a cancelled handler
            # task as an error); what was accepted is already durable.
            log.info("connection closed for shutdown", peer=peer[0])
        finally:
            if read is not None:
                read.cancel()
            if conn.accepting:  # let what is being stored finish: it is durable either way
                await asyncio.wait(set(conn.accepting), timeout=10)
            if conn.account is not None:  # it was bound: free its place under max_binds
                self.auth.unbind(conn.account.system_id)
                if self.metrics is not None:
                    self.metrics.binds.labels(conn.account.system_id, conn.bind_type).dec()
                self._bound.get(conn.account.system_id, {}).pop(conn, None)
            if conn.inflight and conn.account is not None:  # unanswered: offer them again
                self._inflight.difference_update(conn.inflight.values())
                self._rewind(conn.account.system_id)
            if conn.account is not None and not self._bound.get(conn.account.system_id):
                ahead = self._ahead.get(conn.account.system_id)
                if ahead is not None and ahead.reading is None:
                    del self._ahead[conn.account.system_id]  # its last bind: keep no pages
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            if task is not None:
                self._tasks.discard(task)

    async def _unbind_for_shutdown(self, conn: _Connection, writer: asyncio.StreamWriter) -> float:
        """Drain the connection's window (its submits stored and answered), then unbind it;
        returns when to give up waiting for the unbind_resp."""
        loop = asyncio.get_running_loop()
        if conn.accepting:
            await asyncio.wait(set(conn.accepting), timeout=_UNBIND_WAIT)
        session = conn.session
        if session.closing:
            pass  # the client unbound already: its unbind_resp follows its last answer
        elif session.state in _BOUND_STATES:
            session.send(Unbind(), loop.time())
        else:
            session.receive_data(b"", loop.time())  # not bound: just close
        out = session.data_to_send()
        if out:
            with contextlib.suppress(ConnectionError):
                writer.write(out)
                await writer.drain()
        return loop.time() + _UNBIND_WAIT

    async def _look(self, conn: _Connection, now: float) -> None:
        """`_push` for a bind that has reason to look. A look that found deliveries makes the
        bind look again at its next turn (its next read: the answers to what it just sent),
        so while receipts flow one bind keeps a look going, as every bind's reads once did,
        and stops at the first empty one; a look that filled its window also wakes the
        account's next bind."""
        account = conn.account
        assert account is not None
        before = len(conn.inflight)
        room = account.window - before
        if room <= 0:
            return  # full: it looks again as answers free its window (`more` stays)
        await self._push(conn, now)
        sent = len(conn.inflight) - before
        conn.more = sent > 0
        if sent >= room:
            self._wake_binds(account.system_id)

    async def _push(self, conn: _Connection, now: float) -> None:
        """Send queued deliver_sm PDUs up to the account's window, oldest first.

        They come from a read-ahead of the account's queue (`_ReadAhead`, shared by its
        binds): read from the store in pages of twice the window, the next page read in the
        background while this one is sent, so a bind with a backlog always has its next
        deliver_sm at hand when an answer frees its window - a store round trip no longer
        sits between two windows. The store keeps every row until `delivery_done`: the
        read-ahead is a cache, forgotten on a rewind, and the order is the queue's (ids).
        """
        account = conn.account
        assert account is not None
        room = account.window - len(conn.inflight)
        if room <= 0:
            return
        # Page on from the last delivery read; the rescan (`_rescan`, every _REDELIVER
        # seconds) starts over, which picks up the ones refused or left unanswered.
        name = account.system_id
        ahead = self._ahead.get(name)
        if ahead is None:
            ahead = self._ahead[name] = _ReadAhead()
        rows = ahead.rows
        if not rows:  # nothing at hand: read (or wait for the read under way)
            if ahead.reading is None:
                ahead.reading = asyncio.get_running_loop().create_task(
                    self._read_ahead(name, ahead, account.window)
                )
            await asyncio.shield(ahead.reading)
        started = stages.begin()
        inflight, finished = self._inflight, self._finished
        while room > 0 and rows:
            delivery = rows.popleft()
            if delivery.id in inflight or delivery.id in finished:
                continue
            try:
                sent = conn.session.send_encoded(delivery.pdu, now)
            except LocalSmppError as exc:
                if exc.status == CommandStatus.ESME_RINVBNDSTS:
                    rows.appendleft(delivery)  # the session cannot send now (unbinding)
                    break
                # Not a PDU, or one this bind cannot take (a long message_payload for v3.3).
                log.error("queued delivery cannot be sent; dropped", id=delivery.id, error=str(exc))
                await self.store.delivery_done(delivery.id)
                continue
            conn.inflight[sent.sequence_number] = delivery.id
            inflight.add(delivery.id)
            room -= 1
        stages.end("app.deliver", started)
        if ahead.more and ahead.reading is None and len(rows) < account.window:
            ahead.reading = asyncio.get_running_loop().create_task(
                self._read_ahead(name, ahead, account.window)
            )

    async def _read_ahead(self, name: str, ahead: _ReadAhead, window: int) -> None:
        """Read the account's next page of deliveries into `ahead` (two windows; from the
        start, past the ones in flight, after a rewind), then wake its binds if it found any."""
        generation, after = ahead.generation, ahead.cursor
        limit = 2 * window + (len(self._inflight) if after == 0 else 0)
        try:
            pending = await self.store.pending_deliveries(name, self.clock(), limit, after=after)
        except Exception:  # the next look tries again
            log.exception("queued deliveries not read", account=name)
            ahead.more = False
            return
        finally:
            ahead.reading = None
        if generation == ahead.generation:
            ahead.more = len(pending) >= limit
            if pending:
                ahead.cursor = pending[-1].id
        # Rewound meanwhile: its rows are still to send (the ones sent already are skipped),
        # and the cursor stays at the start for the next read.
        if pending:  # (an empty page wakes nobody: its readers would only read again)
            ahead.rows.extend(pending)
            # As many binds as the page fills (a bind that fills its window wakes the next).
            self._wake_binds(name, len(ahead.rows))

    def _rewind(self, name: str) -> None:
        """Forget what was read ahead for the account: the next look pages from the start."""
        ahead = self._ahead.get(name)
        if ahead is not None:
            ahead.rows.clear()
            ahead.cursor = 0
            ahead.more = True
            ahead.generation += 1

    def _delivered(self, conn: _Connection, event: Response) -> None:
        delivery_id = conn.inflight.pop(event.pdu.sequence_number, None)
        if delivery_id is None:
            return
        if event.pdu.command_status != 0:
            self._inflight.discard(delivery_id)  # refused: offered again later
            return
        # Settled in the background, the answers of one turn of the loop (a read from a
        # draining bind: hundreds) in one store call by one task; the id stays "in flight"
        # until it is gone from the store, so no other bind sends it again.
        if not self._answered:
            task = asyncio.get_running_loop().create_task(self._settle())
            self._tasks_settling.add(task)
            task.add_done_callback(self._tasks_settling.discard)
        self._answered.append(delivery_id)

    async def _settle(self) -> None:
        # A task's first step runs at the next turn: every answer of this one is in the list.
        ids, self._answered = self._answered, []
        try:
            await self.store.deliveries_done(ids)
        except Exception:
            log.exception("could not settle deliveries; they will be offered again", ids=len(ids))
        else:
            finished = self._finished
            for delivery_id in ids:
                finished[delivery_id] = None
            while len(finished) > _FINISHED_MEMORY:
                finished.popitem(last=False)
        finally:
            self._inflight.difference_update(ids)

    async def _bind(
        self, conn: _Connection, pdu: Any, peer_ip: str, writer: asyncio.StreamWriter
    ) -> AccountConfig | None:
        session = conn.session
        command = COMMAND_IDS[type(pdu)].name
        verdict = self.auth.check(command, pdu.system_id, pdu.password, peer_ip)
        if isinstance(verdict, AccountConfig):
            session.accept_bind(pdu)
            self.auth.bind(verdict.system_id)
            conn.receiving = not isinstance(pdu, BindTransmitter)
            self._bound.setdefault(verdict.system_id, {})[conn] = None
            self._rewind(verdict.system_id)  # a new receiver: offer everything
            conn.bind_type = command
            if self.metrics is not None:
                self.metrics.binds.labels(verdict.system_id, command).inc()
            log.info("bound", system_id=verdict.system_id, bind=command, peer=peer_ip)
            return verdict
        session.reject_bind(pdu, verdict)
        log.warning("bind refused", system_id=pdu.system_id, status=verdict.name, peer=peer_ip)
        writer.write(session.data_to_send())
        await writer.drain()
        await asyncio.sleep(_REJECT_DELAY)
        session.receive_data(b"", 0.0)  # close: the shell's loop ends
        return None

    async def _request(
        self, conn: _Connection, pdu: Any, writer: asyncio.StreamWriter, now: float
    ) -> None:
        session, account = conn.session, conn.account
        if isinstance(pdu, (SubmitSm, DataSm, SubmitMulti)) and account is not None:
            # One token per request, submit_multi included: the limit protects our pipeline,
            # which takes a submit_multi's destinations in one pass.
            if not self.take_token(account.system_id, now):
                self._answer_submit(session, pdu, CommandStatus.ESME_RTHROTTLED, "", now)
                if self.metrics is not None:
                    self.metrics.refuse(account.system_id, CommandStatus.ESME_RTHROTTLED)
                return
            # Accepted concurrently, so one connection's messages share a group commit; the
            # connection loop stops reading while `window` of them are unanswered.
            task = asyncio.get_running_loop().create_task(
                self._accept_and_answer(conn, pdu, account, writer, now)
            )
            conn.accepting.add(task)
            task.add_done_callback(conn.accepting.discard)
            return
        if account is not None and isinstance(pdu, QuerySm | CancelSm | ReplaceSm):
            session.send(await self._ancillary(pdu, account), now)
            return
        other = response_class(COMMAND_IDS[type(pdu)])
        if other is not None:
            session.send(
                other(
                    sequence_number=pdu.sequence_number,
                    command_status=CommandStatus.ESME_RSYSERR,
                ),
                now,
            )

    async def _accept_and_answer(
        self,
        conn: _Connection,
        pdu: Any,
        account: AccountConfig,
        writer: asyncio.StreamWriter,
        read_at: float,
    ) -> None:
        failed: tuple[UnsuccessSme, ...] = ()
        if isinstance(pdu, SubmitMulti):
            status, message_id, failed = await self.accept_multi(pdu, account)
        else:
            status, message_id = await self.accept(pdu, account)
        started = stages.begin()
        if status == CommandStatus.ESME_ROK:
            conn.accepted += 1
        session = conn.session
        if not session.is_open():
            return  # stored, but the application left before its answer: it may resend
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._answer_submit(session, pdu, status, message_id, now, failed=failed)
        metrics = self.metrics
        if metrics is not None:
            if status == CommandStatus.ESME_ROK:
                metrics.accept(account.system_id)
            else:
                metrics.refuse(account.system_id, status)
            metrics.submit_latency.observe(now - read_at)
        if not conn.flush_due:
            # A group commit resumes many accepts in one turn of the loop: their answers go out
            # in one write after them. (The socket is read no further while `window` submits
            # are unanswered, so what waits here is bounded.)
            conn.flush_due = True
            loop.call_soon(_flush, conn, writer)
        stages.end("app.answer", started)

    @staticmethod
    def _answer_submit(
        session: Session,
        pdu: Any,
        status: int,
        message_id: str,
        now: float,
        *,
        failed: tuple[UnsuccessSme, ...] = (),
    ) -> None:
        seq = pdu.sequence_number
        if isinstance(pdu, SubmitMulti):
            session.send(
                SubmitMultiResp(
                    message_id=message_id,
                    unsuccess_smes=failed,
                    sequence_number=seq,
                    command_status=status,
                ),
                now,
            )
            return
        resp_cls = SubmitSmResp if isinstance(pdu, SubmitSm) else DataSmResp
        session.send(
            resp_cls(message_id=message_id, sequence_number=seq, command_status=status), now
        )

    async def _ancillary(self, pdu: Any, account: AccountConfig) -> Any:
        """query_sm from the store; cancel_sm / replace_sm while the message is still ours."""
        seq = pdu.sequence_number
        now = self.clock()
        # query_sm may read a replica; cancel and replace act on what they read: the primary.
        record = await self.store.get(pdu.message_id, lagging=isinstance(pdu, QuerySm))
        found = (
            record is not None
            and record.message.account == account.system_id
            and record.message.source_addr == pdu.source_addr  # see the module docstring
        )
        if isinstance(pdu, QuerySm):
            if not found or record is None:
                return QuerySmResp(
                    sequence_number=seq, command_status=CommandStatus.ESME_RQUERYFAIL
                )
            final = ""
            if record.state.final:
                final = (
                    datetime.fromtimestamp(record.updated_at, UTC).strftime("%y%m%d%H%M%S") + "000+"
                )
            return QuerySmResp(
                message_id=pdu.message_id,
                final_date=final,
                message_state=record.state.message_state,
                error_code=(record.error or 0) & 0xFF,
                sequence_number=seq,
            )
        if isinstance(pdu, CancelSm):
            if record is not None and pdu.destination_addr:
                found = found and normalize(pdu.destination_addr, self.plan) == (
                    record.message.destination_addr
                )
            ok = found and await self.store.change_pending(pdu.message_id, account.system_id, now)
            status = CommandStatus.ESME_ROK if ok else CommandStatus.ESME_RCANCELFAIL
            return CancelSmResp(sequence_number=seq, command_status=status)
        if not found or record is None:
            return ReplaceSmResp(
                sequence_number=seq, command_status=CommandStatus.ESME_RREPLACEFAIL
            )
        m = record.message
        try:
            times = check_replace(
                pdu,
                now,
                self.config.messages,
                schedule_at=m.schedule_at,
                expires_at=m.expires_at,
                accepted_at=m.accepted_at,
            )
        except Rejected as exc:
            return ReplaceSmResp(sequence_number=seq, command_status=exc.status)
        ok = await self.store.change_pending(
            pdu.message_id, account.system_id, now, short_message=pdu.short_message, times=times
        )
        if ok and times is not None:
            self.on_accept()  # due sooner, perhaps: wake the dispatcher
        status = CommandStatus.ESME_ROK if ok else CommandStatus.ESME_RREPLACEFAIL
        return ReplaceSmResp(sequence_number=seq, command_status=status)

    async def accept(
        self, pdu: Any, account: AccountConfig, *, msg_class: str = "", campaign: str = ""
    ) -> tuple[int, str]:
        """The accept pipeline of a submit_sm / data_sm (SMPP and HTTP alike): validate,
        route, store durably. Returns (status, our message id; "" unless accepted).
        `msg_class` and `campaign`: as the HTTP request names them (see `prepare`)."""
        status, message_id, _reason = await self.accept_detail(
            pdu, account, msg_class=msg_class, campaign=campaign
        )
        return status, message_id

    async def accept_detail(
        self, pdu: Any, account: AccountConfig, *, msg_class: str = "", campaign: str = ""
    ) -> tuple[int, str, str | None]:
        """`accept`, and the sending rule that stopped, refused or deduplicated the message
        (a `Reason` value, "duplicate"), or None."""
        now = self.clock()
        started = stages.begin()
        message = self.prepare(pdu, account, now, msg_class=msg_class, campaign=campaign)
        if not isinstance(message, NewMessage):
            return message, "", None
        rules = self.rules
        reason = None
        try:
            if not rules.active:
                stages.end("app.accept", started)
                await self.store.accept(message)  # durable before the response
            else:
                checked = rules.check(message, pdu, now)
                stages.end("app.accept", started)
                if isinstance(checked, Refused):
                    return checked.status, "", checked.reason.value
                message, check = checked
                verdict = await self.store.accept_checked(message, check, now)
                if verdict.duplicate_of is not None:
                    return CommandStatus.ESME_ROK, verdict.duplicate_of, "duplicate"
                if verdict.stop is not None:
                    reason = verdict.stop.value
                    if verdict.stop in check.refuse:
                        return rules.refusal_status(verdict.stop), "", reason
        except Exception as exc:
            log.error("store refused a message", error=str(exc))
            return CommandStatus.ESME_RSYSERR, "", None
        if telemetry.messages:
            _accepted(message)
        self.events.accepted((message,))
        self.on_accept()
        return CommandStatus.ESME_ROK, message.id, reason

    def _class_of(self, pdu: Any) -> str:
        """A submit's class: its class TLV (when configured and naming a class), else its
        service_type's, else the policy's default."""
        policy = self.config.policy
        named = self._tlv_text(pdu, policy.class_tlv)
        if named and named in self.rules.rules:
            return named
        return policy.service_types.get(pdu.service_type) or policy.default_class

    @staticmethod
    def _tlv_text(pdu: Any, tag: int | None) -> str:
        if tag is None or not pdu.tlvs:
            return ""
        raw = tlv_raw(pdu.tlvs, tag)
        if raw is None:
            return ""
        return raw.rstrip(b"\x00").decode("ascii", "replace")[:64]

    async def _store_one(self, message: NewMessage, pdu: Any, now: float) -> str | int:
        """Store one destination's message (through the sending rules when they are on):
        its id (or an earlier duplicate's), or the status a rule refused it with."""
        rules = self.rules
        if not rules.active:
            await self.store.accept(message)
            return message.id
        checked = rules.check(message, pdu, now)
        if isinstance(checked, Refused):
            return checked.status
        message, check = checked
        verdict = await self.store.accept_checked(message, check, now)
        if verdict.duplicate_of is not None:
            return verdict.duplicate_of
        if verdict.stop is not None and verdict.stop in check.refuse:
            return rules.refusal_status(verdict.stop)
        return message.id

    def prepare(
        self,
        pdu: Any,
        account: AccountConfig,
        now: float,
        *,
        msg_class: str = "",
        campaign: str = "",
    ) -> NewMessage | int:
        """The accept pipeline up to the store: validate and route a submit_sm. Returns the
        message to store, or the command_status refusing it. (`accept` is this, then the
        store; a batch stores many at once, then calls `stored`.) The message's class is
        `msg_class` when given, else the policy's class for its service_type, else the
        policy's default class."""
        try:
            times = check_submit(pdu, now, self.config.messages)
        except Rejected as exc:
            return exc.status
        dest = (pdu.dest_addr_ton, pdu.dest_addr_npi, pdu.destination_addr)
        return self._message(pdu, account, dest, now, times, msg_class=msg_class, campaign=campaign)

    def stored(self, messages: list[NewMessage]) -> None:
        """Messages `prepare`d and stored by the caller: their events, and the dispatcher
        woken."""
        if telemetry.messages:
            for message in messages:
                _accepted(message)
        self.events.accepted(messages)
        if messages:
            self.on_accept()

    async def accept_multi(
        self, pdu: SubmitMulti, account: AccountConfig
    ) -> tuple[int, str, tuple[UnsuccessSme, ...]]:
        """One message per SME destination, all stored (group-committed together) before
        the answer. Returns (status, first accepted id, failed destinations in PDU order);
        ESME_RSUBMITFAIL when none was accepted."""
        now = self.clock()
        try:
            times = check_submit(pdu, now, self.config.messages)
        except Rejected as exc:
            return exc.status, "", ()
        failed: list[tuple[int, UnsuccessSme]] = []
        accepted: list[tuple[int, SmeAddress, NewMessage]] = []
        for i, dest in enumerate(pdu.dest_addresses):
            if not isinstance(dest, SmeAddress):  # a distribution list: we keep none
                failed.append((i, UnsuccessSme(0, 0, dest.dl_name, CommandStatus.ESME_RINVDSTADR)))
                continue
            message = self._message(pdu, account, dest, now, times)
            if isinstance(message, NewMessage):
                accepted.append((i, dest, message))
            else:
                failed.append((i, UnsuccessSme(*dest, message)))
        results = await asyncio.gather(
            *(self._store_one(m, pdu, now) for _, _, m in accepted), return_exceptions=True
        )
        ids = []
        for (i, dest, message), result in zip(accepted, results, strict=True):
            if isinstance(result, Exception):
                log.error("store refused a message", error=str(result))
                failed.append((i, UnsuccessSme(*dest, CommandStatus.ESME_RSYSERR)))
            elif isinstance(result, BaseException):
                raise result
            elif isinstance(result, int):  # a sending rule refused this destination
                failed.append((i, UnsuccessSme(*dest, result)))
            else:
                ids.append(result)
                if telemetry.messages:
                    _accepted(message)
                if result == message.id:  # not an earlier duplicate's id
                    self.events.accepted((message,))
        unsuccess = tuple(u for _, u in sorted(failed, key=lambda f: f[0]))
        if not ids:
            return CommandStatus.ESME_RSUBMITFAIL, "", unsuccess
        self.on_accept()
        return CommandStatus.ESME_ROK, ids[0], unsuccess

    def _message(
        self,
        pdu: Any,
        account: AccountConfig,
        dest: tuple[int, int, str],  # ton, npi, address: an SmeAddress or a submit_sm's
        now: float,
        times: tuple[float | None, float],
        *,
        msg_class: str = "",
        campaign: str = "",
    ) -> NewMessage | CommandStatus:
        """The message to store for one destination, or why that destination is refused."""
        ton, npi, address = dest
        destination = normalize(address, self.plan)
        if destination is None or len(destination) > ADDRESS_MAX:
            # Longer, and no upstream submit_sm nor our receipt's source_addr could carry it.
            return CommandStatus.ESME_RINVDSTADR
        route = self.routes.lookup(
            destination, account.system_id, pdu.source_addr, pdu.service_type
        )
        if route is None:
            return CommandStatus.ESME_RINVDSTADR
        raw_tlvs = encode_tlvs(pdu.tlvs) if pdu.tlvs else b""
        return NewMessage(
            id=self.ids.next_id(now),
            account=account.system_id,
            source_addr=pdu.source_addr,
            destination_addr=destination,
            short_message=getattr(pdu, "short_message", b""),
            data_coding=pdu.data_coding,
            esm_class=pdu.esm_class,
            registered_delivery=pdu.registered_delivery,
            source_addr_ton=pdu.source_addr_ton,
            source_addr_npi=pdu.source_addr_npi,
            dest_addr_ton=ton,
            dest_addr_npi=npi,
            service_type=pdu.service_type,
            protocol_id=getattr(pdu, "protocol_id", 0),
            priority_flag=getattr(pdu, "priority_flag", 0),
            tlvs=raw_tlvs,
            route=route.name,
            schedule_at=times[0],
            expires_at=times[1],
            accepted_at=now,
            msg_class=msg_class or self._class_of(pdu),
            campaign=campaign or self._tlv_text(pdu, self.config.policy.campaign_tlv),
        )


def _accepted(message: NewMessage) -> None:
    telemetry.message_event(
        "accepted", message_id=message.id, account=message.account, route=message.route
    )
