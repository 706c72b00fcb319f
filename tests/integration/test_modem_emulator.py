"""The modem emulator end to end through a real pty, driven with pyserial (and gammu).

Every read is bounded by a deadline; nothing waits on the emulator's timing except where a quirk
is about time (slow answers, slow registration), and those allow wide margins.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import serial

from drivers.modem.emulator import ModemEmulator, Quirks, SimNetwork
from gateway.sms import Encoding, decode_text, pack_septets, unpack_septets
from gateway.sms.tpdu import (
    SmsDeliver,
    SmsStatusReport,
    decode_pdu,
    encode_sms_submit,
    submit_tpdus,
)

DEST = "+491701234567"
FINALS = ("OK", "ERROR", "+CME ERROR", "+CMS ERROR")
REPO = Path(__file__).resolve().parents[2]


class Client:
    """A TE on the pty: write command lines, read answers and URCs, each read bounded."""

    def __init__(self, port: str) -> None:
        self.ser = serial.Serial(port, 115200, timeout=0.05, write_timeout=2)
        self.buf = b""

    def close(self) -> None:
        self.ser.close()

    def write(self, data: bytes) -> None:
        self.ser.write(data)

    def _fill(self, deadline: float) -> bool:
        if time.monotonic() >= deadline:
            return False
        self.buf += self.ser.read(self.ser.in_waiting or 1)
        return True

    def read_until(self, marker: bytes, timeout: float = 3.0) -> bytes:
        """Everything up to and including `marker`."""
        deadline = time.monotonic() + timeout
        while marker not in self.buf:
            if not self._fill(deadline):
                raise TimeoutError(f"no {marker!r} in {self.buf!r}")
        end = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:end], self.buf[end:]
        return out

    def lines(self, timeout: float = 3.0) -> list[str]:
        """Non-empty lines up to and including a final result code."""
        deadline = time.monotonic() + timeout
        out: list[str] = []
        while True:
            while b"\r\n" not in self.buf:
                if not self._fill(deadline):
                    raise TimeoutError(f"no final result after {out!r} (pending {self.buf!r})")
            raw, self.buf = self.buf.split(b"\r\n", 1)
            line = raw.decode("latin-1").strip("\r")
            if line:
                out.append(line)
                if line.startswith(FINALS):
                    return out

    def cmd(self, line: str, timeout: float = 3.0) -> list[str]:
        self.write(line.encode("latin-1") + b"\r")
        return self.lines(timeout)

    def ok(self, line: str) -> list[str]:
        """The information lines of a command that must answer OK."""
        answer = self.cmd(line)
        assert answer[-1] == "OK", (line, answer)
        return answer[:-1]

    def urc(self, prefix: str, timeout: float = 3.0) -> list[str]:
        """The next line starting with `prefix`, and the line after it when that is a PDU."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\r\n" not in self.buf:
                if not self._fill(deadline):
                    raise TimeoutError(f"no {prefix} in {self.buf!r}")
            raw, self.buf = self.buf.split(b"\r\n", 1)
            line = raw.decode("latin-1")
            if line.startswith(prefix):
                if prefix in ("+CMT:", "+CDS:"):
                    return [line, self.urc("", timeout)[0]]
                return [line]

    def quiet(self, seconds: float) -> bytes:
        """What arrives within `seconds` (expected: nothing)."""
        deadline = time.monotonic() + seconds
        while self._fill(deadline):
            pass
        out, self.buf = self.buf, b""
        return out

    def send_pdu(self, hex_pdu: str, length: int) -> list[str]:
        self.write(f"AT+CMGS={length}\r".encode())
        self.read_until(b"> ")
        self.write(hex_pdu.encode() + b"\x1a")
        return self.lines()


@pytest.fixture
def network() -> SimNetwork:
    return SimNetwork(report_delay=0.1)


@pytest.fixture
def modem(network: SimNetwork) -> Iterator[ModemEmulator]:
    with ModemEmulator(network) as emu:
        yield emu


@pytest.fixture
def client(modem: ModemEmulator) -> Iterator[Client]:
    c = Client(modem.port)
    yield c
    c.close()


def start(network: SimNetwork, **kwargs: object) -> tuple[ModemEmulator, Client]:
    emu = ModemEmulator(network, **kwargs)  # type: ignore[arg-type]
    emu.start()
    return emu, Client(emu.port)


# -- start-up sequences of the usual tools --------------------------------------------------


