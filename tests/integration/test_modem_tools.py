"""The modem emulator driven by the real modem tools: smstools (smsd) and Kannel's AT driver.

Each tool runs as a subprocess against an in-process `ModemEmulator`, with its configuration,
spool and logs in a temporary directory: smsd sends a spooled file and writes inbound messages
to its incoming directory; Kannel's bearerbox (smsc = at) and smsbox send what the sendsms HTTP
interface is given and hand inbound messages to a get-url served by the test. One tool run per
module (start-up costs seconds); every wait polls a condition against a deadline and every
subprocess is ended in a finally (SIGTERM to its process group, then SIGKILL).

The tools are Debian packages (smstools, kannel). Under CI=true a missing one fails the test
(scripts/ci-services installs them); elsewhere it skips with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar

import pytest

from drivers.modem.emulator import ModemEmulator, ReceivedMessage, SimNetwork
from gateway.sms import Encoding

T = TypeVar("T")

SENDER = "+4915112345"
RECIPIENT = "4915112345678"
START_TIMEOUT = 30.0  # a tool's start-up (Kannel probes the modem for ~5 s)
WAIT = 30.0  # one message through a tool (smsd polls every second here)
UCS2_TEXT = " ".join(["Заказ №4711 отправлен, спасибо!"] * 3)  # 95 UCS-2 characters: 2 parts


# -- helpers --------------------------------------------------------------------------------


def _tool(name: str, package: str) -> str:
    """The tool's path; a missing tool fails under CI (it installs them) and skips elsewhere."""
    found = shutil.which(name)
    if found is None:
        for sbin in ("/usr/sbin", "/usr/local/sbin"):  # not on a non-root PATH
            found = shutil.which(name, path=sbin)
            if found:
                break
    if found is None:
        install = f"apt-get install {package}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{name} is not installed; scripts/ci-services installs it ({install})")
        pytest.skip(f"needs {name} ({install})")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text("utf-8", "replace")
    except OSError as exc:
        return f"({path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class _Proc:
    """A tool subprocess in its own process group, with its output in `log`."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def check(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise AssertionError(f"{self.name} exited with {code}:\n{_tail(self.log)}")

    def stop(self) -> None:
        """SIGTERM to the group (smsd forks a process per modem), SIGKILL after a grace."""
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)  # children left behind
            return


def _spawn(name: str, argv: list[str], cwd: Path) -> _Proc:
    log = cwd / f"{name}.out"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return _Proc(name, popen, log)


def _wait(
    condition: Callable[[], T | None],
    what: str,
    *,
    timeout: float = WAIT,
    procs: tuple[_Proc, ...] = (),
    logs: tuple[Path, ...] = (),
) -> T:
    """Poll `condition` until it returns something truthy; fail (with the tools' logs) at the
    deadline or as soon as one of `procs` has exited."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        for proc in procs:
            proc.check()
        if time.monotonic() >= deadline:
            shown = "\n".join(f"--- {p}:\n{_tail(p)}" for p in logs)
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{shown}")
        time.sleep(0.05)


def _received(network: SimNetwork, text: str) -> ReceivedMessage | None:
    return next((m for m in list(network.received) if m.text == text), None)


def _since(modem: ModemEmulator, mark: int) -> list[str]:
    return list(modem.commands[mark:])


# -- smstools -------------------------------------------------------------------------------


@dataclass
class Smsd:
    network: SimNetwork
    modem: ModemEmulator
    spool: Path
    proc: _Proc
    startup: list[str]

    def wait(self, condition: Callable[[], T | None], what: str) -> T:
        return _wait(
            condition, what, procs=(self.proc,), logs=(self.spool / "smsd.log", self.proc.log)
        )

    def spool_out(self, name: str, content: str) -> None:
        """Write an outgoing file beside the spool and move it in (smsd must not see half)."""
        draft = self.spool / f".{name}"
        draft.write_text(content, "utf-8")
        draft.replace(self.spool / "outgoing" / name)

    def incoming_with(self, needle: bytes) -> bytes | None:
        for path in sorted((self.spool / "incoming").iterdir()):
            data = path.read_bytes()
            if needle in data:
                return data
        return None


def _smsd_conf(spool: Path, device: Path) -> str:
    dirs = "\n".join(f"{d} = {spool / d}" for d in ("outgoing", "checked", "incoming"))
    return f"""\
devices = GSM1
{dirs}
sent = {spool / "sent"}
failed = {spool / "failed"}
logfile = {spool / "smsd.log"}
loglevel = 7
# poll the spool and the modem every second (defaults: 10 s)
delaytime = 1
delaytime_mainprocess = 1
errorsleeptime = 1
# inbound Unicode written as UTF-8; multipart messages combined before they are written
decode_unicode_text = yes
incoming_utf8 = yes
internal_combine = yes

[GSM1]
device = {device}
baudrate = 115200
incoming = yes
"""


@pytest.fixture(scope="module")
def smsd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Smsd]:
    binary = _tool("smsd", "smstools")
    spool = tmp_path_factory.mktemp("smsd")
    for d in ("outgoing", "checked", "incoming", "sent", "failed"):
        (spool / d).mkdir()
    network = SimNetwork(report_delay=0.1)
    device = spool / "serial" / "by-id" / "usb-SMSGW_EMU-1-if00"
    with ModemEmulator(network, link=device) as modem:
        conf = spool / "smsd.conf"
        conf.write_text(_smsd_conf(spool, device))
        argv = [binary, "-t", f"-c{conf}", f"-p{spool / 'smsd.pid'}", f"-i{spool / 'smsd.working'}"]
        proc = _spawn("smsd", argv, spool)
        try:
            # Ready once it has identified the SIM and looked at the storage.
            _wait(
                lambda: "AT+CIMI" in modem.commands and "AT+CPMS?" in modem.commands,
                "smsd to initialise the modem",
                timeout=START_TIMEOUT,
                procs=(proc,),
                logs=(spool / "smsd.log", proc.log),
            )
            yield Smsd(network, modem, spool, proc, list(modem.commands))
        finally:
            proc.stop()


