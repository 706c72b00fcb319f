"""The AT command engine for GSM modems, sans-IO: bytes and the clock in, events and bytes out.

Theory of operation
-------------------
The shell writes `data_to_send` to the serial port, feeds what it reads to `receive_data`,
drains `next_event` until it returns None, and arms a timer for `next_deadline`, calling
`handle_timer` when it fires (as `gateway.smpp.session.Session`). `now` is always an argument.

Commands run one at a time (3GPP TS 27.007 section 5.1: a command line is answered by
information lines and one final result code). `send` queues; the next command is written when
the running one ends with its final result, times out, or is aborted by `reset`. Only the
running command has a deadline.

Input is split into lines at CR, LF, Ctrl-Z and ESC, in any combination (CR LF, lone CR and
lone LF all occur; Ctrl-Z and ESC end the modem's echo of what we typed after a prompt); blank
lines are ignored. Every decision is taken on a whole line, or at the start of a line for the
prompt, so the events and the bytes written do not depend on how the input was chunked.

Each line is, in this order of precedence:

* the PDU line of a two-line URC (+CMT, +CDS; TS 27.005 section 3.4.1) whose header came just
  before. A URC never splits its own two lines, but may come between any two lines of an answer.
* the echo of the running command, whole or partial, or of the hex data typed after its prompt:
  dropped, whether or not echo was expected (a modem reset turns echo back on);
* a final result code (OK, ERROR, +CME ERROR, +CMS ERROR, NO CARRIER, BUSY, NO ANSWER,
  NO DIALTONE, COMMAND NOT SUPPORT, ABORTED);
* an unsolicited result code: the standard ones of TS 27.005 / 27.007 by name, and vendor lines
  (``^NAME:`` always, ``+NAME:`` / ``*NAME:`` when it cannot belong to the running command, and
  a few bare notices such as "Call Ready");
* an information line of the running command's answer, or, with no command running, `Garbage`.

Which lines belong to the command: those named like it (AT+CSQ -> "+CSQ", AT^HCSQ? -> "^HCSQ",
plus `Command.expect`), and any unnamed line. A basic command (ATI, AT&V) also takes "+NAME:"
lines other than known URCs, since it has no name of its own. +CREG/+CGREG/+CEREG and +CUSD are
URCs unless the running command queries them; the answer to AT+CREG? has <n>,<stat> (the
second field a bare number), the URC <stat>[,"<lac>",...].

The "> " prompt of AT+CMGS / AT+CMGW (TS 27.005 section 3.5.1) comes with no line end. It is
recognised at the start of a line (or right after junk bytes) while the running command has not
had one: its `data` and Ctrl-Z are written, or ESC when it has none (which cancels the entry).
After a command with data times out, ESC goes before the next command in case the modem still
waits for text.

Resynchronisation: bytes that never occur in a line (C0 controls, DEL, octets that are not
UTF-8) end a junk run; the junk up to the last of them becomes `Garbage` and the rest of the line
is read as usual, so noise glued to the front of "OK" does not lose the OK. A line longer than
`max_line` is reported (its first `max_line` bytes) and dropped up to its end.

Late answers. A command that timed out may still be answered while the next one runs, and a
late "+CMGS: <mr>" means the message went out. Two rules keep such an answer from being taken
for the next command's: an OK before the prompt of a command with data cannot be its answer (a
message cannot be sent before its PDU); and when the modem echoes (`echo`, learned from each
answer), what arrives after a timeout and before the new command's echo - the old command's
named lines and its final result - is the old command's. Both come out as `StaleAnswer`, as
does a final result with no command running (a call's NO CARRIER / BUSY then is a `VendorUrc`).
With echo off a late answer cannot be told from the next one's; the driver keeps echo on or
lets the next command's own checks (a +CMGS: <mr> line) catch it.

Left out: numeric result codes (ATV0), text mode +CMT/+CDS parsing (with ``pdu_urcs=False``
their second line or header is handed on raw), data/voice calls beyond RING.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

__all__ = [
    "CME_ERRORS",
    "CMS_ERRORS",
    "AtEngine",
    "AtError",
    "Command",
    "CommandAborted",
    "CommandDone",
    "CommandFailed",
    "CommandTimedOut",
    "Event",
    "Garbage",
    "IncomingSms",
    "NewMessage",
    "Registration",
    "Ring",
    "StaleAnswer",
    "StatusReport",
    "StatusReportStored",
    "Ussd",
    "VendorUrc",
    "parse_error",
    "split_fields",
]

CTRL_Z = b"\x1a"
ESC = b"\x1b"

# -- commands and errors ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Command:
    """One AT command line.

    Attributes:
        text: the command line without its CR, e.g. "AT+CMGS=23".
        timeout: seconds from the moment it is written to its final result.
        data: written after the "> " prompt, followed by Ctrl-Z: the hex PDU as ASCII bytes.
        expect: the name of its information lines when it differs from what `text` says
            (e.g. "+CCID" for AT^ICCID? on a modem that answers +CCID:).
    """

    text: str
    timeout: float = 5.0
    data: bytes | None = None
    expect: str | None = None

    def __post_init__(self) -> None:
        if self.text[:2].upper() != "AT" or _TERMINATOR_CHARS.intersection(self.text):
            raise ValueError(f"not an AT command line: {self.text!r}")
        if self.data is not None and _TERMINATOR_BYTES.intersection(self.data):
            raise ValueError("command data must not contain CR, LF, Ctrl-Z or ESC")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")


_TERMINATOR_BYTES = frozenset(b"\r\n\x1a\x1b")
_TERMINATOR_CHARS = frozenset("\r\n\x1a\x1b")


@dataclass(frozen=True, slots=True)
class AtError:
    """A final result code other than OK.

    Attributes:
        kind: "ERROR", "CME", "CMS", "NO CARRIER", "NO DIALTONE", "BUSY", "NO ANSWER",
            "COMMAND NOT SUPPORT" or "ABORTED".
        code: the +CME / +CMS error number, also when the modem said it in words
            (AT+CMEE=2) and the words are in the tables; None otherwise.
        text: the modem's words, or the table's for a numeric code ("" when neither).
    """

    kind: str
    code: int | None
    text: str


# TS 27.007 section 9.2.1 (general) and 9.2.2 (GPRS).
CME_ERRORS: dict[int, str] = {
    0: "phone failure",
    1: "no connection to phone",
    2: "phone-adaptor link reserved",
    3: "operation not allowed",
    4: "operation not supported",
    5: "PH-SIM PIN required",
    6: "PH-FSIM PIN required",
    7: "PH-FSIM PUK required",
    10: "SIM not inserted",
    11: "SIM PIN required",
    12: "SIM PUK required",
    13: "SIM failure",
    14: "SIM busy",
    15: "SIM wrong",
    16: "incorrect password",
    17: "SIM PIN2 required",
    18: "SIM PUK2 required",
    20: "memory full",
    21: "invalid index",
    22: "not found",
    23: "memory failure",
    24: "text string too long",
    25: "invalid characters in text string",
    26: "dial string too long",
    27: "invalid characters in dial string",
    30: "no network service",
    31: "network timeout",
    32: "network not allowed - emergency calls only",
    40: "network personalization PIN required",
    41: "network personalization PUK required",
    100: "unknown",
    103: "Illegal MS",
    106: "Illegal ME",
    107: "GPRS services not allowed",
    111: "PLMN not allowed",
    112: "Location area not allowed",
    113: "Roaming not allowed in this location area",
    148: "unspecified GPRS error",
    149: "PDP authentication failure",
    150: "invalid mobile class",
}

# TS 27.005 section 3.2.5: 1-127 are RP causes (TS 24.011 annex E-2), 128-255 TP-FCS values
# (TS 23.040 section 9.2.3.22), 300-500 the ME's own; 512 and up are the manufacturer's
# (these four as Wavecom/Sierra and SIMCom document them).
CMS_ERRORS: dict[int, str] = {
    1: "unassigned (unallocated) number",
    8: "operator determined barring",
    10: "call barred",
    21: "short message transfer rejected",
    27: "destination out of service",
    28: "unidentified subscriber",
    29: "facility rejected",
    30: "unknown subscriber",
    38: "network out of order",
    41: "temporary failure",
    42: "congestion",
    47: "resources unavailable, unspecified",
    50: "requested facility not subscribed",
    69: "requested facility not implemented",
    81: "invalid short message transfer reference value",
    95: "invalid message, unspecified",
    96: "invalid mandatory information",
    97: "message type non-existent or not implemented",
    98: "message not compatible with short message protocol state",
    99: "information element non-existent or not implemented",
    111: "protocol error, unspecified",
    127: "interworking, unspecified",
    128: "telematic interworking not supported",
    129: "short message Type 0 not supported",
    130: "cannot replace short message",
    143: "unspecified TP-PID error",
    144: "data coding scheme (alphabet) not supported",
    145: "message class not supported",
    159: "unspecified TP-DCS error",
    160: "command cannot be actioned",
    161: "command unsupported",
    175: "unspecified TP-Command error",
    176: "TPDU not supported",
    192: "SC busy",
    193: "no SC subscription",
    194: "SC system failure",
    195: "invalid SME address",
    196: "destination SME barred",
    197: "SM rejected-duplicate SM",
    198: "TP-VPF not supported",
    199: "TP-VP not supported",
    208: "SIM SMS storage full",
    209: "no SMS storage capability in SIM",
    210: "error in MS",
    211: "memory capacity exceeded",
    212: "SIM application toolkit busy",
    213: "SIM data download error",
    255: "unspecified error cause",
    300: "ME failure",
    301: "SMS service of ME reserved",
    302: "operation not allowed",
    303: "operation not supported",
    304: "invalid PDU mode parameter",
    305: "invalid text mode parameter",
    310: "SIM not inserted",
    311: "SIM PIN required",
    312: "PH-SIM PIN required",
    313: "SIM failure",
    314: "SIM busy",
    315: "SIM wrong",
    316: "SIM PUK required",
    317: "SIM PIN2 required",
    318: "SIM PUK2 required",
    320: "memory failure",
    321: "invalid memory index",
    322: "memory full",
    330: "SMSC address unknown",
    331: "no network service",
    332: "network timeout",
    340: "no +CNMA acknowledgement expected",
    500: "unknown error",
    512: "MM establishment failure",
    513: "lower layer failure",
    514: "CP error",
    515: "please wait, init or command processing in progress",
}


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


# Words seen from modems that differ from the tables' wording.
_CME_ALIASES = {"unknown error": 100, "sim not present": 10, "incorrect pin": 16}
_CMS_ALIASES = {
    "unknown": 500,
    "sim busy please wait": 314,
    "invalid memory index": 321,
    "please wait": 515,
    "sms service of me reserved": 301,
}
_BY_WORDS: dict[str, dict[str, int]] = {
    "CME": {**{_words(t): c for c, t in CME_ERRORS.items()}, **_CME_ALIASES},
    "CMS": {**{_words(t): c for c, t in CMS_ERRORS.items()}, **_CMS_ALIASES},
}
_TABLES = {"CME": CME_ERRORS, "CMS": CMS_ERRORS}

_SIMPLE_ERRORS = frozenset(
    {"ERROR", "NO CARRIER", "NO DIALTONE", "BUSY", "NO ANSWER", "COMMAND NOT SUPPORT", "ABORTED"}
)
_CALL_RESULTS = frozenset({"NO CARRIER", "NO DIALTONE", "BUSY", "NO ANSWER"})
# ATV0's numeric result codes (V.250 table 1) and the commands they are read for: basic ones
# only (AT, ATZ, ATE0V1, AT&F...), whose answers are never a bare digit otherwise.
_NUMERIC: dict[str, AtError | None] = {
    "0": None,
    "3": AtError("NO CARRIER", None, ""),
    "4": AtError("ERROR", None, ""),
    "6": AtError("NO DIALTONE", None, ""),
    "7": AtError("BUSY", None, ""),
    "8": AtError("NO ANSWER", None, ""),
}
_BASIC = re.compile(r"AT(?:[EQVZ][01]?|&[FW]0?|&F|Z)*", re.IGNORECASE)
_EXTENDED_ERROR = re.compile(r"\+CM([ES]) ERROR\s*:?\s*(.*)", re.IGNORECASE)


def parse_error(line: str) -> AtError | None:
    """The `AtError` a final result line means, or None when it is not an error result.

    Both forms of +CME / +CMS errors are read: "+CMS ERROR: 500" gets the table's words and
    "+CME ERROR: SIM busy" the table's number; words not in the table keep code None. A detail
    that is not ASCII ("+CMS ERROR: ²", a bit flipped on the line) is no result: None.
    """
    upper = line.upper()
    if upper in _SIMPLE_ERRORS:
        return AtError(upper, None, "")
    m = _EXTENDED_ERROR.fullmatch(line)
    if m is None:
        return None
    kind = "CM" + m[1].upper()
    detail = m[2].strip().strip('"')
    if not detail.isascii():
        return None  # "+CMS ERROR: ²": noise on the line, not a code (see `_line`)
    if _digits(detail):
        code = int(detail)
        return AtError(kind, code, _TABLES[kind].get(code, ""))
    return AtError(kind, _BY_WORDS[kind].get(_words(detail)), detail)


# -- events -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandDone:
    """The command ended with OK; `lines` are its information lines in order (for +CMGR and
    +CMGL each header line is followed by its PDU line)."""

    command: Command
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CommandFailed:
    """The command ended with an error result code."""

    command: Command
    error: AtError
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CommandTimedOut:
    """No final result within the command's timeout; the next command has been written."""

    command: Command