def test_kannel_at2_startup(network: SimNetwork) -> None:
    # Kannel's at2 driver: reset, factory defaults, echo off, flow control, PIN check, PDU mode,
    # phase 2+ check, its default init string, storage; keepalive is a bare AT.
    emu, c = start(network, quirks=Quirks(echo=True))
    try:
        assert c.cmd("ATZ") == ["ATZ", "OK"]  # echo is on until ATE0, as on a fresh modem
        assert c.cmd("AT&F") == ["AT&F", "OK"]
        assert c.cmd("ATE0") == ["ATE0", "OK"]
        assert c.ok("AT+IFC=2,2") == []
        assert c.ok("AT+CPIN?") == ["+CPIN: READY"]
        assert c.ok("AT+CMGF=0") == []
        assert c.ok("AT+CSMS=?") == ["+CSMS: (0,1)"]
        assert c.ok("AT+CSMS=1") == ["+CSMS: 1,1,1"]
        assert c.ok("AT+CNMI=1,2,0,1,0") == []
        assert c.ok("AT+CPMS?") == ['+CPMS: "SM",0,30,"SM",0,30,"SM",0,30']
        assert c.ok("AT") == []
        assert c.ok("AT+CNMI?") == ["+CNMI: 1,2,0,1,0"]
    finally:
        c.close()
        emu.stop()


def test_smstools_startup_and_reading(network: SimNetwork, modem: ModemEmulator) -> None:
    # smsd: sync with AT, its default init "ATE0+CMEE=1" (a basic and an extended command run
    # together), then PIN, registration, signal, storage, and reading with CMGL=4 / CMGR / CMGD.
    c = Client(modem.port)  # first: opening the port flushes what the modem wrote before
    network.inject(modem, "+4915112345", "for smsd")
    try:
        assert c.urc("+CMTI:") == ['+CMTI: "SM",1']
        assert c.ok("AT") == []
        assert c.ok("ATE0+CMEE=1") == []
        assert c.ok("AT+CPIN?") == ["+CPIN: READY"]
        assert c.ok("AT+CREG?") == ["+CREG: 0,1"]
        assert c.ok("AT+CSQ") == ["+CSQ: 20,99"]
        assert c.ok("AT+CPMS?") == ['+CPMS: "SM",1,30,"SM",1,30,"SM",1,30']
        assert c.ok("AT+CMGF=0") == []
        listed = c.ok("AT+CMGL=4")
        assert listed[0].startswith("+CMGL: 1,0,,")
        msg = decode_pdu(listed[1])
        assert isinstance(msg, SmsDeliver)
        assert (msg.originator, msg.text) == ("+4915112345", "for smsd")
        assert c.ok("AT+CMGR=1")[0].startswith("+CMGR: 1,,")  # read now
        assert c.ok("AT+CMGD=1") == []
        assert c.ok("AT+CMGR=1") == []  # an empty slot
        assert c.cmd("AT+CMGR=31") == ["+CMS ERROR: 321"]
    finally:
        c.close()


def test_gammu_identify_sequence(client: Client, modem: ModemEmulator) -> None:
    # What gammu's AT driver sends to identify a phone (seen in its textall log).
    assert client.cmd("ATE1") == ["OK"]  # echo was off while ATE1 was typed
    assert client.cmd("AT+CMEE=1") == ["AT+CMEE=1", "OK"]
    assert client.cmd("ATE0") == ["ATE0", "OK"]
    assert client.ok("AT+CSCS?") == ['+CSCS: "GSM"']
    assert client.ok("AT+CSCS=?") == ['+CSCS: ("GSM","IRA","8859-1","UCS2","HEX")']
    assert client.ok('AT+CSCS="HEX"') == []
    assert client.ok("AT+CGMI") == ["SMSGW"]
    assert client.ok("AT+CGMM") == ["EMU-1"]
    assert client.ok("AT+CGMR") == ["EMU-1.0.0"]
    assert client.ok("AT+CGSN") == [modem.imei]
    assert client.ok("AT+GSN") == [modem.imei]
    assert client.ok("AT+CIMI") == [modem.imsi]
    assert client.cmd("AT+CPROT=?") == ["ERROR"]  # unknown: plain ERROR, as modems answer
    assert client.ok("ATI") == ["SMSGW", "EMU-1", "Revision: EMU-1.0.0"]
    assert client.ok("AT+CCID") == [f"+CCID: {modem.iccid}"]
    assert client.ok("AT^ICCID?") == [f"^ICCID: {modem.iccid}"]
    assert client.ok("AT+QCCID") == [f"+QCCID: {modem.iccid}"]
    assert client.ok("AT+COPS=3,0;+COPS?") == ['+COPS: 0,0,"SimNet",0']
    assert client.ok("AT+COPS=3,2;+COPS?") == ['+COPS: 0,2,"00101",0']
    assert client.ok("AT+CGATT?") == ["+CGATT: 1"]
    assert client.ok("AT+CFUN?") == ["+CFUN: 1"]
    assert len(modem.imei) == 15 and modem.imei.isdigit()


