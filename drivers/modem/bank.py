"""A bank of GSM modems as one route target, ``bank:<name>``.

Theory of operation
-------------------
The bank is a `Driver` for the dispatcher and the `ModemSink` of each of its `Modem`\\ s. It
owns the modems: `start` builds and starts them, `stop` stops them.

Sending. `send` turns the stored message into SMS-SUBMIT TPDUs (`message_tpdus`: a whole text is
cut here, with a status report asked on every part - we need the reports to keep state - and a
part the application cut travels as one TPDU with its own UDH), picks a modem and sends. A modem
can be picked when it is ready, has fewer than `queue` sends waiting on it and its SIM is under
its per-minute / day / month limits counting the sends in flight. Selection is round robin or
least loaded. Parts of one application-cut series stick to the modem that sent the first one
(a handset joins parts only from one sender) while it can take them. A temporary failure is
tried once more on another modem before the dispatcher gets it back to retry later; a send with
no modem free waits (bounded) for one rather than fail at once, since the dispatcher hands over
many messages before any send has started.

Receipts. Each part's upstream id is ``<imei>/<TP-MR>/<recipient digits>``. TP-MR wraps at 255,
so the same id recurs: the store matches a report to the latest send with that id, and the bank
drops a report whose id was last sent more than `report_window` ago (it remembers send times in
memory, bounded; after a restart the store alone decides). A late report for an older message
with the same id is told apart by its TP-SCTS (when the SMSC took the submit, 23.040 9.2.3.11):
when the two last sends with the id are known it belongs to the nearer one, else it is older
when it is well before the latest send by the SMSC's clock as seen in recent reports. It is then
dropped (logged): it must never settle the newer message. TP-ST becomes our state
(`STATE_OF_REPORT`: delivered, undeliverable, or still trying - ENROUTE, not final), and that
its SMPP message_state through the one table in `gateway.store.base`. The receipt's raw text,
kept in the store as a carrier's is, is the report's fields as read and its PDU in hex
(`report_text`).

Unusable. A modem that is FAILED (wrong PIN, PUK) or cannot send (no SMSC address) is never
picked. When every modem of the bank is so, `unusable_reason` says why (`Diagnosable`), `usable`
is False and the bank logs an error; the dispatcher then fails the messages of a route with no
target that can at once (ESME_RSUBMITFAIL) so they end with a receipt rather than wait for a modem
that will not come, and `send`, called all the same, fails them so too.

Limits. Counters live in the store (`Store.count_usage`), keyed by the SIM (its ICCID once the
modem has read it, else bank/modem), so they survive restarts and follow a SIM moved to another
slot. They are read when a modem becomes ready; a modem with limits is not used until then.

Inbound. An SMS-DELIVER becomes a deliver_sm (UDH kept, data_coding from its DCS: 8-bit data
keeps the TP-DCS itself where SMPP reads it the same, message class included - `mo_data_coding`)
for the dispatcher, which routes it by mo_routes and joins the parts of a long message. One the
dispatcher refuses for good is logged here too and deleted from the modem: it can never be
handed on, and kept it would fill the SIM.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

import structlog

from drivers.base import ReceiptSink, SendResult, UpstreamReceipt
from drivers.modem.modem import Modem, ModemInfo, ModemSettings, ModemState, SendOutcome
from drivers.smpp.outbound import stored_content
from gateway.config import ModemBankConfig, ModemConfig
from gateway.smpp.constants import CommandStatus
from gateway.smpp.errors import LocalSmppError
from gateway.smpp.message import MessageContent
from gateway.smpp.pdu import DeliverSm
from gateway.sms.coding import Encoding, data_coding_of, encoding_of_data_coding
from gateway.sms.errors import SmsError
from gateway.sms.gsm7 import encode_gsm7
from gateway.sms.refs import ReferenceAllocator, ReferencesExhausted
from gateway.sms.segment import cut_body, part_capacity
from gateway.sms.tpdu import (
    DeliveryOutcome,
    SmsDeliver,
    SmsStatusReport,
    SubmitTpdu,
    classify_status,
    encode_sms_submit,
    submit_tpdus,
)
from gateway.sms.udh import (
    IEI_CONCAT_8,
    IEI_CONCAT_16,
    IEI_LOCKING_SHIFT,
    IEI_SINGLE_SHIFT,
    build_udh,
    concat_ie,
)
from gateway.store.base import (
    MessageRecord,
    MessageState,
    NewMessage,
    Store,
    Usage,
    usage_windows,
)
from gateway.telemetry.events import Events

__all__ = [
    "STATE_OF_REPORT",
    "ModemBank",
    "TpduError",
    "message_tpdus",
    "mo_data_coding",
    "report_text",
]

log = structlog.get_logger("smsgw.modem.bank")

# What a TP-ST's outcome (23.040 9.2.3.15) makes of the message; its SMPP message_state and
# receipt stat come from the one table in gateway.store.base.
STATE_OF_REPORT = {
    DeliveryOutcome.DELIVERED: MessageState.DELIVERED,
    DeliveryOutcome.FAILED: MessageState.UNDELIVERABLE,
    DeliveryOutcome.PENDING: MessageState.SENT,  # the SC still tries: ENROUTE, not final
}
_GSM7, _UCS2, _BINARY = Encoding.GSM7, Encoding.UCS2, Encoding.BINARY
_AIR = (_GSM7, _UCS2, _BINARY)
_CONCAT_IEIS = (IEI_CONCAT_8, IEI_CONCAT_16)
_SHIFT_IEIS = (IEI_LOCKING_SHIFT, IEI_SINGLE_SHIFT)
_SYSERR = int(CommandStatus.ESME_RSYSERR)
_MAX_SENT_AT = 200_000  # send times remembered for the report window
_MAX_STICKY = 10_000  # application-cut series remembered for their modem
_STICKY_TTL = 3600.0
_WAIT_FOR_MODEM = 30.0  # seconds a send waits for a free modem before failing (temporarily)
_SUBMITFAIL = int(CommandStatus.ESME_RSUBMITFAIL)
_SCTS_SLACK = 120.0  # seconds a report's TP-SCTS may be before its send (clocks, queues)
_MIN_OFFSETS = 3  # SMSC clock offsets seen before a lone send's report may be called older


class TpduError(Exception):
    """A stored message no modem can carry (a permanent failure), with its SMPP status."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.status = status