@dataclass(frozen=True, slots=True)
class CommandAborted:
    """`reset` dropped the command (running or queued); it may or may not have run."""

    command: Command
    running: bool


@dataclass(frozen=True, slots=True)
class StaleAnswer:
    """A final result (with the lines before it) that belongs to no running command: the late
    answer of one that timed out."""

    lines: tuple[str, ...]
    result: str


@dataclass(frozen=True, slots=True)
class NewMessage:
    """+CMTI: a message was stored at `index` of `mem` (TS 27.005 section 3.4.1)."""

    mem: str
    index: int


@dataclass(frozen=True, slots=True)
class IncomingSms:
    """+CMT: a message delivered straight to us. `pdu` is the SMSC part and the TPDU
    (`length` octets); in text mode (``pdu_urcs=False``) the text line, the fields in `header`."""

    length: int | None
    pdu: bytes
    alpha: str | None = None
    header: str = ""


@dataclass(frozen=True, slots=True)
class StatusReport:
    """+CDS: a status report delivered straight to us (SMSC part and `length` TPDU octets).
    In text mode, `length` is None, `pdu` empty and `header` holds the fields."""

    length: int | None
    pdu: bytes
    header: str = ""


@dataclass(frozen=True, slots=True)
class StatusReportStored:
    """+CDSI: a status report was stored at `index` of `mem`."""

    mem: str
    index: int


