"""One GSM modem: the asyncio shell around `AtEngine` on a `SerialTransport`.

Theory of operation
-------------------
One task per modem keeps it connected. Each round opens the port (finding the modem by IMEI /
ICCID among `candidates` when the configured port is missing or holds another modem), runs the
readiness sequence, then serves until the port is lost, and reopens after a backoff with
jitter that starts over once the modem was ready again:

    OPENING       open the port (exclusive); ESC, in case whoever had the port before left
                  the modem at AT+CMGS's prompt; identity check when imei / iccid are configured
    INITIALISING  AT until OK (a modem takes seconds after plug-in), ATE0V1, AT+CMEE=1
    SIM_WAIT      AT+CPIN?: SIM busy (+CME 14) retried with backoff; SIM PIN -> AT+CPIN=<pin>
                  from settings once; no PIN configured, a refused PIN, PUK -> FAILED
    INITIALISING  SMS set-up, before registration (the network hands over what it held the
                  moment the modem registers): AT+CMGF=0, AT+CGMI, AT+QURCCFG (Quectel),
                  AT+CPMS, AT+CPMS=?, AT+CNMI=2,1,0,2,0, AT+CSMS?, AT+CSCA? (set from settings
                  when empty); refused while the modem's SMS side starts (SIM800 until "SMS
                  Ready"): asked again on that URC or every second, up to init_timeout
    REGISTERING   AT+CREG=1, then AT+CREG? (and +CREG URCs) until home / roaming, or timeout
    INITIALISING  identity: CGSN, CIMI, ICCID, ATI, CGMI/M/R
    READY         stored messages drained; +CMTI / +CDSI / +CMT / +CDS handled; health
                  (AT+CSQ;+CREG?;+COPS? as one line, then AT+CPMS?) every `health_interval`

FAILED is final (until `stop` / `start`): it is only reached when retrying could harm the SIM
(a wrong PIN is never sent twice: SIMs lock after three) or cannot help (PUK needed). Every
other failure (no answer, SIM missing, no registration, a vanished port) reopens.

Commands go through the engine's one queue; each caller awaits a future resolved by the
command's final event. Nothing polls: the engine's deadline is one `loop.call_later`, the port
is a `loop.add_reader`, health is one timer per interval.

Receiving: indications and direct messages are queued to one worker task that (once READY on
this connection, so the modem is identified) reads, hands to the sink, and only after the sink
returned deletes (AT+CMGD) or acknowledges (AT+CNMA when AT+CSMS? says phase 2+). A sink that
raises leaves the message stored; it is tried again at the next health round. Reading status
reports from "SR" switches the read memory (AT+CPMS="SR"), so everything that reads or deletes
storage holds one lock. Nothing is lost to a vendor's ways: an announced slot that does not
hold what was announced (+CDSI: "SM" for a report in "SR"; CMS 321 for an empty one) makes
every memory be listed at once; AT+CPMS? in the health round and Huawei's ^SMMEMFULL drain a
memory before it fills; when no SMS URC came for `poll_quiet` seconds every memory is listed
anyway; a TPDU handed on lately is not handed on again (a +CMT repeated after a late CNMA).
A modem found keeping status reports with inbound messages (a report read from a memory other
than "SR") gets them directly instead (AT+CSMS=1, CNMI <ds>=1, +CDS and AT+CNMA) where it can
(`report_routing`). An unplugged modem's port is watched for every `reopen_backoff`, so it is
set up again before it registers and the reports the network held arrive with routing set.

Sending: one message at a time per modem, its parts in order, one AT+CMGS each. Transient
errors are retried `send_tries` times with backoff; permanent ones end the message; CMS 322
drains storage and CMS 330 sets AT+CSCA from settings before one more try (with none, or still
refused, the modem is `send_blocked` and the failure temporary: the bank uses another modem).
A lost port ends the send as a temporary failure (the bank sends it elsewhere). After an
AT+CMGS timeout the late "+CMGS: <mr>" is waited for briefly, so a part the network took is not
sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol, TypeVar

import structlog

from drivers.modem import commands
from drivers.modem.at import (
    ESC,
    AtEngine,
    AtError,
    Command,
    CommandAborted,
    CommandDone,
    CommandFailed,
    CommandTimedOut,
    Event,
    Garbage,
    IncomingSms,
    NewMessage,
    Registration,
    Ring,
    StaleAnswer,
    StatusReport,
    StatusReportStored,
    Ussd,
    VendorUrc,
    parse_error,
    split_fields,
)
from drivers.modem.serial_transport import (
    PortError,
    PortMissing,
    SerialTransport,
    expand_candidates,
)
from gateway.sms.errors import SmsError
from gateway.sms.tpdu import SmsDeliver, SmsStatusReport, SubmitTpdu, decode_pdu

__all__ = [
    "Modem",
    "ModemError",
    "ModemFailed",
    "ModemInfo",
    "ModemSettings",
    "ModemSink",
    "ModemState",
    "SendOutcome",
    "UssdError",
    "classify_send_error",
]

log = structlog.get_logger("smsgw.modem")
_T = TypeVar("_T")


class ModemState(Enum):
    CLOSED = "closed"
    OPENING = "opening"
    INITIALISING = "initialising"
    SIM_WAIT = "sim_wait"
    REGISTERING = "registering"
    READY = "ready"
    FAILED = "failed"


@dataclass
class ModemSettings:
    """One modem's settings (plain values; the bank builds them from YAML).

    Attributes:
        name: the modem's name in the bank; logs and counters use it.
        port: its device path; a /dev/serial/by-id/... link is followed at each open.
        imei, iccid: its identity; when given, a modem on `port` with another identity is not
            used, and a missing or wrong `port` makes the driver search `candidates`.
        candidates: glob patterns of ports to search by identity.
        baudrate, rtscts: line settings.
        pin: the SIM PIN, entered once when the SIM asks (a refused PIN is never retried).
        smsc: the SMSC address, set with AT+CSCA when the SIM has none (or a send says 330).
        health_interval: seconds between health rounds (signal, registration, operator).
        command_timeout: seconds an ordinary command may take.
        send_timeout: seconds an AT+CMGS may take (the network answers it).
        reopen_backoff, max_reopen_backoff: reopen delay, doubling, with jitter.
        status_reports: have reports stored and announced (+CDSI), and read "SR".
        storage: the message storage for reading, writing and receiving (AT+CPMS).
        init_timeout: how long to wait for AT to answer after open, and for a busy SIM.
        registration_timeout: how long to wait for network registration before reopening.
        send_tries: attempts per part for transient errors (CMS 500, 512, timeouts...).
        send_backoff: first delay between them, doubling, with jitter.
        urc_port: the port a Quectel is told to write its URCs to (AT+QURCCFG="urcport"):
            "usbat" (the AT port), "usbmodem" or "uart1" - the one this driver reads.
        poll_quiet: when no SMS URC (+CMTI, +CDSI, +CMT, +CDS) has come for this many
            seconds, storage is listed anyway (a safety net for URCs that go astray, or a
            report that came while a drain was listing); 0 turns it off.
        ussd_packed: USSD as packed GSM 7-bit hex both ways; None: on Huawei modems.
        report_routing: "stored" (+CDSI, reports kept until read), "direct" (+CDS,
            acknowledged with AT+CNMA after AT+CSMS=1: no storage slot), or "auto": stored,
            until a report turns up in the memory inbound messages need (not "SR"): then
            direct, where the modem takes AT+CSMS=1.
    """

    name: str
    port: str
    imei: str | None = None
    iccid: str | None = None
    candidates: tuple[str, ...] = ()
    baudrate: int = 115200
    rtscts: bool = False
    pin: str | None = None
    smsc: str | None = None
    health_interval: float = 30.0
    command_timeout: float = 10.0
    send_timeout: float = 60.0
    reopen_backoff: float = 1.0
    max_reopen_backoff: float = 60.0
    status_reports: bool = True
    storage: str = "SM"
    init_timeout: float = 30.0
    registration_timeout: float = 120.0
    send_tries: int = 3
    send_backoff: float = 1.0
    urc_port: str = "usbat"
    poll_quiet: float = 120.0
    ussd_packed: bool | None = None
    report_routing: str = "auto"


@dataclass
class ModemInfo:
    """What is known of a modem now (a snapshot: `Modem.info` returns a copy).

    `sent` and `failed` count messages (a 3-part message once); `received` SMS-DELIVERs
    handed to the sink. `send_blocked` says why a READY modem cannot send (no SMSC address):
    the bank gives its messages to another modem.
    """

    port: str = ""
    imei: str | None = None
    imsi: str | None = None
    iccid: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    revision: str | None = None
    signal_dbm: int | None = None
    ber: int | None = None
    registration: str = "unknown"
    operator: str = ""
    smsc: str | None = None
    sent: int = 0
    failed: int = 0
    received: int = 0
    last_error: str | None = None
    state: ModemState = ModemState.CLOSED
    send_blocked: str | None = None


@dataclass(frozen=True)
class SendOutcome:
    """What became of one message.

    Attributes:
        ok: every part was accepted (`message_refs` holds each part's TP-MR, in order).
        message_refs: on failure, the TP-MRs of the parts accepted before it.
        error: the modem's error for the part that failed, None for a timeout or lost port.
        permanent: retrying (here or on another modem) cannot help.
        reason: words for logs and the store.
    """

    ok: bool
    message_refs: tuple[int, ...] = ()
    error: AtError | None = None
    permanent: bool = False
    reason: str = ""


class ModemSink(Protocol):
    async def incoming(self, modem: Modem, deliver: SmsDeliver, raw: bytes) -> None:
        """An SMS-DELIVER (`raw`: SMSC part and TPDU). Durable when it returns: only then is
        it deleted from the modem (or acknowledged)."""

    async def status_report(self, modem: Modem, report: SmsStatusReport, raw: bytes) -> None:
        """An SMS-STATUS-REPORT (`raw`: SMSC part and TPDU). Durable when it returns; then
        deleted / acknowledged."""

    def state_changed(self, modem: Modem) -> None: ...


class ModemError(Exception):
    """A modem operation failed."""


class ModemFailed(ModemError):
    """The modem is FAILED (see `ModemInfo.last_error`)."""


class UssdError(ModemError):
    """A USSD request got an error or no answer."""


# -- errors inside the shell --------------------------------------------------------------------


class _CommandError(ModemError):
    def __init__(self, command: Command, error: AtError) -> None:
        super().__init__(f"{command.text}: {_describe(error)}")
        self.command = command
        self.error = error


class _Timeout(ModemError):
    pass


class _PortLost(ModemError):
    pass


class _Retry(ModemError):
    """This round failed; close, back off and reopen."""


class _Missing(_Retry):
    """The modem's port is not there (unplugged), nor found among the candidates."""


class _Fatal(ModemError):
    """Retrying could harm the SIM or cannot help: FAILED."""


def _describe(error: AtError) -> str:
    if error.kind in ("CME", "CMS"):
        code = "" if error.code is None else f" {error.code}"
        return f"+{error.kind} ERROR{code}" + (f" ({error.text})" if error.text else "")
    return error.kind


# TS 27.005 3.2.5 / TS 24.011 annex E-2 / TS 23.040 9.2.3.22: these mean the message itself is
# wrong or refused for good; everything else (CMS 500, 512-515 "busy", 38, 41, 42, 331, 332, CME
# 14, unknown vendor codes) may work on the next try or another modem.
_PERMANENT_CMS = frozenset(
    {1, 8, 10, 21, 28, 29, 30, 50, 69, 81, 95, 96, 97, 98, 99, 111, 127}
    | set(range(128, 192))
    | {193, 195, 196, 197, 198, 199, 208, 209, 304, 305}
) - {129}  # "short message Type 0 not supported": another SIM may take it


def classify_send_error(error: AtError) -> str:
    """ "permanent", "storage_full", "no_smsc" or "transient" for an AT+CMGS error."""
    if error.kind == "CMS" and error.code is not None:
        if error.code == 322:
            return "storage_full"
        if error.code == 330:
            return "no_smsc"
        if error.code in _PERMANENT_CMS:
            return "permanent"
    return "transient"


def _sim_busy(error: AtError) -> bool:
    return (
        (error.kind == "CME" and error.code == 14)
        or (error.kind == "CMS" and error.code in (314, 515))
        or error.kind == "ERROR"  # some modems answer plain ERROR while the SIM starts
        or "busy" in error.text.lower()
    )


def _is_report(pdu: bytes) -> bool:
    """Whether a stored PDU (SMSC part first) is an SMS-STATUS-REPORT (TP-MTI 10, 23.040
    9.2.3.1)."""
    return len(pdu) > 1 + pdu[0] and pdu[1 + pdu[0]] & 0x03 == 0x02


def _sms_not_ready(error: AtError) -> bool:
    """An SMS command refused because the modem's SMS side is still starting (SIM800 before
    "SMS Ready": ERROR; others CMS 302 / 314 / 515, CME 3 / 14)."""
    return _sim_busy(error) or (error.kind, error.code) in {("CMS", 302), ("CME", 3)}


def _first_text(lines: Sequence[str]) -> str:
    for line in lines:
        text = line.partition(":")[2].strip() if line.startswith("+") else line.strip()
        if text:
            return text.strip('"')
    raise commands.AnswerError("empty")


_NO_SMSC = "no SMSC address on the SIM and none configured (smsc)"
_MAX_RECENT = 1024  # TPDUs remembered so one delivered twice is handed on once
_STORAGE_MARGIN = 0.75  # a memory this full is drained at once


_REGISTRATION = {
    0: "not registered",
    1: "home",
    2: "searching",
    3: "denied",
    4: "unknown",
    5: "roaming",
    6: "home",
    7: "roaming",
    9: "home",
    10: "roaming",
}
_REGISTERED = frozenset({1, 5, 6, 7, 9, 10})
_HEALTH_MISSES = 3  # health rounds without an answer before the port counts as dead
_SETTLE = 0.2  # seconds after the ESC written at open for the modem to answer it


# -- inbound jobs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Stored:
    mem: str
    index: int
    report: bool  # announced by +CDSI
    drains: int  # drains started when it was announced: a later one has listed it


@dataclass(frozen=True, slots=True)
class _Direct:
    pdu: bytes
    generation: int  # the port connection it came on: AT+CNMA only on that one


@dataclass(frozen=True, slots=True)
class _Drain:
    done: asyncio.Future[None] | None = None


_Job = _Stored | _Direct | _Drain


@dataclass(slots=True)
class _Late:
    """A timed-out AT+CMGS whose answer may still come."""

    future: asyncio.Future[int | AtError | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Modem:
    """One modem (see the module docstring).

    Args:
        settings: port, identity, PIN, timeouts.
        sink: where received messages, status reports and state changes go.
        clock: monotonic seconds for the AT engine's deadlines.
    """

    def __init__(
        self,
        settings: ModemSettings,
        sink: ModemSink,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = settings.name
        self.settings = settings
        self._sink = sink
        self._clock = clock
        self._log = log.bind(modem=settings.name)
        self._info = ModemInfo(port=settings.port)
        self._state = ModemState.CLOSED
        self._changed = asyncio.Event()
        self._engine = AtEngine(now=clock())
        self._transport: SerialTransport | None = None
        self._generation = 0
        self._pending: deque[tuple[Command, asyncio.Future[tuple[str, ...]]]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._pumping = False
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._jobs: asyncio.Queue[_Job] = asyncio.Queue()
        self._storage_lock = asyncio.Lock()
        self._send_lock = asyncio.Lock()
        self._ussd_lock = asyncio.Lock()
        self._ussd_waiter: asyncio.Future[Ussd] | None = None
        self._late: _Late | None = None
        self._read_mem: str | None = None
        self._cnma = False
        self._batch_health = True
        self._drain_due = False
        self._pin_rejected = False
        self._found_port: str | None = None
        self._stopping = False
        self._registered_evt = asyncio.Event()
        self._serving = False  # READY was reached on this connection (registration may go)
        self._sms_ready_evt = asyncio.Event()
        self._memories: tuple[str, ...] = ()  # what AT+CPMS=? offers to read
        self._drains = 0
        self._last_urc = clock()
        self._last_poll = clock()
        self._recent: OrderedDict[bytes, None] = OrderedDict()  # TPDUs handed on lately
        self._send_blocked: str | None = None
        # Status reports as +CDS (AT+CSMS=1, CNMI <ds>=1): chosen, or learned ("auto").
        self._direct_reports = settings.report_routing == "direct"

    # -- state --------------------------------------------------------------------------------

    @property
    def state(self) -> ModemState:
        return self._state

    @property
    def info(self) -> ModemInfo:
        return dataclasses.replace(self._info, state=self._state, send_blocked=self._send_blocked)

    def ready(self) -> bool:
        return self._state is ModemState.READY

    def _set_state(self, state: ModemState) -> None:
        if state is self._state:
            return
        self._log.info("modem state", state=state.value, was=self._state.value)
        self._state = state
        self._info.state = state
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        try:
            self._sink.state_changed(self)
        except Exception:
            self._log.exception("state_changed sink failed")

    async def wait_state(self, *states: ModemState, timeout: float) -> ModemState:
        """Until the state is one of `states`; TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            while self._state not in states:
                await self._changed.wait()
        return self._state

    async def wait_ready(self, timeout: float) -> None:
        """Until READY.

        Raises:
            ModemFailed: the modem is FAILED (the reason is in the message).
            TimeoutError: not READY within `timeout` seconds.
        """
        state = await self.wait_state(ModemState.READY, ModemState.FAILED, timeout=timeout)
        if state is ModemState.FAILED:
            raise ModemFailed(f"{self.name}: {self._info.last_error}")

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start keeping the modem connected (returns at once; see `wait_ready`)."""
        if self._task is not None:
            return
        self._stopping = False
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._keep_connected(), name=f"modem-{self.name}")
        self._worker = loop.create_task(self._work(), name=f"modem-{self.name}-inbound")

    async def stop(self) -> None:
        """Close the port; running commands and sends fail (temporarily)."""
        self._stopping = True
        tasks = [t for t in (self._task, self._worker) if t is not None]
        self._task = self._worker = None
        for task in tasks:
            task.cancel()
        self._close()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._set_state(ModemState.CLOSED)

    async def _keep_connected(self) -> None:
        s = self.settings
        delay = s.reopen_backoff
        missing = False
        while not self._stopping:
            try:
                await self._connect()
                missing = False
                await self._initialise()
                delay = s.reopen_backoff  # it was up: start over
                await self._serve()
            except _Fatal as exc:
                self._fail(str(exc))
                # Not only in `modem list`: the operator must act (PIN, PUK, SIM).
                self._log.error("modem failed; not retried until restarted", reason=str(exc))
                self._close()
                self._set_state(ModemState.FAILED)
                return
            except (PortMissing, _Missing) as exc:
                # Unplugged: looked for every reopen_backoff, not backed off, so a modem that
                # comes back is set up before it registers (the reports it brings need routing).
                self._fail(str(exc))
                if not missing:
                    self._log.warning("modem port missing, watching for it", error=str(exc))
                missing = True
                self._close()
                self._set_state(ModemState.CLOSED)
                await asyncio.sleep(s.reopen_backoff * random.uniform(0.5, 1.0))
                continue
            except (PortError, _Retry, _PortLost, _CommandError, _Timeout) as exc:
                reason = str(exc) if not isinstance(exc, _Timeout) else f"no answer to {exc}"
                self._fail(reason)
                self._log.warning("modem down, reopening", error=reason, retry_in=delay)
            except commands.AnswerError as exc:
                self._fail(f"unexpected answer: {exc}")
                self._log.warning("modem down, reopening", error=str(exc), retry_in=delay)
            except Exception as exc:  # a bug must not end the modem's life silently
                self._fail(f"internal error: {exc!r}")
                self._log.exception("modem task failed, reopening", retry_in=delay)
            self._close()
            self._set_state(ModemState.CLOSED)
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, s.max_reopen_backoff)

    def _fail(self, reason: str) -> None:
        self._info.last_error = reason

    # -- the port -----------------------------------------------------------------------------

    async def _open(self, path: str) -> None:
        transport = SerialTransport(
            path,
            baudrate=self.settings.baudrate,
            rtscts=self.settings.rtscts,
            on_data=self._on_data,
            on_lost=self._on_lost,
        )
        await transport.open()
        self._generation += 1
        self._transport = transport
        self._lost.clear()
        self._read_mem = None
        self._info.port = transport.device
        self._log.debug("port open", port=transport.device)
        # Whoever had the port before (a process killed mid-send, our own lost connection) may
        # have left the modem at AT+CMGS's "> " prompt, where it takes every command we type as
        # the message's text: ESC leaves it (TS 27.005 3.5.1) and does nothing at the command
        # prompt. What the modem answers to it (an OK, or nothing) comes before our first
        # command is written, so it is a stale answer and not taken for that command's.
        transport.write(ESC)
        await asyncio.sleep(_SETTLE)
        if self._transport is not transport:
            raise PortError(transport.device, "lost as it was opened")

    def _close(self) -> None:
        """Close the port; every running and queued command fails with `_PortLost`."""
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
        self._engine.reset()
        self._pump()

    def _on_data(self, data: bytes) -> None:
        self._engine.receive_data(data, self._clock())
        self._pump()

    def _on_lost(self, exc: Exception | None) -> None:
        self._log.warning("port lost", port=self._info.port, error=str(exc) if exc else "EOF")
        self._transport = None
        self._lost.set()
        self._engine.reset()
        self._pump()
        if not self._stopping and self._state is not ModemState.FAILED:
            self._set_state(ModemState.CLOSED)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._engine.handle_timer(self._clock())
        self._pump()

    def _pump(self) -> None:
        """Write what the engine has to say, dispatch its events, re-arm its timer."""
        if self._pumping:
            return  # a write that lost the port called back in: the outer loop drains
        self._pumping = True
        try:
            # Dispatching only resolves futures and queues jobs: it never makes output.
            while True:
                out = self._engine.data_to_send()
                if out and self._transport is not None:
                    self._transport.write(out)
                event = self._engine.next_event()
                if event is None:
                    break
                self._dispatch(event)
        finally:
            self._pumping = False
        self._arm()

    def _arm(self) -> None:
        deadline = self._engine.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            delay = max(0.0, deadline - self._clock())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    async def _command(self, command: Command) -> tuple[str, ...]:
        """Run one command; its information lines.

        Raises:
            _CommandError: an error result. _Timeout: no answer in time. _PortLost: the port
            is closed or went away before the answer.
        """
        if self._transport is None:
            raise _PortLost("port closed")
        future: asyncio.Future[tuple[str, ...]] = asyncio.get_running_loop().create_future()
        self._pending.append((command, future))
        self._engine.send(command, self._clock())
        self._pump()
        return await future

    def _resolve(self, command: Command) -> asyncio.Future[tuple[str, ...]] | None:
        for i, (cmd, future) in enumerate(self._pending):
            if cmd is command:
                del self._pending[i]
                return None if future.done() else future
        return None

    # -- engine events ------------------------------------------------------------------------

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, CommandDone):
            future = self._resolve(event.command)
            if future is not None:
                future.set_result(event.lines)
        elif isinstance(event, CommandFailed):
            future = self._resolve(event.command)
            if future is not None:
                future.set_exception(_CommandError(event.command, event.error))
        elif isinstance(event, CommandTimedOut):
            future = self._resolve(event.command)
            if future is not None:
                future.set_exception(_Timeout(event.command.text))
        elif isinstance(event, CommandAborted):
            future = self._resolve(event.command)
            if future is not None:
                future.set_exception(_PortLost(f"{event.command.text}: port lost"))
        elif isinstance(event, NewMessage | StatusReportStored):
            self._heard()
            report = isinstance(event, StatusReportStored)
            self._jobs.put_nowait(_Stored(event.mem, event.index, report, self._drains))
        elif isinstance(event, IncomingSms | StatusReport):
            self._heard()
            self._jobs.put_nowait(_Direct(event.pdu, self._generation))
        elif isinstance(event, Registration):
            if event.name == "+CREG":
                self._registration(event.stat)
        elif isinstance(event, Ussd):
            waiter = self._ussd_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(event)
            else:
                self._log.info("network USSD", m=event.m, text=event.text)
        elif isinstance(event, StaleAnswer):
            self._stale(event.lines, event.result)
        elif isinstance(event, VendorUrc):
            self._vendor_urc(event)
        elif isinstance(event, Ring):
            self._log.debug("ring", kind=event.kind)
        elif isinstance(event, Garbage):
            self._log.debug("garbage from modem", data=event.data[:80])

    def _heard(self) -> None:
        """An SMS URC came: they reach this port (see `ModemSettings.poll_quiet`). Others
        (^RSSI, +CREG) may come while the SMS ones go astray, so they do not count."""
        self._last_urc = self._clock()

    def _stale(self, lines: tuple[str, ...], result: str) -> None:
        late = self._late
        mr: int | AtError | None = None
        with contextlib.suppress(commands.AnswerError):
            mr = commands.parse_cmgs(lines)
        if mr is None and result:
            mr = parse_error(result)
        self._log.info("late answer", lines=lines, result=result)
        if late is not None and mr is not None and not late.future.done():
            late.future.set_result(mr)

    def _vendor_urc(self, event: VendorUrc) -> None:
        if event.name == "SMS Ready":  # SIMCom: SMS commands work from now on
            self._sms_ready_evt.set()
        elif event.name == "^SMMEMFULL":  # Huawei: a memory is full; read it now
            self._log.warning("modem storage full", mem=event.value)
            if self._serving:  # else the drain that starts serving reads it
                self._jobs.put_nowait(_Drain())
        elif event.name == "^RSSI":
            with contextlib.suppress(ValueError):
                rssi = int(event.value)
                self._info.signal_dbm = -113 + 2 * rssi if 0 <= rssi <= 31 else None
        elif event.name == "+CMGS" and self._late is not None and not self._late.future.done():
            # A late +CMGS during the next command (echo off): the timed-out part went out.
            with contextlib.suppress(ValueError):
                self._late.future.set_result(int(split_fields(event.value)[0]))
        else:
            self._log.debug("vendor urc", name=event.name, value=event.value)

    def _registration(self, stat: int) -> None:
        self._info.registration = _REGISTRATION.get(stat, "unknown")
        if stat in _REGISTERED:
            self._registered_evt.set()
        else:
            self._registered_evt.clear()
        if self._state is ModemState.READY and stat not in _REGISTERED:
            self._set_state(ModemState.REGISTERING)
        elif self._state is ModemState.REGISTERING and stat in _REGISTERED and self._serving:
            self._set_state(ModemState.READY)

    # -- getting ready --------------------------------------------------------------------------

    async def _connect(self) -> None:
        """Open the configured port, or find the modem among the candidates by identity."""
        s = self.settings
        self._serving = False
        self._set_state(ModemState.OPENING)
        first_error: Exception | None = None
        tried: set[str] = set()
        for path in dict.fromkeys(p for p in (s.port, self._found_port) if p):
            try:
                await self._open(path)
            except PortError as exc:
                self._log.warning("cannot open port", port=path, error=str(exc))
                first_error = first_error or exc
                continue
            assert self._transport is not None
            tried.add(self._transport.device)
            if not (s.imei or s.iccid):
                return
            try:
                await self._wake(s.init_timeout)
                if await self._identity_matches(strict=False):
                    return
            except (_CommandError, _Timeout, _Retry) as exc:
                first_error = first_error or exc
            self._close()
        if s.imei or s.iccid:
            for device in expand_candidates(s.candidates):
                if device in tried:
                    continue
                tried.add(device)
                try:
                    await self._open(device)
                except PortError as exc:
                    self._log.debug("candidate skipped", port=device, error=str(exc))
                    continue
                try:
                    await self._wake(2.0)
                    if await self._identity_matches(strict=True):
                        self._found_port = device
                        self._log.info("modem found by identity", port=device)
                        return
                except (_CommandError, _Timeout, _Retry, _PortLost):
                    pass
                self._close()
            wanted = " ".join(f"{k} {v}" for k, v in (("IMEI", s.imei), ("ICCID", s.iccid)) if v)
            where = ", ".join(s.candidates) or "no candidates configured"
            reason = f"modem with {wanted} not found on {s.port} or {where}"
            if first_error is not None:
                reason += f" ({first_error})"
            raise _Missing(reason) if isinstance(first_error, PortMissing) else _Retry(reason)
        raise first_error if first_error is not None else _Retry(f"cannot open {s.port}")

    async def _identity_matches(self, *, strict: bool) -> bool:
        """Whether the modem on the open port is the configured one. `strict`: an identity
        that cannot be read does not match (a candidate must prove itself)."""
        s = self.settings
        imei = iccid = None
        if s.imei:
            imei = await self._try_read(commands.cgsn(), commands.parse_imei)
            if imei is not None and imei != s.imei:
                self._log.info("another modem on the port", port=self._info.port, imei=imei)
                return False
        if s.iccid:
            iccid = await self._read_iccid()
            if iccid is not None and iccid != s.iccid:
                self._log.info("another SIM on the port", port=self._info.port, iccid=iccid)
                return False
        if imei is None and iccid is None:
            if strict:
                return False
            self._log.warning("identity unreadable; using the configured port anyway")
        return True

    async def _try_read(self, command: Command, parse: Callable[[Sequence[str]], _T]) -> _T | None:
        try:
            return parse(await self._command(command))
        except (_CommandError, _Timeout, commands.AnswerError):
            return None

    async def _read_iccid(self) -> str | None:
        for text in commands.ICCID_COMMANDS:
            iccid = await self._try_read(commands.ccid(text), commands.parse_iccid)
            if iccid is not None:
                return iccid
        return None

    async def _wake(self, timeout: float) -> None:
        """AT until OK: a modem just plugged in takes a while to answer."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                await self._command(Command("AT", timeout=min(1.0, timeout)))
                return
            except _Timeout:
                pass
            except _CommandError:
                await asyncio.sleep(0.2)
            if loop.time() >= deadline:
                raise _Retry(f"no answer to AT within {timeout:g} s")

    async def _initialise(self) -> None:
        s = self.settings
        self._set_state(ModemState.INITIALISING)
        await self._wake(s.init_timeout)
        # V1 too: a modem another tool left in numeric mode (ATV0) answers in words again.
        await self._command(Command("ATE0V1", timeout=s.command_timeout))
        # Numeric codes: vendors word +CMS errors each their own way (AT+CMEE=2), and the
        # code decides what a failed send means; the tables give the words for logs.
        with contextlib.suppress(_CommandError):
            await self._command(Command("AT+CMEE=1", timeout=s.command_timeout))
        self._set_state(ModemState.SIM_WAIT)
        await self._unlock_sim()
        # SMS storage and routing before registration: the network hands over the reports and
        # messages it held the moment the modem registers, and with AT+CNMI not yet set a
        # modem may throw reports away (27.005 3.4.1, <ds>=0).
        self._set_state(ModemState.INITIALISING)
        await self._sms_setup_when_ready()
        self._set_state(ModemState.REGISTERING)
        await self._register()
        self._set_state(ModemState.INITIALISING)
        await self._identify()
        await self._health()
        self._info.last_error = (
            None if self._send_blocked is None else f"send: {self._send_blocked}"
        )
        self._serving = True
        self._set_state(ModemState.READY)

    async def _unlock_sim(self) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + s.init_timeout
        delay = 0.25
        pin_sent = False
        while True:
            try:
                wants = commands.parse_cpin(await self._command(commands.cpin_query()))
            except _CommandError as exc:
                code = exc.error.code if exc.error.kind == "CME" else None
                if code == 11:
                    wants = "SIM PIN"
                elif code == 12:
                    wants = "SIM PUK"
                elif code in (10, 13, 15):
                    raise _Retry(f"SIM problem: {_describe(exc.error)}") from None
                elif _sim_busy(exc.error):
                    if loop.time() >= deadline:
                        raise _Retry(f"SIM still busy after {s.init_timeout:g} s") from None
                    await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                    delay = min(delay * 2, 5.0)
                    continue
                else:
                    raise
            if wants == "READY":
                return
            if wants == "SIM PIN":
                if pin_sent or self._pin_rejected:
                    self._pin_rejected = True
                    raise _Fatal("the SIM still asks for its PIN after the configured one")
                if not s.pin:
                    raise _Fatal("the SIM asks for a PIN and none is configured (pin)")
                try:
                    command = commands.cpin(s.pin)
                except ValueError as exc:
                    raise _Fatal(f"the configured PIN is not valid: {exc}") from None
                try:
                    await self._command(command)
                except _CommandError as exc:
                    if exc.error.kind == "CME" and exc.error.code == 14:
                        await asyncio.sleep(delay)
                        continue
                    self._pin_rejected = True
                    raise _Fatal(
                        f"the SIM refused the configured PIN ({_describe(exc.error)}); not "
                        "retried: a SIM locks after three wrong PINs"
                    ) from None
                pin_sent = True
                self._log.info("SIM PIN entered")
                continue
            if wants == "SIM PUK":
                raise _Fatal("the SIM is locked and needs its PUK")
            raise _Fatal(f"the SIM waits for {wants}")

    async def _register(self) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + s.registration_timeout
        with contextlib.suppress(_CommandError):
            await self._command(Command("AT+CREG=1", timeout=s.command_timeout))
        while True:
            try:
                reg = commands.parse_creg(await self._command(commands.creg_query()))
            except (_CommandError, commands.AnswerError):
                reg = None
            if reg is not None:
                self._registration(reg.stat)
                if reg.registered:
                    return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise _Retry(
                    f"not registered after {s.registration_timeout:g} s ({self._info.registration})"
                )
            # A +CREG URC wakes us early; otherwise ask again every second.
            self._registered_evt.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._registered_evt.wait(), min(1.0, remaining))

    async def _sms_setup_when_ready(self) -> None:
        """`_sms_setup`, waiting (bounded by `init_timeout`) while the modem says SMS is not
        ready yet: a SIM800 answers ERROR until its "SMS Ready" URC. Reopening instead would
        only start the wait again, with the port closed while reports arrive."""
        s = self.settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + s.init_timeout
        while True:
            self._sms_ready_evt.clear()
            try:
                await self._sms_setup()
                return
            except _CommandError as exc:
                remaining = deadline - loop.time()
                if not _sms_not_ready(exc.error) or remaining <= 0:
                    raise
                self._log.info("SMS not ready yet, waiting for it", error=str(exc))
            # "SMS Ready" wakes us; a modem that never says it is asked again every second.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sms_ready_evt.wait(), min(1.0, remaining))

    async def _sms_setup(self) -> None:
        s = self.settings
        t = s.command_timeout
        await self._command(Command("AT+CMGF=0", timeout=t))
        manufacturer = await self._try_read(Command("AT+CGMI", timeout=t), _first_text)
        self._info.manufacturer = manufacturer or self._info.manufacturer
        if "quectel" in (manufacturer or "").lower():
            # Quectel EC2x/EG25 AT manual, AT+QURCCFG: URCs go to one port only, not always
            # the one we read.
            with contextlib.suppress(_CommandError, ValueError):
                await self._command(Command(f'AT+QURCCFG="urcport","{s.urc_port}"', timeout=t))
        mem = s.storage.upper()
        await self._command(commands.cpms(mem, mem, mem))
        self._read_mem = mem
        memories = await self._try_read(commands.cpms_test(), commands.parse_cpms_test)
        wanted = [mem, *(m for m in ("SM", "ME", "SR") if m != mem)]
        if not s.status_reports:
            wanted.remove("SR")
        self._memories = tuple(m for m in wanted if memories is None or m in memories)
        if memories is None:
            self._memories = (mem, "SR") if s.status_reports and mem != "SR" else (mem,)
        if self._direct_reports and s.status_reports:
            try:  # 27.005 3.2.1: phase 2+, so +CDS waits for AT+CNMA and is never lost
                await self._command(Command("AT+CSMS=1", timeout=t))
            except _CommandError as exc:
                self._log.warning("reports stay stored: AT+CSMS=1 refused", error=str(exc))
                self._direct_reports = False
        await self._set_cnmi()
        self._cnma = False
        try:
            lines = await self._command(Command("AT+CSMS?", timeout=t))
            fields = split_fields(lines[0].partition(":")[2]) if lines else []
            self._cnma = fields[:1] == ["1"]  # phase 2+: +CMT / +CDS need AT+CNMA
            if len(fields) >= 3 and fields[2] == "0":
                self._log.warning("the modem says it cannot send SMS", csms=lines[0])
        except (_CommandError, IndexError):
            pass
        address: str | None = None
        with contextlib.suppress(_CommandError, commands.AnswerError):
            address, _ = commands.parse_csca(await self._command(commands.csca_query()))
        if not address and s.smsc:
            try:
                command = commands.csca(s.smsc)
            except ValueError as exc:
                raise _Fatal(f"the configured SMSC address is not valid: {exc}") from None
            await self._command(command)
            address = s.smsc
            self._log.info("SMSC address set from settings", smsc=s.smsc)
        elif not address:
            self._log.error("no SMSC address on the SIM and none configured (smsc)")
        self._info.smsc = address
        self._send_blocked = None if address else _NO_SMSC

    async def _set_cnmi(self) -> None:
        t = self.settings.command_timeout
        ds = (1 if self._direct_reports else 2) if self.settings.status_reports else 0
        cnmi = f"AT+CNMI=2,1,0,{ds},0"
        try:
            await self._command(Command(cnmi, timeout=t))
        except _CommandError:
            # Mode 2 (buffer URCs while the port is busy) is not everywhere; mode 1 is.
            await self._command(Command(cnmi.replace("=2,", "=1,", 1), timeout=t))

    async def _identify(self) -> None:
        info = self._info
        info.imei = await self._try_read(commands.cgsn(), commands.parse_imei) or info.imei
        info.imsi = await self._try_read(commands.cimi(), commands.parse_imsi) or info.imsi
        info.iccid = await self._read_iccid() or info.iccid

        ati = await self._try_read(Command("ATI"), tuple)
        info.manufacturer = (
            await self._try_read(Command("AT+CGMI"), _first_text) or info.manufacturer
        )
        info.model = await self._try_read(Command("AT+CGMM"), _first_text) or info.model
        info.revision = await self._try_read(Command("AT+CGMR"), _first_text) or info.revision
        self._log.info(
            "modem identified",
            imei=info.imei,
            imsi=info.imsi,
            iccid=info.iccid,
            model=info.model,
            ati=" / ".join(ati or ()),
        )

    # -- serving ------------------------------------------------------------------------------

    async def _serve(self) -> None:
        """Drain what is stored, then health rounds until the port is lost."""
        self._jobs.put_nowait(_Drain())
        misses = 0
        while True:
            interval = self.settings.health_interval
            if self._state is not ModemState.READY:
                interval = min(interval, 5.0)  # waiting for the network to come back
            # Jitter, so a bank's modems do not all poll in the same instant.
            interval *= random.uniform(0.9, 1.1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), interval)
            if self._lost.is_set():
                raise _PortLost("port lost")
            try:
                await self._health()
                misses = 0
            except _Timeout:
                misses += 1
                if misses >= _HEALTH_MISSES:
                    raise _Retry(f"no answer to {misses} health checks") from None
            except _CommandError as exc:
                self._log.warning("health check failed", error=str(exc))
            quiet = self.settings.poll_quiet
            now = self._clock()
            if quiet > 0 and now - max(self._last_urc, self._last_poll) >= quiet:
                # No URC for a while: they may go to another port (Quectel) or be lost. What
                # is stored is found anyway.
                self._log.debug("no URC lately: listing storage")
                self._last_poll = now
                self._drain_due = True
            if self._drain_due:
                self._drain_due = False
                self._jobs.put_nowait(_Drain())

    async def _health(self) -> None:
        """Signal, registration and operator: one command line when the modem takes it."""
        t = self.settings.command_timeout
        if self._batch_health:
            try:
                lines = await self._command(Command("AT+CSQ;+CREG?;+COPS?", timeout=t))
            except _CommandError:
                self._batch_health = False  # some firmware refuses compound lines
            else:
                self._read_health(lines, lines, lines)
                await self._watch_storage()
                return
        csq = await self._command(commands.csq())
        creg = await self._command(commands.creg_query())
        cops = await self._command(Command("AT+COPS?", timeout=t))
        self._read_health(csq, creg, cops)
        await self._watch_storage()

    async def _watch_storage(self) -> None:
        """AT+CPMS?: a memory that is filling is drained before it is full (a full one
        refuses what the network brings: reports are lost, messages wait at the SMSC)."""
        try:
            uses = commands.parse_cpms(await self._command(commands.cpms_query()))
        except (_CommandError, commands.AnswerError):
            return
        for use in uses:
            if use.total > 0 and use.used >= max(1, use.total * _STORAGE_MARGIN):
                self._log.warning(
                    "modem storage filling: draining it",
                    mem=use.mem,
                    used=use.used,
                    total=use.total,
                )
                self._drain_due = True
                return

    def _read_health(self, csq: Sequence[str], creg: Sequence[str], cops: Sequence[str]) -> None:
        info = self._info
        with contextlib.suppress(commands.AnswerError):
            quality = commands.parse_csq(csq)
            info.signal_dbm = quality.dbm
            info.ber = None if quality.ber == 99 else quality.ber
        with contextlib.suppress(commands.AnswerError):
            operator = commands.parse_cops(cops)
            info.operator = operator.name or ""
        with contextlib.suppress(commands.AnswerError):
            self._registration(commands.parse_creg(creg).stat)

    # -- receiving ------------------------------------------------------------------------------

    async def _work(self) -> None:
        """Handle indications and direct messages one at a time."""
        while True:
            job = await self._jobs.get()
            # An indication that came during set-up waits for READY: until the modem is
            # identified on this connection its IMEI, which names its status reports, may not
            # be known (a restarted gateway meets the reports its predecessor left stored).
            while not self._serving and not isinstance(job, _Drain):
                await self._changed.wait()
            try:
                if isinstance(job, _Direct):
                    await self._direct(job)
                    continue
                async with self._storage_lock:
                    if isinstance(job, _Drain):
                        await self._drain()
                    else:
                        await self._read_stored(job)
            except (_PortLost, _Timeout) as exc:
                self._log.info("inbound handling interrupted", error=str(exc))
                self._drain_due = True  # what is still stored is read at the next drain
            except Exception:
                self._log.exception("inbound handling failed")
                self._drain_due = True
            finally:
                if isinstance(job, _Drain) and job.done is not None and not job.done.done():
                    job.done.set_result(None)

    async def _use_mem(self, mem: str) -> None:
        mem = mem.upper()
        if self._read_mem != mem:
            await self._command(commands.cpms(mem))
            self._read_mem = mem

    async def _read_stored(self, job: _Stored) -> None:
        await self._use_mem(job.mem)
        try:
            lines = await self._command(commands.cmgr(job.index))
        except _CommandError as exc:
            if exc.error.kind != "CMS" or exc.error.code != 321:
                raise
            lines = ()  # "invalid memory index": how SIMCom and Quectel say the slot is empty
        message = commands.parse_cmgr(lines, job.index)
        if message is not None:
            await self._hand(message.pdu, job.index)
            if not job.report or _is_report(message.pdu):
                return
        elif job.drains != self._drains:
            return  # an empty slot: a drain started since has read it
        # Not where it was announced (+CDSI: "SM" for a report stored in "SR"): look in every
        # memory now rather than at the next health round.
        self._log.info(
            "announced message not found there: reading every memory", mem=job.mem, index=job.index
        )
        await self._drain()

    async def _drain(self) -> None:
        """Read, hand on and delete everything received that is stored."""
        self._drains += 1
        mems = list(self._memories) or [self.settings.storage.upper()]
        for mem in mems:
            try:
                await self._use_mem(mem)
                listed = commands.parse_cmgl(await self._command(commands.cmgl(4)))
            except _CommandError as exc:
                self._log.debug("cannot list storage", mem=mem, error=str(exc))
                continue
            for message in listed:
                if message.stat in (0, 1) and message.index is not None:
                    try:
                        await self._hand(message.pdu, message.index)
                    except (_PortLost, _Timeout, asyncio.CancelledError):
                        raise
                    except Exception:
                        self._log.exception("stored message not handled", index=message.index)
                        self._drain_due = True

    async def _hand(self, pdu: bytes, index: int) -> None:
        """Give a stored message to the sink; delete it once the sink has it."""
        try:
            decoded = decode_pdu(pdu)
        except SmsError as exc:
            # It can never be delivered; the log keeps its octets, the slot is freed.
            self._log.error("undecodable stored message deleted", pdu=pdu.hex(), error=str(exc))
            await self._command(commands.cmgd(index))
            return
        if not isinstance(decoded, SmsDeliver | SmsStatusReport):
            return  # an SMS-SUBMIT someone stored: not ours to delete
        await self._to_sink(decoded, pdu)
        await self._command(commands.cmgd(index))
        if (
            isinstance(decoded, SmsStatusReport)
            and self._read_mem not in (None, "SR")
            and self.settings.report_routing == "auto"
            and not self._direct_reports
        ):
            # This modem keeps reports with inbound messages (<mem3>): they would take the
            # slots those need. Route them to us directly where the modem allows it.
            self._direct_reports = True
            try:
                await self._command(Command("AT+CSMS=1", timeout=self.settings.command_timeout))
            except _CommandError as exc:
                self._log.info("reports stay stored with inbound messages", error=str(exc))
                return
            self._cnma = True
            await self._set_cnmi()
            self._log.info("status reports routed directly (+CDS): none stored", mem=self._read_mem)

    async def _to_sink(self, decoded: SmsDeliver | SmsStatusReport, pdu: bytes) -> None:
        """Hand on once: a message the modem brings again (a +CMT repeated because its
        AT+CNMA was late, then stored too) is dropped, by its TPDU, SC time stamp included."""
        key = pdu[1 + pdu[0] :] if pdu else pdu
        if key in self._recent:
            self._log.info(
                "message delivered again by the modem: handed on once",
                report=isinstance(decoded, SmsStatusReport),
            )
            return
        if isinstance(decoded, SmsDeliver):
            await self._sink.incoming(self, decoded, pdu)
            self._info.received += 1
        else:
            await self._sink.status_report(self, decoded, pdu)
        self._recent[key] = None
        while len(self._recent) > _MAX_RECENT:
            self._recent.popitem(last=False)

    async def _direct(self, job: _Direct) -> None:
        """+CMT / +CDS: to the sink, then AT+CNMA when the modem waits for it."""
        try:
            decoded = decode_pdu(job.pdu)
        except SmsError as exc:
            self._log.error("undecodable direct message", pdu=job.pdu.hex(), error=str(exc))
            decoded = None
        if isinstance(decoded, SmsDeliver | SmsStatusReport):
            await self._to_sink(decoded, job.pdu)
        if self._cnma and job.generation == self._generation and self._transport is not None:
            try:
                await self._command(Command("AT+CNMA", timeout=self.settings.command_timeout))
            except _CommandError as exc:
                if exc.error.kind != "CMS" or exc.error.code != 340:
                    raise
                # 27.005 3.4.4: too late; the modem gave up on direct routing (<mt>, <ds> set
                # to 0) and the network sends the message again: routing back on, and a drain.
                self._log.warning("AT+CNMA too late: the message will come again")
                await self._set_cnmi()
                self._drain_due = True

    # -- sending ------------------------------------------------------------------------------

    async def send(self, tpdus: Sequence[SubmitTpdu | bytes]) -> SendOutcome:
        """Send one message: its parts in order, one AT+CMGS each.

        Args:
            tpdus: each part as the SMSC part followed by the SMS-SUBMIT TPDU (bytes), or as
                `submit_tpdus` returns them.

        Returns:
            ok with each part's TP-MR, or why not (temporary unless `permanent`). Never raises
            for modem or port trouble.
        """
        parts = [t if isinstance(t, bytes) else t.pdu for t in tpdus]
        bad = next((p for p in parts if not p or p[0] + 1 >= len(p)), None)
        if not parts or bad is not None:
            return SendOutcome(False, permanent=True, reason="no TPDU after the SMSC part")
        async with self._send_lock:
            refs: list[int] = []
            for i, pdu in enumerate(parts):
                result = await self._send_part(pdu)
                if isinstance(result, SendOutcome):
                    self._info.failed += 1
                    if result.error is not None:
                        self._info.last_error = f"send: {result.reason}"
                    self._log.warning(
                        "send failed",
                        part=i + 1,
                        parts=len(parts),
                        reason=result.reason,
                        permanent=result.permanent,
                    )
                    return dataclasses.replace(result, message_refs=tuple(refs))
                refs.append(result)
            self._info.sent += 1
            return SendOutcome(True, tuple(refs))

    async def _send_part(self, pdu: bytes) -> int | SendOutcome:
        s = self.settings
        tries = 0
        drained = smsc_set = False
        while True:
            if self._state is not ModemState.READY:
                return SendOutcome(False, reason=f"modem not ready ({self._state.value})")
            if self._send_blocked is not None:
                return SendOutcome(False, reason=self._send_blocked)
            tries += 1
            error: AtError | None = None
            try:
                lines = await self._command(commands.cmgs(pdu, pdu[0] + 1, timeout=s.send_timeout))
                return commands.parse_cmgs(lines)
            except _PortLost:
                return SendOutcome(False, reason="port lost during the send")
            except commands.AnswerError as exc:
                reason = f"unexpected answer: {exc}"
            except _Timeout:
                late = await self._late_answer()
                if isinstance(late, int):
                    self._log.info("late +CMGS: the part was sent", message_ref=late)
                    return late
                error = late
                reason = "no answer to AT+CMGS" if late is None else _describe(late)
            except _CommandError as exc:
                error = exc.error
                reason = _describe(error)
            if error is not None:
                kind = classify_send_error(error)
                if kind == "permanent":
                    return SendOutcome(False, error=error, permanent=True, reason=reason)
                if kind == "storage_full" and not drained:
                    drained = True
                    self._log.warning("storage full: draining it before another try")
                    await self._drain_now()
                    continue
                if kind == "no_smsc":
                    # This SIM cannot send; another modem of the bank can: not permanent.
                    if not s.smsc or smsc_set:
                        why = _NO_SMSC if not s.smsc else "the SMSC refuses the configured one"
                        self._block_sending(why)
                        return SendOutcome(False, error=error, reason=why)
                    smsc_set = True
                    try:
                        await self._command(commands.csca(s.smsc))
                    except ValueError as exc:
                        why = f"the configured SMSC address is not valid: {exc}"
                        self._block_sending(why)
                        return SendOutcome(False, error=error, reason=why)
                    except (_CommandError, _Timeout, _PortLost) as exc:
                        return SendOutcome(False, error=error, reason=f"AT+CSCA failed: {exc}")
                    self._info.smsc = s.smsc
                    continue
            if tries >= s.send_tries:
                return SendOutcome(False, error=error, reason=f"{reason} ({tries} tries)")
            await asyncio.sleep(s.send_backoff * 2 ** (tries - 1) * random.uniform(0.5, 1.5))

    def _block_sending(self, why: str) -> None:
        if self._send_blocked is None:
            self._log.error("modem cannot send until reconnected", reason=why)
        self._send_blocked = why
        self._info.last_error = f"send: {why}"
        try:
            self._sink.state_changed(self)  # the bank stops picking it
        except Exception:
            self._log.exception("state_changed sink failed")

    async def _late_answer(self) -> int | AtError | None:
        """After an AT+CMGS timeout: its late answer, if one comes soon (the TP-MR, the error,
        or None)."""
        self._late = late = _Late()
        try:
            async with asyncio.timeout(min(self.settings.command_timeout, 10.0)):
                return await late.future
        except TimeoutError:
            return None
        finally:
            self._late = None

    async def _drain_now(self) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._jobs.put_nowait(_Drain(done))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.send_timeout):
                await done

    # -- USSD ---------------------------------------------------------------------------------

    async def ussd(self, code: str, timeout: float = 30.0) -> str:
        """AT+CUSD=1,"<code>",15 and the network's answer, decoded by its DCS.

        Raises:
            UssdError: not ready, an error, no answer within `timeout`, or the network said
                the request is not supported.
            ValueError: `code` is not a USSD string.
        """
        packed = self.settings.ussd_packed
        if packed is None:  # Huawei sticks take and give packed GSM 7-bit hex (DCS 15)
            packed = "huawei" in (self._info.manufacturer or "").lower()
        command = commands.cusd(
            code, packed_hex=packed, timeout=min(timeout, self.settings.command_timeout)
        )
        if self._state is not ModemState.READY:
            raise UssdError(f"{self.name} is not ready ({self._state.value})")
        async with self._ussd_lock:
            waiter: asyncio.Future[Ussd] = asyncio.get_running_loop().create_future()
            self._ussd_waiter = waiter
            try:
                await self._command(command)
                async with asyncio.timeout(timeout):
                    answer = await waiter
            except (_CommandError, _Timeout, _PortLost) as exc:
                raise UssdError(f"{self.name}: USSD {code}: {exc}") from None
            except TimeoutError:
                raise UssdError(f"{self.name}: no USSD answer within {timeout:g} s") from None
            finally:
                self._ussd_waiter = None
            if answer.m == 1:  # the network wants more: we do not, so end the session
                with contextlib.suppress(_CommandError, _Timeout, _PortLost):
                    await self._command(Command("AT+CUSD=2"))
        if answer.m in (4, 5) or (answer.m == 2 and not answer.text):
            what = {2: "ended by the network", 4: "not supported", 5: "timed out"}[answer.m]
            raise UssdError(f"{self.name}: USSD {code}: {what}")
        return commands.decode_ussd(answer.text, answer.dcs, packed_hex=packed)
