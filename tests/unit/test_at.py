"""The sans-IO AT engine: modem transcripts, any chunking, URCs mid-answer, prompt, errors,
timeouts, resynchronisation and reset.

The transcripts below are CONSTRUCTED, not captured: written from 3GPP TS 27.005 / 27.007 and
what the vendors' AT manuals and field reports show their modems print (Huawei E3372 ^-floods,
SIMCom SIM800 start-up notices, Quectel EC25 +QIND, Wavecom +WIND and +CMS ERROR: 515). The
PDUs in them were made with our own `gateway.sms.tpdu` encoder.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modem.at import (
    CME_ERRORS,
    CMS_ERRORS,
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

# PDUs made with gateway.sms.tpdu (SMSC part included).
DELIVER_GSM7 = (
    b"0791447758100650040C9144770009103200004230504122134013D9775D0E1ABFC965507A0EA2E164B9D80C"
)
DELIVER_UCS2 = (
    b"0791947101670000040D91945121436587F9000842305041322040100047007200FC00DF00650020D83DDC4B"
)
DELIVER_ALNUM = (
    b"0891683108100005F00407D053F41B0E000042305090000040124F39B92C07C5603419688E4EC3E16532"
)
STATUS_REPORT = b"079144775810065006070C91447700094065423050415200404230504152404000"
SUBMIT_SRR = b"0021000C91447700094065000010C8329BFD0699E5EF3668DE9E9FEF"  # 27 TPDU octets
SUBMIT_SMSC = b"0891683108100005F001000D91683119325476F80000084F2A1454ABC962"  # 21 TPDU octets


def drive(
    commands: Sequence[Command],
    chunks: Iterable[bytes],
    *,
    echo: bool = True,
    max_line: int = 4096,
    pdu_urcs: bool = True,
) -> tuple[list[Event], bytes]:
    """Queue `commands`, feed `chunks`; every event and every byte written, in order."""
    engine = AtEngine(echo=echo, max_line=max_line, pdu_urcs=pdu_urcs)
    for command in commands:
        engine.send(command, 0.0)
    out = engine.data_to_send()
    events: list[Event] = []
    for chunk in chunks:
        engine.receive_data(chunk, 0.0)
        out += engine.data_to_send()
        while (event := engine.next_event()) is not None:
            events.append(event)
    return events, out


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def one_by_one(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def done(command: Command, *lines: str | bytes) -> CommandDone:
    return CommandDone(command, tuple(x.decode() if isinstance(x, bytes) else x for x in lines))


# -- constructed transcripts -----------------------------------------------------------------------


@dataclass(frozen=True)
class Transcript:
    name: str
    commands: tuple[Command, ...]
    modem: bytes  # everything the modem printed, in order
    events: tuple[Event, ...]
    written: bytes  # everything the engine wrote
    echo: bool = True


def _huawei() -> Transcript:
    ate0, cmee, cpin = Command("ATE0"), Command("AT+CMEE=2"), Command("AT+CPIN?")
    iccid, csq, hcsq = Command("AT^ICCID?"), Command("AT+CSQ"), Command("AT^HCSQ?")
    cmgs = Command("AT+CMGS=27", 60.0, data=SUBMIT_SRR)
    modem = (
        b"\r\n^BOOT:20825186,0,0,0,75\r\n"
        b"ATE0\r\r\nOK\r\n"
        b"\r\n^RSSI:14\r\n\r\nOK\r\n"
        b"\r\n+CPIN: READY\r\n\r\n^MODE:5,4\r\n\r\nOK\r\n"
        b"\r\n^ICCID: 98440100032143658709\r\n\r\nOK\r\n"
        b'\r\n^SRVST:2\r\n\r\n+CSQ: 14,99\r\n^HCSQ:"LTE",48,42,130,24\r\n\r\nOK\r\n'
        b"\r\n> "
        b"\r\n+CMGS: 7\r\n\r\n^RSSI:17\r\nOK\r\n"
        b'\r\n^HCSQ:"LTE",50,44,135,26\r\n\r\nOK\r\n'
        b'\r\n+CMTI: "ME",0\r\n'
        b"\r\n^DSFLOWRPT:0000001E,00000000,00000000,0000000000000000,0000000000000000\r\n"
    )
    events = (
        VendorUrc("^BOOT", "20825186,0,0,0,75"),
        done(ate0),
        VendorUrc("^RSSI", "14"),
        done(cmee),
        VendorUrc("^MODE", "5,4"),
        done(cpin, "+CPIN: READY"),
        done(iccid, "^ICCID: 98440100032143658709"),
        VendorUrc("^SRVST", "2"),
        VendorUrc("^HCSQ", '"LTE",48,42,130,24'),
        done(csq, "+CSQ: 14,99"),
        VendorUrc("^RSSI", "17"),
        done(cmgs, "+CMGS: 7"),
        done(hcsq, '^HCSQ:"LTE",50,44,135,26'),
        NewMessage("ME", 0),
        VendorUrc("^DSFLOWRPT", "0000001E,00000000,00000000,0000000000000000,0000000000000000"),
    )
    commands = (ate0, cmee, cpin, iccid, csq, cmgs, hcsq)
    written = b"ATE0\rAT+CMEE=2\rAT+CPIN?\rAT^ICCID?\rAT+CSQ\rAT+CMGS=27\r"
    written += SUBMIT_SRR + b"\x1aAT^HCSQ?\r"
    return Transcript("huawei-e3372", commands, modem, events, written)


def _simcom() -> Transcript:
    at, cpms, cmgr = Command("AT"), Command('AT+CPMS="SM","SM","SM"'), Command("AT+CMGR=1")
    cmgs = Command("AT+CMGS=21", 60.0, data=SUBMIT_SMSC)
    cmgd, creg = Command("AT+CMGD=1"), Command("AT+CREG?")
    modem = (
        b"\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n"
        b"AT\r\r\nOK\r\n"
        b"\r\nCall Ready\r\n"
        b'AT+CPMS="SM","SM","SM"\r\r\n+CPMS: 1,30,1,30,1,30\r\n\r\nSMS Ready\r\n\r\nOK\r\n'
        b'AT+CMGR=1\r\r\n+CMGR: 0,"",36\r\n' + DELIVER_GSM7 + b"\r\n"
        b'\r\n*PSUTTZ: 2024,3,5,14,22,40,"+4",0\r\n\r\nDST: 0\r\n'
        b'\r\n+CIEV: 10,"23415","vodafone UK","vodafone UK", 0, 0\r\n\r\nOK\r\n'
        b"AT+CMGS=21\r\r\n> " + SUBMIT_SMSC + b"\x1a"
        b'\r\n+CMTI: "SM",2\r\n\r\n+CMGS: 42\r\n\r\nOK\r\n'
        b"AT+CMGD=1\r\r\nOK\r\n"
        b"AT+CREG?\r\r\n+CREG: 5\r\n\r\n+CREG: 0,5\r\n\r\nOK\r\n"
        b'\r\nRING\r\n\r\n+CLIP: "+447700900999",145,"",0,"",0\r\n\r\nNO CARRIER\r\n'
    )
    events = (
        VendorUrc("RDY", ""),
        VendorUrc("+CFUN", "1"),
        VendorUrc("+CPIN", "READY"),
        done(at),
        VendorUrc("Call Ready", ""),
        VendorUrc("SMS Ready", ""),
        done(cpms, "+CPMS: 1,30,1,30,1,30"),
        VendorUrc("*PSUTTZ", '2024,3,5,14,22,40,"+4",0'),
        VendorUrc("DST", "0"),
        VendorUrc("+CIEV", '10,"23415","vodafone UK","vodafone UK", 0, 0'),
        done(cmgr, '+CMGR: 0,"",36', DELIVER_GSM7),
        NewMessage("SM", 2),
        done(cmgs, "+CMGS: 42"),
        done(cmgd),
        Registration(5, None, None, None, "+CREG"),
        done(creg, "+CREG: 0,5"),
        Ring(),
        VendorUrc("+CLIP", '"+447700900999",145,"",0,"",0'),
        VendorUrc("NO CARRIER", ""),
    )
    written = b'AT\rAT+CPMS="SM","SM","SM"\rAT+CMGR=1\rAT+CMGS=21\r' + SUBMIT_SMSC
    written += b"\x1aAT+CMGD=1\rAT+CREG?\r"
    return Transcript("simcom-sim800", (at, cpms, cmgr, cmgs, cmgd, creg), modem, events, written)


USSD_HEX = "00420061006C0061006E00630065003A0020003500200045005500520020"


def _quectel() -> Transcript:
    qccid, cereg, cmgl = Command("AT+QCCID"), Command("AT+CEREG?"), Command("AT+CMGL=4", 30.0)
    cusd, csq = Command('AT+CUSD=1,"*100#",15', 30.0), Command("AT+CSQ")
    modem = (
        b"\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n\r\n+QUSIM: 1\r\n"
        b"\r\n+QIND: SMS DONE\r\n"
        b"\r\n+QCCID: 8944100030123456789F\r\n\r\nOK\r\n"
        b"\r\n+QIND: PB DONE\r\n"
        b'\r\n+CEREG: 0,1\r\n\r\n+CEREG: 1,"2F1A","01A2B3C4",7\r\n\r\nOK\r\n'
        b"\r\n+CMGL: 0,1,,36\r\n" + DELIVER_GSM7 + b"\r\n"
        b'+QIND: "csq",20,99\r\n'
        b"+CMGL: 1,0,,36\r\n" + DELIVER_UCS2 + b"\r\n"
        b'\r\n+CMTI: "SM",2\r\n'
        b"+CMGL: 2,0,,33\r\n" + DELIVER_ALNUM + b"\r\n\r\nOK\r\n"
        b"\r\nOK\r\n"
        b'\r\n+CUSD: 0,"' + USSD_HEX.encode() + b'",72\r\n'
        b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"
    )
    events = (
        VendorUrc("RDY", ""),
        VendorUrc("+CFUN", "1"),
        VendorUrc("+CPIN", "READY"),
        VendorUrc("+QUSIM", "1"),
        VendorUrc("+QIND", "SMS DONE"),
        done(qccid, "+QCCID: 8944100030123456789F"),
        VendorUrc("+QIND", "PB DONE"),
        Registration(1, 0x2F1A, 0x01A2B3C4, 7, "+CEREG"),
        done(cereg, "+CEREG: 0,1"),
        VendorUrc("+QIND", '"csq",20,99'),
        NewMessage("SM", 2),
        done(
            cmgl,
            "+CMGL: 0,1,,36",
            DELIVER_GSM7,
            "+CMGL: 1,0,,36",
            DELIVER_UCS2,
            "+CMGL: 2,0,,33",
            DELIVER_ALNUM,
        ),
        done(cusd),
        Ussd(0, USSD_HEX, 72),
        done(csq, "+CSQ: 20,99"),
    )
    written = b'AT+QCCID\rAT+CEREG?\rAT+CMGL=4\rAT+CUSD=1,"*100#",15\rAT+CSQ\r'
    commands = (qccid, cereg, cmgl, cusd, csq)
    return Transcript("quectel-ec25", commands, modem, events, written, echo=False)


def _wavecom() -> Transcript:
    cmgf, cnmi = Command("AT+CMGF=0"), Command("AT+CNMI=2,1,0,1,0")
    cmgs = Command("AT+CMGS=27", 60.0, data=SUBMIT_SRR)
    cmgd, cpin = Command("AT+CMGD=9"), Command("AT+CPIN?")
    modem = (
        b"\r\n+WIND: 4\r\n"
        b"AT+CMGF=0\r\r\n+CMS ERROR: 515\r\n"
        b"AT+CMGF=0\rOK\r"  # lone CR line ends
        b"AT+CNMI=2,1,0,1,0\n\nOK\n"  # lone LF line ends
        b"AT+CMGS=27\r\n> " + SUBMIT_SRR + b"\x1a\r\n+CMGS: 8\r\n\r\nOK\r\n"
        b"\r\n+CDS: 25\r\n" + STATUS_REPORT + b"\r\n"
        b"\r\n+CMT: ,33\r\n" + DELIVER_ALNUM + b"\r\n"
        b"AT+CMGD=9\r\r\n+CMS ERROR: 321\r\n"
        b"AT+CPIN?\r\r\n+CME ERROR: 14\r\n"
    )
    events = (
        VendorUrc("+WIND", "4"),
        CommandFailed(cmgf, AtError("CMS", 515, CMS_ERRORS[515]), ()),
        done(cmgf),
        done(cnmi),
        done(cmgs, "+CMGS: 8"),
        StatusReport(25, bytes.fromhex(STATUS_REPORT.decode())),
        IncomingSms(33, bytes.fromhex(DELIVER_ALNUM.decode())),
        CommandFailed(cmgd, AtError("CMS", 321, "invalid memory index"), ()),
        CommandFailed(cpin, AtError("CME", 14, "SIM busy"), ()),
    )
    written = b"AT+CMGF=0\rAT+CMGF=0\rAT+CNMI=2,1,0,1,0\rAT+CMGS=27\r" + SUBMIT_SRR
    written += b"\x1aAT+CMGD=9\rAT+CPIN?\r"
    return Transcript("wavecom", (cmgf, cmgf, cnmi, cmgs, cmgd, cpin), modem, events, written)


TRANSCRIPTS = [_huawei(), _simcom(), _quectel(), _wavecom()]


@pytest.mark.parametrize("t", TRANSCRIPTS, ids=lambda t: t.name)
@pytest.mark.parametrize("feed", ["whole", "bytewise"])
def test_transcript(t: Transcript, feed: str) -> None:
    chunks = [t.modem] if feed == "whole" else one_by_one(t.modem)
    events, written = drive(t.commands, chunks, echo=t.echo)
    assert events == list(t.events)
    assert written == t.written


@pytest.mark.parametrize("t", TRANSCRIPTS, ids=lambda t: t.name)
@given(cuts=st.lists(st.integers(min_value=0), max_size=40))
def test_transcript_any_chunking(t: Transcript, cuts: list[int]) -> None:
    events, written = drive(t.commands, split_at(t.modem, cuts), echo=t.echo)
    assert events == list(t.events)
    assert written == t.written


# -- generated transcripts -------------------------------------------------------------------------

# (command, answer units, final line, expected error). A unit is lines that stay together.
ANSWERS: list[tuple[Command, list[list[str]], str, AtError | None]] = [
    (Command("AT+CSQ"), [["+CSQ: 20,99"]], "OK", None),
    (Command("AT+CREG?"), [["+CREG: 0,1"]], "OK", None),
    (Command("AT+COPS?"), [['+COPS: 0,0,"Vodafone UK",7']], "OK", None),
    (Command("AT+CGSN"), [["867123456789012"]], "OK", None),
    (
        Command("ATI"),
        [["Manufacturer: huawei"], ["Model: E3372"], ["+GCAP: +CGSM,+DS"]],
        "OK",
        None,
    ),
    (
        Command("AT+CMGL=4"),
        [["+CMGL: 0,1,,36", DELIVER_GSM7.decode()], ["+CMGL: 3,0,,33", DELIVER_ALNUM.decode()]],
        "OK",
        None,
    ),
    (Command("AT+CMGR=1"), [['+CMGR: 0,"",36', DELIVER_UCS2.decode()]], "OK", None),
    (Command("AT+CMGD=1"), [], "OK", None),
    (Command("AT+CPIN?"), [["+CPIN: SIM PIN"]], "OK", None),
    (Command("AT+CPIN?"), [], "+CME ERROR: 10", AtError("CME", 10, "SIM not inserted")),
    (Command("AT+CMGD=0,4"), [], "ERROR", AtError("ERROR", None, "")),
    (Command("AT+CMGS=27", 60.0, SUBMIT_SRR), [["+CMGS: 200"]], "OK", None),
    (
        Command("AT+CMGS=21", 60.0, SUBMIT_SMSC),
        [],
        "+CMS ERROR: unknown error",
        AtError("CMS", 500, "unknown error"),
    ),
]

URCS: list[tuple[list[bytes], Event]] = [
    ([b'+CMTI: "SM",4'], NewMessage("SM", 4)),
    ([b"+CMT: ,36", DELIVER_GSM7], IncomingSms(36, bytes.fromhex(DELIVER_GSM7.decode()))),
    (
        [b'+CMT: "Shop",33', DELIVER_ALNUM],
        IncomingSms(33, bytes.fromhex(DELIVER_ALNUM.decode()), "Shop"),
    ),
    ([b"+CDS: 25", STATUS_REPORT], StatusReport(25, bytes.fromhex(STATUS_REPORT.decode()))),
    ([b'+CDSI: "SR",1'], StatusReportStored("SR", 1)),
    ([b"^RSSI:17"], VendorUrc("^RSSI", "17")),
    ([b"^MODE:5,4"], VendorUrc("^MODE", "5,4")),
    ([b'^HCSQ:"WCDMA",30,30,58'], VendorUrc("^HCSQ", '"WCDMA",30,30,58')),
    ([b"+CREG: 1"], Registration(1, None, None)),
    ([b'+CREG: 5,"1A2B","01C3"'], Registration(5, 0x1A2B, 0x01C3)),
    ([b'+CGREG: 1,"1A2B","0001C3D4",2'], Registration(1, 0x1A2B, 0x1C3D4, 2, "+CGREG")),
    ([b'+CUSD: 2,"Session ended",15'], Ussd(2, "Session ended", 15)),
    ([b"RING"], Ring()),
    ([b"+CRING: VOICE"], Ring("VOICE")),
    ([b'+CIEV: "MESSAGE",1'], VendorUrc("+CIEV", '"MESSAGE",1')),
    ([b'+QIND: "csq",22,99'], VendorUrc("+QIND", '"csq",22,99')),
    ([b"SMS Ready"], VendorUrc("SMS Ready", "")),
    ([b'+CTZV: "24/03/05,14:22:40",+4'], VendorUrc("+CTZV", '"24/03/05,14:22:40",+4')),
]

TERMINATORS = [b"\r\n", b"\r", b"\n", b"\r\n\r\n"]
# Junk made only of tokens that end with a byte that never occurs in a line, so every printable
# run in it is junk too ('>' left out: at a line start it would be a prompt).
BAD_BYTES = [bytes([b]) for b in (*range(0x00, 0x09), 0x0B, 0x0C, 0x7F, 0xC0, 0xF5, 0xFE, 0xFF)]
junk_token = st.one_of(
    st.sampled_from([*BAD_BYTES, b"\r", b"\n", b"\x1a", b"\x1b"]),
    st.tuples(
        st.text(alphabet="ABCDEFOKRT+:0123456789 ,^", max_size=6), st.sampled_from(BAD_BYTES)
    ).map(lambda t: t[0].encode() + t[1]),
)


@st.composite
def sessions(draw: st.DrawFn) -> tuple[list[Command], bytes, list[Event], bytes, bool]:
    """A modem session: commands, what the modem prints, the events it means, what is written."""
    echo = draw(st.booleans())
    garbage = b"".join(draw(st.lists(junk_token, max_size=8)))
    steps = draw(st.lists(st.sampled_from(ANSWERS), min_size=1, max_size=5))
    commands: list[Command] = []
    stream = bytearray(garbage)
    events: list[Event] = []
    written = bytearray()

    def line(text: bytes) -> None:
        stream.extend(draw(st.sampled_from([b"", b"\r\n"])) + text)
        stream.extend(draw(st.sampled_from(TERMINATORS)))

    def urcs() -> None:
        for lines, event in draw(st.lists(st.sampled_from(URCS), max_size=2)):
            for text in lines:
                line(text)
            events.append(event)

    for command, units, final, error in steps:
        commands.append(command)
        written.extend(command.text.encode() + b"\r")
        if echo:
            stream.extend(command.text.encode() + b"\r")
        urcs()
        if command.data is not None:
            stream.extend(draw(st.sampled_from([b"> ", b"\r\n> "])))
            written.extend(command.data + b"\x1a")
            if echo:
                stream.extend(command.data + b"\x1a")
        for unit in units:
            for text in unit:
                line(text.encode())
            urcs()
        line(final.encode())
        lines = tuple(text for unit in units for text in unit)
        events.append(
            CommandDone(command, lines) if error is None else CommandFailed(command, error, lines)
        )
    urcs()
    return commands, bytes(stream), events, bytes(written), echo


def _without_garbage(events: list[Event]) -> list[Event]:
    return [e for e in events if not isinstance(e, Garbage)]


@given(session=sessions(), cuts=st.lists(st.integers(min_value=0), max_size=30))
def test_generated_sessions_any_chunking(
    session: tuple[list[Command], bytes, list[Event], bytes, bool], cuts: list[int]
) -> None:
    """URCs anywhere between an answer's lines, echo on or off, junk first: the same events
    whichever way the bytes are cut, and the junk only ever comes out as Garbage."""
    commands, stream, expected, written, echo = session
    whole, out = drive(commands, [stream], echo=echo)
    assert _without_garbage(whole) == expected
    assert out == written
    assert drive(commands, split_at(stream, cuts), echo=echo) == (whole, out)


@given(session=sessions())
def test_generated_sessions_bytewise(
    session: tuple[list[Command], bytes, list[Event], bytes, bool],
) -> None:
    commands, stream, _, _, echo = session
    assert drive(commands, one_by_one(stream), echo=echo) == drive(commands, [stream], echo=echo)


TOKENS = [
    b"OK", b"ERROR", b"+CMS ERROR: 500", b"\r", b"\n", b"\r\n", b"> ", b">", b" ", b"\x1a",
    b"\x1b", b"\x00", b"\xff", b"AT+CSQ", b"AT+CMGS=5", b"AT+CMGS", b"+CSQ: 1,2", b"+CMT: ,5",
    b"+CDS: 5", b"0011", b"ABCD", b'+CUSD: 0,"a', b'"', b",15", b"+CREG: 1", b"+CREG: 0,1",
    b"^RSSI:3", b"RING", b"\xc3\xa9", b"x" * 20, "+CMS ERROR: ²".encode(),
    "+CME ERROR: ٣".encode(), "+CMTI: \"SM\",²".encode(), "+CREG: 0,¹".encode(),
]  # fmt: skip


@given(
    tokens=st.lists(st.sampled_from(TOKENS), max_size=60),
    cuts=st.lists(st.integers(min_value=0), max_size=30),
    max_line=st.sampled_from([8, 16, 4096]),
    pdu_urcs=st.booleans(),
)
def test_any_bytes_any_chunking(
    tokens: list[bytes], cuts: list[int], max_line: int, pdu_urcs: bool
) -> None:
    """Whatever the modem sends, cutting it differently changes nothing, and nothing raises."""
    commands = [
        Command("AT+CSQ"),
        Command("AT+CMGS=5", data=b"0011"),
        Command("AT+CREG?"),
        Command("AT+CMGS=5"),
    ]
    stream = b"".join(tokens)
    whole = drive(commands, [stream], max_line=max_line, pdu_urcs=pdu_urcs)
    kw = {"max_line": max_line, "pdu_urcs": pdu_urcs}
    assert drive(commands, split_at(stream, cuts), **kw) == whole  # type: ignore[arg-type]
    assert drive(commands, one_by_one(stream), **kw) == whole  # type: ignore[arg-type]
    for event in whole[0]:
        if isinstance(event, Garbage):
            assert 0 < len(event.data) <= max(max_line, 8) + 64


# -- the prompt ------------------------------------------------------------------------------------


class Engine:
    """An engine with its events and output collected (the shell's loop, in a test)."""

    def __init__(self, **kwargs: object) -> None:
        self.engine = AtEngine(**kwargs)  # type: ignore[arg-type]
        self.now = 0.0

    def send(self, command: Command) -> bytes:
        self.engine.send(command, self.now)
        return self.engine.data_to_send()

    def feed(self, data: bytes) -> tuple[list[Event], bytes]:
        self.engine.receive_data(data, self.now)
        events = []
        while (event := self.engine.next_event()) is not None:
            events.append(event)
        return events, self.engine.data_to_send()

    def tick(self, now: float) -> tuple[list[Event], bytes]:
        self.now = now
        self.engine.handle_timer(now)
        return self.feed(b"")


@pytest.mark.parametrize("prompt", [b"> ", b"\r\n> ", b"\r\n>\r\n", b"\n> "])
def test_prompt_without_line_end(prompt: bytes) -> None:
    e = Engine()
    cmgs = Command("AT+CMGS=27", 60.0, data=SUBMIT_SRR)
    assert e.send(cmgs) == b"AT+CMGS=27\r"
    assert e.feed(b"AT+CMGS=27\r") == ([], b"")
    assert e.feed(prompt) == ([], SUBMIT_SRR + b"\x1a")
    assert e.feed(b"\r\n+CMGS: 3\r\n\r\nOK\r\n") == ([done(cmgs, "+CMGS: 3")], b"")


def test_prompt_split_across_chunks_and_only_once() -> None:
    e = Engine()
    cmgs = Command("AT+CMGS=27", 60.0, data=SUBMIT_SRR)
    e.send(cmgs)
    assert e.feed(b"\r\n>") == ([], b"")  # could still be a line starting with ">"
    assert e.feed(b" ") == ([], SUBMIT_SRR + b"\x1a")
    # A second "> " is no prompt: the data goes once.
    events, out = e.feed(b"> \r\n+CMGS: 4\r\nOK\r\n")
    assert out == b""
    assert len(events) == 1
    assert isinstance(events[0], CommandDone)
    assert events[0].lines[-1] == "+CMGS: 4"


def test_prompt_without_data_is_cancelled_with_esc() -> None:
    e = Engine()
    cmgs = Command("AT+CMGS=27")
    e.send(cmgs)
    assert e.feed(b"\r\n> ") == ([], b"\x1b")
    assert e.feed(b"\r\nOK\r\n") == ([done(cmgs)], b"")


def test_pdu_echo_after_prompt_is_dropped() -> None:
    e = Engine(echo=False)
    cmgs = Command("AT+CMGS=27", 60.0, data=SUBMIT_SRR)
    e.send(cmgs)
    e.feed(b"> ")
    # Some modems echo the PDU in pieces, others with the Ctrl-Z, some in lower case.
    events, _ = e.feed(SUBMIT_SRR[:20] + b"\r\n" + SUBMIT_SRR[20:].lower() + b"\x1a\r\n")
    assert events == []
    assert e.feed(b"+CMGS: 9\r\nOK\r\n")[0] == [done(cmgs, "+CMGS: 9")]


def test_ok_before_the_prompt_is_not_the_answer() -> None:
    """A message cannot be sent before its PDU: an OK then is a late answer to something else."""
    e = Engine(echo=False)
    cmgs = Command("AT+CMGS=27", 60.0, data=SUBMIT_SRR)
    e.send(cmgs)
    events, _ = e.feed(b"\r\n+CMGS: 3\r\n\r\nOK\r\n")
    assert events == [StaleAnswer(("+CMGS: 3",), "OK")]
    assert e.feed(b"\r\n> ")[1] == SUBMIT_SRR + b"\x1a"
    assert e.feed(b"\r\n+CMGS: 4\r\nOK\r\n")[0] == [done(cmgs, "+CMGS: 4")]


def test_error_before_the_prompt_fails_the_command() -> None:
    e = Engine()
    cmgs = Command("AT+CMGS=27", 60.0, data=SUBMIT_SRR)
    e.send(cmgs)
    events, out = e.feed(b"AT+CMGS=27\r\r\n+CMS ERROR: 304\r\n")
    assert events == [CommandFailed(cmgs, AtError("CMS", 304, "invalid PDU mode parameter"), ())]
    assert out == b""


# -- echo and line ends ----------------------------------------------------------------------------


@pytest.mark.parametrize("echo_configured", [True, False])
@pytest.mark.parametrize(
    "echo", [b"AT+CSQ\r", b"at+csq\r", b"AT+CS\r", b"T+CSQ\r", b"\x00\xffAT+CSQ\r", b""]
)
def test_echo_is_stripped_whole_or_partial(echo_configured: bool, echo: bytes) -> None:
    e = Engine(echo=echo_configured)
    csq = Command("AT+CSQ")
    e.send(csq)
    events, _ = e.feed(echo + b"\r\n+CSQ: 31,0\r\n\r\nOK\r\n")
    assert _without_garbage(events) == [done(csq, "+CSQ: 31,0")]


@pytest.mark.parametrize("terminator", [b"\r\n", b"\r", b"\n", b"\n\r", b"\r\r\n"])
def test_line_terminators(terminator: bytes) -> None:
    e = Engine()
    cops = Command("AT+COPS?")
    e.send(cops)
    t = terminator
    events, _ = e.feed(t + b'+COPS: 0,0,"EE",7' + t + t + b"   " + t + b"OK" + t)
    assert events == [done(cops, '+COPS: 0,0,"EE",7')]


def test_echo_state_is_learned() -> None:
    e = Engine(echo=True)
    e.send(Command("ATE0"))
    e.feed(b"ATE0\r\r\nOK\r\n")
    assert e.engine.echo is False
    e.send(Command("ATE1"))
    e.feed(b"\r\nOK\r\n")
    assert e.engine.echo is True
    e.send(Command("AT"))
    e.feed(b"\r\nOK\r\n")  # no echo seen after all
    assert e.engine.echo is False


# -- final results and error tables ----------------------------------------------------------------

CME_REQUIRED = (3, 4, 10, 11, 12, 13, 14, 15, 16, 17, 18, 30, 31, 32, 100)
CMS_REQUIRED = (
    38, 300, 301, 302, 303, 304, 305, *range(310, 319), 320, 321, 322, 330, 331, 332, 340, 500,
    512, 513, 514, 515,
)  # fmt: skip


@pytest.mark.parametrize("code", CME_REQUIRED)
def test_cme_numeric_and_verbose(code: int) -> None:
    text = CME_ERRORS[code]
    assert parse_error(f"+CME ERROR: {code}") == AtError("CME", code, text)
    assert parse_error(f"+CME ERROR: {text}") == AtError("CME", code, text)
    assert parse_error(f"+CME ERROR: {text.upper()}") == AtError("CME", code, text.upper())


@pytest.mark.parametrize("code", CMS_REQUIRED)
def test_cms_numeric_and_verbose(code: int) -> None:
    text = CMS_ERRORS[code]
    assert parse_error(f"+CMS ERROR: {code}") == AtError("CMS", code, text)
    assert parse_error(f"+CMS ERROR: {text}") == AtError("CMS", code, text)


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("ERROR", AtError("ERROR", None, "")),
        ("NO CARRIER", AtError("NO CARRIER", None, "")),
        ("NO DIALTONE", AtError("NO DIALTONE", None, "")),
        ("BUSY", AtError("BUSY", None, "")),
        ("NO ANSWER", AtError("NO ANSWER", None, "")),
        ("COMMAND NOT SUPPORT", AtError("COMMAND NOT SUPPORT", None, "")),
        ("ABORTED", AtError("ABORTED", None, "")),
        ("+CME ERROR: SIM busy", AtError("CME", 14, "SIM busy")),
        ("+CME ERROR: unknown error", AtError("CME", 100, "unknown error")),
        ("+CMS ERROR: Unknown error", AtError("CMS", 500, "Unknown error")),
        ("+CMS ERROR: SMSC address unknown", AtError("CMS", 330, "SMSC address unknown")),
        ("+CMS ERROR:500", AtError("CMS", 500, "unknown error")),
        ("+CMS ERROR: 599", AtError("CMS", 599, "")),
        ("+CME ERROR: frobnicated", AtError("CME", None, "frobnicated")),
        ("OK", None),
        ("+CMGS: 5", None),
    ],
)
def test_parse_error(line: str, error: AtError | None) -> None:
    assert parse_error(line) == error