@dataclass(frozen=True, slots=True)
class Registration:
    """+CREG / +CGREG / +CEREG unsolicited: registration status changed (TS 27.007 7.2).

    Attributes:
        stat: 0 not searching, 1 home, 2 searching, 3 denied, 4 unknown, 5 roaming, ...
        lac: location (or tracking) area code, when the modem says it.
        ci: cell id, when the modem says it.
        act: access technology (0 GSM, 2 UTRAN, 7 E-UTRAN, ...), when the modem says it.
        name: which of the three.
    """

    stat: int
    lac: int | None
    ci: int | None
    act: int | None = None
    name: str = "+CREG"


@dataclass(frozen=True, slots=True)
class Ussd:
    """+CUSD: a USSD answer or network-initiated USSD (TS 27.007 section 7.15). `text` is as
    the modem gave it; `drivers.modem.commands.decode_ussd` reads it by `dcs`."""

    m: int
    text: str | None
    dcs: int | None


@dataclass(frozen=True, slots=True)
class Ring:
    """RING, or +CRING: <type> with extended ring reports."""

    kind: str | None = None


@dataclass(frozen=True, slots=True)
class VendorUrc:
    """Any other unsolicited line: ^RSSI:20 -> ("^RSSI", "20"); "Call Ready" -> ("Call Ready",
    "")."""

    name: str
    value: str


