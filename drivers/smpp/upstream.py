"""A carrier SMSC we bind to as an ESME: the asyncio shell around `Session(Role.ESME)`.

One connection per upstream (N binds come with issue 3's next steps): connect, bind as
transceiver, keep the link alive (the session probes and times out), reconnect with
exponential backoff and jitter when it drops. `send` writes one submit_sm carrying the message
as the application sent it and waits for its submit_sm_resp within the window; ESME_RTHROTTLED
and ESME_RMSGQFUL (and a timeout, or a lost link) are temporary, every other error permanent.
Receipts arrive as deliver_sm (or data_sm) with the receipt bit: the receipted_message_id and
message_state TLVs are preferred, the Appendix B text parsed otherwise, and the result goes to
the dispatcher's `ReceiptSink` like every other driver's.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import structlog

from drivers.base import ReceiptSink, SendResult, UpstreamReceipt
from gateway.config import UpstreamConfig
from gateway.smpp.constants import CommandStatus, Tag
from gateway.smpp.errors import LocalSmppError
from gateway.smpp.pdu import BindTransceiver, DataSm, DataSmResp, DeliverSm, DeliverSmResp, SubmitSm
from gateway.smpp.receipt import ReceiptParseError, parse_receipt
from gateway.smpp.session import Closed, Request, RequestTimedOut, Response, Role, Session, State
from gateway.smpp.tlv import tlv_value
from gateway.store.base import MessageRecord

__all__ = ["SmppUpstream"]

log = structlog.get_logger("smsgw.upstream")

_TEMPORARY = {
    CommandStatus.ESME_RTHROTTLED,
    CommandStatus.ESME_RMSGQFUL,
    CommandStatus.ESME_RSYSERR,
}


class SmppUpstream:
    """One carrier upstream.

    Args:
        name: the target name routes use.
        config: host, port, credentials, window.
        backoff: first reconnect delay in seconds (doubles up to `max_backoff`, with jitter).
    """

    def __init__(
        self,
        name: str,
        config: UpstreamConfig,
        *,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        response_timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.config = config
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.response_timeout = response_timeout
        self._sink: ReceiptSink | None = None
        self._task: asyncio.Task[None] | None = None
        self._session: Session | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._bound = asyncio.Event()

    def usable(self) -> bool:
        session = self._session
        return (
            session is not None
            and session.state is State.BOUND_TRX
            and len(self._waiting) < self.config.window
        )

    async def start(self, sink: ReceiptSink) -> None:
        self._sink = sink
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._fail_waiting()

    async def wait_bound(self, timeout: float) -> None:
        await asyncio.wait_for(self._bound.wait(), timeout)

    # -- sending ----------------------------------------------------------------------------

    async def send(self, record: MessageRecord) -> SendResult:
        session, writer = self._session, self._writer
        if session is None or writer is None or not self.usable():
            return SendResult(False, error=CommandStatus.ESME_RTHROTTLED)
        m = record.message
        loop = asyncio.get_running_loop()
        try:
            pdu = session.send(
                SubmitSm(
                    service_type=m.service_type,
                    source_addr_ton=m.source_addr_ton,
                    source_addr_npi=m.source_addr_npi,
                    source_addr=m.source_addr,
                    dest_addr_ton=m.dest_addr_ton,
                    dest_addr_npi=m.dest_addr_npi,
                    destination_addr=m.destination_addr,
                    esm_class=m.esm_class,
                    protocol_id=m.protocol_id,
                    priority_flag=m.priority_flag,
                    registered_delivery=1,  # we always want the receipt, to keep state
                    data_coding=m.data_coding,
                    short_message=m.short_message,
                ),
                loop.time(),
            )
        except LocalSmppError as exc:
            return SendResult(False, error=exc.status, permanent=True)
        waiter: asyncio.Future[Any] = loop.create_future()
        self._waiting[pdu.sequence_number] = waiter
        writer.write(session.data_to_send())
        try:
            await writer.drain()
            resp = await asyncio.wait_for(waiter, self.response_timeout + 1)
        except (ConnectionError, TimeoutError):
            return SendResult(False, error=CommandStatus.ESME_RSYSERR)  # temporary: retried
        finally:
            self._waiting.pop(pdu.sequence_number, None)
        if resp is None:
            return SendResult(False, error=CommandStatus.ESME_RSYSERR)
        status = resp.command_status
        if status == 0:
            return SendResult(True, resp.message_id)
        return SendResult(False, error=status, permanent=status not in _TEMPORARY)

    # -- the connection -----------------------------------------------------------------------

    async def _run(self) -> None:
        delay = self.backoff
        while True:
            try:
                await self._connection()
                delay = self.backoff  # it was up: start the backoff over
            except (OSError, asyncio.IncompleteReadError) as exc:
                log.warning("upstream unreachable", upstream=self.name, error=str(exc))
            self._fail_waiting()
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, self.max_backoff)

    async def _connection(self) -> None:
        cfg = self.config
        reader, writer = await asyncio.open_connection(cfg.host, cfg.port)
        loop = asyncio.get_running_loop()
        session = Session(Role.ESME, now=loop.time(), response_timeout=self.response_timeout)
        self._session, self._writer = session, writer
        try:
            session.send(
                BindTransceiver(
                    system_id=cfg.system_id, password=cfg.password, system_type=cfg.system_type
                ),
                loop.time(),
            )
            writer.write(session.data_to_send())
            await writer.drain()
            while session.is_open():
                deadline = session.next_deadline()
                timeout = None if deadline is None else max(0.0, deadline - loop.time())
                try:
                    data = await asyncio.wait_for(reader.read(65536), timeout)
                except TimeoutError:
                    session.handle_timer(loop.time())
                else:
                    session.receive_data(data, loop.time())
                while (event := session.next_event()) is not None:
                    await self._event(session, event)
                out = session.data_to_send()
                if out:
                    writer.write(out)
                    await writer.drain()
        finally:
            self._session = self._writer = None
            self._bound.clear()
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _event(self, session: Session, event: Any) -> None:
        if isinstance(event, Response):
            if session.state is State.BOUND_TRX and not self._bound.is_set():
                self._bound.set()
                log.info("upstream bound", upstream=self.name)
            waiter = self._waiting.get(event.pdu.sequence_number)
            if waiter is not None and not waiter.done():
                waiter.set_result(event.pdu)
        elif isinstance(event, RequestTimedOut):
            waiter = self._waiting.get(event.request.sequence_number)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif isinstance(event, Request):
            await self._incoming(session, event.pdu)
        elif isinstance(event, Closed):
            log.info("upstream link closed", upstream=self.name, reason=event.reason)

    async def _incoming(self, session: Session, pdu: Any) -> None:
        now = asyncio.get_running_loop().time()
        if isinstance(pdu, DeliverSm | DataSm):
            sink = self._sink
            if sink is not None:
                receipt = _receipt_of(self.name, pdu)
                if receipt is not None:
                    await sink.receipt(receipt)
                elif not pdu.esm_class & 0x04:
                    await sink.inbound(pdu)
            resp = DeliverSmResp if isinstance(pdu, DeliverSm) else DataSmResp
            session.send(resp(sequence_number=pdu.sequence_number), now)

    def _fail_waiting(self) -> None:
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_result(None)


def _receipt_of(upstream: str, pdu: Any) -> UpstreamReceipt | None:
    """The receipt a deliver_sm/data_sm carries: TLVs first, the Appendix B text otherwise."""
    if not pdu.esm_class & 0x04:
        return None
    tlvs = pdu.tlvs
    upstream_id = tlv_value(tlvs, Tag.receipted_message_id) if tlvs else None
    state = tlv_value(tlvs, Tag.message_state) if tlvs else None
    error = 0
    if not isinstance(upstream_id, str) or not isinstance(state, int):
        try:
            parsed = parse_receipt(getattr(pdu, "short_message", b""))
        except ReceiptParseError:
            return None
        upstream_id = upstream_id if isinstance(upstream_id, str) else parsed.message_id
        state = state if isinstance(state, int) else parsed.message_state
        error = parsed.error_code or 0
    return UpstreamReceipt(upstream, upstream_id, state, error=error)