def test_smsd_startup_sequence(smsd: Smsd) -> None:
    # What smsd 3.1 sends before its first poll (its init is "ATE0" then "AT+CMEE=1;+CREG=2").
    for command in ("AT", "ATE0", "AT+CPIN?", "AT+CSQ", "AT+CREG?", "AT+CMGF=0", "AT+CGSN"):
        assert command in smsd.startup, smsd.startup
    assert smsd.startup.index("AT+CIMI") < smsd.startup.index("AT+CPMS?")
    log = (smsd.spool / "smsd.log").read_text("utf-8", "replace")
    assert f"IMEI: {smsd.modem.imei}" in log and f"IMSI: {smsd.modem.imsi}" in log


def test_smsd_sends_a_spooled_file(smsd: Smsd) -> None:
    mark = len(smsd.modem.commands)
    smsd.spool_out("hello", f"To: {RECIPIENT}\n\nHello from smsd\n")
    got = smsd.wait(lambda: _received(smsd.network, "Hello from smsd"), "the network to get it")
    assert (got.modem, got.destination, got.encoding) == (
        smsd.modem.imei,
        f"+{RECIPIENT}",
        Encoding.GSM7,
    )
    sent = smsd.spool / "sent" / "hello"
    smsd.wait(sent.exists, "the file in sent/")
    text = sent.read_text("latin-1")
    assert "Hello from smsd" in text
    assert f"IMSI: {smsd.modem.imsi}" in text
    assert any(c.startswith("AT+CMGS=") for c in _since(smsd.modem, mark))
    assert not any((smsd.spool / "failed").iterdir())


def test_smsd_sends_a_long_unicode_file_in_parts(smsd: Smsd) -> None:
    smsd.spool_out("unicode", f"To: {RECIPIENT}\nAlphabet: UTF\n\n{UCS2_TEXT}")
    got = smsd.wait(lambda: _received(smsd.network, UCS2_TEXT), "the network to get it")
    assert got.encoding is Encoding.UCS2
    assert len(got.parts) == 2 and got.destination == f"+{RECIPIENT}"
    smsd.wait((smsd.spool / "sent" / "unicode").exists, "the file in sent/")


def test_smsd_reads_an_inbound_message(smsd: Smsd) -> None:
    mark = len(smsd.modem.commands)
    smsd.network.inject(smsd.modem, SENDER, "Hello smsd, from the network")
    data = smsd.wait(
        lambda: smsd.incoming_with(b"Hello smsd, from the network"), "the incoming file"
    )
    assert f"From: {SENDER[1:]}\n".encode() in data
    seen = _since(smsd.modem, mark)
    assert "AT+CMGR=1" in seen or any(c.startswith("AT+CMGL") for c in seen), seen
    smsd.wait(lambda: smsd.modem.stored("SM") == {}, "smsd to delete it from the SIM")