def test_result_code_modes(client: Client) -> None:
    assert client.cmd("AT+CMGR=0") == ["+CMS ERROR: 321"]  # +CMS ERROR whatever CMEE says
    assert client.cmd("AT+CPIN=1234") == ["ERROR"]  # CMEE=0: +CME ERROR hidden
    assert client.ok("AT+CMEE=1") == []
    assert client.cmd("AT+CPIN=1234") == ["+CME ERROR: 3"]
    assert client.ok("AT+CMEE=2") == []
    assert client.cmd("AT+CPIN=1234") == ["+CME ERROR: operation not allowed"]
    assert client.cmd("AT+CMGR=0") == ["+CMS ERROR: invalid memory index"]
    assert client.ok("AT+CMGF=0;+CNMI=2,1,0,1,0;+CNMI?") == ["+CNMI: 2,1,0,1,0"]
    assert client.cmd("AT+NOSUCH") == ["ERROR"]
    client.write(b"ATV0\r")
    assert client.read_until(b"0\r") == b"0\r"
    client.write(b"AT+FOO\r")
    assert client.read_until(b"4\r") == b"4\r"
    client.write(b"AT+CSQ\r")
    assert client.read_until(b"0\r") == b"+CSQ: 20,99\r\n0\r"
    client.write(b"ATV1\r")
    assert client.lines() == ["OK"]
    client.write(b"garbage\rAT\r\n")  # garbage without "AT" is ignored; CR LF is one end
    assert client.lines() == ["OK"]
    assert client.quiet(0.1) == b""


# -- sending --------------------------------------------------------------------------------


def test_pdu_send_prompt_and_message_reference(
    network: SimNetwork, modem: ModemEmulator, client: Client
) -> None:
    pdu = submit_tpdus("hello", DEST)[0]
    client.write(f"AT+CMGS={pdu.tpdu_length}\r".encode())
    assert client.read_until(b"> ") == b"\r\n> "  # no line end after the prompt
    client.write(pdu.hex.encode() + b"\x1a")
    assert client.lines() == ["+CMGS: 0", "OK"]
    got = network.wait_received(1)[0]
    assert (got.modem, got.destination, got.text, got.message_refs) == (
        modem.imei,
        DEST,
        "hello",
        (0,),
    )
    assert client.send_pdu(pdu.hex, pdu.tpdu_length) == ["+CMGS: 1", "OK"]


def test_message_reference_wraps_at_255(
    network: SimNetwork, modem: ModemEmulator, client: Client
) -> None:
    network.set_next_mr(modem, 254)
    pdu = submit_tpdus("x", DEST)[0]
    refs = [client.send_pdu(pdu.hex, pdu.tpdu_length)[0] for _ in range(3)]
    assert refs == ["+CMGS: 254", "+CMGS: 255", "+CMGS: 0"]
    assert [m.message_refs for m in network.wait_received(3)] == [(254,), (255,), (0,)]


def test_bad_submits_get_cms_errors(network: SimNetwork, client: Client) -> None:
    pdu = submit_tpdus("hello", DEST)[0]
    assert client.send_pdu(pdu.hex, pdu.tpdu_length + 1) == ["+CMS ERROR: 304"]  # wrong length
    assert client.send_pdu(pdu.hex[:-6], pdu.tpdu_length - 3) == ["+CMS ERROR: 304"]  # cut short
    assert client.send_pdu("00ZZ", 1) == ["+CMS ERROR: 304"]  # not hex
    sms_deliver = "0004" + pdu.hex[4:]  # TP-MTI 00 going up: a DELIVER-REPORT, unsupported
    assert client.send_pdu(sms_deliver, pdu.tpdu_length) == ["+CMS ERROR: 304"]
    alpha = encode_sms_submit(destination="Shop", body=b"hi", encoding=Encoding.BINARY)
    assert client.send_pdu(alpha.hex, alpha.tpdu_length) == ["+CMS ERROR: 304"]
    assert client.cmd("AT+CMGS=0") == ["+CMS ERROR: 304"]
    assert client.cmd("AT+CMGS=abc") == ["+CMS ERROR: 304"]
    network.reject(DEST, cms=21)
    assert client.send_pdu(pdu.hex, pdu.tpdu_length) == ["+CMS ERROR: 21"]
    client.write(f"AT+CMGS={pdu.tpdu_length}\r".encode())
    client.read_until(b"> ")
    client.write(pdu.hex.encode() + b"\x1b")  # ESC cancels
    assert client.lines() == ["OK"]
    assert network.received == []
    assert client.ok("AT") == []  # back in command mode


