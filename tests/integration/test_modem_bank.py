"""The whole gateway with a modem bank: smpplib as the application, the bank's modems emulated on
real pseudo-terminals behind the simulated network (`drivers.modem.emulator`).

Every wait has a deadline: the client is read with a short socket timeout until what a test
waits for has come, and the network is polled until it holds what was sent.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import smpplib.client
import smpplib.consts
import smpplib.gsm

from drivers.modem.bank import ModemBank
from gateway.app import Emulated, Gateway
from gateway.config import load_config
from gateway.smpp.receipt import parse_receipt
from gateway.sms import Encoding, decode_text
from gateway.sms.tpdu import SmsStatusReport, decode_pdu, encode_sms_deliver
from tests.integration.loop import LoopThread

IMEIS = ("356938035643809", "356938035643817")
ICCIDS = ("8949000000000000011", "8949000000000000029")

CONFIG = """
listen: {{host: 127.0.0.1, port: 0}}
accounts: [{{system_id: shop, password: secret}}]
modem_banks:
  b:
    emulate: 2
    emulator: {{report_delay: 0.1}}
    modems:
      - {{name: m1, imei: "{imei1}", iccid: "{iccid1}", number: "+4915100000001"{limits1}}}
      - {{name: m2, imei: "{imei2}", iccid: "{iccid2}", number: "+4915100000002"}}
routes: [{{name: all, targets: ["bank:b"]}}]
mo_routes: [{{account: shop, prefixes: ["49151"]}}]
dispatch: {{retry_backoff: 0.2, max_retry_backoff: 1.0, max_attempts: 20}}
store: {{path: "{db}"}}
control_socket: "{sock}"
"""
ROOT = Path(__file__).resolve().parents[2]


class Running(LoopThread):
    """A gateway with bank `b` of two emulated modems, both ready."""

    def __init__(self, tmp: Path, *, limits1: str = "", config: str = CONFIG) -> None:
        """`config`: a template with this file's placeholders (other tests bring their own)."""
        super().__init__()
        self.config_path = tmp / "gateway.yaml"
        self.config_path.write_text(
            config.format(
                imei1=IMEIS[0],
                imei2=IMEIS[1],
                iccid1=ICCIDS[0],
                iccid2=ICCIDS[1],
                limits1=f", limits: {limits1}" if limits1 else "",
                db=tmp / "gw.sqlite3",
                sock=tmp / "ctl.sock",
            )
        )
        self.gateway = Gateway(load_config(self.config_path))
        self.gateway.dispatcher.poll_interval = 0.05
        self.port: int = self.call(self.gateway.start("127.0.0.1", 0))
        self.bank: ModemBank = self.gateway.banks["b"]
        self.call(self.bank.wait_ready(timeout=30), timeout=40)
        self.emulated: Emulated = self.gateway.emulated["b"]
        self.network = self.emulated.network

    def state(self) -> dict[str, dict[str, Any]]:
        async def read() -> list[dict[str, Any]]:
            return self.bank.state()

        return {row["name"]: row for row in self.call(read())}

    def close(self) -> None:
        self.call(self.gateway.stop(), timeout=60)
        self.stop_loop()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)


