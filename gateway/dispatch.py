"""From the store to the drivers, and receipts from the drivers back to the applications.

The dispatcher claims due messages from the store, picks a usable target of each message's
route (`select_route`'s order), hands the message to that driver and records the outcome:
sent (with the upstream's id, indexed under every canonical spelling), retried later, or failed.
Receipts come back through `receipt`, from any driver: matched to our message through the
upstream id (held for a while when one arrives before its submit_sm_resp was recorded), the
message's state updated, and - when the application asked for one - a deliver_sm receipt in the
Appendix B format with our id and the receipted_message_id / message_state / network_error_code
TLVs queued durably for the account; the server pushes it to a bound RX/TRX session.

This is the first cut for issue 3: no retry backoff, no throughput shaping, no multipart
state aggregation yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import structlog

from drivers.base import Driver, SendResult, UpstreamReceipt
from gateway.routing import NumberPlan, RouteTable, normalize
from gateway.routing.mo import MoRouter
from gateway.smpp.codec import encode_pdu
from gateway.smpp.constants import CommandId, EsmClass
from gateway.smpp.errors import RemoteSmppError
from gateway.smpp.message import SmBuilder, message_content
from gateway.smpp.pdu import DeliverSm
from gateway.smpp.receipt import Receipt, ReceiptState, canonical_ids, format_receipt_bytes
from gateway.smpp.tlv import make_tlvs
from gateway.sms import Reassembler, ReferenceAllocator, segment
from gateway.sms.coding import decode_text, encoding_of_data_coding
from gateway.store.base import MessageRecord, MessageState, Store

__all__ = ["Dispatcher"]

log = structlog.get_logger("smsgw.dispatch")

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
}


class Dispatcher:
    """Moves messages out and receipts back.

    Args:
        notify: called with an account name when a deliver_sm was queued for it.
        receipt_ttl: how long a receipt waits for the application to bind.
        max_attempts: sends tried before a message ends failed.
    """

    def __init__(
        self,
        store: Store,
        routes: RouteTable,
        drivers: Mapping[str, Driver],
        *,
        notify: Callable[[str], None] = lambda _account: None,
        clock: Callable[[], float] = time.time,
        receipt_ttl: float = 86_400.0,
        max_attempts: int = 5,
        poll_interval: float = 0.5,
        mo_router: MoRouter | None = None,
        plan: NumberPlan | None = None,
        mo_timeout: float = 300.0,
    ) -> None:
        self.store = store
        self.routes = {route.name: route for route in routes.routes}
        self.drivers = dict(drivers)
        self.notify = notify
        self.clock = clock
        self.receipt_ttl = receipt_ttl
        self.max_attempts = max_attempts
        self.poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._early: dict[tuple[str, str], UpstreamReceipt] = {}
        self.mo_router = mo_router or MoRouter(())
        self.plan = plan or NumberPlan()
        self._reassembler: Reassembler[Any] = Reassembler(mo_timeout)
        self._refs = ReferenceAllocator()
        self._mo_builder = SmBuilder(command_id=int(CommandId.deliver_sm))

    async def start(self) -> None:
        for driver in self.drivers.values():
            await driver.start(self)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for driver in self.drivers.values():
            await driver.stop()

    def wake(self) -> None:
        """A message was accepted: look for due work now rather than at the next poll."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            records = await self.store.claim_due(self.clock(), 256)
            for record in records:
                try:
                    await self._dispatch(record)
                except Exception:
                    log.exception("dispatch failed", message_id=record.message.id)
                    await self.store.set_state(
                        record.message.id, MessageState.ACCEPTED, self.clock()
                    )
            for partial in self._reassembler.expire(asyncio.get_running_loop().time()):
                await self._deliver_mo(partial.meta, partial.body())
            if not records:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    async def _dispatch(self, record: MessageRecord) -> None:
        message = record.message
        route = self.routes.get(message.route)
        targets = [] if route is None else [t for t in route.targets if t.name in self.drivers]
        usable = [self.drivers[t.name] for t in targets if self.drivers[t.name].usable()]
        if not usable:
            await self.store.set_state(message.id, MessageState.ACCEPTED, self.clock())
            return
        driver = usable[0]
        result: SendResult = await driver.send(record)
        now = self.clock()
        if result.ok:
            await self._sent(record, driver.name, result, now)
        elif result.permanent or record.attempts >= self.max_attempts:
            await self.store.set_state(message.id, MessageState.FAILED, now, error=result.error)
            await self._receipt_to_app(message.id, MessageState.FAILED, result.error, now)
        else:
            await self.store.set_state(message.id, MessageState.ACCEPTED, now, error=result.error)

    async def _sent(
        self, record: MessageRecord, upstream: str, result: SendResult, now: float
    ) -> None:
        message = record.message
        keys = canonical_ids(result.upstream_id)
        await self.store.link_upstream_id(upstream, keys, message.id)
        await self.store.set_state(message.id, MessageState.SENT, now)
        for key in keys:
            early = self._early.pop((upstream, key), None)
            if early is not None:
                await self.receipt(early)
                break

    async def receipt(self, receipt: UpstreamReceipt) -> None:
        """A driver's receipt (the `ReceiptSink` every driver is started with)."""
        keys = canonical_ids(receipt.upstream_id)
        message_id = await self.store.find_by_upstream_id(receipt.upstream, keys)
        if message_id is None:
            self._early[(receipt.upstream, keys[0])] = receipt  # before its submit_sm_resp
            if len(self._early) > 100_000:
                self._early.pop(next(iter(self._early)))
            return
        state = _STATES.get(receipt.message_state)
        if state is None:
            return  # ENROUTE / ACCEPTED / UNKNOWN: not final
        now = self.clock()
        await self.store.set_state(message_id, state, now, error=receipt.error or None)
        await self._receipt_to_app(message_id, state, receipt.error, now)

    async def late_result(self, upstream: str, message_id: str, result: SendResult) -> None:
        """See `ReceiptSink.late_result`."""
        if not result.ok:
            return
        record = await self.store.get(message_id)
        if record is None or record.state is not MessageState.ACCEPTED:
            return  # already re-sent, or settled: nothing to undo
        await self._sent(record, upstream, result, self.clock())

    async def inbound(self, pdu: Any) -> None:
        """An MO message (deliver_sm or data_sm without the receipt bit) from an upstream."""
        try:
            content = message_content(pdu)
        except RemoteSmppError as exc:
            log.warning("unreadable MO dropped", error=str(exc))
            return
        concat = content.concat
        if concat is None or concat.total == 1:
            await self._deliver_mo((pdu, content), content.body)
            return
        done = self._reassembler.add(
            sender=pdu.source_addr,
            recipient=pdu.destination_addr,
            ref=concat.ref,
            total=concat.total,
            seq=concat.seq,
            body=content.body,
            meta=(pdu, content),
            now=asyncio.get_running_loop().time(),
            ref_bits=concat.ref_bits,
        )
        for whole in done:
            await self._deliver_mo(whole.meta, whole.body())

    async def _deliver_mo(self, meta: Any, body: bytes) -> None:
        pdu, content = meta
        text = decode_text(body, content.encoding, content.alphabet, errors="replace")
        destination = normalize(pdu.destination_addr, self.plan) or pdu.destination_addr
        account = self.mo_router.account_for(destination, text)
        if account is None:
            log.warning("MO with no mo_route dropped", destination=destination)
            return
        segments = segment(text, ref=self._refs.allocate(pdu.source_addr))
        parts = self._mo_builder.build(
            segments, pdu.source_addr, pdu.destination_addr, [0] * segments.total
        )
        now = self.clock()
        for part in parts:
            await self.store.enqueue_delivery(account, "mo", part, now, self.receipt_ttl)
        self.notify(account)

    async def _receipt_to_app(
        self, message_id: str, state: MessageState, error: int, now: float
    ) -> None:
        record = await self.store.get(message_id)
        if record is None:
            return
        m = record.message
        asked = m.registered_delivery & 0x03
        if not (asked == 1 or (asked == 2 and state is not MessageState.DELIVERED)):
            return
        pdu = encode_pdu(_receipt_pdu(record, state, error, now))
        await self.store.enqueue_delivery(m.account, "receipt", pdu, now, self.receipt_ttl)
        self.notify(m.account)