def test_three_part_ucs2_message_is_reassembled(network: SimNetwork, client: Client) -> None:
    text = "Заказ №4711 отправлен. " * 7  # 161 UCS-2 characters: three parts of 67
    parts = submit_tpdus(text, DEST, ref=42, encoding=Encoding.UCS2, status_report=True)
    assert len(parts) == 3
    for p in parts:
        assert client.send_pdu(p.hex, p.tpdu_length)[-1] == "OK"
    got = network.wait_received(1)[0]
    assert got.text == text
    assert got.encoding is Encoding.UCS2
    assert len(got.parts) == 3 and got.message_refs == (0, 1, 2)
    assert [p.concat.seq for p in got.parts if p.concat] == [1, 2, 3]
    assert got.status_report_request


# -- status reports -------------------------------------------------------------------------


def test_status_report_as_cds_with_cnma(network: SimNetwork, client: Client) -> None:
    client.ok("AT+CSMS=1")
    client.ok("AT+CNMI=2,1,0,1,0")
    pdu = submit_tpdus("receipt please", DEST, status_report=True)[0]
    assert client.send_pdu(pdu.hex, pdu.tpdu_length) == ["+CMGS: 0", "OK"]
    head, hex_pdu = client.urc("+CDS:")
    report = decode_pdu(hex_pdu)
    assert isinstance(report, SmsStatusReport)
    assert head == f"+CDS: {report.tpdu_length}"
    assert (report.message_ref, report.recipient, report.status) == (0, DEST, 0)
    assert report.delivered
    assert client.ok("AT+CNMA") == []
    assert client.cmd("AT+CNMA") == ["+CMS ERROR: 340"]  # nothing left to acknowledge

    network.set_report_status("+4917000000", 0x30, 0x41)  # pending, then failed for good
    failed = submit_tpdus("no luck", "+4917000000", status_report=True)[0]
    assert client.send_pdu(failed.hex, failed.tpdu_length) == ["+CMGS: 1", "OK"]
    reports = []
    for _ in range(2):
        _, hex_pdu = client.urc("+CDS:")
        assert client.ok("AT+CNMA") == []
        r = decode_pdu(hex_pdu)
        assert isinstance(r, SmsStatusReport)
        reports.append((r.message_ref, r.status, r.pending, r.failed))
    assert reports == [(1, 0x30, True, False), (1, 0x41, False, True)]


def test_status_report_stored_with_cdsi(network: SimNetwork, client: Client) -> None:
    client.ok("AT+CNMI=2,1,0,2,0")
    pdu = submit_tpdus("stored receipt", DEST, status_report=True)[0]
    assert client.send_pdu(pdu.hex, pdu.tpdu_length) == ["+CMGS: 0", "OK"]
    assert client.urc("+CDSI:") == ['+CDSI: "SR",1']
    assert client.ok('AT+CPMS="SR"') == ["+CPMS: 1,30,0,30,0,30"]
    head, hex_pdu = client.ok("AT+CMGR=1")
    assert head.startswith("+CMGR: 0,,")
    report = decode_pdu(hex_pdu)
    assert isinstance(report, SmsStatusReport) and report.message_ref == 0 and report.delivered
    client.ok("AT+CMGF=1")
    assert client.ok("AT+CMGR=1")[0].startswith(f'+CMGR: "REC READ",6,0,"{DEST}",145,"')
    assert client.ok("AT+CMGD=1") == []
    assert client.ok("AT+CPMS?") == ['+CPMS: "SR",0,30,"SM",0,30,"SM",0,30']


# -- receiving ------------------------------------------------------------------------------


def test_inbound_cmti_read_delete(
    network: SimNetwork, modem: ModemEmulator, client: Client
) -> None:
    network.inject(modem, "+4915112345", "hello modem")
    assert client.urc("+CMTI:") == ['+CMTI: "SM",1']
    head, hex_pdu = client.ok("AT+CMGR=1")
    msg = decode_pdu(hex_pdu)
    assert isinstance(msg, SmsDeliver)
    assert head == f"+CMGR: 0,,{msg.tpdu_length}"
    assert (msg.originator, msg.text) == ("+4915112345", "hello modem")
    assert client.ok("AT+CMGL=0") == []  # read now: no longer unread
    assert len(client.ok("AT+CMGL=1")) == 2
    assert client.ok("AT+CMGD=1") == []
    assert modem.stored("SM") == {}
    client.ok("AT+CMGF=1")
    network.inject(modem, "+4915112345", "in text mode")
    assert client.urc("+CMTI:") == ['+CMTI: "SM",1']
    head, body = client.ok("AT+CMGR=1")
    assert head.startswith('+CMGR: "REC UNREAD","+4915112345",,"')
    assert body == "in text mode"
    assert client.ok("AT+CMGD=1,4") == []