def test_smsd_combines_an_inbound_multipart_unicode_message(smsd: Smsd) -> None:
    smsd.network.inject(smsd.modem, SENDER, UCS2_TEXT, parts=2, ucs2=True)
    needle = UCS2_TEXT.encode()
    data = smsd.wait(lambda: smsd.incoming_with(needle), "the combined incoming file")
    head, body = data.decode().split("\n\n", 1)
    assert "Alphabet: UTF-8" in head.splitlines()
    assert body.strip() == UCS2_TEXT
    smsd.wait(lambda: smsd.modem.stored("SM") == {}, "smsd to delete both parts")


# -- Kannel ---------------------------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    """smsbox's get-url: records each request's query."""

    def do_GET(self) -> None:
        server = self.server
        assert isinstance(server, _HttpServer)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        with server.lock:
            server.requests.append({k: v[0] for k, v in query.items()})
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Recorder)
        self.lock = threading.Lock()
        self.requests: list[dict[str, str]] = []

    def find(self, **wanted: str) -> dict[str, str] | None:
        with self.lock:
            return next(
                (r for r in self.requests if all(r.get(k) == v for k, v in wanted.items())), None
            )


@dataclass
class Kannel:
    network: SimNetwork
    modem: ModemEmulator
    workdir: Path
    admin_port: int
    sendsms_port: int
    recorder: _HttpServer
    procs: tuple[_Proc, ...]
    startup: list[str]
    password: str = "emu-secret"
    logs: tuple[Path, ...] = field(default=())

    def wait(self, condition: Callable[[], T | None], what: str) -> T:
        return _wait(condition, what, procs=self.procs, logs=self.logs)

    def sendsms(self, **params: str) -> str:
        query = urllib.parse.urlencode({"username": "tester", "password": self.password, **params})
        url = f"http://127.0.0.1:{self.sendsms_port}/cgi-bin/sendsms?{query}"
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                return str(answer.read().decode())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"sendsms: {exc.code} {exc.read()!r}") from exc


def _http_get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return str(answer.read().decode("utf-8", "replace"))
    except OSError:
        return None


def _kannel_conf(
    workdir: Path, device: Path, *, admin: int, box: int, sendsms: int, get_url: str, password: str
) -> str:
    return f"""\
group = core
admin-port = {admin}
admin-interface = "127.0.0.1"
admin-password = "{password}"
admin-allow-ip = "127.0.0.1"
smsbox-port = {box}
smsbox-interface = "127.0.0.1"
box-allow-ip = "127.0.0.1"
log-file = "{workdir / "bearerbox.log"}"
log-level = 0
access-log = "{workdir / "access.log"}"

group = smsc
smsc = at
smsc-id = emu
modemtype = auto
device = "{device}"
speed = 115200
my-number = "4930123456"

# "auto" sends ATI and looks for the detect-string in the answer
group = modems
id = smsgw-emu
name = "smsgw modem emulator"
detect-string = "SMSGW"

group = smsbox
bearerbox-host = "127.0.0.1"
bearerbox-port = {box}
sendsms-port = {sendsms}
sendsms-interface = "127.0.0.1"
global-sender = "4930123456"
log-file = "{workdir / "smsbox.log"}"
log-level = 0
mo-recode = true

group = sendsms-user
username = "tester"
password = "{password}"
max-messages = 3
concatenation = true

group = sms-service
keyword = default
get-url = "{get_url}"
max-messages = 0
catch-all = true
"""