@dataclass(frozen=True, slots=True)
class Garbage:
    """Bytes that are no line of any kind, or a line that belongs to nothing."""

    data: bytes


Event = (
    CommandDone
    | CommandFailed
    | CommandTimedOut
    | CommandAborted
    | StaleAnswer
    | NewMessage
    | IncomingSms
    | StatusReport
    | StatusReportStored
    | Registration
    | Ussd
    | Ring
    | VendorUrc
    | Garbage
)

# -- line classification ------------------------------------------------------------------------

_TERMINATOR = re.compile(rb"[\r\n\x1a\x1b]")
# Bytes that never occur in a line: C0 controls but TAB, DEL, and octets no UTF-8 text has.
_JUNK_THROUGH_LAST_BAD = re.compile(rb"(?s).*[\x00-\x08\x0b-\x1f\x7f\xc0\xc1\xf5-\xff]")
# ">" at the start of a line or right after a junk byte.
_PROMPT = re.compile(rb"(?<![\x09\x20-\x7e\x80-\xbf\xc2-\xf4])>")
_NAMED = re.compile(r"([+^*$%!#][A-Za-z][A-Za-z0-9_]*)\s*:\s*(.*)", re.DOTALL)
_COMMAND_NAME = re.compile(r"[+^*$%!#][A-Za-z][A-Za-z0-9_]*")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})+")