class _Modem(Protocol):
    """What the bank uses of `drivers.modem.modem.Modem` (tests substitute a fake)."""

    name: str
    settings: ModemSettings

    @property
    def info(self) -> ModemInfo: ...

    @property
    def state(self) -> ModemState: ...

    def ready(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, tpdus: Sequence[SubmitTpdu | bytes]) -> SendOutcome: ...

    async def ussd(self, code: str, timeout: float = 30.0) -> str: ...


ModemFactory = Callable[[ModemSettings, Any], _Modem]


# -- the message as TPDUs -------------------------------------------------------------------------


def _destination(message: NewMessage) -> str:
    """TP-DA: international numbers with their ``+``."""
    dest = message.destination_addr
    if dest.startswith("+"):
        return dest
    if message.dest_addr_ton == 1 and dest.isdigit():
        return "+" + dest
    return dest


def message_tpdus(
    message: NewMessage, refs: ReferenceAllocator, *, now: float
) -> tuple[list[SubmitTpdu], int | None]:
    """The SMS-SUBMITs that carry a stored message, each asking for a status report.

    Args:
        message: as the application sent it.
        refs: concatenation references for texts cut here.
        now: for the validity period (what is left of the message's).

    Returns:
        The TPDUs and the reference taken from `refs` (None when none was): give it back
        with ``refs.release(message.destination_addr, ref)`` once the message is sent.

    Raises:
        TpduError: the message cannot be carried (bad UDH, too long...): fail it.
        ReferencesExhausted: every reference to this destination is in flight: try later.
    """
    try:
        content, _tlvs = stored_content(message)
    except LocalSmppError as exc:
        raise TpduError(str(exc.args[0]), int(exc.status)) from None
    elements = content.elements
    destination = _destination(message)
    validity = None
    if message.expires_at is not None:
        validity = timedelta(seconds=max(300.0, message.expires_at - now))
    extra = tuple(e for e in elements if e.iei not in _CONCAT_IEIS)
    try:
        if content.concat is not None:  # one part of the application's series: as it is
            return [_one_part(content, extra, destination, validity)], None
        encoding = content.encoding
        if encoding is _BINARY or (
            encoding in _AIR and any(e.iei not in _SHIFT_IEIS for e in extra)
        ):
            # Bytes to carry as they are (binary, or ports and the like in the UDH).
            return _cut(content, extra, destination, validity, refs, message.destination_addr)
        text = content.text()
        ref = refs.allocate(message.destination_addr)
        try:
            tpdus = submit_tpdus(
                text,
                destination,
                ref=ref,
                status_report=True,
                validity=validity,
                encoding=_UCS2 if encoding is _UCS2 else None,  # the application's choice
            )
        except BaseException:
            refs.release(message.destination_addr, ref)
            raise
        if len(tpdus) == 1:
            refs.release(message.destination_addr, ref)
            return tpdus, None
        return tpdus, ref
    except ReferencesExhausted:
        raise
    except SmsError as exc:
        raise TpduError(str(exc), int(CommandStatus.ESME_RINVMSGLEN)) from None