# str.isdigit() is True for all of these, and int() reads the last two: none is an AT code.
NON_ASCII_DIGITS = ["²", "٣", "５", "1²", "³00", "1_0"]


@pytest.mark.parametrize("digits", NON_ASCII_DIGITS)
def test_non_ascii_digits_in_an_error_are_a_malformed_line(digits: str) -> None:
    """Issue 8 item 12: one flipped bit on a serial line must not raise ValueError."""
    e = Engine()
    c = Command("AT+CMGR=1")
    e.send(c)
    events, _ = e.feed(f"\r\n+CMS ERROR: {digits}\r\n".encode())
    if digits == "1_0":
        assert events == [CommandFailed(c, AtError("CMS", None, "1_0"), ())]
        return
    assert events == [Garbage(f"+CMS ERROR: {digits}".encode())]
    assert e.engine.running == c  # still waiting for its real final result
    assert e.feed(b"\r\nOK\r\n")[0] == [CommandDone(c, ())]


@pytest.mark.parametrize("digits", NON_ASCII_DIGITS)
def test_non_ascii_digits_in_urc_fields_are_not_numbers(digits: str) -> None:
    e = Engine()
    events, _ = e.feed(f'\r\n+CMTI: "SM",{digits}\r\n+CREG: {digits}\r\n'.encode())
    assert not any(isinstance(ev, NewMessage | Registration) for ev in events)
    assert len(events) == 2