_REGISTRATION = frozenset({"+CREG", "+CGREG", "+CEREG", "+C5GREG"})
# Named lines that are unsolicited even during a basic command (ATI, ATZ) that takes other
# "+NAME:" lines as its own.
_KNOWN_URCS = frozenset(
    {
        "+CIEV", "+QIND", "+QUSIM", "+CTZV", "+CTZE", "+CTZU", "*PSUTTZ", "+WIND", "+CPIN",
        "+CFUN", "+CGEV", "+CBM", "+CBMI", "+CLIP", "+CCWA", "+STIN", "+CUSATP", "+PACSP",
        "+QSTAT", "+SIMCARD",
    }
)  # fmt: skip
# Bare notices modems print at start-up or on events (SIMCom, Quectel, Huawei, Wavecom).
_NOTICES = {
    n.upper(): n
    for n in (
        "RDY", "Call Ready", "SMS Ready", "PB DONE", "NORMAL POWER DOWN", "POWERED DOWN",
        "UNDER-VOLTAGE POWER DOWN", "UNDER-VOLTAGE WARNNING", "UNDER-VOLTAGE WARNING",
        "OVER-VOLTAGE POWER DOWN", "OVER-VOLTAGE WARNNING", "OVER-VOLTAGE WARNING",
        "^SYSSTART", "+PBREADY",
    )
}  # fmt: skip
_MAX_LATE_LINES = 64
_BASIC_ECHO_ON = re.compile(r"AT[^+^*$%!#;]*?E1?(?![0-9])", re.IGNORECASE)
_BASIC_ECHO_OFF = re.compile(r"AT[^+^*$%!#;]*?E0", re.IGNORECASE)