def test_multipart_inject(network: SimNetwork, modem: ModemEmulator, client: Client) -> None:
    text = "Your parcel 12345 has left our warehouse and arrives tomorrow."
    sent = network.inject(modem, "+4915112345", text, parts=3)
    assert len(sent) == 3
    assert [client.urc("+CMTI:")[0] for _ in range(3)] == [f'+CMTI: "SM",{i}' for i in (1, 2, 3)]
    lines = client.ok("AT+CMGL=4")
    assert len(lines) == 6
    parts = [decode_pdu(lines[i]) for i in (1, 3, 5)]
    assert all(isinstance(p, SmsDeliver) and p.concat for p in parts)
    bodies = [
        p.user_data
        for p in sorted(parts, key=lambda p: p.concat.seq if p.concat else 0)  # type: ignore[union-attr]
    ]
    assert decode_text(b"".join(bodies), Encoding.GSM7) == text
    uni = network.inject(modem, "+4915112345", "Grüße ✓ " * 20, ucs2=True)
    assert len(uni) == 3  # 160 UCS-2 characters: 3 parts of 67
    for _ in uni:
        client.urc("+CMTI:")


def test_direct_cmt_needs_cnma(network: SimNetwork) -> None:
    emu, c = start(network, ack_timeout=1.0)
    try:
        c.ok("AT+CSMS=1")
        c.ok("AT+CNMI=2,2,0,0,0")
        network.inject(emu, "+4915112345", "direct")
        head, hex_pdu = c.urc("+CMT:")
        msg = decode_pdu(hex_pdu)
        assert isinstance(msg, SmsDeliver) and msg.text == "direct"
        assert head == f"+CMT: ,{msg.tpdu_length}"
        assert c.ok("AT+CNMA") == []
        assert emu.stored("SM") == {}
        # Not acknowledged: the modem stops routing to the TE (27.005 3.4.4) and stores it.
        network.inject(emu, "+4915112345", "ignored")
        c.urc("+CMT:")
        deadline = time.monotonic() + 3
        while not emu.stored("SM") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert emu.unacked == 1 and len(emu.stored("SM")) == 1
        assert c.ok("AT+CNMI?") == ["+CNMI: 2,0,0,0,0"]
    finally:
        c.close()
        emu.stop()


# -- text mode, USSD ------------------------------------------------------------------------


def test_text_mode_send(network: SimNetwork, client: Client) -> None:
    client.ok("AT+CMGF=1")
    client.ok("AT+CSMP=49,167,0,0")  # SMS-SUBMIT, relative validity, status report requested
    client.write(f'AT+CMGS="{DEST}"\r'.encode())
    client.read_until(b"> ")
    client.write(b"Hello in text mode\x1a")
    assert client.lines() == ["+CMGS: 0", "OK"]
    got = network.wait_received(1)[0]
    assert (got.destination, got.text, got.status_report_request) == (
        DEST,
        "Hello in text mode",
        True,
    )
    client.ok('AT+CSCS="UCS2"')
    client.ok("AT+CSMP=17,167,0,8")
    client.write(f'AT+CMGS="{DEST.encode("utf-16-be").hex()}"\r'.encode())
    client.read_until(b"> ")
    client.write("Grüße ✓".encode("utf-16-be").hex().upper().encode() + b"\x1a")
    assert client.lines() == ["+CMGS: 1", "OK"]
    assert network.wait_received(2)[1].text == "Grüße ✓"
    client.ok('AT+CSCS="GSM"')
    assert client.cmd('AT+CMGS=""') == ["+CMS ERROR: 305"]