@pytest.mark.parametrize("final", [b"NO CARRIER", b"BUSY", b"COMMAND NOT SUPPORT", b"ABORTED"])
def test_other_finals_fail_the_command(final: bytes) -> None:
    e = Engine()
    c = Command("ATD+447700900123;")
    e.send(c)
    events, _ = e.feed(b"\r\n" + final + b"\r\n")
    assert events == [CommandFailed(c, AtError(final.decode(), None, ""), ())]


# -- URCs and whose line is whose ------------------------------------------------------------------


def test_cmt_pdu_line_in_another_chunk_and_mid_answer() -> None:
    e = Engine()
    cmgl = Command("AT+CMGL=4")
    e.send(cmgl)
    assert e.feed(b"\r\n+CMGL: 0,1,,36\r\n" + DELIVER_GSM7 + b"\r\n+CMT: ,33\r\n") == ([], b"")
    events, _ = e.feed(DELIVER_ALNUM[:10])
    assert events == []
    events, _ = e.feed(DELIVER_ALNUM[10:] + b"\r\n\r\nOK\r\n")
    assert events == [
        IncomingSms(33, bytes.fromhex(DELIVER_ALNUM.decode())),
        done(cmgl, "+CMGL: 0,1,,36", DELIVER_GSM7),
    ]