@pytest.fixture(scope="module")
def kannel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kannel]:
    bearerbox = _tool("bearerbox", "kannel")
    smsbox = _tool("smsbox", "kannel")
    workdir = tmp_path_factory.mktemp("kannel")
    network = SimNetwork(report_delay=0.1)
    recorder = _HttpServer()
    serving = threading.Thread(target=recorder.serve_forever, name="get-url", daemon=True)
    serving.start()
    port = recorder.server_address[1]
    get_url = f"http://127.0.0.1:{port}/mo?from=%p&to=%P&text=%a&coding=%c&smsc=%i"
    admin, box, sendsms = _free_port(), _free_port(), _free_port()
    device = workdir / "serial" / "by-id" / "usb-SMSGW_EMU-1-if00"
    procs: list[_Proc] = []
    logs = (workdir / "bearerbox.log", workdir / "smsbox.log")
    password = "emu-secret"
    try:
        with ModemEmulator(network, link=device) as modem:
            conf = workdir / "kannel.conf"
            conf.write_text(
                _kannel_conf(
                    workdir,
                    device,
                    admin=admin,
                    box=box,
                    sendsms=sendsms,
                    get_url=get_url,
                    password=password,
                )
            )
            try:
                procs.append(_spawn("bearerbox", [bearerbox, str(conf)], workdir))
                status = f"http://127.0.0.1:{admin}/status.txt?password={password}"

                def smsc_online() -> bool:
                    text = _http_get(status) or ""
                    return "AT2[emu] (online" in text

                _wait(
                    smsc_online,
                    "bearerbox's AT smsc to come online",
                    timeout=START_TIMEOUT,
                    procs=tuple(procs),
                    logs=logs,
                )
                startup = list(modem.commands)
                # smsbox gives up at once when bearerbox is not listening: start it now.
                procs.append(_spawn("smsbox", [smsbox, str(conf)], workdir))
                _wait(
                    lambda: "smsbox:(none)" in (_http_get(status) or ""),
                    "smsbox to connect to bearerbox",
                    timeout=START_TIMEOUT,
                    procs=tuple(procs),
                    logs=logs,
                )
                yield Kannel(
                    network,
                    modem,
                    workdir,
                    admin,
                    sendsms,
                    recorder,
                    tuple(procs),
                    startup,
                    password,
                    logs,
                )
            finally:
                for proc in reversed(procs):
                    proc.stop()
    finally:
        recorder.shutdown()
        recorder.server_close()


def test_kannel_startup_sequence(kannel: Kannel) -> None:
    # Detection (ATI finds "SMSGW"), then its at2 init: reset, echo off, flow control, PIN,
    # PDU mode, phase 2+ check, new-message indications straight to the TE (+CMT).
    s = kannel.startup
    assert "ATI" in s and s.index("ATI") < s.index("AT+IFC=2,2"), s
    for command in ("ATZ", "AT&F", "ATE0", "AT+CPIN?", "AT+CMGF=0", "AT+CSMS=?"):
        assert command in s, s
    assert s[-1] == "AT+CNMI=1,2,0,1,0", s


def test_kannel_sends_through_sendsms(kannel: Kannel) -> None:
    mark = len(kannel.modem.commands)
    answer = kannel.sendsms(to=RECIPIENT, text="Hello from Kannel")
    assert "Accepted" in answer or "Sent" in answer, answer
    got = kannel.wait(lambda: _received(kannel.network, "Hello from Kannel"), "the network")
    assert (got.modem, got.destination) == (kannel.modem.imei, RECIPIENT)
    assert any(c.startswith("AT+CMGS=") for c in _since(kannel.modem, mark))
    access = kannel.workdir / "access.log"
    kannel.wait(lambda: "Sent SMS [SMSC:emu]" in access.read_text(), "Sent SMS in access.log")


def test_kannel_sends_a_long_unicode_message_in_parts(kannel: Kannel) -> None:
    answer = kannel.sendsms(to=RECIPIENT, text=UCS2_TEXT, charset="UTF-8", coding="2")
    assert "Accepted" in answer or "Sent" in answer, answer
    got = kannel.wait(lambda: _received(kannel.network, UCS2_TEXT), "the network")
    assert got.encoding is Encoding.UCS2 and len(got.parts) == 2


def test_kannel_receives_an_inbound_message(kannel: Kannel) -> None:
    kannel.network.inject(kannel.modem, SENDER, "Hello Kannel, from the network")
    request = kannel.wait(
        lambda: kannel.recorder.find(text="Hello Kannel, from the network"), "smsbox's get-url"
    )
    assert (request["from"], request["smsc"]) == (SENDER, "emu")


def test_kannel_combines_an_inbound_multipart_unicode_message(kannel: Kannel) -> None:
    kannel.network.inject(kannel.modem, "+4915199999", UCS2_TEXT, parts=2, ucs2=True)
    request = kannel.wait(lambda: kannel.recorder.find(**{"from": "+4915199999"}), "get-url")
    assert request["text"] == UCS2_TEXT, request


def test_kannel_delivery_report_reaches_the_dlr_url(kannel: Kannel) -> None:
    port = kannel.recorder.server_address[1]
    dlr_url = f"http://127.0.0.1:{port}/dlr?id=receipt-1&status=%d&smsc=%i"
    kannel.sendsms(to=RECIPIENT, text="Report this", **{"dlr-mask": "1", "dlr-url": dlr_url})
    got = kannel.wait(lambda: _received(kannel.network, "Report this"), "the network")
    assert got.status_report_request
    request = kannel.wait(lambda: kannel.recorder.find(id="receipt-1"), "the dlr-url")
    assert (request["status"], request["smsc"]) == ("1", "emu")  # 1: delivered to the phone