def _one_part(
    content: MessageContent,
    extra: tuple[Any, ...],
    destination: str,
    validity: timedelta | None,
) -> SubmitTpdu:
    concat = content.concat
    assert concat is not None
    encoding, body = content.encoding, content.body
    if encoding not in _AIR:  # Latin-1 and the like: re-encode, GSM 7-bit if it can be
        text = content.text()
        encoding, body = _GSM7, b""
        try:
            body = encode_gsm7(text)
        except SmsError:
            encoding, body = _UCS2, text.encode("utf-16-be")
    if content.udh and any(e.iei in _CONCAT_IEIS for e in content.elements):
        udh = content.udh
    else:  # SAR TLVs: the position goes into a UDH
        bits = 8 if concat.ref <= 0xFF else 16
        udh = build_udh((concat_ie(concat.ref, concat.total, concat.seq, bits), *extra))
    if len(body) > part_capacity(Encoding(encoding), len(udh)):
        raise TpduError(
            "a part of the application's series does not fit one SMS",
            int(CommandStatus.ESME_RINVMSGLEN),
        )
    return encode_sms_submit(
        destination=destination,
        body=body,
        encoding=Encoding(encoding),
        udh=udh,
        status_report=True,
        validity=validity,
    )


def _cut(  # noqa: PLR0917 - private helper of message_tpdus
    content: MessageContent,
    extra: tuple[Any, ...],
    destination: str,
    validity: timedelta | None,
    refs: ReferenceAllocator,
    ref_key: str,
) -> tuple[list[SubmitTpdu], int | None]:
    encoding = content.encoding
    assert isinstance(encoding, Encoding)  # message_tpdus sends only air encodings here
    body = content.body
    own = build_udh(extra) if extra else b""
    if len(body) <= part_capacity(encoding, len(own)):
        tpdu = encode_sms_submit(
            destination=destination,
            body=body,
            encoding=encoding,
            udh=own,
            status_report=True,
            validity=validity,
        )
        return [tpdu], None
    ref = refs.allocate(ref_key)
    try:
        pieces = cut_body(body, encoding, len(build_udh((concat_ie(ref, 2, 1), *extra))))
        if len(pieces) > 255:
            raise TpduError("more than 255 parts", int(CommandStatus.ESME_RINVMSGLEN))
        tpdus = [
            encode_sms_submit(
                destination=destination,
                body=piece,
                encoding=encoding,
                udh=build_udh((concat_ie(ref, len(pieces), seq), *extra)),
                status_report=True,
                validity=validity,
            )
            for seq, piece in enumerate(pieces, 1)
        ]
    except BaseException:
        refs.release(ref_key, ref)
        raise
    return tpdus, ref