def test_cmt_header_without_its_pdu_line() -> None:
    e = Engine()
    csq = Command("AT+CSQ")
    e.send(csq)
    events, _ = e.feed(b"\r\n+CMT: ,33\r\n+CSQ: 5,99\r\nOK\r\n")
    assert events == [Garbage(b"+CMT: ,33"), done(csq, "+CSQ: 5,99")]


def test_registration_answer_versus_urc() -> None:
    e = Engine()
    creg = Command("AT+CREG?")
    e.send(creg)
    events, _ = e.feed(
        b'\r\n+CREG: 1,"1A2B","01C3"\r\n+CREG: 2,1,"1A2B","01C3",7\r\n+CREG: 5\r\nOK\r\n'
    )
    assert events == [
        Registration(1, 0x1A2B, 0x01C3),
        Registration(5, None, None),
        done(creg, '+CREG: 2,1,"1A2B","01C3",7'),
    ]
    # Outside AT+CREG? even the two-field form is a URC (n=2 with <stat>,<lac>,<ci>,<AcT>).
    assert e.feed(b'\r\n+CREG: 1,"1A2B","01C3",7\r\n')[0] == [Registration(1, 0x1A2B, 0x01C3, 7)]


def test_basic_command_takes_plus_lines_extended_one_does_not() -> None:
    e = Engine()
    ati, cgmi = Command("ATI"), Command("AT+CGMI")
    e.send(ati)
    e.send(cgmi)
    events, _ = e.feed(
        b"\r\nManufacturer: QUALCOMM\r\n+GCAP: +CGSM\r\n+CIEV: 1,2\r\nOK\r\n"
        b"\r\nQuectel\r\n+GCAP: +CGSM\r\nOK\r\n"
    )
    assert events == [
        VendorUrc("+CIEV", "1,2"),
        done(ati, "Manufacturer: QUALCOMM", "+GCAP: +CGSM"),
        VendorUrc("+GCAP", "+CGSM"),
        done(cgmi, "Quectel"),
    ]