class App:
    """smpplib bound as a transceiver: what it sent, the answers and what it received."""

    def __init__(self, port: int) -> None:
        self.c = smpplib.client.Client(
            "127.0.0.1", port, timeout=0.3, allow_unknown_opt_params=True
        )
        self.acks: list[Any] = []
        self.received: list[Any] = []
        self.c.set_message_sent_handler(self._sent)  # smpplib calls them with pdu=...
        self.c.set_message_received_handler(self._received)
        self.c.connect()
        self.c.bind_transceiver(system_id="shop", password="secret")

    def _sent(self, pdu: Any) -> None:
        self.acks.append(pdu)

    def _received(self, pdu: Any) -> None:
        self.received.append(pdu)

    def submit(self, destination: str, text: str) -> int:
        """Send `text` cut as smpplib cuts it (UDH parts); how many parts."""
        parts, encoding, esm_class = smpplib.gsm.make_parts(text)
        for part in parts:
            self.c.send_message(
                source_addr_ton=smpplib.consts.SMPP_TON_ALNUM,
                source_addr="Shop",
                dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
                dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
                destination_addr=destination,
                short_message=part,
                data_coding=encoding,
                esm_class=esm_class,
                registered_delivery=1,
            )
        return len(parts)

    def pump(self, until: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise TimeoutError(what)
            self.c.read_once()

    @property
    def ids(self) -> list[str]:
        return [p.message_id.decode() for p in self.acks if p.status == 0]

    @property
    def receipts(self) -> list[str]:
        return [
            parse_receipt(p.short_message).message_id for p in self.received if p.esm_class & 0x04
        ]

    @property
    def mo(self) -> list[Any]:
        return [p for p in self.received if not p.esm_class & 0x04]

    def close(self) -> None:
        self.c.unbind()
        self.c.disconnect()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    r = Running(tmp_path_factory.mktemp("bank"))
    yield r
    r.close()


def test_three_part_ucs2_message_goes_out_whole_and_its_receipts_come_back(
    running: Running,
) -> None:
    text = "Заказ 42 отправлен, спасибо за покупку! " * 4  # UCS-2, 160 characters
    app = App(running.port)
    try:
        assert app.submit("4915112345678", text) == 3
        app.pump(lambda: len(app.acks) == 3, 30, "submit_sm_resp")
        assert len(app.ids) == 3
        (got,) = running.network.wait_received(1, timeout=30)
        assert got.text == text
        assert got.encoding is Encoding.UCS2
        assert len(got.parts) == 3
        assert got.destination == "+4915112345678"
        assert got.status_report_request
        app.pump(lambda: len(app.receipts) == 3, 30, "receipts")
        assert sorted(app.receipts) == sorted(app.ids)  # our ids, one per part we accepted
        assert all(b"stat:DELIVRD" in p.short_message for p in app.received)
    finally:
        app.close()


def test_multipart_inbound_message_reaches_the_application_once(running: Running) -> None:
    text = "Please cancel order 42, thank you very much. " * 3  # fits one SMS once joined
    app = App(running.port)
    try:
        running.network.inject(running.emulated.modems["m2"], "+4917612345678", text, parts=3)
        app.pump(lambda: len(app.mo) >= 1, 30, "MO deliver_sm")
        (mo,) = app.mo
        assert decode_text(mo.short_message, Encoding.GSM7) == text
        assert mo.source_addr.decode() == "4917612345678"
        assert mo.destination_addr.decode() == "4915100000002"  # the SIM's own number
        assert running.state()["m2"]["received"] == 3
    finally:
        app.close()


def test_modem_list_and_ussd_commands(running: Running) -> None:
    def smsgw(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", "modem", *args, "-c", str(running.config_path)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            check=False,
        )

    listed = smsgw("list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:3] == ["MODEM", "STATE", "PORT"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {"b/m1", "b/m2"}
    assert all(row[1] == "READY" for row in rows.values())
    assert "SimNet" in listed.stdout

    ussd = smsgw("ussd", "b/m1", "*100#")
    assert ussd.returncode == 0, ussd.stderr
    assert ussd.stdout.strip() == "Your balance is 12.34 EUR"

    unknown = smsgw("ussd", "b/m9", "*100#")
    assert unknown.returncode == 1
    assert "no modem 'm9'" in unknown.stderr


def test_a_status_report_is_kept_raw_in_the_store(running: Running) -> None:
    """A modem's receipt is kept with its raw form, as a carrier's: the report's fields as
    read and the PDU the modem gave, which decodes to the same report."""
    app = App(running.port)
    try:
        app.submit("4915112345678", "order 7 shipped")
        app.pump(lambda: len(app.receipts) == 1, 30, "receipt")
        (message_id,) = app.ids
        kept = running.call(running.gateway.store.receipts(message_id))
        assert kept, "no receipt kept"
        text = kept[-1].raw.decode()
        assert text.startswith("sms-status-report id:") and " stat:DELIVRD " in text
        report = decode_pdu(bytes.fromhex(text.rsplit("pdu:", 1)[1]))
        assert isinstance(report, SmsStatusReport) and report.recipient == "+4915112345678"
    finally:
        app.close()


def test_an_8_bit_mo_keeps_its_dcs_and_ports(running: Running) -> None:
    """An 8-bit SMS-DELIVER with a message class (TP-DCS 0xF5) and application ports: the
    application gets data_coding 0xF5 - the class kept - and the UDH with its ports."""
    ports = b"\x06\x05\x04\x0b\x84\x23\xf0"
    body = b"\x01\x06\x03\xc4\xaf\x87"
    pdu = encode_sms_deliver(
        originator="+4917612345678",
        body=body,
        encoding=Encoding.BINARY,
        udh=ports,
        dcs=0xF5,
        timestamp=datetime.now(UTC).replace(microsecond=0),
    )
    app = App(running.port)
    try:
        running.network.inject_pdu(running.emulated.modems["m1"], pdu)
        app.pump(lambda: len(app.mo) >= 1, 30, "MO deliver_sm")
        (mo,) = app.mo
        assert (mo.data_coding, mo.esm_class & 0x40) == (0xF5, 0x40)
        assert mo.short_message == ports + body
    finally:
        app.close()


def test_unplugged_modem_traffic_moves_and_nothing_is_lost(tmp_path: Path) -> None:
    running = Running(tmp_path)
    app = App(running.port)
    network = running.network
    m1 = running.emulated.modems["m1"]
    try:
        texts = [f"order {i} shipped" for i in range(24)]
        m1.quirks.slow = 0.2  # m1 is mid-send when it goes
        for i, text in enumerate(texts[:12]):
            app.submit(f"49151000000{i:02d}", text)
        wait_until(lambda: len(network.received) >= 4, 30, "first messages out")
        m1.unplug()  # mid-run: m1 still holds some of the first twelve
        for i, text in enumerate(texts[12:], 12):
            app.submit(f"49151000000{i:02d}", text)
        app.pump(lambda: len(app.acks) == 24, 30, "submit_sm_resp")
        assert len(app.ids) == 24
        wait_until(
            lambda: {m.text for m in network.received} >= set(texts), 60, "all at the network"
        )
        after_unplug = [m for m in network.received if m.text in texts[12:]]
        assert {m.modem for m in after_unplug} == {IMEIS[1]}  # only the modem still there
        copies = Counter(m.text for m in network.received)
        assert sum(copies.values()) - len(texts) <= 2  # at most the send cut by the unplug

        assert running.state()["m1"]["failed"] >= 1  # the unplug cut a send short

        m1.quirks.slow = 0.0
        m1.replug()
        wait_until(lambda: running.state()["m1"]["state"] == "READY", 60, "m1 back")
        # Its status reports waited in the network while it was away: every receipt arrives.
        app.pump(lambda: set(app.receipts) >= set(app.ids), 60, "every receipt")

        before = len(network.received)
        more = [f"later {i}" for i in range(6)]
        for i, text in enumerate(more):
            app.submit(f"49152000000{i:02d}", text)
        wait_until(lambda: len(network.received) >= before + 6, 30, "traffic after replug")
        assert {m.modem for m in network.received[before:]} == set(IMEIS)  # both again
    finally:
        app.close()
        running.close()


def test_per_sim_limit_moves_traffic_and_counters_survive_a_restart(tmp_path: Path) -> None:
    running = Running(tmp_path, limits1="{per_day: 3}")
    try:
        app = App(running.port)
        for i in range(8):
            app.submit(f"49151000001{i:02d}", f"limited {i}")
        app.pump(lambda: len(app.acks) == 8, 30, "submit_sm_resp")
        received = running.network.wait_received(8, timeout=30)
        by_modem = Counter(m.modem for m in received)
        assert by_modem == {IMEIS[0]: 3, IMEIS[1]: 5}
        assert running.state()["m1"]["used"]["day"] == 3
        app.close()
    finally:
        running.close()

    again = Running(tmp_path, limits1="{per_day: 3}")  # the same store
    try:
        assert again.state()["m1"]["used"]["day"] == 3
        app = App(again.port)
        for i in range(3):
            app.submit(f"49151000002{i:02d}", f"after restart {i}")
        app.pump(lambda: len(app.acks) == 3, 30, "submit_sm_resp")
        received = again.network.wait_received(3, timeout=30)
        assert {m.modem for m in received} == {IMEIS[1]}  # m1's SIM is still at its limit
        app.close()
    finally:
        again.close()
