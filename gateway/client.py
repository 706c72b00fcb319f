"""The project's own small SMPP client (we are the ESME): what `smsgw send` uses.

The same sans-IO `Session` as everywhere, in the ESME role, inside a boring asyncio shell:
one task reads the socket, feeds the session, handles its events and writes what it produced;
requests wait on futures kept by sequence number (aioquic's ``_ping_waiters``). deliver_sm and
data_sm from the SMSC are always answered; delivery receipts among them are queued for
`receipt`.

It is a tool for admins and tests, not a traffic engine: no reconnects, one bind. The carrier
upstream (`drivers.smpp`) is the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from gateway.smpp.constants import CommandStatus, EsmClass, Tag
from gateway.smpp.pdu import (
    COMMAND_IDS,
    BindTransceiver,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    SubmitSm,
    Unbind,
    response_class,
)
from gateway.smpp.receipt import ReceiptParseError, ReceiptState, parse_receipt
from gateway.smpp.session import Closed, Request, RequestTimedOut, Response, Role, Session
from gateway.smpp.tlv import tlv_value
from gateway.sms.coding import data_coding_of
from gateway.sms.segment import segment

__all__ = [
    "BindRefused",
    "ClientReceipt",
    "ConnectionLost",
    "PartResult",
    "SmppClient",
    "SmppClientError",
    "address_ton_npi",
]

_READ = 65536
_RECEIPT = int(EsmClass.SMSC_DELIVERY_RECEIPT)
_INTERMEDIATE = 0x20  # esm_class: intermediate delivery notification (SMPP v3.4 5.2.12)


class SmppClientError(Exception):
    """The SMSC refused or the link failed."""


class ConnectionLost(SmppClientError):
    """The connection closed, or a request got no response in time."""


class BindRefused(SmppClientError):
    """bind_transceiver_resp with an error status."""

    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(f"bind refused: {_status_name(status)}")


@dataclass(frozen=True, slots=True)
class PartResult:
    """The submit_sm_resp for one part (1-based `part` of `total`)."""

    part: int
    total: int
    status: int
    message_id: str

    @property
    def status_name(self) -> str:
        return _status_name(self.status)


@dataclass(frozen=True, slots=True)
class ClientReceipt:
    """A delivery receipt the SMSC sent: the message id it is for, its stat and err."""

    message_id: str
    stat: ReceiptState
    err: str | None
    intermediate: bool  # an intermediate notification, not the final word

    @property
    def final(self) -> bool:
        return not self.intermediate and self.stat is not ReceiptState.ENROUTE


def _status_name(status: int) -> str:
    try:
        return CommandStatus(status).name
    except ValueError:
        return f"0x{status:08X}"


def address_ton_npi(address: str) -> tuple[str, int, int]:
    """(address, ton, npi) for how people write addresses.

    ``+digits`` is international (ton 1, the '+' dropped); digits are of unknown type (ton 0)
    in the ISDN plan; anything else is an alphanumeric sender (ton 5, npi 0).
    """
    plain = address.replace(" ", "")
    if plain.startswith("+") and plain[1:].isdigit():
        return plain[1:], 1, 1
    if plain.isdigit():
        return plain, 0, 1
    return address, 5, 0


class SmppClient:
    """One ESME connection to an SMSC.

    Args:
        host, port: where the SMSC listens.
        ssl_context: speak TLS with this context (None: plain TCP).
        response_timeout: how long a request may wait for its response.
        enquire_link_interval: probe an idle link this often.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        response_timeout: float = 10.0,
        enquire_link_interval: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.response_timeout = response_timeout
        self.enquire_link_interval = enquire_link_interval
        self.session: Session | None = None
        self.closed_reason: str | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._receipts: asyncio.Queue[ClientReceipt] = asyncio.Queue()
        self._lost = asyncio.Event()

    async def __aenter__(self) -> SmppClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the connection (TLS when an ssl_context was given).

        Raises:
            OSError: cannot connect, or the TLS handshake failed (ssl.SSLError).
        """
        loop = asyncio.get_running_loop()
        reader, self._writer = await asyncio.open_connection(
            self.host,
            self.port,
            ssl=self.ssl_context,
            server_hostname=self.host if self.ssl_context is not None else None,
        )
        self.session = Session(
            Role.ESME,
            now=loop.time(),
            response_timeout=self.response_timeout,
            enquire_link_interval=self.enquire_link_interval,
            inactivity_timeout=max(120.0, self.enquire_link_interval * 3),
        )
        self._task = loop.create_task(self._run(reader))

    async def bind_transceiver(self, system_id: str, password: str, system_type: str = "") -> None:
        """Bind as a transceiver (submits out, receipts in).

        Raises:
            BindRefused: the SMSC answered with an error status.
            ConnectionLost: the link closed or the answer did not come in time.
        """
        resp = await self.request(
            BindTransceiver(system_id=system_id, password=password, system_type=system_type)
        )
        if resp.command_status != 0:
            raise BindRefused(resp.command_status)

    async def submit_text(
        self,
        destination: str,
        text: str,
        *,
        source: str = "",
        registered_delivery: int = 0,
        ref: int | None = None,
    ) -> list[PartResult]:
        """Send `text` as one submit_sm per part (concatenated with 8-bit reference UDHs).

        Args:
            destination, source: as people write them (see `address_ton_npi`).
            registered_delivery: 1 asks for a receipt for every part.
            ref: the concatenation reference; None picks a random one (a one-shot client has
                no record of the references it used before).

        Returns:
            Every part's result, in order, errors included.

        Raises:
            MessageTooLong: more than 255 parts.
            ConnectionLost: the link closed, or a response did not come in time.
        """
        if ref is None:
            ref = secrets.randbelow(256)
        segments = segment(text, ref=ref)
        dst, dst_ton, dst_npi = address_ton_npi(destination)
        src, src_ton, src_npi = address_ton_npi(source) if source else ("", 0, 0)
        data_coding = data_coding_of(segments.encoding)
        total = len(segments.bodies)
        pdus = [
            SubmitSm(
                source_addr_ton=src_ton,
                source_addr_npi=src_npi,
                source_addr=src,
                dest_addr_ton=dst_ton,
                dest_addr_npi=dst_npi,
                destination_addr=dst,
                esm_class=int(EsmClass.UDHI) if udh else 0,
                registered_delivery=registered_delivery,
                data_coding=data_coding,
                short_message=udh + body,
            )
            for udh, body in zip(segments.udhs, segments.bodies, strict=True)
        ]
        responses = await asyncio.gather(*(self.request(pdu) for pdu in pdus))
        return [
            PartResult(i + 1, total, resp.command_status, resp.message_id)
            for i, resp in enumerate(responses)
        ]

    async def receipt(self) -> ClientReceipt:
        """The next delivery receipt (intermediate notifications included).

        Raises:
            ConnectionLost: the link closed with no receipt left to read.
        """
        if not self._receipts.empty():
            return self._receipts.get_nowait()
        get = asyncio.ensure_future(self._receipts.get())
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            await asyncio.wait({get, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not get.done():
                get.cancel()
        if get.done() and not get.cancelled():
            return get.result()
        raise ConnectionLost(self.closed_reason or "connection closed")

    async def request(self, pdu: Any) -> Any:
        """Send a request and return its response (whatever its command_status).

        Raises:
            ConnectionLost: the link closed, or no response within the response timeout.
        """
        session = self.session
        if session is None or not session.is_open() or self._lost.is_set():
            raise ConnectionLost(self.closed_reason or "not connected")
        sent = session.send(pdu, asyncio.get_running_loop().time())
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[sent.sequence_number] = future
        await self._flush()
        return await future

    async def unbind(self, timeout: float = 5.0) -> None:
        """Unbind politely; a peer that does not answer in `timeout` is simply left."""
        session = self.session
        if session is None or not session.is_open() or self._lost.is_set():
            return
        with contextlib.suppress(ConnectionLost, TimeoutError):
            async with asyncio.timeout(timeout):
                await self.request(Unbind())

    async def close(self) -> None:
        """Close the connection (without unbinding: call `unbind` first to be polite)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._writer = None

    # -- the shell ---------------------------------------------------------------------------

    async def _flush(self) -> None:
        session, writer = self.session, self._writer
        if session is None or writer is None:
            return
        out = session.data_to_send()
        if out:
            writer.write(out)
            await writer.drain()

    async def _run(self, reader: asyncio.StreamReader) -> None:
        session = self.session
        assert session is not None
        loop = asyncio.get_running_loop()
        try:
            while session.is_open():
                deadline = session.next_deadline()
                timeout = None if deadline is None else max(0.0, deadline - loop.time())
                try:
                    async with asyncio.timeout(timeout):
                        data = await reader.read(_READ)
                except TimeoutError:
                    session.handle_timer(loop.time())
                else:
                    session.receive_data(data, loop.time())
                while (event := session.next_event()) is not None:
                    self._handle(session, event, loop.time())
                await self._flush()
        except OSError as exc:
            self.closed_reason = f"connection lost: {exc}"
        finally:
            if self.closed_reason is None:
                self.closed_reason = "connection closed"
            self._lost.set()
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ConnectionLost(self.closed_reason))
            self._waiting.clear()

    def _handle(self, session: Session, event: Any, now: float) -> None:
        if isinstance(event, Response):
            future = self._waiting.pop(event.pdu.sequence_number, None)
            if future is not None and not future.done():
                future.set_result(event.pdu)
        elif isinstance(event, RequestTimedOut):
            future = self._waiting.pop(event.request.sequence_number, None)
            if future is not None and not future.done():
                future.set_exception(ConnectionLost("no response in time"))
        elif isinstance(event, Request):
            self._answer(session, event.pdu, now)
        elif isinstance(event, Closed):
            self.closed_reason = event.reason

    def _answer(self, session: Session, pdu: Any, now: float) -> None:
        if isinstance(pdu, DeliverSm | DataSm):
            resp: Any = DeliverSmResp if isinstance(pdu, DeliverSm) else DataSmResp
            session.send(resp(sequence_number=pdu.sequence_number), now)
            if pdu.esm_class & (_RECEIPT | _INTERMEDIATE):
                receipt = _read_receipt(pdu)
                if receipt is not None:
                    self._receipts.put_nowait(receipt)
            return
        other = response_class(COMMAND_IDS[type(pdu)])
        if other is not None:  # nothing else is expected of a transceiver: refuse it
            session.send(
                other(
                    sequence_number=pdu.sequence_number,
                    command_status=CommandStatus.ESME_RINVCMDID,
                ),
                now,
            )


def _read_receipt(pdu: DeliverSm | DataSm) -> ClientReceipt | None:
    """The receipt in a deliver_sm / data_sm: TLVs first, the Appendix B text otherwise."""
    tlvs = pdu.tlvs
    message_id = tlv_value(tlvs, Tag.receipted_message_id) if tlvs else None
    state = tlv_value(tlvs, Tag.message_state) if tlvs else None
    text = getattr(pdu, "short_message", b"") or (
        tlv_value(tlvs, Tag.message_payload) if tlvs else b""
    )
    parsed = None
    if isinstance(text, bytes) and text:
        with contextlib.suppress(ReceiptParseError):
            parsed = parse_receipt(text)
    stat: ReceiptState | None = parsed.stat if parsed is not None else None
    if isinstance(state, int):
        with contextlib.suppress(ValueError):
            stat = ReceiptState.from_message_state(state)
    if not isinstance(message_id, str) or not message_id:
        message_id = parsed.message_id if parsed is not None else None
    if message_id is None or stat is None:
        return None
    return ClientReceipt(
        message_id=message_id,
        stat=stat,
        err=parsed.err if parsed is not None else None,
        intermediate=bool(pdu.esm_class & _INTERMEDIATE),
    )