def test_expect_names_an_answer_line() -> None:
    e = Engine()
    c = Command("AT^ICCID?", expect="+CCID")
    e.send(c)
    events, _ = e.feed(b"\r\n+CCID: 8944\r\nOK\r\n")
    assert events == [done(c, "+CCID: 8944")]


def test_ussd_urc_and_query_answer() -> None:
    e = Engine()
    query, request = Command("AT+CUSD?"), Command('AT+CUSD=1,"*100#",15')
    e.send(query)
    e.send(request)
    events, _ = e.feed(
        b"\r\n+CUSD: 1\r\nOK\r\n"
        b'\r\n+CUSD: 1,"Balance: 5.00\r\n1. Top up\r\n2. Bundles",15\r\nOK\r\n'
    )
    assert events == [
        done(query, "+CUSD: 1"),
        Ussd(1, "Balance: 5.00\n1. Top up\n2. Bundles", 15),
        done(request),
    ]


def test_ussd_text_that_never_closes_does_not_eat_the_final_result() -> None:
    e = Engine()
    c = Command('AT+CUSD=1,"*100#",15')
    e.send(c)
    events, _ = e.feed(b'\r\n+CUSD: 0,"broken\r\nOK\r\n')
    assert events == [Garbage(b'+CUSD: 0,"broken'), done(c)]


