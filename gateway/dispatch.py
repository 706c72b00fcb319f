"""From the store to the drivers, and receipts from the drivers back to the applications.

The dispatcher claims due messages from the store and sends each through a usable target of its
route, in the order the route's strategy gives (`order_targets`). Sends run concurrently (up
to `max_inflight`), so one slow upstream round trip never serialises the rest; a driver's own
window and throughput limit pace it further.

A send's outcome is recorded: sent (with every part's upstream id, indexed under each canonical
spelling), retried later with exponential backoff and jitter, or failed - permanently at once,
temporarily once `max_attempts` sends were tried or the message is `max_age` old. A message no
target can take now waits without spending an attempt; one whose validity period passes ends
EXPIRED. Every end the application asked to hear about becomes a receipt.

Receipts come back through `receipt`, from any driver: matched to our message and part through
the upstream id (held for a while when one arrives before its submit_sm_resp was recorded), kept
in the store, the message's state updated - from all its parts' receipts when the upstream
carried it as several - and, when the application asked, a deliver_sm receipt in the Appendix B
format with our id and the receipted_message_id / message_state / network_error_code TLVs is
queued durably for the account; the server pushes it to a bound RX/TRX session. Intermediate
notifications (registered_delivery bit 4) go out when an upstream takes the message and when it
reports a non-final state.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from drivers.base import Driver, SendResult, UpstreamReceipt
from gateway.config import DispatchConfig
from gateway.inbound import Inbound
from gateway.routing import NumberPlan, RouteTable
from gateway.routing.mo import MoRouter
from gateway.routing.table import order_targets
from gateway.smpp.codec import encode_pdu
from gateway.smpp.constants import CommandStatus, EsmClass, Tag
from gateway.smpp.pdu import DeliverSm
from gateway.smpp.receipt import ReceiptState, canonical_ids
from gateway.smpp.tlv import Tlv
from gateway.sms.coding import decode_text, encoding_of_data_coding
from gateway.store.base import MessageRecord, MessageState, NewDelivery, Store

__all__ = ["Dispatcher"]

log = structlog.get_logger("smsgw.dispatch")

# message_state TLV values (SMPP v3.4 5.2.28) that end a message, and what they end it as.
_STATES = {
    2: MessageState.DELIVERED,
    3: MessageState.EXPIRED,
    4: MessageState.CANCELLED,
    5: MessageState.UNDELIVERABLE,
    8: MessageState.REJECTED,
}
_RECEIPT_STAT = {
    MessageState.DELIVERED: ReceiptState.DELIVRD,
    MessageState.EXPIRED: ReceiptState.EXPIRED,
    MessageState.CANCELLED: ReceiptState.DELETED,
    MessageState.UNDELIVERABLE: ReceiptState.UNDELIV,
    MessageState.REJECTED: ReceiptState.REJECTD,
    MessageState.FAILED: ReceiptState.UNDELIV,
    MessageState.SENT: ReceiptState.ENROUTE,
}
_NO_TARGET_WAIT = 0.2  # seconds to wait for a busy target's window before requeueing
_NO_TARGET_RETRY = 1.0  # seconds before a message no target could take is looked at again
_EARLY_MAX = 100_000  # receipts held for ids not yet recorded


class Dispatcher:
    """Moves messages out and receipts back.

    Args:
        notify: called with an account name when a deliver_sm was queued for it.
        settings: attempts, age, backoff, in-flight cap, delivery TTL, purge interval.
        retention: seconds final messages are kept (the store's `retention_days`).
        early_wait: how long a receipt whose id is not known yet waits for the sends in
            flight to be recorded (carriers send receipts before submit_sm_resp).
    """

    def __init__(
        self,
        store: Store,
        routes: RouteTable,
        drivers: Mapping[str, Driver],
        *,
        notify: Callable[[str], None] = lambda _account: None,
        clock: Callable[[], float] = time.time,
        settings: DispatchConfig | None = None,
        retention: float = 30 * 86_400.0,
        poll_interval: float = 0.5,
        mo_router: MoRouter | None = None,
        plan: NumberPlan | None = None,
        mo_timeout: float = 300.0,
        early_wait: float = 10.0,
    ) -> None:
        self.store = store
        self.routes = {route.name: route for route in routes.routes}
        self.drivers = dict(drivers)
        self.notify = notify
        self.clock = clock
        self.settings = settings or DispatchConfig()
        self.retention = retention
        self.poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._capacity = asyncio.Event()  # a send finished: a window may have room again
        self._tasks: list[asyncio.Task[None]] = []
        self._sending: set[asyncio.Task[None]] = set()
        self._early: dict[tuple[str, str], UpstreamReceipt] = {}
        self._tickets = _Tickets()  # sends in the order they started
        self.early_wait = early_wait
        self._pick = 0
        self._inbound = Inbound(
            store,
            router=mo_router or MoRouter(()),
            plan=plan or NumberPlan(),
            notify=notify,
            clock=clock,
            delivery_ttl=self.settings.delivery_ttl,
            mo_timeout=mo_timeout,
            seed=random.getrandbits(16),
        )

    async def start(self) -> None:
        for driver in self.drivers.values():
            await driver.start(self)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run()), loop.create_task(self._housekeeping())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._sending:  # sends in flight finish or time out in their drivers
            await asyncio.wait(set(self._sending), timeout=15)
        for driver in self.drivers.values():
            await driver.stop()

    def wake(self) -> None:
        """A message was accepted: look for due work now rather than at the next poll."""
        self._wake.set()

    # -- sending ------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            room = self.settings.max_inflight - len(self._sending)
            if room <= 0:
                await asyncio.wait(set(self._sending), return_when=asyncio.FIRST_COMPLETED)
                continue
            records = await self.store.claim_due(self.clock(), min(room, 512))
            for record in records:
                try:
                    await self._start(record)
                except Exception:
                    log.exception("dispatch failed", message_id=record.message.id)
                    await self.store.set_state(
                        record.message.id,
                        MessageState.ACCEPTED,
                        self.clock(),
                        retry_at=self.clock() + _NO_TARGET_RETRY,
                        tried=False,
                    )
            if not records:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    def _usable(self, name: str) -> bool:
        driver = self.drivers.get(name)
        return driver is not None and driver.usable()

    def _target(self, record: MessageRecord) -> Driver | None:
        route = self.routes.get(record.message.route)
        if route is None:
            return None
        if len(route.targets) == 1:  # the common case: no strategy to apply
            driver = self.drivers.get(route.targets[0].name)
            return driver if driver is not None and driver.usable() else None
        self._pick += 1
        targets = order_targets(route, self._usable, self._pick)
        return self.drivers[targets[0].name] if targets else None

    async def _start(self, record: MessageRecord) -> None:
        """Hand one claimed message to a driver (or settle it without one)."""
        message = record.message
        now = self.clock()
        if message.expires_at is not None and now >= message.expires_at:
            await self._end(record, MessageState.EXPIRED, 0, now)
            return
        driver = self._target(record)
        if driver is None and message.route in self.routes:
            # Windows full: wait a moment for a send to finish rather than requeue at once.
            deadline = asyncio.get_running_loop().time() + _NO_TARGET_WAIT
            while driver is None and asyncio.get_running_loop().time() < deadline:
                self._capacity.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._capacity.wait(), _NO_TARGET_WAIT)
                driver = self._target(record)
        if driver is None:
            retry_at = now + _NO_TARGET_RETRY
            if message.expires_at is not None:
                retry_at = min(retry_at, message.expires_at)
            await self.store.set_state(
                message.id, MessageState.ACCEPTED, now, retry_at=retry_at, tried=False
            )
            return
        task = asyncio.get_running_loop().create_task(self._send(record, driver))
        self._sending.add(task)
        task.add_done_callback(self._sent_done)

    def _sent_done(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._capacity.set()

    async def _send(self, record: MessageRecord, driver: Driver) -> None:
        ticket = self._tickets.open()
        try:
            await self._send_once(record, driver)
        finally:
            self._tickets.close(ticket)

    async def _send_once(self, record: MessageRecord, driver: Driver) -> None:
        message = record.message
        try:
            result: SendResult = await driver.send(record)
        except Exception as exc:  # a driver bug must not lose the message
            log.exception("driver failed", driver=driver.name, message_id=message.id)
            result = SendResult(False, error=0x08, permanent=False)
            del exc
        now = self.clock()
        if result.ok:
            await self._sent(record, driver.name, result, now)
            return
        settings = self.settings
        if result.permanent:
            await self._end(record, MessageState.FAILED, result.error, now)
            return
        expired = message.expires_at is not None and now >= message.expires_at
        if expired:
            await self._end(record, MessageState.EXPIRED, result.error, now)
            return
        if record.attempts >= settings.max_attempts or now - message.accepted_at >= (
            settings.max_age
        ):
            log.warning(
                "giving up",
                message_id=message.id,
                attempts=record.attempts,
                error=result.error,
            )
            await self._end(record, MessageState.FAILED, result.error, now)
            return
        delay = min(
            settings.retry_backoff * 2 ** max(0, record.attempts - 1), settings.max_retry_backoff
        )
        retry_at = now + delay * random.uniform(0.8, 1.2)
        if message.expires_at is not None:
            retry_at = min(retry_at, message.expires_at)
        await self.store.set_state(
            message.id, MessageState.ACCEPTED, now, error=result.error, retry_at=retry_at
        )

    async def _sent(
        self, record: MessageRecord, upstream: str, result: SendResult, now: float
    ) -> None:
        message = record.message
        part_keys = tuple(canonical_ids(upstream_id) for upstream_id in result.part_ids)
        await self.store.record_sent(message.id, upstream, part_keys, now)
        if message.registered_delivery & 0x10:
            await self._notify_app(record, MessageState.SENT, 0, now, intermediate=True)
        for keys in part_keys:
            for key in keys:
                early = self._early.pop((upstream, key), None)
                if early is not None:
                    for other in canonical_ids(early.upstream_id):
                        self._early.pop((upstream, other), None)
                    await self.receipt(early)
                    break

    async def _end(
        self, record: MessageRecord, state: MessageState, error: int, now: float
    ) -> None:
        """Settle a message we could not (or may no longer) send, and tell its application."""
        delivery = self._receipt_delivery(record, state, error, now)
        await self.store.settle(
            record.message.id, state, now, error=error or None, delivery=delivery
        )
        if delivery is not None:
            self.notify(delivery.account)

    async def late_result(self, upstream: str, message_id: str, result: SendResult) -> None:
        """See `ReceiptSink.late_result`."""
        if not result.ok:
            return
        record = await self.store.get(message_id)
        if record is None or record.state is not MessageState.ACCEPTED:
            return  # already re-sent, or settled: nothing to undo
        log.info("late submit_sm_resp: recorded, not re-sent", message_id=message_id)
        await self._sent(record, upstream, result, self.clock())

    # -- receipts -----------------------------------------------------------------------------

    async def receipt(self, receipt: UpstreamReceipt) -> None:
        """A driver's receipt (the `ReceiptSink` every driver is started with)."""
        keys = canonical_ids(receipt.upstream_id)
        now = self.clock()
        # The id exactly as written first. Only when that fails may another spelling of the
        # same number match (hex in the submit_sm_resp, decimal in the receipt text) - and
        # only after every send that started before this receipt came has been recorded: a
        # receipt can beat its own submit_sm_resp, and until then a numeric spelling could
        # match a different message ("0000000A" and "00000010" are both 10).
        matched = await self._match(receipt, keys[:1], now)
        if matched is None:
            await self._tickets.wait_older(self._tickets.issued, self.early_wait)
            matched = await self._match(receipt, keys, self.clock())
        if matched is None:
            # Still unknown: held in memory in case its id is recorded later after all.
            for key in keys:
                self._early[(receipt.upstream, key)] = receipt
            while len(self._early) > _EARLY_MAX:
                self._early.pop(next(iter(self._early)))
            log.warning(
                "receipt for an unknown id", upstream=receipt.upstream, id=receipt.upstream_id
            )
            return
        record, states = matched
        if record.state.final:
            return  # a repeated receipt: kept, but the application has had its answer
        state = _STATES.get(receipt.message_state)
        if state is None:  # ENROUTE / ACCEPTED / UNKNOWN: not final
            if record.message.registered_delivery & 0x10:
                await self._notify_app(
                    record, MessageState.SENT, receipt.error, now, intermediate=True
                )
            return
        if len(states) > 1:  # carried as several parts: the message ends with its last part
            if any(s not in _STATES for s in states):
                return
            ends = [_STATES[s] for s in states if s is not None]
            failed = [s for s in ends if s is not MessageState.DELIVERED]
            state = failed[0] if failed else MessageState.DELIVERED
        delivery = self._receipt_delivery(record, state, receipt.error, now)
        await self.store.settle(
            record.message.id, state, now, error=receipt.error or None, delivery=delivery
        )
        if delivery is not None:
            self.notify(delivery.account)

    async def _match(
        self, receipt: UpstreamReceipt, keys: tuple[str, ...], now: float
    ) -> tuple[MessageRecord, list[int | None]] | None:
        return await self.store.match_receipt(
            receipt.upstream,
            keys,
            upstream_id=receipt.upstream_id,
            message_state=receipt.message_state,
            error=receipt.error,
            now=now,
        )

    def _receipt_delivery(
        self,
        record: MessageRecord,
        state: MessageState,
        error: int,
        now: float,
        *,
        intermediate: bool = False,
    ) -> NewDelivery | None:
        """The deliver_sm receipt the application asked for, if it asked."""
        m = record.message
        if not intermediate:
            asked = m.registered_delivery & 0x03
            if not (asked == 1 or (asked == 2 and state is not MessageState.DELIVERED)):
                return None
        pdu = encode_pdu(_receipt_pdu(record, state, error, now, intermediate=intermediate))
        return NewDelivery(m.account, "receipt", pdu, self.settings.delivery_ttl)

    async def _notify_app(
        self,
        record: MessageRecord,
        state: MessageState,
        error: int,
        now: float,
        *,
        intermediate: bool = False,
    ) -> None:
        delivery = self._receipt_delivery(record, state, error, now, intermediate=intermediate)
        if delivery is not None:
            await self.store.enqueue_delivery(
                delivery.account, delivery.kind, delivery.pdu, now, delivery.ttl
            )
            self.notify(delivery.account)

    # -- inbound ------------------------------------------------------------------------------

    async def inbound(self, pdu: Any) -> CommandStatus:
        """An MO message from an upstream (see `gateway.inbound`): the status to answer it with."""
        return await self._inbound.take(pdu)

    # -- housekeeping -------------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        """Now and then: purge what the retention period no longer keeps, and deliver the
        inbound messages whose missing parts never came."""
        next_purge = 0.0
        while True:
            now = self.clock()
            try:
                if now >= next_purge:
                    next_purge = now + self.settings.purge_interval
                    gone = await self.store.purge(now - self.retention)
                    if gone:
                        log.info("purged", rows=gone)
                await self._inbound.housekeeping(now)
            except Exception:
                log.exception("housekeeping failed")
            await asyncio.sleep(min(self.settings.purge_interval, self._inbound.mo_timeout / 4))


class _Tickets:
    """Sends numbered as they start, so a receipt can wait until every send that started
    before it came has ended (recorded, or failed)."""

    def __init__(self) -> None:
        self.issued = 0
        self._open: deque[int] = deque()
        self._ended: set[int] = set()
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []  # heap by ticket

    def open(self) -> int:
        self.issued += 1
        self._open.append(self.issued)
        return self.issued

    def close(self, ticket: int) -> None:
        self._ended.add(ticket)
        while self._open and self._open[0] in self._ended:
            self._ended.discard(self._open.popleft())
        low = self._open[0] if self._open else self.issued + 1
        while self._waiters and self._waiters[0][0] < low:
            waiter = heapq.heappop(self._waiters)[2]
            if not waiter.done():
                waiter.set_result(None)

    async def wait_older(self, ticket: int, timeout: float) -> bool:
        """Wait until every send numbered `ticket` or lower has ended; False on timeout."""
        if not self._open or self._open[0] > ticket:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (ticket, id(waiter), waiter))
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            return False
        return True


def _receipt_pdu(
    record: MessageRecord, state: MessageState, error: int, now: float, *, intermediate: bool
) -> Any:
    """The deliver_sm receipt for the application: Appendix B text (as `format_receipt`
    writes it, with the lower-case ``text:`` key) and the three TLVs. Written out by hand:
    one of these goes out for nearly every message."""
    m = record.message
    body = (
        m.short_message[m.short_message[0] + 1 :]
        if m.esm_class & 0x40 and m.short_message
        else m.short_message
    )
    text = decode_text(body, encoding_of_data_coding(m.data_coding), errors="replace")[:20]
    stat = _RECEIPT_STAT.get(state, ReceiptState.UNKNOWN)
    delivered = "001" if state is MessageState.DELIVERED else "000"
    err = f"{error:03d}" if error >= 0 else "000"
    short_message = (
        f"id:{m.id} sub:001 dlvrd:{delivered} submit date:{_minute(m.accepted_at)}"
        f" done date:{_minute(now)} stat:{stat.value} err:{err} text:{text}"
    ).encode("latin-1", "replace")
    return DeliverSm(
        source_addr_ton=m.dest_addr_ton,
        source_addr_npi=m.dest_addr_npi,
        source_addr=m.destination_addr,
        dest_addr_ton=m.source_addr_ton,
        dest_addr_npi=m.source_addr_npi,
        destination_addr=m.source_addr,
        esm_class=0x20 if intermediate else int(EsmClass.SMSC_DELIVERY_RECEIPT),
        short_message=short_message,
        tlvs=(
            Tlv(Tag.receipted_message_id, m.id.encode() + b"\0"),
            Tlv(Tag.message_state, _STATE_BYTE[stat]),
            Tlv(Tag.network_error_code, b"\x03" + (error & 0xFFFF).to_bytes(2, "big")),
        ),
    )


@functools.lru_cache(maxsize=1024)
def _minute_text(minute: int) -> str:
    return time.strftime("%y%m%d%H%M", time.gmtime(minute * 60))


def _minute(epoch: float) -> str:
    """YYMMDDhhmm in UTC (Appendix B's date), cached: a receipt's dates are recent minutes."""
    return _minute_text(int(epoch // 60))


_STATE_BYTE = {s: bytes((s.message_state,)) for s in ReceiptState}