# -- the bank -------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Slot:
    """One modem of the bank and what the bank knows about it."""

    config: ModemConfig
    modem: _Modem
    queue: int = 0  # sends waiting on or running in this modem
    inflight: int = 0  # SMS in those sends, counted against the limits
    usage: Usage = field(default_factory=Usage)
    windows: tuple[int, int, int] = (0, 0, 0)  # the windows `usage` counts in
    usage_key: str | None = None  # the SIM the usage belongs to, once loaded
    loading: asyncio.Task[None] | None = None
    # TP-SCTS minus our send time, of recent reports: the SMSC's clock as we see it.
    offsets: deque[float] = field(default_factory=lambda: deque(maxlen=15))

    def smsc_offset(self) -> float | None:
        if len(self.offsets) < _MIN_OFFSETS:
            return None
        return sorted(self.offsets)[len(self.offsets) // 2]

    @property
    def limited(self) -> bool:
        limits = self.config.limits
        return (
            limits.per_minute is not None
            or limits.per_day is not None
            or limits.per_month is not None
        )

    def used(self, now: float) -> Usage:
        minute, day, month = usage_windows(now)
        u, (m, d, mo) = self.usage, self.windows
        return Usage(
            u.minute if m == minute else 0, u.day if d == day else 0, u.month if mo == month else 0
        )

    def under_limits(self, now: float, parts: int = 1) -> bool:
        limits = self.config.limits
        if not self.limited:
            return True
        used = self.used(now)
        extra = self.inflight + parts
        return (
            (limits.per_minute is None or used.minute + extra <= limits.per_minute)
            and (limits.per_day is None or used.day + extra <= limits.per_day)
            and (limits.per_month is None or used.month + extra <= limits.per_month)
        )


def _sim_key(bank: str, slot: _Slot) -> str:
    info = slot.modem.info
    if info.iccid:
        return f"iccid:{info.iccid}"
    if info.imsi:
        return f"imsi:{info.imsi}"
    return f"modem:{bank}/{slot.config.name}"


def _digits(number: str) -> str:
    return number.removeprefix("+")


def _address(number: str) -> tuple[str, int, int]:
    """(address, ton, npi) for a TP-OA / own number as SMPP writes it."""
    if number.startswith("+"):
        return number[1:], 1, 1
    if number.isdigit():
        return number, 0, 1
    return number, 5, 0  # alphanumeric


class ModemBank:
    """GSM modems as one `Driver` (``bank:<name>``); see the module docstring.

    Args:
        name: the bank's name in the configuration.
        config: its configuration.
        store: where the per-SIM counters live.
        ports: port per modem name, overriding the configuration (emulated modems).
        modem_factory: builds a modem (tests pass a fake).
        clock: wall-clock seconds (limits are calendar windows, receipts carry it).
    """

    def __init__(
        self,
        name: str,
        config: ModemBankConfig,
        store: Store,
        *,
        ports: Mapping[str, str] | None = None,
        modem_factory: ModemFactory | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bank = name
        self.name = f"bank:{name}"
        self.config = config
        self.store = store
        self.ports = dict(ports or {})
        self.clock = clock
        self._factory: ModemFactory = modem_factory or Modem
        self._slots: list[_Slot] = []
        self._by_modem: dict[int, _Slot] = {}
        self._sink: ReceiptSink | None = None
        self._rr = itertools.count()
        self._refs = ReferenceAllocator(seed=int(time.time()))
        # upstream id -> (its latest send time, the one before or None)
        self._sent_at: OrderedDict[str, tuple[float, float | None]] = OrderedDict()
        self._hopeless: str | None = None
        self._sticky: OrderedDict[tuple[str, str, int, int], tuple[_Slot, float]] = OrderedDict()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self.events = Events.off()  # the gateway's MQTT events (set by the app)
        # Called just before a modem is asked to send a message (each try): `smsgw agent`
        # records the message's idempotency key there. Raising stops the send.
        self.before_send: Callable[[NewMessage], None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def _settings(self, modem: ModemConfig) -> ModemSettings:
        return ModemSettings(
            name=modem.name,
            port=self.ports.get(modem.name, modem.port),
            imei=modem.imei,
            iccid=modem.iccid,
            candidates=modem.candidates,
            baudrate=modem.baudrate,
            rtscts=modem.rtscts,
            pin=modem.pin,
            smsc=modem.smsc,
            health_interval=modem.health_interval,
            command_timeout=modem.command_timeout,
            send_timeout=modem.send_timeout,
            reopen_backoff=modem.reopen_backoff,
            max_reopen_backoff=modem.max_reopen_backoff,
            status_reports=modem.status_reports,
            storage=modem.storage,
            urc_port=modem.urc_port,
            poll_quiet=modem.poll_quiet,
            ussd_packed=modem.ussd_packed,
            report_routing=modem.report_routing,
        )

    async def start(self, sink: ReceiptSink) -> None:
        self._sink = sink
        if not self._slots:
            for modem_config in self.config.modem_list():
                modem = self._factory(self._settings(modem_config), self)
                slot = _Slot(modem_config, modem)
                self._slots.append(slot)
                self._by_modem[id(modem)] = slot
        for slot in self._slots:
            await slot.modem.start()

    async def stop(self) -> None:
        await asyncio.gather(*(slot.modem.stop() for slot in self._slots), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._sink = None
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def reconfigure(
        self,
        config: ModemBankConfig,
        *,
        ports: Mapping[str, str] | None = None,
        drain: float = 15.0,
    ) -> list[str]:
        """Apply a reloaded config of this bank, live. Each modem keeps running when only its
        limits or number changed (the next pick counts against the new limits); a modem added
        starts; a modem removed, or changed otherwise (port, PIN, timeouts...), is taken out
        of the selection at once, its sends under way finish (up to `drain` seconds), then it
        stops and, if changed, starts again with its new settings. The selection, queue and
        report window apply to the next send. Returns what it left as it was: the emulator's
        settings, which only a restart changes.

        `ports`, when given, replaces the ports that override the configured ones by modem name
        (the emulated modems' ptys).
        """
        if ports is not None:
            self.ports = dict(ports)
        kept: list[str] = []
        if config.emulator != self.config.emulator:
            kept.append("emulator settings")
        running = {slot.config.name: slot for slot in self._slots}
        slots: list[_Slot] = []
        started: list[_Slot] = []
        retired: list[_Slot] = []
        for modem_config in config.modem_list():
            slot = running.get(modem_config.name)
            if slot is not None:
                live = {"limits": modem_config.limits, "number": modem_config.number}
                same = slot.config.model_copy(update=live) == modem_config
                if same and self._settings(modem_config) == slot.modem.settings:
                    slot.config = modem_config
                    slots.append(slot)
                    continue
                retired.append(slot)
            fresh = _Slot(modem_config, self._factory(self._settings(modem_config), self))
            slots.append(fresh)
            started.append(fresh)
        wanted = {slot.config.name for slot in slots}
        retired += [slot for name, slot in running.items() if name not in wanted]
        # One step: the next pick sees the new modems and none of the retired ones.
        self._slots = slots
        self.config = config.model_copy(update={"emulator": self.config.emulator})
        if retired:
            log.info(
                "modems retired by a reload",
                bank=self.bank,
                modems=[s.config.name for s in retired],
            )
            await self._retire(retired, drain)
        for slot in started:
            self._by_modem[id(slot.modem)] = slot
            if self._sink is not None:  # a bank not started yet starts them with itself
                await slot.modem.start()
        if started:
            log.info(
                "modems started by a reload",
                bank=self.bank,
                modems=[s.config.name for s in started],
            )
        self._wake_all()  # higher limits, a longer queue, new modems: waiting sends may go now
        return kept

    async def _retire(self, slots: list[_Slot], drain: float) -> None:
        """Stop modems no longer selected once their sends under way are answered (bounded):
        a send cut short is retried by the dispatcher, never lost."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain
        while any(slot.queue for slot in slots) and loop.time() < deadline:
            await self._wait_change(min(0.2, max(0.0, deadline - loop.time())))
        await asyncio.gather(*(slot.modem.stop() for slot in slots), return_exceptions=True)
        for slot in slots:
            self._by_modem.pop(id(slot.modem), None)
            for series, (held, _at) in list(self._sticky.items()):
                if held is slot:
                    del self._sticky[series]

    async def wait_ready(self, count: int | None = None, timeout: float = 30.0) -> None:
        """Wait until `count` modems (all when None) are ready to send (tests, tools).

        Raises:
            TimeoutError: not within `timeout` seconds.
        """
        want = len(self._slots) if count is None else count
        async with asyncio.timeout(timeout):
            while sum(self._ready(slot) for slot in self._slots) < want:
                await self._wait_change(timeout)

    # -- picking a modem ----------------------------------------------------------------------

    def _ready(self, slot: _Slot) -> bool:
        return (
            slot.modem.ready()
            and (not slot.limited or slot.usage_key is not None)
            and slot.modem.info.send_blocked is None
        )

    def _pickable(self, slot: _Slot, now: float, parts: int = 1, *, full: bool = False) -> bool:
        return (
            self._ready(slot)
            and (full or slot.queue < self.config.queue)
            and slot.under_limits(now, parts)
        )

    def usable(self) -> bool:
        now = self.clock()
        return any(self._pickable(slot, now) for slot in self._slots)

    def unusable_reason(self) -> str | None:
        """Why no modem of the bank can ever send without an operator (each FAILED: PIN,
        PUK; or unable to send: no SMSC address), or None while one may still send. The
        dispatcher should then route elsewhere, or fail the message with a receipt."""
        if not self._slots:
            return None
        reasons = []
        for slot in self._slots:
            info = slot.modem.info
            if info.state is ModemState.FAILED:
                reasons.append(f"{slot.config.name}: {info.last_error or 'failed'}")
            elif info.send_blocked is not None:
                reasons.append(f"{slot.config.name}: {info.send_blocked}")
            else:
                return None
        return "; ".join(reasons)

    def _pick(self, now: float, parts: int, exclude: set[_Slot]) -> _Slot | None:
        all_slots = self._slots
        if not all_slots:
            return None
        if self.config.selection == "least_loaded":
            slots = [s for s in all_slots if s not in exclude and self._pickable(s, now, parts)]
            if not slots:
                return None
            return min(slots, key=lambda s: (s.queue, s.used(now).day, s.modem.info.sent))
        n = len(all_slots)
        start = next(self._rr) % n
        for i in range(n):  # the first pickable one from the rotating start
            slot = all_slots[(start + i) % n]
            if slot not in exclude and self._pickable(slot, now, parts):
                return slot
        return None

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _wake_all(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def _wait_change(self, timeout: float) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            pass
        finally:
            if not waiter.done():
                waiter.cancel()

    # -- sending ------------------------------------------------------------------------------

    async def send(self, record: MessageRecord) -> SendResult:
        message = record.message
        hopeless = self.unusable_reason()
        if hopeless is not None:
            log.error(
                "no modem of the bank can send: message failed",
                bank=self.bank,
                message_id=message.id,
                reason=hopeless,
            )
            return SendResult(False, error=_SUBMITFAIL, permanent=True)
        now = self.clock()
        try:
            tpdus, ref = message_tpdus(message, self._refs, now=now)
        except TpduError as exc:
            log.warning("message cannot go by modem", message_id=message.id, reason=str(exc))
            return SendResult(False, error=exc.status, permanent=True)
        except ReferencesExhausted:
            return SendResult(False, error=int(CommandStatus.ESME_RTHROTTLED))
        try:
            return await self._send(message, tpdus)
        finally:
            if ref is not None:
                self._refs.release(message.destination_addr, ref)

    def _series(self, message: NewMessage) -> tuple[str, str, int, int] | None:
        """The application's series this message is a part of (for sticking to one modem):
        its concatenation by UDH (8- or 16-bit reference) or SAR, read as the carriers' path
        reads it."""
        try:
            concat = stored_content(message)[0].concat
        except LocalSmppError:
            return None
        if concat is None:
            return None
        return (message.source_addr, message.destination_addr, concat.ref, concat.total)

    async def _send(self, message: NewMessage, tpdus: list[SubmitTpdu]) -> SendResult:
        parts = len(tpdus)
        series = self._series(message)
        tried: set[_Slot] = set()
        last: SendOutcome | None = None
        deadline = asyncio.get_running_loop().time() + _WAIT_FOR_MODEM
        while len(tried) < 2:
            now = self.clock()
            slot = self._sticky_slot(series, now, parts, tried)
            if slot is None:
                slot = self._pick(now, parts, tried)
            if slot is None:
                left = deadline - asyncio.get_running_loop().time()
                if tried or left <= 0:
                    break  # tried one already, or waited long enough: the dispatcher retries
                await self._wait_change(left)
                continue
            if self.before_send is not None:
                self.before_send(message)
            tried.add(slot)
            if series is not None:  # at once: the series' other parts are being sent now too
                self._remember_series(series, slot, now)
            slot.queue += 1
            slot.inflight += parts
            try:
                outcome = await slot.modem.send(tpdus)
            except Exception as exc:  # a driver bug must not lose the message
                log.exception("modem send failed", modem=slot.config.name)
                outcome = SendOutcome(False, reason=repr(exc))
            finally:
                slot.queue -= 1
                slot.inflight -= parts
            if outcome.message_refs:
                await self._count(slot, len(outcome.message_refs))
            self._wake_one()
            if outcome.ok:
                return self._sent(slot, message, outcome)
            last = outcome
            log.info(
                "modem send failed",
                modem=slot.config.name,
                reason=outcome.reason,
                permanent=outcome.permanent,
            )
            if outcome.permanent:
                return SendResult(False, error=self._error(outcome), permanent=True)
        return SendResult(False, error=self._error(last) if last else _SYSERR)

    @staticmethod
    def _error(outcome: SendOutcome) -> int:
        error = outcome.error
        return error.code if error is not None and error.code is not None else _SYSERR

    def _sticky_slot(
        self,
        series: tuple[str, str, int, int] | None,
        now: float,
        parts: int,
        tried: set[_Slot],
    ) -> _Slot | None:
        if series is None:
            return None
        held = self._sticky.get(series)
        if held is None or now - held[1] > _STICKY_TTL or held[0] in tried:
            return None
        slot = held[0]
        # The same modem even past its queue: a series split over two senders never joins.
        if self._pickable(slot, now, parts, full=True):
            return slot
        log.warning("modem of a series unavailable: its next part goes by another", series=series)
        return None

    def _remember_series(self, series: tuple[str, str, int, int], slot: _Slot, now: float) -> None:
        self._sticky[series] = (slot, now)
        self._sticky.move_to_end(series)
        while len(self._sticky) > _MAX_STICKY:
            self._sticky.popitem(last=False)

    def _identity(self, slot: _Slot) -> str:
        return slot.modem.info.imei or slot.config.imei or slot.config.name

    def _sent(self, slot: _Slot, message: NewMessage, outcome: SendOutcome) -> SendResult:
        ident = self._identity(slot)
        recipient = _digits(_destination(message))
        ids = tuple(f"{ident}/{mr}/{recipient}" for mr in outcome.message_refs)
        now = self.clock()
        sent_at = self._sent_at
        window = self.config.report_window
        for upstream_id in ids:
            before = sent_at.get(upstream_id)
            previous = before[0] if before is not None and now - before[0] <= window else None
            sent_at[upstream_id] = (now, previous)
            sent_at.move_to_end(upstream_id)
        while sent_at and (
            len(sent_at) > _MAX_SENT_AT or now - next(iter(sent_at.values()))[0] > window
        ):
            sent_at.popitem(last=False)
        if not ids:  # a modem that reports no TP-MR: no receipt can match
            return SendResult(True, f"{ident}/-/{recipient}/{message.id}")
        return SendResult(True, ids[0], upstream_ids=ids if len(ids) > 1 else ())

    async def _count(self, slot: _Slot, parts: int) -> None:
        now = self.clock()
        windows = usage_windows(now)
        used = slot.used(now)
        slot.usage = Usage(used.minute + parts, used.day + parts, used.month + parts)
        slot.windows = windows
        key = slot.usage_key or _sim_key(self.bank, slot)
        try:
            stored = await self.store.count_usage(key, now, parts)
        except Exception:
            log.exception("usage not counted", modem=slot.config.name)
            return
        if slot.windows == windows:  # another send may have counted meanwhile: keep the most
            slot.usage = Usage(
                max(stored.minute, slot.usage.minute),
                max(stored.day, slot.usage.day),
                max(stored.month, slot.usage.month),
            )

    async def _load_usage(self, slot: _Slot) -> None:
        key = _sim_key(self.bank, slot)
        now = self.clock()
        try:
            usage = await self.store.usage(key, now)
        except Exception:
            log.exception("usage not read; the modem waits", modem=slot.config.name)
            return
        slot.usage, slot.windows, slot.usage_key = usage, usage_windows(now), key
        self._wake_all()

    # -- ModemSink ----------------------------------------------------------------------------

    def state_changed(self, modem: Modem | _Modem) -> None:
        slot = self._by_modem.get(id(modem))
        if slot is None:
            return
        self.events.modem_state(self.bank, slot.config.name, modem.state.value)
        hopeless = self.unusable_reason()
        if hopeless is not None and self._hopeless is None:
            log.error("modem bank cannot send: fix and restart", bank=self.bank, reason=hopeless)
        self._hopeless = hopeless
        if modem.ready():
            key = _sim_key(self.bank, slot)
            if slot.usage_key != key and (slot.loading is None or slot.loading.done()):
                slot.usage_key = None
                task = asyncio.get_running_loop().create_task(self._load_usage(slot))
                slot.loading = task
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        self._wake_all()

    async def status_report(
        self, modem: Modem | _Modem, report: SmsStatusReport, raw: bytes
    ) -> None:
        slot = self._by_modem.get(id(modem))
        sink = self._sink
        if slot is None or sink is None:
            return
        upstream_id = f"{self._identity(slot)}/{report.message_ref}/{_digits(report.recipient)}"
        now = self.clock()
        sends = self._sent_at.get(upstream_id)
        if sends is not None and now - sends[0] > self.config.report_window:
            log.warning("status report past its window dropped", id=upstream_id)
            return
        if sends is not None and self._for_earlier_send(slot, report, sends):
            log.warning(
                "status report for an earlier message with a reused TP-MR dropped",
                id=upstream_id,
                scts=report.timestamp.isoformat(),
                status=report.status,
            )
            return
        state = STATE_OF_REPORT[classify_status(report.status)]
        await sink.receipt(
            UpstreamReceipt(
                self.name,
                upstream_id,
                state.message_state,
                error=report.status,
                done_at=now,
                raw=report_text(upstream_id, report, state, raw),
            )
        )

    @staticmethod
    def _for_earlier_send(
        slot: _Slot, report: SmsStatusReport, sends: tuple[float, float | None]
    ) -> bool:
        """Whether `report` is for a send before the latest one with its id (see the module
        docstring); learns the SMSC's clock from the reports that are not."""
        latest, previous = sends
        try:
            scts = report.timestamp.timestamp()
        except (OverflowError, OSError, ValueError):
            return False
        offset = slot.smsc_offset()
        seen = scts - (offset or 0.0)  # the SMSC's time stamp in our clock
        if previous is not None:
            nearer = abs(seen - previous) < abs(seen - latest)
            # With the SMSC's clock unknown, only when the time stamp is plainly that send's.
            earlier = nearer and (offset is not None or abs(seen - previous) <= _SCTS_SLACK)
        else:
            earlier = offset is not None and seen < latest - _SCTS_SLACK
        if not earlier:
            slot.offsets.append(scts - latest)
        return earlier

    async def incoming(self, modem: Modem | _Modem, deliver: SmsDeliver, raw: bytes) -> None:
        slot = self._by_modem.get(id(modem))
        sink = self._sink
        if slot is None or sink is None:
            raise RuntimeError("bank stopped")  # the modem keeps the SMS for later
        refused = await sink.inbound(self.deliver_sm(slot.config, deliver))
        if refused:
            # For good (the MO path logged why): it can never be handed on, so the modem
            # deletes it from the SIM rather than keep it there and fill the storage.
            log.warning(
                "inbound SMS refused: deleted from the modem",
                modem=slot.config.name,
                status=f"0x{refused:08X}",
                pdu=raw.hex(),
            )

    def deliver_sm(self, modem: ModemConfig, deliver: SmsDeliver) -> DeliverSm:
        """An SMS-DELIVER as the deliver_sm the dispatcher routes (MO)."""
        source, source_ton, source_npi = _address(deliver.originator)
        if (deliver.originator_toa & 0x70) == 0x50:
            source_ton, source_npi = 5, 0
        own = modem.number or self.bank
        destination, dest_ton, dest_npi = _address(own)
        udh = build_udh(deliver.udh) if deliver.udh else b""
        return DeliverSm(
            source_addr_ton=source_ton,
            source_addr_npi=source_npi,
            source_addr=source,
            dest_addr_ton=dest_ton,
            dest_addr_npi=dest_npi,
            destination_addr=destination,
            esm_class=0x40 if udh else 0,
            protocol_id=deliver.pid,
            data_coding=mo_data_coding(deliver.dcs, deliver.encoding),
            short_message=udh + deliver.user_data,
        )

    # -- state and USSD -----------------------------------------------------------------------

    def state(self) -> list[dict[str, Any]]:
        """Each modem's state, for `smsgw modem list`."""
        now = self.clock()
        out = []
        for slot in self._slots:
            info = slot.modem.info
            used = slot.used(now)
            limits = slot.config.limits
            out.append(
                {
                    "bank": self.bank,
                    "name": slot.config.name,
                    "port": info.port,
                    "state": info.state.name,
                    "imei": info.imei,
                    "iccid": info.iccid,
                    "operator": info.operator,
                    "registration": info.registration,
                    "signal_dbm": info.signal_dbm,
                    "sent": info.sent,
                    "failed": info.failed,
                    "received": info.received,
                    "queue": slot.queue,
                    "used": {"minute": used.minute, "day": used.day, "month": used.month},
                    "limits": {
                        "minute": limits.per_minute,
                        "day": limits.per_day,
                        "month": limits.per_month,
                    },
                    "last_error": info.last_error,
                }
            )
        return out

    def modem(self, name: str) -> _Modem:
        """The modem called `name`.

        Raises:
            KeyError: no such modem in this bank.
        """
        for slot in self._slots:
            if slot.config.name == name:
                return slot.modem
        raise KeyError(name)

    async def ussd(self, modem: str, code: str, timeout: float = 30.0) -> str:
        """Send a USSD code through one modem and return the network's answer."""
        return await self.modem(modem).ussd(code, timeout)


def mo_data_coding(dcs: int, encoding: Encoding) -> int:
    """The data_coding of an SMS-DELIVER's deliver_sm. 8-bit data keeps its TP-DCS where SMPP
    reads it the same (0x04, 0x15, 0xF5...: the message class - SIM data-download, class 2 -
    and the like reach the application); below 0x10 SMPP gives the same octets other
    meanings (0x05 is JIS, 0x06 Cyrillic), so there only the alphabet passes. Text is
    joined and cut again for the application anyway: its alphabet alone matters."""
    if encoding is _BINARY and encoding_of_data_coding(dcs) is _BINARY:
        return dcs
    return data_coding_of(encoding)


def report_text(
    upstream_id: str, report: SmsStatusReport, state: MessageState, raw: bytes
) -> bytes:
    """A status report as the store keeps it (a receipt's raw text): its fields as read,
    with the PDU as it came, so an operator can read and check it."""
    return (
        f"sms-status-report id:{upstream_id} mr:{report.message_ref} st:0x{report.status:02X}"
        f" scts:{report.timestamp.isoformat()} dt:{report.discharge_time.isoformat()}"
        f" stat:{state.stat} pdu:{raw.hex().upper()}"
    ).encode()