def test_text_mode_urcs() -> None:
    e = Engine(pdu_urcs=False)
    header = '"+447700900123",,"24/03/05,14:22:31+04"'
    events, _ = e.feed(
        b"+CMT: " + header.encode() + b"\r\nHello there\r\n"
        b'+CDS: 6,7,"+447700900456",145,"24/03/05,14:25:00+04","24/03/05,14:25:04+04",0\r\n'
    )
    assert events == [
        IncomingSms(None, b"Hello there", None, header),
        StatusReport(
            None,
            b"",
            '6,7,"+447700900456",145,"24/03/05,14:25:00+04","24/03/05,14:25:04+04",0',
        ),
    ]


def test_lines_with_no_command_running() -> None:
    e = Engine()
    events, _ = e.feed(b"\r\nOK\r\n+CSQ: 3,4\r\nhello\r\n+CMS ERROR: 500\r\nBUSY\r\n")
    assert events == [
        StaleAnswer((), "OK"),
        VendorUrc("+CSQ", "3,4"),
        Garbage(b"hello"),
        StaleAnswer((), "+CMS ERROR: 500"),
        VendorUrc("BUSY", ""),
    ]


def test_split_fields() -> None:
    assert split_fields('0,"a, b",15') == ["0", "a, b", "15"]
    assert split_fields(' 1 , "" ,x') == ["1", "", "x"]
    assert split_fields("") == [""]


