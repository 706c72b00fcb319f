"""A GSM modem on a pseudo-terminal, behind a simulated network: the project's fake modem.

Three files: this one (the modem and its command set), `emulator_network` (the operator) and
`emulator_quirks` (what real modems do wrong, and vendor profiles); the names are all here.

Theory of operation
-------------------
`SimNetwork` plays the operator: the SMSC that checks and records each SMS-SUBMIT, assigns
TP-MR per modem, sends SMS-STATUS-REPORTs after `report_delay`, and carries what a test injects
(inbound SMS-DELIVERs, multipart too, raw URC lines, registration and signal changes) to one
modem. It keeps one time-ordered queue per modem; a modem's thread asks for what is due
(`due`) and for when to ask next (`next_due`), so the network itself has no thread and takes its
clock as an argument.

`ModemEmulator` is one modem. `start()` opens a pty (the slave in raw mode, kept open by us so
the master never sees EIO while no client has the port open) and serves the master side from
one thread: a selector on the master and a wake pipe, every wait bounded by the next deadline
and every loop by the stop event. The command interpreter follows V.250 for the line (``AT``
prefix, basic commands run together as in ``ATE0V1``, extended ones separated by ``;``, CR ends
the line, echo per ATE) and 3GPP TS 27.007 / 27.005 for the commands: identity, SIM PIN,
registration, SMS in PDU and text mode (CMGS with the ``> `` prompt, CMGR, CMGL, CMGD, CMGW,
CNMA), storage (CPMS, SM/ME/SR), new-message indications (CNMI: +CMTI, +CMT, +CDS, +CDSI) and
USSD. URCs are queued while a command runs or a prompt is open and written between answers,
unless a quirk says otherwise.

`Quirks` switch on what real modems do that trips drivers up. All are read when used, so a test
may flip one on a running modem.

Deliberately left out: calls, data (ATD), phonebooks, cell broadcast, flow control (AT+IFC is
accepted and ignored: a pty has none), and SMS-COMMAND.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import os
import re
import selectors
import threading
import time
import tty
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from drivers.modem.emulator_network import (
    CME_TEXT,
    CMS_TEXT,
    NetworkEvent,
    ReceivedMessage,
    SimNetwork,
    SubmitRejected,
    SubmittedPart,
)
from drivers.modem.emulator_quirks import VENDOR_PROFILES, Quirks, VendorProfile, vendor
from gateway.sms import (
    Encoding,
    SmsError,
    decode_text,
    encode_gsm7,
    encode_text,
    pack_septets,
    unpack_septets,
)
from gateway.sms.tpdu import (
    TOA_INTERNATIONAL,
    TOA_UNKNOWN,
    SmsDeliver,
    SmsStatusReport,
    SmsSubmit,
    decode_pdu,
    decode_relative_validity,
    encode_sms_submit,
)

__all__ = [
    "VENDOR_PROFILES",
    "ModemEmulator",
    "NetworkEvent",
    "Quirks",
    "ReceivedMessage",
    "SimNetwork",
    "SubmitRejected",
    "SubmittedPart",
    "VendorProfile",
    "serve_emulators",
    "vendor",
]

# -- result codes -----------------------------------------------------------------------------

_STAT_TEXT = ("REC UNREAD", "REC READ", "STO UNSENT", "STO SENT", "ALL")
_MEMORIES = ("SM", "ME", "SR")
_CTRL_Z, _ESC = 0x1A, 0x1B
_MAX_LINE = 2048  # V.250 lets a DCE cap the command line; more is dropped as garbage
_MAX_PROMPT = 1024  # hex digits after "> ": a 164-octet TPDU and SMSC address fit easily
_MAX_OUT = 1 << 20  # written but unread bytes kept; more is dropped (nobody is reading)
_LAC, _CI = "00A1", "0000B2C3"


class _Fail(Exception):
    """A final result other than OK."""

    def __init__(self, kind: Literal["cme", "cms", "error"], code: int = 0) -> None:
        super().__init__(kind, code)
        self.kind = kind
        self.code = code


def _cme(code: int) -> _Fail:
    return _Fail("cme", code)


def _cms(code: int) -> _Fail:
    return _Fail("cms", code)


# -- the modem --------------------------------------------------------------------------------


def _luhn(digits: str) -> str:
    """`digits` with its Luhn check digit appended (IMEI, ICCID)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return digits + str(-total % 10)


_serial_numbers = itertools.count(1)


@dataclass(slots=True)
class _Stored:
    stat: int  # 0 REC UNREAD, 1 REC READ, 2 STO UNSENT, 3 STO SENT
    pdu: bytes  # SMSC part and TPDU
    tpdu_length: int


@dataclass(slots=True)
class _Prompt:
    command: Literal["cmgs", "cmgw"]
    length: int | None  # PDU mode: TPDU octets announced
    destination: str = ""  # text mode
    toa: int | None = None
    stat: int = 2


def _split_args(text: str) -> list[str | None]:
    """Comma-separated parameters; quotes removed; an empty unquoted one is None."""
    out: list[str | None] = []
    cur: list[str] = []
    quoted = in_quotes = False
    for ch in text:
        if ch == '"':
            in_quotes = not in_quotes
            quoted = True
        elif ch == "," and not in_quotes:
            out.append("".join(cur) if quoted else ("".join(cur).strip() or None))
            cur, quoted = [], False
        else:
            cur.append(ch)
    out.append("".join(cur) if quoted else ("".join(cur).strip() or None))
    return out


def _int(value: str | None, lo: int, hi: int, fail: _Fail, default: int | None = None) -> int:
    if value is None:
        if default is None:
            raise fail
        return default
    try:
        number = int(value)
    except ValueError:
        raise fail from None
    if not lo <= number <= hi:
        raise fail
    return number


def _scts(when: datetime) -> str:
    """A timestamp as text mode writes it: yy/MM/dd,hh:mm:ss±zz (zz in quarter hours)."""
    offset = when.utcoffset() or timedelta()
    quarters = int(offset.total_seconds()) // 900
    sign = "-" if quarters < 0 else "+"
    return f"{when:%y/%m/%d,%H:%M:%S}{sign}{abs(quarters):02d}"


_Handler = Callable[[str, list[str | None]], list[str]]
_Op = Literal["exec", "read", "test", "set"]