def split_fields(value: str) -> list[str]:
    """The comma-separated fields of an AT line's value, outer quotes and spaces removed.

    Commas inside double quotes do not split.
    """
    fields: list[str] = []
    current: list[str] = []
    quoted = False
    was_quoted = False
    for ch in value:
        if ch == '"':
            quoted = not quoted
            was_quoted = True
        elif ch == "," and not quoted:
            fields.append("".join(current) if was_quoted else "".join(current).strip())
            current, was_quoted = [], False
        elif quoted or not ch.isspace() or current:
            current.append(ch)
    fields.append("".join(current) if was_quoted else "".join(current).strip())
    return fields


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() and int() also take "²" or "٣" (one flipped bit on the
    line must not become a number, or a ValueError)."""
    return text.isascii() and text.isdigit()


def _int(field: str, base: int = 10) -> int | None:
    # int() reads non-ASCII digits and "_" separators too; an AT field has neither.
    if not field.isascii() or "_" in field:
        return None
    try:
        return int(field, base) if field else None
    except ValueError:
        return None


def _decode(raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw.decode("latin-1")


@dataclass(slots=True)
class _Running:
    """The command being answered and what is known of its answer so far."""

    command: Command
    deadline: float
    names: frozenset[str]  # the names its information lines carry
    queries: frozenset[str]  # names it reads (AT+CREG?, AT+CREG=?)
    basic: bool  # no name of its own (ATI, AT&V): takes unknown "+NAME:" lines
    lines: list[str]
    prompted: bool = False
    echoed: bool = False
    stale_dropped: bool = False
    answered: frozenset[str] = frozenset()


def _running(command: Command, deadline: float) -> _Running:
    names: set[str] = set()
    queries: set[str] = set()
    for part in command.text[2:].split(";"):
        m = _COMMAND_NAME.match(part.strip())
        if m:
            name = m[0].upper()
            names.add(name)
            if part.rstrip().endswith("?"):
                queries.add(name)
    if command.expect:
        names.add(command.expect.upper())
    return _Running(
        command, deadline, frozenset(names), frozenset(queries), basic=not names, lines=[]
    )


# -- the engine ---------------------------------------------------------------------------------


class AtEngine:
    """One modem's AT command stream (see the module docstring).

    Args:
        echo: whether the modem is expected to echo commands at first; afterwards learned from
            each answer and from ATE0 / ATE1. Echo is stripped either way; this only decides
            whether a late answer can be told apart (see "Late answers").
        now: the clock at creation.
        max_line: the longest line kept; longer ones are reported as `Garbage` and dropped.
        pdu_urcs: +CMT and +CDS carry a PDU line (AT+CMGF=0). False hands on text-mode ones raw.
    """

    def __init__(
        self, *, echo: bool = True, now: float = 0.0, max_line: int = 4096, pdu_urcs: bool = True
    ) -> None:
        self.echo = echo
        self.max_line = max_line
        self.pdu_urcs = pdu_urcs
        self._initial_echo = echo
        self._now = now
        self._buf = bytearray()
        self._out = bytearray()
        self._events: deque[Event] = deque()
        self._queue: deque[Command] = deque()
        self._run: _Running | None = None
        self._discarding = False  # inside an over-long line, dropping to its end
        self._two_line: tuple[str, str] | None = None  # (+CMT|+CDS, header value)
        self._cusd: str | None = None  # a +CUSD line whose quoted text goes on past a line end
        self._late: _Running | None = None  # a command that timed out; its answer may still come
        self._escape_next = False  # a timed-out command may have left the modem at its prompt
        self._last_text = ""  # the last command written, to drop its late echo

    # -- state --------------------------------------------------------------------------------

    @property
    def running(self) -> Command | None:
        """The command written and not yet answered."""
        return self._run.command if self._run else None

    @property
    def queued(self) -> int:
        """Commands waiting behind the running one."""
        return len(self._queue)

    # -- input --------------------------------------------------------------------------------

    def send(self, command: Command, now: float) -> None:
        """Queue `command`; it is written at once when no other is running."""
        self._queue.append(command)
        self._now = now
        self._start_next()

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes read from the modem, in chunks of any size."""
        self._now = now
        self._buf += data
        self._parse()

    def handle_timer(self, now: float) -> None:
        """Time out the running command if its deadline has passed, and write the next."""
        self._now = now
        run = self._run
        if run is None or now < run.deadline:
            return
        self._run = None
        self._events.append(CommandTimedOut(run.command))
        if run.stale_dropped and not run.echoed:
            # The answer we dropped as stale was this command's own: the modem does not echo.
            self.echo = False
            self._late = None
        else:
            self._late = run
        self._escape_next = run.command.data is not None or run.prompted
        self._start_next()

    def reset(self) -> None:
        """The port was reopened: forget partial input and output; the running command and the
        queued ones come back as `CommandAborted`. Events not yet taken are kept."""
        if self._run is not None:
            self._events.append(CommandAborted(self._run.command, running=True))
        self._events.extend(CommandAborted(c, running=False) for c in self._queue)
        self._run = None
        self._queue.clear()
        self._buf.clear()
        self._out.clear()
        self._discarding = False
        self._two_line = None
        self._cusd = None
        self._late = None
        self._escape_next = False
        self._last_text = ""
        self.echo = self._initial_echo

    # -- output -------------------------------------------------------------------------------

    def next_event(self) -> Event | None:
        """The next event, or None when there is none until more data or a timer."""
        return self._events.popleft() if self._events else None

    def data_to_send(self) -> bytes:
        """Bytes to write to the port."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_deadline(self) -> float | None:
        """When `handle_timer` has work: the running command's deadline, or None."""
        return self._run.deadline if self._run else None

    # -- internals ----------------------------------------------------------------------------

    def _start_next(self) -> None:
        if self._run is not None or not self._queue:
            return
        command = self._queue.popleft()
        if self._escape_next:
            self._out += ESC  # leave any text entry a timed-out AT+CMGS left open
            self._escape_next = False
        self._out += command.text.encode() + b"\r"
        self._last_text = command.text.upper()
        self._run = _running(command, self._now + command.timeout)

    def _parse(self) -> None:
        buf = self._buf
        while buf:
            if self._discarding:
                m = _TERMINATOR.search(buf)
                if m is None:
                    buf.clear()
                    return
                del buf[: m.start()]
                self._discarding = False
                continue
            m = _TERMINATOR.search(buf)
            if self._run is not None and not self._run.prompted:
                found = self._find_prompt(m.start() if m else len(buf))
                if found is None:
                    return  # "> " or a line that starts with ">": the next byte tells
                if found:
                    self._prompt()
                    continue
            if m is None:
                if len(buf) > self.max_line:
                    self._events.append(Garbage(bytes(buf[: self.max_line])))
                    self._discarding = True
                return
            end = m.start()
            raw = bytes(buf[:end])
            del buf[: end + 1]
            if end > self.max_line:
                self._events.append(Garbage(raw[: self.max_line]))
            elif raw:
                self._raw_line(raw)

    def _find_prompt(self, line_end: int) -> bool | None:
        """Consume a "> " prompt at the start of the current line, or right after junk in it.

        Returns:
            True when consumed, False when there is none, None when the next byte decides.
        """
        buf = self._buf
        # Only where the streaming parser can look before the line overflows `max_line`.
        end = min(line_end, self.max_line)
        pos = 0
        while (m := _PROMPT.search(buf, pos, end)) is not None:
            p = m.start()
            if p + 1 == len(buf):
                return None
            after = buf[p + 1]
            if after == 0x20 or p + 1 == line_end:
                if p:
                    self._events.append(Garbage(bytes(buf[:p])))
                del buf[: p + 2 if after == 0x20 else p + 1]
                return True
            pos = p + 1
        return False

    def _prompt(self) -> None:
        run = self._run
        assert run is not None
        run.prompted = True
        data = run.command.data
        self._out += ESC if data is None else data + CTRL_Z

    def _raw_line(self, raw: bytes) -> None:
        m = _JUNK_THROUGH_LAST_BAD.match(raw)
        if m is not None:
            self._events.append(Garbage(m[0]))
            raw = raw[m.end() :]
        text = _decode(raw).strip()
        if text:
            self._line(text)

    def _line(self, text: str) -> None:
        if self._cusd is not None:
            pending, self._cusd = self._cusd, None
            if text.upper() == "OK" or parse_error(text) is not None:
                self._events.append(Garbage(pending.encode()))  # the quote never closed
                self._line(text)
                return
            text = pending + "\n" + text
            if len(text) > self.max_line:
                self._events.append(Garbage(text[: self.max_line].encode()))
                return
        if self._two_line is not None:
            name, header = self._two_line
            self._two_line = None
            if self._second_line(name, header, text):
                return
        run = self._run
        upper = text.upper()
        if run is not None and self._is_echo(run, upper):
            run.echoed = True
            late, self._late = self._late, None
            if late is not None and late.lines:  # cut off before its final result
                self._events.append(StaleAnswer(tuple(late.lines), ""))
            return
        if run is None and self._last_text and upper == self._last_text:
            return  # the late echo of a command that timed out
        if upper == "OK":
            self._final(text, None)
            return
        if run is not None and upper in _NUMERIC and _BASIC.fullmatch(run.command.text):
            # A modem left in numeric mode (ATV0, saved by some other tool) answers "0" / "4":
            # read for the basic commands a driver starts with, so it can send ATV1.
            self._final(text, _NUMERIC[upper])
            return
        error = parse_error(text)
        if error is not None:
            self._final(text, error)
            return
        if _EXTENDED_ERROR.fullmatch(text):
            self._events.append(Garbage(text.encode()))  # a malformed error result
            return
        late = self._late
        if late is not None and (run is None or (self.echo and not run.echoed)):
            # The timed-out command's answer: its own named lines, or any line when idle.
            named = _NAMED.fullmatch(text)
            if named is None:
                theirs = run is None and upper not in _NOTICES and upper != "RING"
            else:
                theirs = named[1].upper() in late.names
            if theirs and len(late.lines) < _MAX_LATE_LINES:
                late.lines.append(text)
                return
        event = self._unsolicited(text, upper, run)
        if event is not None:
            self._events.append(event)
        elif self._two_line is not None or self._cusd is not None:
            pass  # the first line of a two-line URC
        elif run is not None:
            run.lines.append(text)
        else:
            self._events.append(Garbage(text.encode()))

    def _is_echo(self, run: _Running, upper: str) -> bool:
        cmd = run.command.text.upper()
        if upper == cmd:
            return True
        if run.prompted and run.command.data is not None and _HEX.fullmatch(upper):
            return upper in run.command.data.decode("ascii", "replace").upper()
        # A partial echo: the start of the line lost to noise ("T+CSQ") or its end ("AT+CS").
        if upper.startswith("AT") and len(upper) >= 3 and cmd.startswith(upper):
            return True
        return upper.startswith("T+") and cmd.endswith(upper)

    def _final(self, text: str, error: AtError | None) -> None:
        run = self._run
        if run is None:
            if error is not None and error.kind in _CALL_RESULTS:
                self._events.append(VendorUrc(text, ""))  # a call ended or failed
                return
            late, self._late = self._late, None
            self._events.append(StaleAnswer(tuple(late.lines) if late else (), text))
            return
        late_ok = error is None and run.command.data is not None and not run.prompted
        if late_ok or (self._late is not None and self.echo and not run.echoed):
            before = tuple(self._late.lines) if self._late else ()
            self._events.append(StaleAnswer(before + tuple(run.lines), text))
            run.lines.clear()
            run.stale_dropped = True
            self._late = None
            return
        self._run = None
        self._late = None
        command = run.command
        lines = tuple(run.lines)
        if error is None:
            self._events.append(CommandDone(command, lines))
            if _BASIC_ECHO_OFF.match(command.text):
                self.echo = False
            elif _BASIC_ECHO_ON.match(command.text):
                self.echo = True
            else:
                self.echo = run.echoed
        else:
            self._events.append(CommandFailed(command, error, lines))
            self.echo = run.echoed
        self._start_next()

    def _unsolicited(self, text: str, upper: str, run: _Running | None) -> Event | None:
        m = _NAMED.fullmatch(text)
        if m is None:
            if upper == "RING":
                return Ring()
            if upper.startswith("DST:"):  # SIMCom, after *PSUTTZ: the daylight saving hours
                return VendorUrc("DST", text[4:].strip())
            notice = _NOTICES.get(upper)
            return VendorUrc(notice, "") if notice is not None else None
        name, value = m[1].upper(), m[2].strip()
        ours = run is not None and name in run.names
        if name in ("+CMT", "+CDS"):
            return self._two_line_header(name, value)
        if name in {"+CMTI", "+CDSI"}:
            fields = split_fields(value)
            index = _int(fields[1]) if len(fields) > 1 else None
            if index is not None:
                cls = NewMessage if name == "+CMTI" else StatusReportStored
                return cls(fields[0], index)
            return VendorUrc(name, value)
        if name == "+CRING":
            return Ring(value)
        if name == "+CUSD":
            if run is not None and name in run.queries:
                return None  # the answer to AT+CUSD? / AT+CUSD=?
            if value.count('"') % 2:
                self._cusd = text  # its quoted text goes on past a line end
                return None
            return _ussd(value)
        if name in _REGISTRATION:
            answerable = run is not None and name in run.queries and name not in run.answered
            if run is not None and answerable and _registration_answer(value):
                run.answered |= {name}
                return None
            return _registration(name, value)
        if ours:
            return None
        if name[0] == "+" and run is not None and run.basic and name not in _KNOWN_URCS:
            return None  # ATI's "+GCAP:", AT&V's settings
        return VendorUrc(name, value)

    def _two_line_header(self, name: str, value: str) -> Event | None:
        if self.pdu_urcs or name == "+CMT":
            self._two_line = (name, value)
            return None
        return StatusReport(None, b"", value)  # text-mode +CDS is one line

    def _second_line(self, name: str, header: str, text: str) -> bool:
        """Complete a +CMT / +CDS with `text`; False when `text` is not its PDU line."""
        fields = split_fields(header)
        length = _int(fields[-1]) if fields else None
        if not self.pdu_urcs:
            self._events.append(IncomingSms(None, text.encode(), None, header))
            return True
        if not _HEX.fullmatch(text):
            self._events.append(Garbage(f"{name}: {header}".encode()))
            return False
        pdu = bytes.fromhex(text)
        if name == "+CMT":
            alpha = fields[0] if len(fields) >= 2 and fields[0] else None
            self._events.append(IncomingSms(length, pdu, alpha))
        else:
            self._events.append(StatusReport(length, pdu))
        return True


def _registration_answer(value: str) -> bool:
    """<n>,<stat>[,...] (the answer to AT+CREG?) or ranges (AT+CREG=?), not <stat>[,"<lac>"...]."""
    raw = value.split(",")
    return value.startswith("(") or (len(raw) >= 2 and _digits(raw[1].strip()))


def _ussd(value: str) -> Event:
    fields = split_fields(value)
    m = _int(fields[0])
    if m is None:
        return VendorUrc("+CUSD", value)
    text = fields[1] if len(fields) > 1 else None
    dcs = _int(fields[2]) if len(fields) > 2 else None
    return Ussd(m, text, dcs)


def _registration(name: str, value: str) -> Event:
    fields = split_fields(value)
    stat = _int(fields[0])
    if stat is None:
        return VendorUrc(name, value)
    lac = _int(fields[1], 16) if len(fields) > 1 else None
    ci = _int(fields[2], 16) if len(fields) > 2 else None
    act = _int(fields[3]) if len(fields) > 3 else None
    return Registration(stat, lac, ci, act, name)