# -- resynchronisation -----------------------------------------------------------------------------


def test_noise_glued_to_a_line_does_not_lose_it() -> None:
    e = Engine()
    csq = Command("AT+CSQ")
    e.send(csq)
    events, _ = e.feed(b"\x00\x00\xff\xfeq\x01+CSQ: 9,99\r\n\xffOK\r\n")
    assert events == [Garbage(b"\x00\x00\xff\xfeq\x01"), Garbage(b"\xff"), done(csq, "+CSQ: 9,99")]


def test_half_line_then_reboot() -> None:
    e = Engine()
    csq, at = Command("AT+CSQ"), Command("AT")
    e.send(csq)
    e.feed(b"\r\n+CSQ: 1")  # the modem reboots mid-line
    events, _ = e.feed(b"\x00\xf8\xff\r\n^BOOT:1,0,0,0,75\r\n")
    assert events == [Garbage(b"+CSQ: 1\x00\xf8\xff"), VendorUrc("^BOOT", "1,0,0,0,75")]
    assert e.tick(5.0)[0] == [CommandTimedOut(csq)]
    e.send(at)
    assert e.feed(b"AT\r\r\nOK\r\n")[0] == [done(at)]


@pytest.mark.parametrize("chunked", [False, True])
def test_over_long_line_is_dropped(chunked: bool) -> None:
    e = Engine(max_line=16)
    csq = Command("AT+CSQ")
    e.send(csq)
    junk = b"Z" * 40
    data = junk + b"\r\n+CSQ: 9,99\r\nOK\r\n"
    events: list[Event] = []
    for chunk in one_by_one(data) if chunked else [data]:
        events += e.feed(chunk)[0]
    assert events == [Garbage(b"Z" * 16), done(csq, "+CSQ: 9,99")]


def test_buffer_stays_bounded() -> None:
    e = Engine(max_line=64)
    for _ in range(100):
        e.feed(b"Q" * 1000)
    assert len(e.engine._buf) <= 64


# -- timeouts, late answers, reset -----------------------------------------------------------------


