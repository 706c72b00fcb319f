"""A carrier SMSC we bind to as an ESME: the asyncio shell around `Session(Role.ESME)`.

Theory of operation
-------------------
An upstream is `binds` *links*; each is one transceiver connection, or (``bind:
transmitter+receiver``) a transmitter and a receiver connection. Every connection lives in its
own task: connect (TLS when asked), bind, read until the session closes, then reconnect after
an exponential backoff with jitter that starts over only once a bind succeeded - a refused bind
(ESME_RINVPASWD...) is logged with its status and retried at the backoff's pace, never
hammered. The Session probes an idle link with enquire_link and times requests out; its clock
is armed with `loop.call_at`.

Sending: `send` turns the stored message into the PDUs this upstream wants
(`outbound.submit_pdus`: long messages as UDH, SAR or message_payload, data_coding 0 per
upstream) and sends them in order. Each PDU waits in one queue, ordered by ticket, for
admission: the upstream not paused, a throughput token (`throughput` msg/s paces, never
drops), and the bound transmitter-capable connection with the fewest in flight whose window
has room.

ESME_RTHROTTLED / ESME_RMSGQFUL pause the whole upstream (0.2 s doubling to 10 s, jitter,
reset by a success); the throttled PDU keeps its ticket, so it goes again first when the pause
ends (order kept). A message throttled for longer than `max_throttle_time` is handed back as
a temporary failure. The other temporary statuses, a timeout and a lost link are temporary
failures for the dispatcher to retry; every other status is permanent. `send` never raises for
protocol or I/O reasons.

Timeouts and late responses: a submit_sm that timed out is remembered (bounded in count and
age, per connection, by the Session too). If its submit_sm_resp comes after all, the message was
accepted: the dispatcher hears it through `ReceiptSink.late_result`, and a `send` of the same
message meanwhile waits for that response (within the window) and returns it rather than send
the PDU again. A multipart message resumes after the last accepted part.

Receipts and MO arrive as deliver_sm / data_sm on receiver-capable connections (and on a
transmitter one, which some carriers do: they are answered and used). The esm_class message
type (SMPP v3.4 5.2.12) says what each is: a delivery receipt (0x04), an intermediate
notification (0x20: a state on the way, never an MO, never an end), an SME acknowledgement
(ignored) or an MO - unless the upstream says `receipts_without_flag`, and then a deliver_sm
whose text reads as a receipt is one. A receipt's receipted_message_id / message_state TLVs are
preferred, its Appendix B text parsed otherwise; a stat nobody can read is UNKNOWN (an end),
and the raw text goes with it to the store. `query` asks for a receipt that did not come
(query_sm), admitted like a submit_sm.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import random
import ssl
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from drivers.base import ReceiptPolicy, ReceiptSink, SendResult, UpstreamReceipt
from drivers.smpp.outbound import allocated_reference, inbound_pdu, submit_pdus
from gateway.config import UpstreamConfig
from gateway.server.limits import TokenBucket
from gateway.smpp.constants import CommandStatus, Tag
from gateway.smpp.errors import LocalSmppError, SmppError
from gateway.smpp.pdu import (
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    QuerySm,
    SubmitSm,
)
from gateway.smpp.receipt import (
    ReceiptParseError,
    ReceiptState,
    looks_like_receipt,
    parse_receipt,
)
from gateway.smpp.session import (
    Closed,
    LateResponse,
    Request,
    RequestTimedOut,
    Response,
    Role,
    Session,
)
from gateway.smpp.tlv import tlv_value
from gateway.sms.errors import SmsError
from gateway.sms.refs import ReferenceAllocator, ReferencesExhausted
from gateway.store.base import MessageRecord
from gateway.telemetry import stages
from gateway.telemetry.events import Events
from gateway.telemetry.metrics import Metrics

__all__ = ["SmppUpstream"]

log = structlog.get_logger("smsgw.upstream")

_S = CommandStatus
_TEMPORARY = {_S.ESME_RTHROTTLED, _S.ESME_RMSGQFUL, _S.ESME_RSYSERR}
_PAUSING = {_S.ESME_RTHROTTLED, _S.ESME_RMSGQFUL}
_LOST = _S.ESME_RSYSERR  # what a timeout or a lost link is recorded as (temporary)
# Bytes decoded per turn of the event loop: about 80 receipts, a few ms of decoding. A
# carrier that releases thousands of receipts in one write fills the reader's buffer, and
# `read` then returns at once: a larger read would decode hundreds of PDUs in one go.
_READ = 16384

Mode = Literal["trx", "tx", "rx"]
_BIND_PDU: dict[Mode, type[BindTransceiver] | type[BindTransmitter] | type[BindReceiver]] = {
    "trx": BindTransceiver,
    "tx": BindTransmitter,
    "rx": BindReceiver,
}


def _status_name(status: int) -> str:
    try:
        return CommandStatus(status).name
    except ValueError:
        return f"0x{status:08X}"


class _Failed(Exception):
    """A PDU got no usable answer: the send ends with this (temporary unless `permanent`)."""

    def __init__(self, error: int, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.error = error
        self.permanent = permanent


@dataclass(eq=False)
class _Attempt:
    """One message on its way: its PDUs and the ids of those accepted so far (in order)."""

    message_id: str
    pdus: list[SubmitSm]
    ids: list[str] = field(default_factory=list)


@dataclass(eq=False)
class _Late:
    """A submit_sm that timed out on `conn`: its response may still come (until `forget_at`).

    `outcome` resolves to the attempt with that part's id added when the peer accepted it
    after all, or None when it refused it, the link dropped, or the memory forgot it."""

    conn: int
    seq: int
    attempt: _Attempt
    forget_at: float
    outcome: asyncio.Future[_Attempt | None]
    waiters: int = 0  # sends waiting on `outcome` (then they, not the sink, get the result)


class _Connection:
    """One SMPP connection of a link: its session, socket and requests in flight."""

    def __init__(self, upstream: SmppUpstream, link: int, mode: Mode) -> None:
        self.upstream = upstream
        self.link = link
        self.mode: Mode = mode
        self.serial = 0  # which connection this is, so sequence numbers of old ones never meet
        self.session: Session | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.waiting: dict[int, asyncio.Future[Any]] = {}  # seq -> response PDU, None if none
        self.busy = 0  # PDUs admitted to this connection and not answered yet
        self.flush_due = False  # a write is scheduled for the end of this turn
        self.bound = False
        self.bound_once = False  # this connection attempt got as far as a bind
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return f"{self.link}/{self.mode}"

    def can_send(self) -> bool:
        return (
            self.bound
            and self.mode != "rx"
            and self.session is not None
            and self.busy < self.upstream.config.window
        )


class SmppUpstream:
    """One carrier upstream (see the module docstring).

    Args:
        name: the target name routes use.
        config: host, port, credentials, bind mode and count, window, throughput, TLS.
        backoff: first reconnect delay in seconds (doubles up to `max_backoff`, with jitter).
        response_timeout: how long a request waits for its response.
        enquire_link_interval: idle time before the session probes the link.
        max_throttle_time: how long one message may keep being throttled before it is handed
            back to the dispatcher as a temporary failure.
        pause_min, pause_max: the whole-upstream pause after a throttle, doubling between them.
        queue_timeout: how long a PDU waits for a usable connection before it is handed back.
        late_memory: timed-out submits remembered per connection for a late response.
        late_window: how long they are remembered (default ten response timeouts).
        unbind_timeout: how long `stop` waits for unbind_resp.
    """

    def __init__(
        self,
        name: str,
        config: UpstreamConfig,
        *,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        response_timeout: float = 10.0,
        enquire_link_interval: float = 30.0,
        max_throttle_time: float = 60.0,
        pause_min: float = 0.2,
        pause_max: float = 10.0,
        queue_timeout: float = 30.0,
        late_memory: int = 10_000,
        late_window: float | None = None,
        unbind_timeout: float = 2.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.config = config
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.response_timeout = response_timeout
        self.enquire_link_interval = enquire_link_interval
        self.max_throttle_time = max_throttle_time
        self.pause_min = pause_min
        self.pause_max = pause_max
        self.queue_timeout = queue_timeout
        self.late_memory = late_memory
        self.late_window = late_window
        self.unbind_timeout = unbind_timeout
        self.connect_timeout = connect_timeout
        modes: tuple[Mode, ...] = ("trx",) if config.bind == "transceiver" else ("tx", "rx")
        self.connections = [
            _Connection(self, link, mode) for link in range(config.binds) for mode in modes
        ]
        self._sink: ReceiptSink | None = None
        self.metrics: Metrics | None = None
        self.events = Events.off()  # the gateway's MQTT events (set by the app)
        self._stopping = False
        self._bound = asyncio.Event()
        self._log = log.bind(upstream=name)
        # Admission: (ticket, future) in ticket order; a throttled PDU keeps its ticket.
        self._queue: list[tuple[int, asyncio.Future[_Connection]]] = []
        self._tickets = itertools.count()
        self._pump_timer: asyncio.TimerHandle | None = None
        self._paused_until = 0.0
        self._pause = 0.0  # the last pause's length; 0 after a success
        self._bucket: TokenBucket | None = None
        self._late: OrderedDict[tuple[int, int], _Late] = OrderedDict()  # (conn serial, seq)
        self._late_by_message: dict[str, _Late] = {}
        self._serials = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._refs = ReferenceAllocator(
            16 if config.long_messages == "sar" else 8, seed=random.getrandbits(16)
        )
        self.receipt_policy = ReceiptPolicy(
            id_format=config.id_format,
            multipart_receipts=config.multipart_receipts,
            receipt_timeout=config.receipt_timeout,
        )
        self.can_query = config.query_sm  # `Queryable.query` used only when the carrier has it
        self.last_error: str | None = None  # the status page's: unreachable, a refused submit

    # -- the Driver protocol ----------------------------------------------------------------

    def usable(self) -> bool:
        if self._paused_until and self._paused_until > asyncio.get_running_loop().time():
            return False
        for conn in self.connections:  # noqa: SIM110 - asked per message: no generator
            if conn.can_send():
                return True
        return False

    async def start(self, sink: ReceiptSink) -> None:
        self._sink = sink
        self._stopping = False
        loop = asyncio.get_running_loop()
        if self.config.throughput is not None:
            self._bucket = TokenBucket(self.config.throughput, now=loop.time())
        for conn in self.connections:
            conn.task = loop.create_task(self._keep_connected(conn))

    async def stop(self) -> None:
        """Unbind every bound connection (waiting briefly for unbind_resp), then close."""
        self._stopping = True
        loop = asyncio.get_running_loop()
        unbinding = []
        for conn in self.connections:
            session = conn.session
            if conn.task is None:
                continue
            if conn.bound and session is not None and session.is_open():
                with contextlib.suppress(LocalSmppError, ConnectionError):
                    session.unbind(loop.time())
                    self._flush(conn)
                    self._arm(conn)
                    unbinding.append(conn.task)
                    continue
            conn.task.cancel()  # connecting or waiting to reconnect: nothing to say
        if unbinding:
            await asyncio.wait(unbinding, timeout=self.unbind_timeout)
        tasks = [conn.task for conn in self.connections if conn.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for _, waiter in self._queue:
            if not waiter.done():
                waiter.cancel()
        self._queue.clear()
        if self._pump_timer is not None:
            self._pump_timer.cancel()

    async def wait_bound(self, timeout: float) -> None:
        """Until a connection that can send is bound (and, with TX+RX, a receiver too)."""
        await asyncio.wait_for(self._bound.wait(), timeout)

    # -- sending ----------------------------------------------------------------------------

    async def send(self, record: MessageRecord) -> SendResult:
        message = record.message
        attempt = await self._resume(message.id)
        try:
            if attempt is None:
                started = stages.begin()
                attempt = _Attempt(message.id, self._submit_pdus(record))
                stages.end("dispatch.encode", started)
            elif len(attempt.ids) == len(attempt.pdus):
                return self._accepted(attempt)
            for index in range(len(attempt.ids), len(attempt.pdus)):
                attempt.ids.append(await self._send_part(attempt, index))
        except _Failed as failed:
            self.last_error = str(failed) or _status_name(failed.error)
            if attempt is not None and attempt.ids:
                self._log.warning(
                    "message partly sent",
                    message_id=message.id,
                    parts_accepted=len(attempt.ids),
                    parts=len(attempt.pdus),
                    error=_status_name(failed.error),
                )
            return SendResult(False, error=failed.error, permanent=failed.permanent)
        finally:
            if attempt is not None:
                ref = allocated_reference(attempt.pdus)
                if ref is not None:  # sent or not, this message no longer holds it
                    self._refs.release(attempt.pdus[0].destination_addr, ref)
        return self._accepted(attempt)

    async def query(self, upstream_id: str, record: MessageRecord) -> UpstreamReceipt | None:
        """Ask the carrier where a message stands (query_sm, SMPP v3.4 4.8): its
        message_state as a receipt (the raw text says it came from query_sm), or None when
        it did not answer, refused (ESME_RQUERYFAIL, an unknown id) or no link was up.
        Admitted like a submit_sm: window and throughput apply."""
        m = record.message
        pdu = QuerySm(
            message_id=upstream_id,
            source_addr_ton=m.source_addr_ton,
            source_addr_npi=m.source_addr_npi,
            source_addr=m.source_addr,  # "used for verification" (4.8.1): as it was sent
        )
        loop = asyncio.get_running_loop()
        try:
            conn = await self._admit(next(self._tickets), loop.time() + self.queue_timeout)
        except _Failed:
            return None
        try:
            resp, _seq = await self._roundtrip(conn, pdu)
        finally:
            conn.busy -= 1
            self._pump()
        if resp is None or resp.command_status != 0:
            status = None if resp is None else _status_name(resp.command_status)
            self._log.info("query_sm not answered", id=upstream_id, status=status)
            return None
        raw = (
            f"query_sm id:{upstream_id} message_state:{resp.message_state} "
            f"error_code:{resp.error_code} final_date:{resp.final_date}"
        ).encode()
        return UpstreamReceipt(
            self.name, upstream_id, resp.message_state, error=resp.error_code, raw=raw
        )

    @staticmethod
    def _accepted(attempt: _Attempt) -> SendResult:
        return SendResult(True, upstream_id=attempt.ids[0], upstream_ids=tuple(attempt.ids))

    def _submit_pdus(self, record: MessageRecord) -> list[SubmitSm]:
        try:
            pdus = submit_pdus(record.message, self.config, self._refs)
        except SmppError as exc:
            raise _Failed(exc.status, str(exc), permanent=True) from exc
        except ReferencesExhausted as exc:  # every reference to this destination in flight
            raise _Failed(_S.ESME_RMSGQFUL, str(exc)) from exc
        # We always want the receipt: it is how the message's state is kept (submit_pdus
        # already asks for it; this only guards that promise).
        return [
            pdu
            if pdu.registered_delivery & 3 == 1
            else pdu._replace(registered_delivery=(pdu.registered_delivery & ~3) | 1)
            for pdu in pdus
        ]

    async def _resume(self, message_id: str) -> _Attempt | None:
        """An earlier attempt of this message that timed out may still be answered: wait for
        that answer (within its window) instead of sending the same PDU again."""
        late = self._late_by_message.get(message_id)
        if late is None:
            return None
        loop = asyncio.get_running_loop()
        remaining = late.forget_at - loop.time()
        if not late.outcome.done() and remaining > 0:
            self._log.info("waiting for a late response before resending", message_id=message_id)
            late.waiters += 1
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(late.outcome), remaining)
            finally:
                late.waiters -= 1
        self._forget_late(late)
        return late.outcome.result() if late.outcome.done() else None

    async def _send_part(self, attempt: _Attempt, index: int) -> str:
        """Send one PDU until it is accepted (its upstream id) or fails (`_Failed`)."""
        loop = asyncio.get_running_loop()
        ticket = next(self._tickets)
        throttled_since: float | None = None
        status = 0
        while True:
            give_up = loop.time() + self.queue_timeout
            if throttled_since is not None:
                give_up = throttled_since + self.max_throttle_time
            try:
                conn = await self._admit(ticket, give_up)
            except _Failed:
                if throttled_since is None:
                    raise
                raise _Failed(status, "throttled too long") from None
            try:
                resp = await self._exchange(conn, attempt, index)
                status = resp.command_status
                if status in _PAUSING:  # before the slot is freed: nothing overtakes this PDU
                    self._pause_for(loop.time(), status)
                    if self.metrics is not None:
                        self.metrics.upstream_throttled.labels(self.name).inc()
            finally:
                conn.busy -= 1
                self._pump()
            if status == 0:
                self._pause = 0.0
                return str(resp.message_id)
            if status not in _PAUSING:
                raise _Failed(status, _status_name(status), permanent=status not in _TEMPORARY)
            now = loop.time()
            throttled_since = now if throttled_since is None else throttled_since
            if now - throttled_since >= self.max_throttle_time:
                raise _Failed(status, "throttled too long")

    async def _admit(self, ticket: int, give_up: float) -> _Connection:
        """Wait for this ticket's turn and a connection to send on (one slot reserved)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[_Connection] = loop.create_future()
        heapq.heappush(self._queue, (ticket, waiter))
        self._pump()
        if waiter.done() and not waiter.cancelled():
            return waiter.result()  # admitted at once: no timeout to arm
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), max(0.0, give_up - loop.time()))
        except TimeoutError:
            if waiter.done():  # admitted just as the time ran out: use it
                return waiter.result()
            waiter.cancel()  # the pump skips it
            raise _Failed(_LOST, "no usable connection in time") from None
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                waiter.result().busy -= 1  # admitted, but our caller is gone: free the slot
                self._pump()
            waiter.cancel()
            raise

    def _pump(self) -> None:
        """Admit waiting PDUs in ticket order while the upstream can take them."""
        loop = asyncio.get_running_loop()
        queue = self._queue
        while queue:
            _, waiter = queue[0]
            if waiter.done():
                heapq.heappop(queue)
                continue
            now = loop.time()
            if now < self._paused_until:
                self._pump_at(self._paused_until)
                return
            candidates = [conn for conn in self.connections if conn.can_send()]
            if not candidates:
                return  # pumped again when a connection binds or a response frees a slot
            bucket = self._bucket
            if bucket is not None and not bucket.take(now):
                self._pump_at(now + 1.0 / bucket.rate)
                return
            heapq.heappop(queue)
            conn = min(candidates, key=lambda c: c.busy)
            conn.busy += 1
            waiter.set_result(conn)

    def _pump_at(self, when: float) -> None:
        timer = self._pump_timer
        if timer is not None and not timer.cancelled() and timer.when() <= when:
            return
        if timer is not None:
            timer.cancel()
        self._pump_timer = asyncio.get_running_loop().call_at(when, self._pump_fired)

    def _pump_fired(self) -> None:
        self._pump_timer = None
        self._pump()

    def _pause_for(self, now: float, status: int) -> None:
        """Pause the whole upstream; a throttle during a pause does not lengthen it."""
        if now < self._paused_until:
            return
        self._pause = min(self.pause_max, self._pause * 2 if self._pause else self.pause_min)
        self._paused_until = now + self._pause * random.uniform(0.75, 1.25)
        self._log.info(
            "upstream throttled: pausing", status=_status_name(status), pause=round(self._pause, 3)
        )

    async def _exchange(self, conn: _Connection, attempt: _Attempt, index: int) -> Any:
        """Send PDU `index` of `attempt` on `conn`; its response, or `_Failed`."""
        session = conn.session
        resp, seq = await self._roundtrip(conn, attempt.pdus[index])
        if not seq:
            raise _Failed(_LOST, "link not bound" if session is not None else "link lost")
        if resp is None:
            if conn.session is session and session is not None and session.is_open():
                self._remember_late(conn, seq, attempt)
                raise _Failed(_LOST, "response timeout")
            raise _Failed(_LOST, "link lost")
        return resp

    async def _roundtrip(self, conn: _Connection, request: Any) -> tuple[Any, int]:
        """Send `request` on `conn`: (its response or None - timed out, link lost -, the
        sequence number it went with; 0 when it could not be sent)."""
        session, writer = conn.session, conn.writer
        if session is None or writer is None:
            return None, 0
        loop = asyncio.get_running_loop()
        started = stages.begin()
        try:
            pdu = session.send(request, loop.time())
        except LocalSmppError:
            return None, 0
        waiter: asyncio.Future[Any] = loop.create_future()
        seq = pdu.sequence_number
        conn.waiting[seq] = waiter
        try:
            self._flush_soon(conn)
            self._arm(conn)
            stages.end("dispatch.send", started)
            # No timer of our own: the session times the request out (RequestTimedOut) and a
            # lost link settles every waiter (`_lost`), so the wait always ends.
            resp = await waiter
        except ConnectionError:
            resp = None
        finally:
            conn.waiting.pop(seq, None)
        return resp, seq

    # -- late responses ---------------------------------------------------------------------

    def _remember_late(self, conn: _Connection, seq: int, attempt: _Attempt) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        window = self.late_window if self.late_window is not None else 10 * self.response_timeout
        late = _Late(conn.serial, seq, attempt, now + window, loop.create_future())
        self._late[(conn.serial, seq)] = late
        previous = self._late_by_message.get(attempt.message_id)
        if previous is not None:
            self._forget_late(previous)
        self._late_by_message[attempt.message_id] = late
        for old in list(itertools.islice(self._late.values(), 64)):
            if old.forget_at >= now and len(self._late) <= self.late_memory:
                break
            self._forget_late(old)

    def _forget_late(self, late: _Late) -> None:
        self._late.pop((late.conn, late.seq), None)
        if self._late_by_message.get(late.attempt.message_id) is late:
            del self._late_by_message[late.attempt.message_id]
        if not late.outcome.done():
            late.outcome.set_result(None)

    async def _late_response(self, conn: _Connection, pdu: Any) -> None:
        late = self._late.get((conn.serial, pdu.sequence_number))
        if late is None or late.outcome.done():
            return
        attempt = late.attempt
        if pdu.command_status != 0:
            self._log.info(
                "late refusal",
                message_id=attempt.message_id,
                status=_status_name(pdu.command_status),
            )
            self._forget_late(late)
            return
        done = _Attempt(attempt.message_id, attempt.pdus, [*attempt.ids, str(pdu.message_id)])
        self._log.warning(
            "late submit_sm_resp: accepted after our timeout",
            message_id=attempt.message_id,
            upstream_id=str(pdu.message_id),
        )
        # Kept until forgotten by age, so a resend in the meantime resumes from it instead.
        late.outcome.set_result(done)
        sink = self._sink
        if len(done.ids) == len(done.pdus) and sink is not None and not late.waiters:
            await sink.late_result(self.name, attempt.message_id, self._accepted(done))

    # -- connections ------------------------------------------------------------------------

    async def _keep_connected(self, conn: _Connection) -> None:
        delay = self.backoff
        while not self._stopping:
            conn.bound_once = False
            try:
                await self._connection(conn)
            except (OSError, TimeoutError) as exc:
                if self._stopping:
                    return
                self.last_error = f"{conn.name}: {exc or repr(exc)}"
                self._log.warning(
                    "upstream unreachable", connection=conn.name, error=str(exc) or repr(exc)
                )
            if self._stopping:
                return
            if conn.bound_once:
                delay = self.backoff  # it was up: start over; a refused bind keeps doubling
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, self.max_backoff)

    def _ssl_context(self) -> ssl.SSLContext | None:
        cfg = self.config
        if not cfg.tls:
            return None
        context = ssl.create_default_context(cafile=str(cfg.tls_ca) if cfg.tls_ca else None)
        if not cfg.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def _connection(self, conn: _Connection) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        context = self._ssl_context()
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                cfg.host, cfg.port, ssl=context, server_hostname=cfg.host if context else None
            ),
            self.connect_timeout,
        )
        session = Session(
            Role.ESME,
            now=loop.time(),
            response_timeout=self.response_timeout,
            enquire_link_interval=self.enquire_link_interval,
            inactivity_timeout=max(4 * self.enquire_link_interval, 2 * self.response_timeout),
            late_response_memory=self.late_memory,
            late_response_window=self.late_window,
            accept_deliver_on_tx=True,
        )
        conn.serial = next(self._serials)
        conn.session, conn.writer = session, writer
        try:
            bind = _BIND_PDU[conn.mode](
                system_id=cfg.system_id, password=cfg.password, system_type=cfg.system_type
            )
            session.send(bind, loop.time())
            self._flush(conn)
            self._arm(conn)
            while session.is_open():
                data = await reader.read(_READ)
                started = stages.begin()
                session.receive_data(data, loop.time())
                await self._events(conn)  # awaits only for a late response
                self._flush(conn)
                self._arm(conn)
                stages.end("carrier.read", started)
                if session.is_open():
                    await writer.drain()
                    # `read` does not yield while its buffer holds data: let the receipts
                    # just read start, and timers and other links run, before the next slice.
                    await asyncio.sleep(0)
        finally:
            self._lost(conn, session)
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    def _lost(self, conn: _Connection, session: Session) -> None:
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None
        if conn.session is session:
            conn.session = conn.writer = None
        if conn.bound:  # a link that never bound is no news (a failed reconnect)
            self.events.upstream_link(self.name, conn.name, "down", self.last_error)
        conn.bound = False
        for waiter in conn.waiting.values():
            if not waiter.done():
                waiter.set_result(None)
        for key, late in list(self._late.items()):
            if key[0] == conn.serial and not late.outcome.done():
                self._forget_late(late)  # its response can no longer come
        self._update_bound()

    def _flush(self, conn: _Connection) -> None:
        session, writer = conn.session, conn.writer
        if session is None or writer is None:
            return
        out = session.data_to_send()
        # A transport the peer has reset is closed before our reader loop hears of it (a turn
        # or two later, when `_lost` runs); writing to it raises under uvloop. What is dropped
        # here was never sent: `_lost` settles its waiters as a lost link.
        if out and not writer.is_closing():
            writer.write(out)  # callers drain; the reader loop drains after each read

    def _flush_soon(self, conn: _Connection) -> None:
        """Write at the end of this turn of the loop: the PDUs and answers that one turn
        produces (a group commit resumes many sends at once) go out in one write."""
        if not conn.flush_due:
            conn.flush_due = True
            asyncio.get_running_loop().call_soon(self._flush_due, conn)

    def _flush_due(self, conn: _Connection) -> None:
        started = stages.begin()
        conn.flush_due = False
        self._flush(conn)
        stages.end("carrier.write", started)

    def _arm(self, conn: _Connection) -> None:
        """Wake the session when it next has timer work (timeouts, enquire_link)."""
        session = conn.session
        deadline = None if session is None else session.next_deadline()
        if conn.timer is not None:
            if deadline is not None and conn.timer.when() == deadline:
                return
            conn.timer.cancel()
            conn.timer = None
        if deadline is not None:
            conn.timer = asyncio.get_running_loop().call_at(deadline, self._on_timer, conn)

    def _on_timer(self, conn: _Connection) -> None:
        conn.timer = None
        session = conn.session
        if session is None:
            return
        session.handle_timer(asyncio.get_running_loop().time())
        task = asyncio.get_running_loop().create_task(self._after_timer(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _after_timer(self, conn: _Connection) -> None:
        await self._events(conn)
        self._flush(conn)
        self._arm(conn)

    async def _events(self, conn: _Connection) -> None:
        session = conn.session
        if session is None:
            return
        while (event := session.next_event()) is not None:
            if isinstance(event, Response):
                self._response(conn, event)
            elif isinstance(event, RequestTimedOut):
                if isinstance(event.request, BindTransceiver | BindTransmitter | BindReceiver):
                    self._log.warning("bind not answered", connection=conn.name)
                    self._close(conn)
                waiter = conn.waiting.get(event.request.sequence_number)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            elif isinstance(event, LateResponse):
                await self._late_response(conn, event.pdu)
            elif isinstance(event, Request):
                await self._incoming(conn, session, event.pdu)
            elif isinstance(event, Closed):
                self._log.info("upstream link closed", connection=conn.name, reason=event.reason)
                self._close(conn)

    def _response(self, conn: _Connection, event: Response) -> None:
        pdu = event.pdu
        if isinstance(event.request, BindTransceiver | BindTransmitter | BindReceiver):
            if pdu.command_status != 0:
                self._log.error(
                    "upstream refused the bind",
                    connection=conn.name,
                    status=_status_name(pdu.command_status),
                    system_id=self.config.system_id,
                )
                self._close(conn)
                return
            conn.bound = conn.bound_once = True
            self._log.info("upstream bound", connection=conn.name, peer=pdu.system_id)
            self.events.upstream_link(self.name, conn.name, "bound", None)
            self._update_bound()
            self._pump()
            return
        waiter = conn.waiting.get(pdu.sequence_number)
        if waiter is not None and not waiter.done():
            waiter.set_result(pdu)

    def _close(self, conn: _Connection) -> None:
        writer = conn.writer
        if writer is not None:
            self._flush(conn)
            writer.close()  # the reader loop then ends and `_lost` cleans up

    def link_rows(self) -> list[dict[str, Any]]:
        """Each connection for the status page: bound, binding (connected, bind not answered)
        or down, and its PDUs in flight against the window."""
        return [
            {
                "link": c.name,
                "state": "bound" if c.bound else "binding" if c.session is not None else "down",
                "in_flight": c.busy,
                "window": self.config.window,
            }
            for c in self.connections
        ]

    def _update_bound(self) -> None:
        can_send = any(c.bound and c.mode != "rx" for c in self.connections)
        can_receive = any(c.bound and c.mode != "tx" for c in self.connections)
        if can_send and can_receive:
            self._bound.set()
        else:
            self._bound.clear()

    async def _incoming(self, conn: _Connection, session: Session, pdu: Any) -> None:
        if isinstance(pdu, DeliverSm | DataSm):
            # Each in its own task, so the read loop goes on (submit_sm_resp, more receipts)
            # while this one is made durable; its deliver_sm_resp goes out only after that.
            # The carrier's window bounds how many are open at once.
            task = asyncio.get_running_loop().create_task(self._take(conn, session, pdu))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _take(self, conn: _Connection, session: Session, pdu: DeliverSm | DataSm) -> None:
        """Hand a receipt or MO to the sink, then answer it: OK once it is durable, a
        temporary error (the carrier delivers it again later) when it could not be kept, a
        permanent one for an MO that can never be handed on."""
        if conn.mode == "tx":
            self._log.info("deliver_sm on a transmitter bind", connection=conn.name)
        status = CommandStatus.ESME_ROK
        sink = self._sink
        try:
            started = stages.begin()
            kind = _kind(pdu, receipts_without_flag=self.config.receipts_without_flag)
            if sink is None:
                pass
            elif kind in ("receipt", "intermediate"):
                receipt = _receipt_of(self.name, pdu, intermediate=kind == "intermediate")
                if not receipt.upstream_id:  # nothing to match it with, but never an MO
                    self._log.warning("receipt without an id: kept among the unknown ones")
                stages.end("receipt.parse", started)
                await sink.receipt(receipt)
            elif kind == "mo":
                try:
                    normalised = inbound_pdu(pdu, self.config)
                except (SmppError, SmsError) as exc:
                    # Refused for good: OK would lose it silently, a temporary error would
                    # bring it back for ever.
                    self._log.warning("unreadable MO refused", error=str(exc))
                    status = (
                        exc.status if isinstance(exc, SmppError) else CommandStatus.ESME_RX_P_APPN
                    )
                else:
                    answer = await sink.inbound(normalised)
                    if answer:  # a permanent refusal, logged by the sink
                        status = CommandStatus(answer)
            else:  # an SME acknowledgement (esm_class 0x08 / 0x10): we never ask for them
                self._log.info("SME acknowledgement ignored", esm_class=pdu.esm_class)
        except Exception:
            self._log.exception("could not keep a deliver_sm; the carrier will resend it")
            status = CommandStatus.ESME_RX_T_APPN
        started = stages.begin()
        resp = DeliverSmResp if isinstance(pdu, DeliverSm) else DataSmResp
        if session.is_open() and conn.session is session:
            session.send(
                resp(sequence_number=pdu.sequence_number, command_status=status),
                asyncio.get_running_loop().time(),
            )
            self._flush_soon(conn)
        stages.end("receipt.answer", started)


# esm_class message type (SMPP v3.4 5.2.12, bits 5-2) of a deliver_sm / data_sm from an SMSC.
_MESSAGE_TYPE = 0x3C
_RECEIPT = 0x04  # SMSC delivery receipt
_INTERMEDIATE = 0x20  # intermediate delivery notification


def _text(pdu: Any) -> bytes:
    """The PDU's text: short_message, or message_payload when that is empty."""
    text = getattr(pdu, "short_message", b"") or b""
    if not text and pdu.tlvs:
        payload = tlv_value(pdu.tlvs, Tag.message_payload)
        if isinstance(payload, bytes | bytearray | memoryview):
            text = bytes(payload)
    return bytes(text)


def _kind(pdu: Any, *, receipts_without_flag: bool) -> str:
    """What a deliver_sm / data_sm from the carrier is: "receipt", "intermediate" (a
    notification of a state on the way: never an MO, never final), "mo", or "ack" (an SME
    acknowledgement). A carrier that does not set the receipt bit has its receipts
    recognised by their text when its upstream says `receipts_without_flag`."""
    message_type = pdu.esm_class & _MESSAGE_TYPE
    if message_type & _RECEIPT:
        return "receipt"
    if message_type & _INTERMEDIATE:
        return "intermediate"
    if message_type:
        return "ack"
    if receipts_without_flag and (
        (pdu.tlvs and tlv_value(pdu.tlvs, Tag.receipted_message_id) is not None)
        or looks_like_receipt(_text(pdu))
    ):
        return "receipt"
    return "mo"


_DELIVERED = 2  # message_state DELIVERED (SMPP v3.4 5.2.28)


def _receipt_of(upstream: str, pdu: Any, *, intermediate: bool = False) -> UpstreamReceipt:
    """The receipt a deliver_sm/data_sm carries: TLVs first, the Appendix B text otherwise.
    A stat we cannot read (a vendor's word, junk) is UNKNOWN - still an end - and the raw
    text is kept with it. With no id at all its upstream_id is empty: the dispatcher keeps it
    (raw) among the unknown receipts and counts it, as any receipt no message matches."""
    tlvs = pdu.tlvs
    upstream_id = tlv_value(tlvs, Tag.receipted_message_id) if tlvs else None
    state = tlv_value(tlvs, Tag.message_state) if tlvs else None
    raw = _text(pdu)
    error = 0
    # network_error_code (SMPP v3.4 5.3.2.31): network type, then the error in two octets.
    network = tlv_value(tlvs, Tag.network_error_code) if tlvs else None
    if isinstance(network, bytes) and len(network) == 3:
        error = int.from_bytes(network[1:], "big")
    parsed = None
    # The text too when the TLVs lack something - or for a failure's err: code, which many
    # carriers write only there (dead numbers count by it); a delivery needs no error.
    failed = isinstance(state, int) and state != _DELIVERED and not error
    if not isinstance(upstream_id, str) or not isinstance(state, int) or failed:
        with contextlib.suppress(ReceiptParseError):
            parsed = parse_receipt(raw, lenient=True)
    if parsed is not None:
        error = error or parsed.error_code or 0
        if not isinstance(upstream_id, str) or not upstream_id.strip("\x00 "):
            upstream_id = parsed.message_id
        if not isinstance(state, int):
            state = parsed.message_state
    if not isinstance(upstream_id, str) or not upstream_id.strip("\x00 "):
        upstream_id = ""
    if not isinstance(state, int):
        state = ReceiptState.UNKNOWN.message_state
    return UpstreamReceipt(
        upstream, upstream_id, state, error=error, raw=raw, intermediate=intermediate
    )