def _receipt_pdu(record: MessageRecord, state: MessageState, error: int, now: float) -> Any:
    m = record.message
    body = (
        m.short_message[m.short_message[0] + 1 :]
        if m.esm_class & 0x40 and m.short_message
        else m.short_message
    )
    text = decode_text(body, encoding_of_data_coding(m.data_coding), errors="replace")
    stat = _RECEIPT_STAT.get(state, ReceiptState.UNKNOWN)
    receipt = Receipt(
        message_id=m.id,
        stat=stat,
        sub=1,
        dlvrd=1 if state is MessageState.DELIVERED else 0,
        submit_date=datetime.fromtimestamp(m.accepted_at, UTC).replace(tzinfo=None),
        done_date=datetime.fromtimestamp(now, UTC).replace(tzinfo=None),
        err=f"{error:03d}",
        text=text,
    )
    return DeliverSm(
        source_addr_ton=m.dest_addr_ton,
        source_addr_npi=m.dest_addr_npi,
        source_addr=m.destination_addr,
        dest_addr_ton=m.source_addr_ton,
        dest_addr_npi=m.source_addr_npi,
        destination_addr=m.source_addr,
        esm_class=int(EsmClass.SMSC_DELIVERY_RECEIPT),
        short_message=format_receipt_bytes(receipt, text_label="text"),
        tlvs=make_tlvs(
            receipted_message_id=m.id,
            message_state=receipt.message_state,
            network_error_code=bytes((3,)) + (error & 0xFFFF).to_bytes(2, "big"),
        ),
    )