def test_only_the_running_command_has_a_deadline() -> None:
    e = Engine()
    first, second = Command("AT+COPS=?", 120.0), Command("AT+CSQ", 5.0)
    assert e.engine.next_deadline() is None
    e.now = 10.0
    assert e.send(first) == b"AT+COPS=?\r"
    assert e.send(second) == b""  # one at a time
    assert e.engine.next_deadline() == 130.0
    assert e.engine.queued == 1
    assert e.tick(129.9) == ([], b"")
    assert e.tick(130.0) == ([CommandTimedOut(first)], b"AT+CSQ\r")
    assert e.engine.next_deadline() == 135.0
    assert e.tick(135.0) == ([CommandTimedOut(second)], b"")
    assert e.engine.next_deadline() is None
    assert e.engine.running is None


def test_deadline_runs_from_when_the_command_is_written() -> None:
    e = Engine(echo=False)
    first, second = Command("AT+CSQ", 5.0), Command("AT+CREG?", 5.0)
    e.send(first)
    e.send(second)
    e.now = 3.0
    events, out = e.feed(b"\r\nOK\r\n")
    assert events == [done(first)]
    assert out == b"AT+CREG?\r"
    assert e.engine.next_deadline() == 8.0


def test_timed_out_send_leaves_text_entry_with_esc() -> None:
    e = Engine()
    cmgs, csq = Command("AT+CMGS=27", 10.0, data=SUBMIT_SRR), Command("AT+CSQ")
    e.send(cmgs)
    e.send(csq)
    assert e.tick(10.0) == ([CommandTimedOut(cmgs)], b"\x1bAT+CSQ\r")


def test_late_answer_after_timeout_is_not_taken_for_the_next() -> None:
    e = Engine()
    cmgs, csq = Command("AT+CMGS=27", 10.0, data=SUBMIT_SRR), Command("AT+CSQ")
    e.send(cmgs)
    e.send(csq)
    e.feed(b"AT+CMGS=27\r\r\n> ")
    assert e.tick(10.0)[0] == [CommandTimedOut(cmgs)]
    events, _ = e.feed(b"\r\n+CMGS: 77\r\n\r\nOK\r\nAT+CSQ\r\r\n+CSQ: 12,99\r\n\r\nOK\r\n")
    assert events == [StaleAnswer(("+CMGS: 77",), "OK"), done(csq, "+CSQ: 12,99")]


def test_modem_without_echo_is_learned_after_one_more_timeout() -> None:
    """The engine expected echo (the default) but the modem has it off: a timeout makes the next
    OK look late once; that command then times out too and echo is known to be off."""
    e = Engine(echo=True)
    a, b, c = Command("AT"), Command("AT+CSQ"), Command("AT+CREG?")
    for command in (a, b, c):
        e.send(command)
    assert e.tick(5.0)[0] == [CommandTimedOut(a)]
    assert e.feed(b"\r\nOK\r\n")[0] == [StaleAnswer((), "OK")]
    assert e.tick(10.0)[0] == [CommandTimedOut(b)]
    assert e.engine.echo is False
    assert e.feed(b"\r\n+CREG: 0,1\r\nOK\r\n")[0] == [done(c, "+CREG: 0,1")]


def test_unanswered_command_times_out_and_the_next_proceeds() -> None:
    e = Engine(echo=False)
    a, b = Command("AT+CPMS?"), Command("AT+CSQ")
    e.send(a)
    e.send(b)
    e.feed(b"\xff\xfe\x00")  # noise, never a final result
    events, out = e.tick(5.0)
    assert _without_garbage(events) == [CommandTimedOut(a)]
    assert out == b"AT+CSQ\r"
    events, _ = e.feed(b"\r\n+CSQ: 7,99\r\nOK\r\n")
    assert events == [Garbage(b"\xff\xfe\x00"), done(b, "+CSQ: 7,99")]


def test_reset_aborts_running_and_queued_and_drops_partial_input() -> None:
    e = Engine()
    a, b, c = Command("AT+CSQ"), Command("AT+CREG?"), Command("AT")
    e.send(a)
    e.send(b)
    e.feed(b"\r\n+CSQ: 1")
    e.engine.receive_data(b'\r\n+CMTI: "SM",1\r\n+CM', 1.0)  # an event not yet taken is kept
    e.engine.reset()
    assert e.engine.data_to_send() == b""
    assert e.feed(b"")[0] == [
        NewMessage("SM", 1),
        CommandAborted(a, running=True),
        CommandAborted(b, running=False),
    ]
    assert e.engine.running is None
    assert e.engine.next_deadline() is None
    assert e.send(c) == b"AT\r"
    assert e.feed(b"TI: 3\r\nAT\r\r\nOK\r\n")[0] == [done(c, "TI: 3")]


def test_command_validation() -> None:
    with pytest.raises(ValueError, match="AT command"):
        Command("CSQ")
    with pytest.raises(ValueError, match="AT command"):
        Command("AT+CSQ\r")
    with pytest.raises(ValueError, match="Ctrl-Z"):
        Command("AT+CMGS=1", data=b"00\x1a")
    with pytest.raises(ValueError, match="timeout"):
        Command("AT", timeout=0)


def test_numeric_result_codes_for_basic_commands() -> None:
    """ATV0 mode: "0" is OK and "4" ERROR for the basic commands a driver starts with; for
    an extended command a bare digit stays an answer line."""
    engine = AtEngine(echo=False)
    engine.send(Command("AT"), 0.0)
    engine.send(Command("ATE0V1"), 0.0)
    engine.send(Command("AT&F"), 0.0)
    engine.receive_data(b"0\r", 0.1)
    engine.receive_data(b"0\r", 0.2)
    engine.receive_data(b"4\r", 0.3)
    events = list(iter(engine.next_event, None))
    assert [type(e).__name__ for e in events] == ["CommandDone", "CommandDone", "CommandFailed"]
    assert events[2].error.kind == "ERROR"  # type: ignore[union-attr]
    engine.send(Command("AT+CPMS?"), 1.0)
    engine.receive_data(b"0\r\nOK\r\n", 1.1)
    done = engine.next_event()
    assert isinstance(done, CommandDone) and done.lines == ("0",)