def test_ussd(network: SimNetwork) -> None:
    emu, c = start(network)
    try:
        assert c.ok('AT+CUSD=1,"*100#",15') == []
        assert c.urc("+CUSD:") == ['+CUSD: 0,"Your balance is 12.34 EUR",15']
        assert c.ok('AT+CUSD=1,"*999#",15') == []
        assert c.urc("+CUSD:") == ["+CUSD: 4"]
        c.ok('AT+CSCS="UCS2"')
        c.ok(f'AT+CUSD=1,"{"*100#".encode("utf-16-be").hex()}",15')
        reply = c.urc("+CUSD:")[0]
        hexed = reply.split('"')[1]
        assert bytes.fromhex(hexed).decode("utf-16-be") == "Your balance is 12.34 EUR"
        assert reply.endswith(",72")
        emu.quirks.ussd_packed = True  # Huawei: packed GSM 7-bit hex both ways
        c.ok('AT+CSCS="GSM"')
        request = pack_septets(b"*100#").hex().upper()
        assert c.ok(f'AT+CUSD=1,"{request}",15') == []
        packed = bytes.fromhex(c.urc("+CUSD:")[0].split('"')[1])
        septets = unpack_septets(packed, len(packed) * 8 // 7)
        assert decode_text(septets, Encoding.GSM7).rstrip("\r@") == "Your balance is 12.34 EUR"
    finally:
        c.close()
        emu.stop()


# -- quirks ---------------------------------------------------------------------------------


def test_quirk_echo_and_urcs_mid_answer(network: SimNetwork) -> None:
    emu, c = start(network, quirks=Quirks(echo=True, urc_mid_answer=True))
    try:
        c.write(b"AT+CSQ\r")
        raw = c.read_until(b"OK\r\n")
        assert raw.startswith(b"AT+CSQ\r\r\n+CSQ: 20,99\r\n")
        assert b"^RSSI:" in raw or b"+CREG:" in raw  # between the answer and its OK
        pdu = submit_tpdus("x", DEST)[0]
        answer = c.send_pdu(pdu.hex, pdu.tpdu_length)
        # The echoed PDU runs into the answer's header; then +CMGS, the URC, OK.
        assert answer[0] == pdu.hex
        assert answer[1] == "+CMGS: 0" and answer[2].startswith(("^RSSI:", "+CREG:"))
        assert answer[-1] == "OK"
    finally:
        c.close()
        emu.stop()


def test_quirk_slow_answers(network: SimNetwork) -> None:
    emu, c = start(network, quirks=Quirks(slow=0.5))
    try:
        c.write(b"AT\r")
        assert c.quiet(0.2) == b""
        assert c.lines() == ["OK"]
    finally:
        c.close()
        emu.stop()


@pytest.mark.parametrize("code", [500, 512])
def test_quirk_intermittent_cms_error(network: SimNetwork, code: int) -> None:
    emu, c = start(network, quirks=Quirks(cms_error_every=2, cms_error_code=code))
    try:
        pdu = submit_tpdus("x", DEST)[0]
        answers = [c.send_pdu(pdu.hex, pdu.tpdu_length)[0] for _ in range(4)]
        assert answers == ["+CMGS: 0", f"+CMS ERROR: {code}", "+CMGS: 1", f"+CMS ERROR: {code}"]
        assert len(network.received) == 2
    finally:
        c.close()
        emu.stop()


def test_quirk_pin_required(network: SimNetwork) -> None:
    emu, c = start(network, quirks=Quirks(pin="1234", puk="87654321"))
    try:
        c.ok("AT+CMEE=1")
        assert c.ok("AT+CPIN?") == ["+CPIN: SIM PIN"]
        assert c.cmd("AT+CIMI") == ["+CME ERROR: 11"]
        assert c.cmd("AT+CMGR=1") == ["+CMS ERROR: 311"]
        assert c.ok("AT+CREG?") == ["+CREG: 0,0"]
        assert c.cmd('AT+CPIN="0000"') == ["+CME ERROR: 16"]
        assert emu.pin_attempts == 2
        assert c.ok('AT+CPIN="1234"') == []
        assert c.ok("AT+CPIN?") == ["+CPIN: READY"]
        assert c.ok("AT+CIMI") == [emu.imsi]
        emu.replug()  # power again: the PIN again
        c.close()
        c = Client(emu.port)
        c.ok("AT+CMEE=1")
        for _ in range(3):
            assert c.cmd("AT+CPIN=9999") == ["+CME ERROR: 16"]
        assert c.ok("AT+CPIN?") == ["+CPIN: SIM PUK"]
        assert c.cmd("AT+CIMI") == ["+CME ERROR: 12"]
        assert c.ok('AT+CPIN="87654321","4321"') == []
        assert c.ok("AT+CPIN?") == ["+CPIN: READY"]
    finally:
        c.close()
        emu.stop()


def test_quirk_sim_busy(network: SimNetwork) -> None:
    emu, c = start(network, quirks=Quirks(sim_busy=2))
    try:
        c.ok("AT+CMEE=1")
        assert c.cmd("AT+CPIN?") == ["+CME ERROR: 14"]
        assert c.cmd("AT+CPIN?") == ["+CME ERROR: 14"]
        assert c.ok("AT+CPIN?") == ["+CPIN: READY"]
    finally:
        c.close()
        emu.stop()


def test_quirk_slow_registration(network: SimNetwork) -> None:
    emu, c = start(network, quirks=Quirks(registration_delay=1.5))
    try:
        c.ok("AT+CREG=1")
        assert c.ok("AT+CREG?") == ["+CREG: 1,2"]
        assert c.ok("AT+COPS?") == ["+COPS: 0"]
        pdu = submit_tpdus("x", DEST)[0]
        assert c.send_pdu(pdu.hex, pdu.tpdu_length) == ["+CMS ERROR: 331"]
        assert c.urc("+CREG:") == ["+CREG: 1"]
        assert c.ok("AT+CREG?") == ["+CREG: 1,1"]
        c.ok("AT+CREG=2")
        assert c.ok("AT+CREG?") == ['+CREG: 2,1,"00A1","0000B2C3"']
        network.set_registration(emu, 3)
        assert c.urc("+CREG:") == ["+CREG: 3"]
        assert c.send_pdu(pdu.hex, pdu.tpdu_length) == ["+CMS ERROR: 331"]
    finally:
        c.close()
        emu.stop()


def test_quirk_storage_full(network: SimNetwork) -> None:
    emu, c = start(network, quirks=Quirks(storage_full=True))
    try:
        network.inject(emu, "+4915112345", "no room")
        assert c.quiet(0.4) == b""  # no +CMTI
        pdu = submit_tpdus("draft", DEST)[0]
        c.write(f"AT+CMGW={pdu.tpdu_length}\r".encode())
        c.read_until(b"> ")
        c.write(pdu.hex.encode() + b"\x1a")
        assert c.lines() == ["+CMS ERROR: 322"]
        emu.quirks.storage_full = False  # the network retries once there is room
        assert c.urc("+CMTI:") == ['+CMTI: "SM",1']
    finally:
        c.close()
        emu.stop()


def test_small_storage_holds_messages_until_deleted(network: SimNetwork) -> None:
    emu, c = start(network, capacity={"SM": 1})
    try:
        network.inject(emu, "+4915112345", "one")
        network.inject(emu, "+4915112345", "two")
        assert c.urc("+CMTI:") == ['+CMTI: "SM",1']
        assert c.quiet(0.4) == b""
        assert c.ok("AT+CPMS?")[0].startswith('+CPMS: "SM",1,1')
        c.ok("AT+CMGD=1")
        assert c.urc("+CMTI:") == ['+CMTI: "SM",1']
        msg = decode_pdu(c.ok("AT+CMGR=1")[1])
        assert isinstance(msg, SmsDeliver) and msg.text == "two"
    finally:
        c.close()
        emu.stop()


def test_quirk_vendor_urc_flood(network: SimNetwork) -> None:
    emu, c = start(network, quirks=Quirks(urc_flood_ms=20))
    try:
        seen = {c.urc("^")[0].split(":")[0] for _ in range(6)}
        assert seen == {"^RSSI", "^MODE", "^BOOT"}
        c.write(b"AT^CURC=0\r")
        c.read_until(b"OK\r\n")
        assert b"^" not in c.quiet(0.3)
    finally:
        c.close()
        emu.stop()


def test_quirk_no_smsc(network: SimNetwork) -> None:
    emu, c = start(network, quirks=Quirks(no_smsc=True))
    try:
        assert c.ok("AT+CSCA?") == ['+CSCA: "",129']
        pdu = submit_tpdus("x", DEST)[0]  # "00": the SIM's SMSC, which is missing
        assert c.send_pdu(pdu.hex, pdu.tpdu_length) == ["+CMS ERROR: 330"]
        with_smsc = submit_tpdus("x", DEST, smsc="+15550000000")[0]
        assert c.send_pdu(with_smsc.hex, with_smsc.tpdu_length) == ["+CMGS: 0", "OK"]
        assert c.ok('AT+CSCA="+15550000000",145') == []
        assert c.ok("AT+CSCA?") == ['+CSCA: "+15550000000",145']
        assert c.send_pdu(pdu.hex, pdu.tpdu_length) == ["+CMGS: 1", "OK"]
    finally:
        c.close()
        emu.stop()


def test_quirk_bare_prompt_and_zero_based_index(network: SimNetwork) -> None:
    emu, c = start(network, quirks=Quirks(bare_prompt=True, zero_based_index=True))
    try:
        pdu = submit_tpdus("x", DEST)[0]
        c.write(f"AT+CMGS={pdu.tpdu_length}\r".encode())
        assert c.read_until(b"> ") == b"> "
        c.write(pdu.hex.encode() + b"\x1a")
        assert c.lines() == ["+CMGS: 0", "OK"]
        network.inject(emu, "+4915112345", "zero")
        assert c.urc("+CMTI:") == ['+CMTI: "SM",0']
        assert c.ok("AT+CMGD=?") == ["+CMGD: (0-29),(0-4)"]
    finally:
        c.close()
        emu.stop()


def test_injected_urc(network: SimNetwork, modem: ModemEmulator, client: Client) -> None:
    network.inject_urc(modem, "RING")
    network.set_signal(modem, 7)
    assert client.urc("RING") == ["RING"]
    assert client.ok("AT+CSQ") == ["+CSQ: 7,99"]


# -- unplug and replug ----------------------------------------------------------------------


def test_unplug_and_replug(network: SimNetwork, tmp_path: Path) -> None:
    link = tmp_path / "serial" / "by-id" / "usb-SMSGW_EMU-1-if00"
    emu, c = start(network, link=link)
    try:
        first = emu.port
        assert os.readlink(link) == first
        c.ok("AT+CMGF=1")
        network.inject(emu, "+4915112345", "kept on the SIM")
        c.urc("+CMTI:")
        emu.unplug()
        assert not link.exists()
        with pytest.raises(serial.SerialException):
            c.write(b"AT\r")
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                c.ser.read(1)
        c.close()
        port = emu.replug()
        assert os.readlink(link) == port == emu.port
        c = Client(str(link))  # by the stable name, as a driver would
        assert c.ok("AT+CMGF?") == ["+CMGF: 0"]  # settings reset by the power cycle
        assert len(c.ok("AT+CMGL=4")) == 2  # the SIM's messages stayed
        pdu = submit_tpdus("after replug", DEST)[0]
        assert c.send_pdu(pdu.hex, pdu.tpdu_length) == ["+CMGS: 0", "OK"]
    finally:
        c.close()
        emu.stop()
    assert not link.exists()


# -- the network alone, with a clock passed in ----------------------------------------------


def test_network_reports_follow_the_clock() -> None:
    now = [100.0]
    network = SimNetwork(
        report_delay=30.0,
        clock=lambda: now[0],
        utcnow=lambda: datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
    )
    pdu = submit_tpdus("x", DEST, status_report=True)[0]
    assert network.submit("imei-1", pdu.pdu, length=pdu.tpdu_length) == 0
    assert network.due("imei-1", now[0]) == []
    assert network.next_due("imei-1") == 130.0
    now[0] = 130.0
    (event,) = network.due("imei-1", now[0])
    assert event.kind == "status_report" and event.pdu is not None
    report = decode_pdu(event.pdu.pdu)
    assert isinstance(report, SmsStatusReport)
    assert report.timestamp == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert report.discharge_time == datetime(2024, 5, 1, 12, 0, 30, tzinfo=UTC)


# -- gammu against the emulator -------------------------------------------------------------


def _gammu() -> str:
    found = shutil.which("gammu")
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("gammu is not on PATH; .ci/run installs it (apt-get install gammu)")
        pytest.skip("needs gammu on PATH (apt-get install gammu)")
    return found


def _run_gammu(gammu: str, port: str, tmp_path: Path, *args: str) -> str:
    rc = tmp_path / "gammurc"
    rc.write_text(f"[gammu]\ndevice = {port}\nconnection = at\n")
    done = subprocess.run(
        [gammu, "-c", str(rc), *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    return done.stdout


def test_gammu_identify_sendsms_getallsms(
    network: SimNetwork, modem: ModemEmulator, tmp_path: Path
) -> None:
    """Needs gammu on PATH (CI installs it; a missing gammu fails there, skips elsewhere)."""
    gammu = _gammu()
    out = _run_gammu(gammu, modem.port, tmp_path, "--identify")
    assert "SMSGW" in out and modem.imei in out and modem.imsi in out
    _run_gammu(gammu, modem.port, tmp_path, "sendsms", "TEXT", DEST, "-text", "hi from gammu")
    got = network.wait_received(1)[0]
    assert (got.destination, got.text) == (DEST, "hi from gammu")
    network.inject(modem, "+4915112345", "for gammu to read")
    deadline = time.monotonic() + 3
    while not modem.stored("SM") and time.monotonic() < deadline:
        time.sleep(0.05)
    out = _run_gammu(gammu, modem.port, tmp_path, "getallsms")
    assert "for gammu to read" in out and "+4915112345" in out


# -- the command ----------------------------------------------------------------------------


def test_emulate_modem_command(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "emulate-modem",
            "--count",
            "2",
            "--link-dir",
            str(tmp_path),
            "--quirk",
            "echo=1",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(2)]
        assert all(line.startswith("modem ") for line in lines), lines
        c = Client(str(tmp_path / "modem2"))
        try:
            assert c.cmd("AT") == ["AT", "OK"]  # echo on: the quirk was applied
        finally:
            c.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert not (tmp_path / "modem1").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