class ModemEmulator:
    """One GSM modem on a pseudo-terminal. See the module docstring.

    Args:
        network: the network it is registered on.
        imei, imsi, iccid: identities; made up (and valid) when not given.
        operator: the operator name AT+COPS? shows; `operator_numeric` its MCC+MNC.
        quirks: misbehaviours to switch on.
        capacity: messages each memory holds (SM, ME, SR).
        link: a path kept as a symlink to the current pty (as udev keeps /dev/serial/by-id).
        ack_timeout: seconds a +CMT / +CDS waits for AT+CNMA (when AT+CSMS=1) before the
            modem gives up on direct routing (27.005 3.4.4: <mt> and <ds> set to 0).
    """

    def __init__(
        self,
        network: SimNetwork,
        *,
        imei: str | None = None,
        imsi: str | None = None,
        iccid: str | None = None,
        operator: str = "SimNet",
        operator_numeric: str = "00101",
        manufacturer: str | None = None,
        model: str | None = None,
        revision: str = "EMU-1.0.0",
        quirks: Quirks | None = None,
        capacity: Mapping[str, int] | None = None,
        link: str | os.PathLike[str] | None = None,
        ack_timeout: float = 10.0,
    ) -> None:
        n = next(_serial_numbers)
        self.network = network
        self.imei = imei or _luhn(f"35{os.getpid() % 1000:03d}{n:09d}")
        self.imsi = imsi or f"{operator_numeric}{n:010d}"
        self.iccid = iccid or _luhn(f"8900{os.getpid() % 1000:03d}{n:011d}")
        self.operator = operator
        self.operator_numeric = operator_numeric
        self.quirks = quirks if quirks is not None else Quirks()
        profile = VENDOR_PROFILES.get(self.quirks.vendor)
        self.manufacturer = manufacturer or (profile.manufacturer if profile else "SMSGW")
        self.model = model or (profile.model if profile else "EMU-1")
        self.revision = revision
        self.link = Path(link) if link is not None else None
        self.ack_timeout = ack_timeout
        self.capacity = {"SM": 30, "ME": 100, "SR": 30}
        self.capacity.update(capacity or {})
        # The SIM: kept across replug and ATZ.
        self._mem: dict[str, dict[int, _Stored]] = {m: {} for m in _MEMORIES}
        self._csca: tuple[str, int] = ("", TOA_UNKNOWN)
        if not self.quirks.no_smsc:
            self._csca = (network.smsc, TOA_INTERNATIONAL)
        self._urc_port = ""  # AT+QURCCFG="urcport": kept in the modem's NV, across power-on
        self.pin_attempts = 3
        self.unacked = 0  # +CMT / +CDS the TE never acknowledged
        self.delivered_direct = 0  # +CMT / +CDS written (a repeat counts again)
        self.commands: list[str] = []  # every command line received, for tests to inspect
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._master = self._slave = self._wake_r = self._wake_w = -1
        self.port = ""
        self._power_on()
        self._table = self._handlers()

    # lifecycle

    def __enter__(self) -> ModemEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> str:
        """Open a new pty and serve it. Returns the port path (also in `.port`)."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("the emulator is already running")
            master, slave = os.openpty()
            tty.setraw(slave)  # no echo, no CR/LF translation: the line is the modem's
            os.set_blocking(master, False)
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)
            self._master, self._slave = master, slave
            self.port = os.ttyname(slave)
            self._inbuf.clear()
            self._out.clear()
            if self.link is not None:
                self.link.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.link.with_name(f".{self.link.name}.{os.getpid()}.tmp")
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                tmp.symlink_to(self.port)
                tmp.replace(self.link)  # atomic: the link never dangles mid-replug
            self._stop = threading.Event()
            self.network.attach(self.imei, self._wake)
            self._thread = threading.Thread(
                target=self._serve, args=(self._stop,), name=f"modem-{self.imei}", daemon=True
            )
            self._thread.start()
            return self.port

    def stop(self) -> None:
        """Stop serving and close the pty (the client's reads and writes fail)."""
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        self._wake()
        thread.join(timeout=5.0)
        with self._lock:
            self._thread = None
            self.network.detach(self.imei)
            for fd in (self._master, self._slave, self._wake_r, self._wake_w):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._master = self._slave = self._wake_r = self._wake_w = -1
            if self.link is not None and self.link.is_symlink():
                with contextlib.suppress(OSError):
                    if os.readlink(self.link) == self.port:
                        self.link.unlink()

    def unplug(self) -> None:
        """Pull the modem out: the pty closes, the port (and the link) vanish."""
        self.stop()

    def replug(self) -> str:
        """Plug it back in: a power-on (settings reset, PIN asked again, registration again)
        on a new pty, possibly at a new path; the link follows. The SIM's storage stays."""
        self.stop()
        with self._lock:
            self._power_on()
        return self.start()

    def stored(self, memory: str = "SM") -> dict[int, tuple[int, str]]:
        """What a memory holds: index -> (stat, PDU hex)."""
        with self._lock:
            return {i: (m.stat, m.pdu.hex().upper()) for i, m in sorted(self._mem[memory].items())}

    # state

    def _power_on(self) -> None:
        now = time.monotonic()
        self._reset_profile()
        self._cfun = 1
        self._pin_ok = self.quirks.pin is None
        self._puk_needed = False
        self._sim_busy_left = self.quirks.sim_busy
        self._search_since = now
        self._forced_stat: int | None = None
        self._last_stat = -1
        self._rssi = 20
        self._inbuf = bytearray()
        self._out = bytearray()
        self._prompt: _Prompt | None = None
        self._prompt_buf = bytearray()
        self._busy_until = 0.0
        self._held_output = b""
        self._urcs: list[str] = []
        self._held: list[NetworkEvent] = []
        self._ack_deadline: float | None = None
        self._awaiting: NetworkEvent | None = None
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_seq = itertools.count()
        self._next_flood = now
        self._flood_step = 0
        self._mid_step = 0
        self._cmgs_count = 0
        self._curc = True
        self._last_line = ""
        # SIM800: SMS commands wait for "SMS Ready", which comes after the SIM is ready.
        self._sms_ready_at: float | None = None
        if self.quirks.sms_ready_delay > 0:
            self._sms_ready_at = now + self.quirks.sms_ready_delay if self._pin_ok else math.inf

    def _reset_profile(self) -> None:
        """ATZ / AT&F / power-on: the settings a TE sets, not the SIM's."""
        self._echo = self.quirks.echo
        self._verbose = True
        self._quiet = False
        self._cmee = 0
        self._cmgf = 0
        self._cscs = "GSM"
        self._csms = 1 if self.quirks.cmt_always else 0
        self._cnmi = [1, 1, 0, 0, 0]  # mode, mt, bm, ds, bfr
        self._cpms = ["SM", "SM", "SM"]
        self._reg_n = {"+CREG": 0, "+CGREG": 0, "+CEREG": 0}
        self._csdh = 0
        self._csmp = [17, 167, 0, 0]  # fo, vp, pid, dcs
        self._cops_format = 0
        self._cusd = 0

    def _stat(self, now: float) -> int:
        """+CREG <stat> now."""
        if self._cfun != 1 or not self._pin_ok:
            return 0
        if self._forced_stat is not None:
            return self._forced_stat
        if now < self._search_since + self.quirks.registration_delay:
            return 2
        return 1

    def _registered(self) -> bool:
        return self._stat(time.monotonic()) in (1, 5)

    # the thread

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full pipe: a wake is already pending; closed: gone
            os.write(self._wake_w, b"x")

    def _serve(self, stop: threading.Event) -> None:
        sel = selectors.DefaultSelector()
        master, wake_r = self._master, self._wake_r
        sel.register(master, selectors.EVENT_READ, "pty")
        sel.register(wake_r, selectors.EVENT_READ, "wake")
        writing = False
        try:
            while not stop.is_set():
                with self._lock:
                    timeout = self._timeout(time.monotonic())
                    want_write = bool(self._out)
                if want_write != writing:
                    mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if want_write else 0)
                    sel.modify(master, mask, "pty")
                    writing = want_write
                for key, events in sel.select(timeout):
                    if key.data == "wake":
                        with contextlib.suppress(OSError):
                            os.read(wake_r, 4096)
                        continue
                    if events & selectors.EVENT_READ:
                        try:
                            data = os.read(master, 4096)
                        except BlockingIOError:
                            data = b""
                        except OSError:
                            return
                        with self._lock:
                            self._inbuf += data
                if stop.is_set():
                    break
                with self._lock:
                    self._tick(time.monotonic())
        finally:
            sel.close()

    def _timeout(self, now: float) -> float:
        deadlines = [now + 5.0]
        if self._timers:
            deadlines.append(self._timers[0][0])
        if self._busy_until:
            deadlines.append(self._busy_until)
        if self._ack_deadline is not None:
            deadlines.append(self._ack_deadline)
        due = self.network.next_due(self.imei)
        if due is not None:
            deadlines.append(now + (due - self.network.now()))
        if self._stat(now) == 2 and self._forced_stat is None:
            deadlines.append(self._search_since + self.quirks.registration_delay)
        if self.quirks.urc_flood_ms > 0 and self._curc:
            deadlines.append(self._next_flood)
        if self._sms_ready_at is not None and self._sms_ready_at != math.inf:
            deadlines.append(self._sms_ready_at)
        if self._held:
            deadlines.append(now + 0.2)  # storage may have been freed by a quirk switched off
        return max(0.0, min(deadlines) - now)

    def _tick(self, now: float) -> None:
        if self._busy_until and now >= self._busy_until:
            self._busy_until = 0.0
            self._write(self._held_output)
            self._held_output = b""
        while self._timers and self._timers[0][0] <= now:
            heapq.heappop(self._timers)[2]()
        if self._sms_ready_at is not None and now >= self._sms_ready_at:
            self._sms_ready_at = None
            self._urc("Call Ready")
            self._urc("SMS Ready")
        if self._ack_deadline is not None and now >= self._ack_deadline:
            self._ack_timed_out()
        for event in self.network.due(self.imei, self.network.now()):
            self._network_event(event)
        self._retry_held()
        stat = self._stat(now)
        if stat != self._last_stat:
            if self._last_stat >= 0:
                for name, n in self._reg_n.items():
                    if n:
                        self._urc(self._reg_urc(name, stat))
            self._last_stat = stat
        if self.quirks.urc_flood_ms > 0 and self._curc and now >= self._next_flood:
            self._next_flood = now + self.quirks.urc_flood_ms / 1000
            self._urc(self._vendor_urc())
        self._process_input(now)
        self._flush_urcs()
        self._flush()

    def _after(self, delay: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._timer_seq), action))

    # output

    def _write(self, data: bytes) -> None:
        if len(self._out) + len(data) <= _MAX_OUT:
            self._out += data

    def _flush(self) -> None:
        while self._out:
            try:
                written = os.write(self._master, self._out)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._out.clear()
                return
            del self._out[:written]

    def _line(self, text: str) -> bytes:
        raw = text.encode("latin-1", "replace")
        return raw + b"\r\n" if not self._verbose else b"\r\n" + raw + b"\r\n"

    def _block(self, lines: list[str]) -> bytes:
        """Information lines: one header, CR LF between them, one trailer (V.250 5.7.1)."""
        return self._line("\r\n".join(lines))

    def _urc(self, line: str) -> None:
        if self.quirks.urc_port and self.urc_port != "usbat":
            return  # written to the modem's other USB port: nobody reads it here
        if self.quirks.sms_urcs_lost and line.startswith(("+CMTI", "+CDS", "+CMT")):
            return
        self._urcs.append(line)

    @property
    def urc_port(self) -> str:
        """Where a Quectel writes its URCs (AT+QURCCFG="urcport"); "usbat" is this port."""
        return self._urc_port or self.quirks.urc_port or "usbat"

    def _flush_urcs(self) -> None:
        if self._urcs and self._prompt is None and not self._busy_until:
            self._write(b"".join(self._line(u) for u in self._urcs))
            self._urcs.clear()

    def _vendor_urc(self) -> str:
        self._flood_step += 1
        return (f"^RSSI:{self._rssi}", "^MODE:5,4", "^BOOT:20952757,0,0,0,72")[self._flood_step % 3]

    def _answer(self, info: list[str], final: str | _Fail) -> bytes:
        """The bytes of an answer: information lines and a final result code."""
        parts = [self._block(info)] if info else []
        if self.quirks.urc_mid_answer and info:
            self._mid_step += 1
            if self._mid_step % 2:
                parts.append(self._line(f"^RSSI:{self._rssi}"))
            else:
                parts.append(self._line(self._reg_urc("+CREG", self._stat(time.monotonic()))))
        if self._quiet:
            return b"".join(parts)
        if isinstance(final, _Fail):
            final = self._error_text(final)
        if not self._verbose and final in ("OK", "ERROR"):
            parts.append(b"0\r" if final == "OK" else b"4\r")
        else:
            parts.append(self._line(final))
        return b"".join(parts)

    def _error_text(self, fail: _Fail) -> str:
        if fail.kind == "error" or (fail.kind == "cme" and self._cmee == 0):
            return "ERROR"
        table = CME_TEXT if fail.kind == "cme" else CMS_TEXT
        label = "+CME ERROR" if fail.kind == "cme" else "+CMS ERROR"
        if self._cmee == 2:
            return f"{label}: {table.get(fail.code, 'unknown error')}"
        return f"{label}: {fail.code}"

    # input

    def _process_input(self, now: float) -> None:
        while self._inbuf and not self._busy_until:
            if self._prompt is not None:
                if not self._prompt_input():
                    return
                continue
            end = -1
            for i, byte in enumerate(self._inbuf):
                if byte in (0x0D, 0x0A):
                    end = i
                    break
            if end < 0:
                if len(self._inbuf) > _MAX_LINE:
                    self._inbuf.clear()
                return
            raw = bytes(self._inbuf[:end])
            if self._echo:
                self._write(bytes(self._inbuf[: end + 1]))
            del self._inbuf[: end + 1]
            while b"\x08" in raw:  # backspace edits the line, as V.250 S5 says
                i = raw.index(b"\x08")
                raw = raw[: max(0, i - 1)] + raw[i + 1 :]
            self._command_line(raw.decode("latin-1").strip(), now)

    def _prompt_input(self) -> bool:
        """Text after "> " until Ctrl-Z (send) or ESC (cancel). False: wait for more."""
        end = -1
        for i, byte in enumerate(self._inbuf):
            if byte in (_CTRL_Z, _ESC):
                end = i
                break
        chunk = bytes(self._inbuf if end < 0 else self._inbuf[:end])
        if self._echo:
            self._write(chunk)
        self._prompt_buf += chunk
        if end < 0:
            self._inbuf.clear()
            if len(self._prompt_buf) > _MAX_PROMPT:
                prompt, self._prompt = self._prompt, None
                self._prompt_buf.clear()
                bad = 305 if prompt is not None and prompt.length is None else 304
                self._respond([], _cms(bad))
            return False
        cancelled = self._inbuf[end] == _ESC
        del self._inbuf[: end + 1]
        prompt, self._prompt = self._prompt, None
        data = bytes(self._prompt_buf).decode("latin-1")
        self._prompt_buf.clear()
        if prompt is None or cancelled:
            self._respond([], "OK")
            return True
        try:
            info = self._prompt_done(prompt, data)
        except _Fail as fail:
            self._respond([], fail)
        else:
            self._respond(info, "OK")
        return True

    def _respond(self, info: list[str], final: str | _Fail) -> None:
        self._write_answer(self._answer(info, final))

    def _write_answer(self, data: bytes) -> None:
        if self.quirks.slow > 0:
            self._held_output += data
            self._busy_until = time.monotonic() + self.quirks.slow
        else:
            self._write(data)

    def _command_line(self, line: str, now: float) -> None:
        if line.upper() == "A/":
            line = self._last_line
        start = line.upper().find("AT")
        if start < 0:
            return  # garbage, or a line end of a CR LF pair: a modem waits for "AT"
        body = line[start + 2 :]
        self._last_line = line
        self.commands.append(line[start:])
        info: list[str] = []
        try:
            for name, op, args in self._parse(body):
                info += self._run(name, op, args)
                if self._prompt is not None:
                    break
        except _Fail as fail:
            self._write_answer(self._answer(info, fail))
            return
        if self._prompt is not None:
            prompt = b"> " if self.quirks.bare_prompt else b"\r\n> "
            self._write_answer((self._block(info) if info else b"") + prompt)
            return
        self._write_answer(self._answer(info, "OK"))

    @staticmethod
    def _parse(body: str) -> list[tuple[str, _Op, str]]:
        """V.250 5.3: basic commands (E0, &F, S0=0) run together, extended ones (+CMGF=0)
        separated by ';'."""
        cmds: list[tuple[str, _Op, str]] = []
        i, n = 0, len(body)
        while i < n:
            ch = body[i]
            if ch in " ;":
                i += 1
            elif ch in "+^$%*#!":
                j = i + 1
                while j < n and (body[j].isalnum() or body[j] in "_."):
                    j += 1
                name = body[i:j].upper()
                k, quoted = j, False
                while k < n and (quoted or body[k] != ";"):
                    quoted ^= body[k] == '"'
                    k += 1
                rest = body[j:k].strip()
                if rest == "":
                    cmds.append((name, "exec", ""))
                elif rest == "?":
                    cmds.append((name, "read", ""))
                elif rest == "=?":
                    cmds.append((name, "test", ""))
                elif rest.startswith("="):
                    cmds.append((name, "set", rest[1:]))
                else:
                    cmds.append((name, "exec", rest))
                i = k
            elif ch == "&" or ch.isalpha():
                j = i + 2 if ch == "&" else i + 1
                name = body[i:j].upper()
                if name == "S":
                    while j < n and body[j].isdigit():
                        j += 1
                    if j < n and body[j] == "?":
                        j += 1
                    elif j < n and body[j] == "=":
                        j += 1
                        while j < n and body[j].isdigit():
                            j += 1
                elif name == "D":
                    j = n
                else:
                    while j < n and body[j].isdigit():
                        j += 1
                cmds.append((name, "set", body[i + len(name) : j]))
                i = j
            else:
                raise _Fail("error")
        return cmds

    def _run(self, name: str, op: _Op, arg: str) -> list[str]:
        if not name.startswith(("+", "^", "$", "%", "*", "#", "!")):
            return self._basic(name, arg)
        handler = self._table.get(name)
        if handler is None:
            raise _Fail("error")  # an unknown command: plain ERROR, whatever AT+CMEE says
        if name in _NEEDS_SIM:
            self._need_sim(sms=name in _SMS_COMMANDS)
        if self._sms_ready_at is not None and name in _SMS_SET_UP:
            raise _Fail("error")  # SIM800 before "SMS Ready": plain ERROR, whatever AT+CMEE
        return handler(op, _split_args(arg) if op == "set" else [])

    def _need_sim(self, sms: bool) -> None:
        if self._puk_needed:
            raise _cms(316) if sms else _cme(12)
        if not self._pin_ok:
            raise _cms(311) if sms else _cme(11)

    def _basic(self, name: str, arg: str) -> list[str]:
        digit = int(arg) if arg.isdigit() else 0
        if name == "E":
            self._echo = digit == 1
        elif name == "V":
            self._verbose = digit == 1
        elif name == "Q":
            self._quiet = digit == 1
        elif name in ("Z", "&F"):
            self._reset_profile()
        elif name == "I":
            return [self.manufacturer, self.model, f"Revision: {self.revision}"]
        elif name == "D":
            raise _Fail("error")  # no calls, no data
        elif name == "S" and arg.endswith("?"):
            return ["000"]
        elif name not in ("&C", "&D", "&K", "&W", "&V", "S", "H", "X", "L", "M", "&S"):
            raise _Fail("error")
        return []

    def _handlers(self) -> dict[str, _Handler]:
        return {
            "+CGMI": self._ident(lambda: self.manufacturer),
            "+GMI": self._ident(lambda: self.manufacturer),
            "+CGMM": self._ident(lambda: self.model),
            "+GMM": self._ident(lambda: self.model),
            "+CGMR": self._ident(lambda: self.revision),
            "+GMR": self._ident(lambda: self.revision),
            "+CGSN": self._ident(lambda: self.imei),
            "+GSN": self._ident(lambda: self.imei),
            "+CIMI": self._ident(lambda: self.imsi),
            "+CCID": self._iccid("+CCID: "),
            "+ICCID": self._iccid("+ICCID: "),
            "^ICCID": self._iccid("^ICCID: "),
            "+QCCID": self._iccid("+QCCID: "),
            "+GCAP": lambda op, a: ["+GCAP: +CGSM"],
            "+CMEE": self._cmd_cmee,
            "+CPIN": self._cmd_cpin,
            "+CSQ": lambda op, a: [] if op == "test" else [f"+CSQ: {self._rssi},99"],
            "+CREG": self._registration("+CREG"),
            "+CGREG": self._registration("+CGREG"),
            "+CEREG": self._registration("+CEREG"),
            "+COPS": self._cmd_cops,
            "+CFUN": self._cmd_cfun,
            "+CGATT": self._cmd_cgatt,
            "+CPAS": lambda op, a: [] if op == "test" else ["+CPAS: 0"],
            "+CBC": lambda op, a: [] if op == "test" else ["+CBC: 0,100"],
            "+CCLK": lambda op, a: [f'+CCLK: "{_scts(self.network.utcnow())}"'],
            "+CSCS": self._cmd_cscs,
            "+CMGF": self._cmd_cmgf,
            "+CSMS": self._cmd_csms,
            "+CPMS": self._cmd_cpms,
            "+CNMI": self._cmd_cnmi,
            "+CSCA": self._cmd_csca,
            "+CSDH": self._cmd_csdh,
            "+CSMP": self._cmd_csmp,
            "+CMGS": self._cmd_cmgs,
            "+CMGW": self._cmd_cmgw,
            "+CMGR": self._cmd_cmgr,
            "+CMGL": self._cmd_cmgl,
            "+CMGD": self._cmd_cmgd,
            "+CNMA": self._cmd_cnma,
            "+CUSD": self._cmd_cusd,
            "^CURC": self._cmd_curc,
            "+QURCCFG": self._cmd_qurccfg,
            # Accepted and ignored: flow control, saving settings, indicators a pty has no use for.
            "+IFC": lambda op, a: ["+IFC: 2,2"] if op == "read" else [],
            "+CSAS": lambda op, a: [],
            "+CRES": lambda op, a: [],
            "+CMMS": lambda op, a: ["+CMMS: 0"] if op == "read" else [],
            "+CLIP": lambda op, a: ["+CLIP: 0,1"] if op == "read" else [],
            "+CRC": lambda op, a: ["+CRC: 0"] if op == "read" else [],
            "+CMER": lambda op, a: [],
            "+CSCB": lambda op, a: [],
        }

    # identity

    def _ident(self, value: Callable[[], str]) -> _Handler:
        def handler(op: str, args: list[str | None]) -> list[str]:
            if op == "test":
                return []
            if op != "exec" and not (op == "set" and args == ["1"]):
                raise _Fail("error")
            return [value()]

        return handler

    def _iccid(self, prefix: str) -> _Handler:
        def handler(op: str, args: list[str | None]) -> list[str]:
            if op == "test":
                return []
            return [prefix + self.iccid]

        return handler

    # general

    def _cmd_cmee(self, op: str, args: list[str | None]) -> list[str]:
        if op == "read":
            return [f"+CMEE: {self._cmee}"]
        if op == "test":
            return ["+CMEE: (0-2)"]
        self._cmee = _int(args[0] if args else None, 0, 2, _Fail("error"), 0)
        return []

    def _cmd_cpin(self, op: str, args: list[str | None]) -> list[str]:
        if op == "test":
            return []
        if self._sim_busy_left > 0:
            if op == "read":
                self._sim_busy_left -= 1
            raise _cme(14)
        if op == "read":
            state = "SIM PUK" if self._puk_needed else "READY" if self._pin_ok else "SIM PIN"
            return [f"+CPIN: {state}"]
        if op != "set" or not args or args[0] is None:
            raise _cme(50)
        if self._puk_needed:
            if args[0] != self.quirks.puk or len(args) < 2 or not args[1]:
                raise _cme(16)
            self.quirks.pin = args[1]
            self._puk_needed = False
            self.pin_attempts = 3
        elif self._pin_ok:
            raise _cme(3)
        elif args[0] != self.quirks.pin:
            self.pin_attempts -= 1
            if self.pin_attempts <= 0:
                self._puk_needed = True
            raise _cme(16)
        else:
            self.pin_attempts = 3
        self._pin_ok = True
        self._search_since = time.monotonic()
        if self.quirks.sms_ready_delay > 0:
            self._sms_ready_at = self._search_since + self.quirks.sms_ready_delay
        return []

    def _reg_urc(self, name: str, stat: int) -> str:
        if self._reg_n[name] == 2 and stat in (1, 5):
            return f'{name}: {stat},"{_LAC}","{_CI}"'
        return f"{name}: {stat}"

    def _registration(self, name: str) -> _Handler:
        # +CGREG / +CEREG answer as +CREG does: one radio, attached whenever registered.
        def handler(op: str, args: list[str | None]) -> list[str]:
            if op == "test":
                return [f"{name}: (0-2)"]
            if op == "set":
                self._reg_n[name] = _int(args[0], 0, 2, _cme(50), 0)
                return []
            if op != "read":
                raise _Fail("error")
            n, stat = self._reg_n[name], self._stat(time.monotonic())
            if n == 2 and stat in (1, 5):
                return [f'{name}: 2,{stat},"{_LAC}","{_CI}"']
            return [f"{name}: {n},{stat}"]

        return handler

    def _cmd_cops(self, op: str, args: list[str | None]) -> list[str]:
        if op == "test":
            name, num = self._to_cs(self.operator), self.operator_numeric
            return [f'+COPS: (2,"{name}","{name}","{num}",0),,(0-4),(0-2)']
        if op == "set":
            mode = _int(args[0], 0, 4, _cme(50), 0)
            if mode == 3 and len(args) > 1:
                self._cops_format = _int(args[1], 0, 2, _cme(50))
            return []
        if op != "read":
            raise _Fail("error")
        if not self._registered():
            return ["+COPS: 0"]
        value = self.operator_numeric if self._cops_format == 2 else self._to_cs(self.operator)
        return [f'+COPS: 0,{self._cops_format},"{value}",0']

    def _cmd_cfun(self, op: str, args: list[str | None]) -> list[str]:
        if op == "test":
            return ["+CFUN: (0,1,4),(0-1)"]
        if op == "read":
            return [f"+CFUN: {self._cfun}"]
        fun = _int(args[0], 0, 4, _cme(50))
        if len(args) > 1 and args[1] == "1":
            self._reset_profile()
        if fun == 1 and self._cfun != 1:
            self._search_since = time.monotonic()
        self._cfun = fun
        return []

    def _cmd_cgatt(self, op: str, args: list[str | None]) -> list[str]:
        if op == "read":
            return [f"+CGATT: {1 if self._registered() else 0}"]
        return ["+CGATT: (0,1)"] if op == "test" else []

    def _cmd_cscs(self, op: str, args: list[str | None]) -> list[str]:
        if op == "test":
            return ['+CSCS: ("GSM","IRA","8859-1","UCS2","HEX")']
        if op == "read":
            return [f'+CSCS: "{self._cscs}"']
        value = (args[0] or "").upper()
        if value not in ("GSM", "IRA", "8859-1", "UCS2", "HEX"):
            raise _cme(50)
        self._cscs = value
        return []

    def _to_cs(self, text: str) -> str:
        """A string as the TE's character set (AT+CSCS) writes it."""
        return text.encode("utf-16-be").hex().upper() if self._cscs == "UCS2" else text

    def _from_cs(self, text: str) -> str:
        if self._cscs == "UCS2" and re.fullmatch(r"(?:[0-9A-Fa-f]{4})+", text):
            return bytes.fromhex(text).decode("utf-16-be", "replace")
        return text

    def _cmd_curc(self, op: str, args: list[str | None]) -> list[str]:
        if op == "read":
            return [f"^CURC: {int(self._curc)}"]
        if op == "set":
            self._curc = args[0] != "0"
        return []

    # SMS settings (27.005 3.x)

    def _cmd_qurccfg(self, op: str, args: list[str | None]) -> list[str]:
        # Quectel EC2x/EG25 AT manual, AT+QURCCFG: "urcport" is "usbat", "usbmodem" or "uart1".
        if not self.quirks.urc_port:
            raise _Fail("error")  # not a Quectel
        if op == "test":
            return ['+QURCCFG: "urcport",("usbat","usbmodem","uart1")']
        if op != "set" or not args or (args[0] or "").lower() != "urcport":
            raise _cme(50)
        if len(args) == 1:
            return [f'+QURCCFG: "urcport","{self.urc_port}"']
        port = (args[1] or "").lower()
        if port not in ("usbat", "usbmodem", "uart1"):
            raise _cme(50)
        self._urc_port = port
        return []

    def _cmd_cmgf(self, op: str, args: list[str | None]) -> list[str]:
        if op == "test":
            return ["+CMGF: (0,1)"]
        if op == "read":
            return [f"+CMGF: {self._cmgf}"]
        self._cmgf = _int(args[0], 0, 1, _cme(50), 0)
        return []

    def _cmd_csms(self, op: str, args: list[str | None]) -> list[str]:
        if op == "test":
            return ["+CSMS: (0,1)"]
        if op == "read":
            return [f"+CSMS: {self._csms},1,1,1"]
        self._csms = _int(args[0], 0, 1, _cms(302))
        return ["+CSMS: 1,1,1"]

    def _cmd_csdh(self, op: str, args: list[str | None]) -> list[str]:
        if op == "test":
            return ["+CSDH: (0,1)"]
        if op == "read":
            return [f"+CSDH: {self._csdh}"]
        self._csdh = _int(args[0], 0, 1, _cme(50), 0)
        return []

    def _cmd_csmp(self, op: str, args: list[str | None]) -> list[str]:
        if op == "read":
            return ["+CSMP: " + ",".join(map(str, self._csmp))]
        if op == "set":
            for i, value in enumerate(args[:4]):
                if value is not None:
                    self._csmp[i] = _int(value, 0, 255, _cms(305))
        return []

    def _cmd_cpms(self, op: str, args: list[str | None]) -> list[str]:
        if op == "test":
            return ['+CPMS: ("SM","ME","SR"),("SM","ME"),("SM","ME")']
        if op == "read":
            shown = ",".join(f'"{m}",{len(self._mem[m])},{self.capacity[m]}' for m in self._cpms)
            return [f"+CPMS: {shown}"]
        if op != "set" or not args or len(args) > 3:
            raise _cms(302)
        for i, given in enumerate(args):
            if given is None:
                continue
            mem = given.upper()
            if mem not in _MEMORIES or (i > 0 and mem == "SR"):
                raise _cms(302)
            self._cpms[i] = mem
        return ["+CPMS: " + ",".join(f"{len(self._mem[m])},{self.capacity[m]}" for m in self._cpms)]

    def _cmd_cnmi(self, op: str, args: list[str | None]) -> list[str]:
        if op == "test":
            return ["+CNMI: (0-2),(0-3),(0,2),(0-2),(0,1)"]
        if op == "read":
            return ["+CNMI: " + ",".join(map(str, self._cnmi))]
        limits = (2, 3, 3, 2, 1)
        for i, value in enumerate(args[:5]):
            if value is not None:
                self._cnmi[i] = _int(value, 0, limits[i], _cms(302))
        return []

    def _cmd_csca(self, op: str, args: list[str | None]) -> list[str]:
        if op == "test":
            return []
        if op == "read":
            return [f'+CSCA: "{self._to_cs(self._csca[0])}",{self._csca[1]}']
        number = self._from_cs(args[0] or "")
        if number and not re.fullmatch(r"\+?[0-9]{1,20}", number):
            raise _cms(304 if self._cmgf == 0 else 305)
        default_toa = TOA_INTERNATIONAL if number.startswith("+") else TOA_UNKNOWN
        toa = _int(args[1] if len(args) > 1 else None, 0, 255, _cms(302), default_toa)
        self._csca = (number, toa)
        return []

    # storage

    def _first_index(self) -> int:
        return 0 if self.quirks.zero_based_index else 1

    def _index(self, value: str | None, mem: str) -> int:
        first = self._first_index()
        return _int(value, first, first + self.capacity[mem] - 1, _cms(321))

    def _store(self, mem: str, stored: _Stored) -> int | None:
        """The index `stored` went to, or None when the memory is full."""
        if self.quirks.storage_full:
            return None
        slots = self._mem[mem]
        first = self._first_index()
        for index in range(first, first + self.capacity[mem]):
            if index not in slots:
                slots[index] = stored
                if self.quirks.smmemfull and len(slots) >= self.capacity[mem]:
                    self._urc(f'^SMMEMFULL: "{mem}"')  # Huawei: the memory just filled
                return index
        return None

    def _cmd_cmgr(self, op: str, args: list[str | None]) -> list[str]:
        if op == "test":
            return []
        mem = self._cpms[0]
        index = self._index(args[0] if args else None, mem)
        stored = self._mem[mem].get(index)
        if stored is None:
            if self.quirks.empty_slot_321:
                raise _cms(321)  # SIMCom / Quectel: "invalid memory index"
            return []  # an empty slot: OK with nothing, as most modems answer
        info = self._show(stored, None)
        if stored.stat == 0:
            stored.stat = 1
        return info

    def _show(self, stored: _Stored, index: int | None) -> list[str]:
        """+CMGR (index None) or +CMGL lines for one stored message (27.005 3.4.2, 3.4.3)."""
        label = "+CMGR: " if index is None else f"+CMGL: {index},"
        if self._cmgf == 0:
            return [f"{label}{stored.stat},,{stored.tpdu_length}", stored.pdu.hex().upper()]
        stat = f'"{_STAT_TEXT[stored.stat]}"'
        try:
            msg = decode_pdu(stored.pdu)
        except SmsError:
            return [f"{label}{stat}", stored.pdu.hex().upper()]
        if isinstance(msg, SmsStatusReport):
            return [f"{label}{stat},{self._report_fields(msg)}"]
        if isinstance(msg, SmsDeliver):
            head = f'{label}{stat},"{self._to_cs(msg.originator)}",,"{_scts(msg.timestamp)}"'
            toa = msg.originator_toa
        else:
            head = f'{label}{stat},"{self._to_cs(msg.destination)}",'
            toa = msg.destination_toa
        if self._csdh:
            if index is None and isinstance(msg, SmsDeliver):
                fo = stored.pdu[1 + stored.pdu[0]]
                sca, tosca = msg.smsc or "", msg.smsc_toa or TOA_UNKNOWN
                head += f',{toa},{fo},{msg.pid},{msg.dcs},"{sca}",{tosca},{len(msg.user_data)}'
            else:
                head += f",{toa},{len(msg.user_data)}"
        return [head, self._text_of(msg)]

    def _report_fields(self, msg: SmsStatusReport) -> str:
        """<fo>,<mr>,<ra>,<tora>,<scts>,<dt>,<st> of a status report in text mode."""
        fo = 0x02 | (0 if msg.more_messages else 0x04) | (0x20 if msg.command else 0)
        return (
            f'{fo},{msg.message_ref},"{self._to_cs(msg.recipient)}",{msg.recipient_toa},'
            f'"{_scts(msg.timestamp)}","{_scts(msg.discharge_time)}",{msg.status}'
        )

    def _text_of(self, msg: SmsDeliver | SmsSubmit) -> str:
        if msg.encoding is Encoding.GSM7 and msg.text is not None:
            return self._to_cs(msg.text)
        if self._cscs == "UCS2" and msg.text is not None:
            return self._to_cs(msg.text)
        return msg.user_data.hex().upper()  # UCS-2 and 8-bit bodies show as hex, as modems do

    def _cmd_cmgl(self, op: str, args: list[str | None]) -> list[str]:
        if self._cmgf == 0:
            if op == "test":
                return ["+CMGL: (0-4)"]
            want = _int(args[0] if args else None, 0, 4, _cms(304), 0)
        else:
            if op == "test":
                return ["+CMGL: " + ",".join(f'"{s}"' for s in _STAT_TEXT)]
            text = (args[0] if args and args[0] is not None else "REC UNREAD").upper()
            if text not in _STAT_TEXT:
                raise _cms(305)
            want = _STAT_TEXT.index(text)
        info: list[str] = []
        for index, stored in sorted(self._mem[self._cpms[0]].items()):
            if want in (4, stored.stat):
                info += self._show(stored, index)
                if stored.stat == 0:
                    stored.stat = 1
        return info

    def _cmd_cmgd(self, op: str, args: list[str | None]) -> list[str]:
        mem = self._cpms[0]
        first = self._first_index()
        if op == "test":
            return [f"+CMGD: ({first}-{first + self.capacity[mem] - 1}),(0-4)"]
        flag = _int(args[1] if len(args) > 1 else None, 0, 4, _cms(302), 0)
        slots = self._mem[mem]
        if flag == 0:
            slots.pop(self._index(args[0] if args else None, mem), None)
            return []
        doomed = {1: (1,), 2: (1, 3), 3: (1, 2, 3), 4: (0, 1, 2, 3)}[flag]
        for index in [i for i, s in slots.items() if s.stat in doomed]:
            del slots[index]
        return []

    # sending

    def _can_send(self) -> None:
        if self._cfun != 1 or not self._registered():
            raise _cms(331)

    def _cmd_cmgs(self, op: str, args: list[str | None]) -> list[str]:
        if op == "test":
            return []
        if op != "set" or not args:
            raise _cms(304 if self._cmgf == 0 else 305)
        if self._cmgf == 0:
            self._prompt = _Prompt("cmgs", _int(args[0], 1, 164, _cms(304)))
        else:
            if not args[0]:
                raise _cms(305)
            toa = _int(args[1], 0, 255, _cms(305)) if len(args) > 1 and args[1] else None
            self._prompt = _Prompt("cmgs", None, self._from_cs(args[0]), toa)
        return []

    def _cmd_cmgw(self, op: str, args: list[str | None]) -> list[str]:
        if op == "test":
            return []
        if self._cmgf == 0:
            if op != "set" or not args:
                raise _cms(304)
            length = _int(args[0], 1, 164, _cms(304))
            stat = _int(args[1] if len(args) > 1 else None, 0, 3, _cms(304), 2)
            self._prompt = _Prompt("cmgw", length, stat=stat)
        else:
            dest = self._from_cs(args[0] or "") if op == "set" and args else ""
            self._prompt = _Prompt("cmgw", None, dest)
        return []

    def _prompt_done(self, prompt: _Prompt, data: str) -> list[str]:
        """What follows "> " has arrived: send or store it."""
        if prompt.length is None:
            pdu = self._text_submit(prompt, data)
        else:
            try:
                pdu = bytes.fromhex(data.replace("\r", "").replace("\n", ""))
            except ValueError:
                raise _cms(304) from None
        if prompt.command == "cmgw":
            if prompt.length is not None and (
                not pdu or 1 + pdu[0] >= len(pdu) or len(pdu) - 1 - pdu[0] != prompt.length
            ):
                raise _cms(304)
            mem = self._cpms[1]
            index = self._store(mem, _Stored(prompt.stat, pdu, len(pdu) - 1 - pdu[0]))
            if index is None:
                raise _cms(322)
            return [f"+CMGW: {index}"]
        self._can_send()
        if pdu[:1] == b"\x00" and not self._csca[0]:
            raise _cms(330)
        self._cmgs_count += 1
        every = self.quirks.cms_error_every
        if every > 0 and self._cmgs_count % every == 0:
            raise _cms(self.quirks.cms_error_code)
        try:
            mr = self.network.submit(
                self.imei, pdu, length=prompt.length, text_mode=prompt.length is None
            )
        except SubmitRejected as exc:
            raise _cms(exc.cms) from None
        return [f"+CMGS: {mr}"]

    def _text_submit(self, prompt: _Prompt, data: str) -> bytes:
        """Text mode: the text and AT+CSMP's fo / vp / pid / dcs as one SMS-SUBMIT."""
        fo, vp, pid, dcs = self._csmp
        ucs2 = (dcs & 0x0C) == 0x08
        text = self._from_cs(data) if self._cscs == "UCS2" else data
        if self._cscs == "HEX" or (ucs2 and self._cscs == "UCS2"):
            try:
                raw = bytes.fromhex(data)
            except ValueError:
                raise _cms(305) from None
            body, encoding = raw, Encoding.UCS2 if ucs2 else Encoding.BINARY
        else:
            encoding = Encoding.UCS2 if ucs2 else Encoding.GSM7
            try:
                body = encode_text(text, encoding)
            except SmsError:
                raise _cms(305) from None
        validity = decode_relative_validity(vp) if (fo >> 3) & 3 == 2 else None
        try:
            encoded = encode_sms_submit(
                destination=prompt.destination,
                body=body,
                encoding=encoding,
                validity=validity,
                status_report=bool(fo & 0x20),
                pid=pid,
                destination_toa=prompt.toa,
                smsc=None,
            )
        except SmsError:
            raise _cms(305) from None
        return encoded.pdu

    # receiving

    def _network_event(self, event: NetworkEvent) -> None:
        if event.kind == "urc":
            self._urc(event.line)
        elif event.kind == "signal":
            self._rssi = event.value
        elif event.kind == "registration":
            self._forced_stat = None if event.value < 0 else event.value
        else:
            self._held.append(event)

    def _retry_held(self) -> None:
        while self._held and self._awaiting is None:
            if not self._place(self._held[0]):
                return
            self._held.pop(0)

    def _place(self, event: NetworkEvent) -> bool:
        """Hand an SMS-DELIVER or STATUS-REPORT to the TE as AT+CNMI says. False: no room yet,
        the network will try again."""
        pdu = event.pdu
        assert pdu is not None
        mode, mt, _, ds, _ = self._cnmi
        if not self._pin_ok or self._cfun != 1 or not self._registered():
            return False  # off the network: nothing arrives
        if self._sms_ready_at is not None:
            return False  # SMS not ready: the network keeps trying
        routing = mode in (1, 2)
        if event.kind == "deliver":
            if routing and (mt == 2 or self.quirks.cmt_always):
                self._direct(event, "+CMT")
                return True
            mem = self._cpms[2]
            index = self._store(mem, _Stored(0, pdu.pdu, pdu.tpdu_length))
            if index is None:
                return False
            if routing and mt in (1, 3):
                self._urc(f'+CMTI: "{mem}",{index}')
            return True
        if routing and ds == 1:
            self._direct(event, "+CDS")
            return True
        if self.quirks.drop_unrouted_reports and not (routing and ds == 2):
            return True  # 27.005 3.4.1 ds=0: not routed to the TE, and not kept either
        mem = self._cpms[2] if self.quirks.reports_in_mem3 else "SR"
        index = self._store(mem, _Stored(0, pdu.pdu, pdu.tpdu_length))
        if index is None:
            return ds != 2  # with ds=0 a report with no room is dropped, as modems do
        if routing and ds == 2:
            said = "SM" if self.quirks.cdsi_wrong_mem else mem
            self._urc(f'+CDSI: "{said}",{index}')
        return True

    def _direct(self, event: NetworkEvent, label: str) -> None:
        """+CMT / +CDS: the message itself, its PDU (or text) on the line after the header."""
        pdu = event.pdu
        assert pdu is not None
        self.delivered_direct += 1
        if self._cmgf == 0:
            head = f"+CMT: ,{pdu.tpdu_length}" if label == "+CMT" else f"+CDS: {pdu.tpdu_length}"
            self._urc(f"{head}\r\n{pdu.hex}")
        else:
            msg = decode_pdu(pdu.pdu)
            if isinstance(msg, SmsStatusReport):
                self._urc(f"{label}: {self._report_fields(msg)}")
            elif isinstance(msg, SmsDeliver):
                head = f'{label}: "{self._to_cs(msg.originator)}",,"{_scts(msg.timestamp)}"'
                self._urc(f"{head}\r\n{self._text_of(msg)}")
        if self._csms == 1:  # phase 2+: the TE must acknowledge with AT+CNMA
            self._awaiting = event
            self._ack_deadline = time.monotonic() + self.ack_timeout

    def _cmd_cnma(self, op: str, args: list[str | None]) -> list[str]:
        if op == "test":
            return ["+CNMA: (0-2)"] if self._cmgf == 0 else []
        if self._awaiting is None:
            raise _cms(340)
        event, self._awaiting, self._ack_deadline = self._awaiting, None, None
        if op == "set" and args and args[0] == "2" and event.pdu is not None:
            self.network.refused(self.imei, event.pdu)
        return []

    def _ack_timed_out(self) -> None:
        # 27.005 3.4.4: no acknowledgement in time -> direct routing off; the network keeps
        # the message and it lands in storage on the retry.
        self.unacked += 1
        event, self._awaiting, self._ack_deadline = self._awaiting, None, None
        self._cnmi[1] = self._cnmi[3] = 0
        if event is not None:
            self._held.insert(0, event)

    # USSD (27.007 7.15)

    def _cmd_cusd(self, op: str, args: list[str | None]) -> list[str]:
        if op == "test":
            return ["+CUSD: (0-2)"]
        if op == "read":
            return [f"+CUSD: {self._cusd}"]
        n = _int(args[0] if args else None, 0, 2, _cme(50), 0)
        if n == 2:
            return []
        self._cusd = n
        if len(args) < 2 or args[1] is None:
            return []
        if not self._registered():
            raise _cme(30)
        request = self._ussd_in(args[1])
        reply = self.network.ussd.get(request)
        if reply is None:
            line = "+CUSD: 4"
        else:
            text, dcs = self._ussd_out(reply)
            line = f'+CUSD: 0,"{text}",{dcs}'
        self._after(0.05, lambda: self._urc(line))
        return []

    def _ussd_packed(self) -> bool:
        return self.quirks.ussd_packed or self._cscs == "HEX"

    def _ussd_in(self, value: str) -> str:
        if self._ussd_packed():
            try:
                raw = bytes.fromhex(value)
                septets = unpack_septets(raw, len(raw) * 8 // 7)
                return decode_text(septets, Encoding.GSM7, errors="replace").rstrip("\r")
            except (ValueError, SmsError):
                raise _cme(50) from None
        return self._from_cs(value)

    def _ussd_out(self, text: str) -> tuple[str, int]:
        if self._ussd_packed():
            septets = encode_gsm7(text)
            if len(septets) % 8 == 7:
                septets += b"\r"  # 23.038 6.1.2.3.1: CR, not a stray '@', fills 7 spare bits
            return pack_septets(septets).hex().upper(), 15
        if self._cscs == "UCS2":
            return self._to_cs(text), 72
        return text, 15


_SMS_COMMANDS = frozenset(("+CMGS", "+CMGW", "+CMGR", "+CMGL", "+CMGD", "+CPMS", "+CNMA", "+CSCA"))
_NEEDS_SIM = _SMS_COMMANDS | {"+CIMI", "+CUSD"}
_SMS_SET_UP = _SMS_COMMANDS | {"+CMGF", "+CNMI", "+CSMS"}


def serve_emulators(
    count: int,
    *,
    link_dir: str | os.PathLike[str] | None = None,
    report_delay: float = 0.5,
    quirks: Sequence[str] = (),
    stop: threading.Event,
    out: Callable[[str], None] = print,
) -> int:
    """`smsgw emulate-modem`: `count` modems on one network until `stop` is set.

    Raises:
        ValueError: a bad quirk.
    """
    network = SimNetwork(report_delay=report_delay)
    modems = []
    for i in range(count):
        link = Path(link_dir) / f"modem{i + 1}" if link_dir is not None else None
        modems.append(ModemEmulator(network, quirks=Quirks.parse(quirks), link=link))
    try:
        for i, modem in enumerate(modems):
            port = modem.start()
            shown = f"{modem.link} -> {port}" if modem.link is not None else port
            out(f"modem {i + 1}: {shown} imei {modem.imei} iccid {modem.iccid}")
        while not stop.wait(1.0):
            pass
    finally:
        for modem in modems:
            modem.stop()
    return len(network.received)
