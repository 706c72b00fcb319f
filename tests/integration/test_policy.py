"""The sending rules with smpplib as the application (issue 11's acceptance): a marketing
message at 23:00 recipient time waits for 08:00 (the gateway's clock is the test's), the third
payment reminder in 24 h ends REJECTD, a duplicate submit gets the first id, a signature is
added and the parts follow, a number that replied 退订 gets no marketing but its OTP, invalid
numbers are refused at submit. The carrier is a fake SMSC that sends receipts.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import smpplib.client

from gateway.app import Gateway
from gateway.config import load_config
from gateway.policy.rules import Reason
from gateway.smpp.pdu import BindTransmitter, SubmitSm
from gateway.smpp.tlv import Tlv
from tests.fakes.smsc import FakeSmsc
from tests.integration.loop import LoopThread
from tests.integration.wait import until
from tests.integration.wire import Raw

SHANGHAI = ZoneInfo("Asia/Shanghai")
CN = "8613800138000"  # a China Mobile number (phonenumbers: Asia/Shanghai)

CONFIG = """
accounts: [{system_id: shop, password: secret}]
upstreams:
  carrier: {host: 127.0.0.1, port: %(port)d, system_id: gw, password: pw}
routes: [{name: all, targets: [carrier]}]
mo_routes: [{account: shop, prefixes: [""]}]
store: {path: "%(db)s"}
http: {host: 127.0.0.1, port: 0}
policy:
  service_types: {OTP: otp, MKT: marketing, PAY: payment_reminder}
  campaign_tlv: 0x1501
  classes:
    marketing:
      quiet_hours: {start: "21:00", end: "08:00"}
      signature: {signature: "【XX商城】", hint: "回T退订"}
    payment_reminder:
      caps: [{count: 2, per: 24h}]
"""


class Clock:
    def __init__(self, at: datetime) -> None:
        self.now = at.timestamp()

    def __call__(self) -> float:
        return self.now


class Running(LoopThread):
    def __init__(self, tmp: Path, at: datetime) -> None:
        super().__init__()
        self.clock = Clock(at)
        self.smsc = FakeSmsc()
        port = self.call(self.smsc.start())
        self.db = tmp / "gw.sqlite3"
        config = load_config("t.yaml", text=CONFIG % {"port": port, "db": self.db})
        self.gateway = Gateway(config, clock=self.clock)
        self.gateway.dispatcher.poll_interval = 0.05
        self.port = self.call(self.gateway.start("127.0.0.1", 0))
        upstream = self.gateway.drivers["carrier"]
        self.call(upstream.wait_bound(10))  # type: ignore[attr-defined]

    def close(self) -> None:
        self.call(self.gateway.stop())
        self.call(self.smsc.stop())
        self.stop_loop()


class App:
    """smpplib bound as shop (transceiver), keeping every receipt it is given."""

    def __init__(self, port: int) -> None:
        self.client = smpplib.client.Client(
            "127.0.0.1", port, timeout=10, allow_unknown_opt_params=True
        )
        self.receipts: dict[str, str] = {}  # our id -> receipt text
        self.mo: list[tuple[str, bytes]] = []  # (source_addr, short_message) of each MO
        self.lock = threading.Lock()
        self.client.set_message_received_handler(self._received)
        self.client.connect()
        self.client.bind_transceiver(system_id="shop", password="secret")

    def _received(self, pdu: Any) -> None:
        if not int(pdu.esm_class) & 0x04:  # not a receipt: an MO
            with self.lock:
                self.mo.append((pdu.source_addr.decode(), pdu.short_message))
            return
        text = pdu.short_message.decode("latin-1")
        found = re.search(r"id:(\S+)", text)
        if found:
            with self.lock:
                self.receipts[found[1]] = text

    def submit(self, to: str, body: bytes, service_type: str, coding: int = 0) -> tuple[int, str]:
        self.client.send_message(
            source_addr="Shop",
            source_addr_ton=5,
            destination_addr=to,
            dest_addr_ton=1,
            short_message=body,
            data_coding=coding,
            service_type=service_type,
            registered_delivery=1,
        )
        resp = self.client.read_pdu()
        while resp.command != "submit_sm_resp":  # type: ignore[attr-defined]
            self.client._message_received(resp)
            resp = self.client.read_pdu()
        return int(resp.status), resp.message_id.decode()  # type: ignore[attr-defined]

    def receipt(self, message_id: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if message_id in self.receipts:
                    return self.receipts[message_id]
            if time.monotonic() > deadline:
                raise AssertionError(f"no receipt for {message_id}")
            self.client.read_once()

    def close(self) -> None:
        self.client.unbind()
        self.client.disconnect()


def _until(check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    return until(check, what, timeout)


def test_the_rules_at_noon(tmp_path: Path) -> None:
    gw = Running(tmp_path, datetime(2026, 12, 3, 12, 0, tzinfo=SHANGHAI))
    app = App(gw.port)
    try:
        # A payment reminder: two a day, the third stopped with a REJECTD receipt.
        ids = [app.submit(CN, b"Your bill %d is due" % i, "PAY") for i in range(3)]
        assert [status for status, _ in ids] == [0, 0, 0]
        receipts = [app.receipt(message_id) for _, message_id in ids]
        assert "stat:DELIVRD" in receipts[0] and "stat:DELIVRD" in receipts[1]
        assert "stat:REJECTD" in receipts[2], receipts[2]
        assert len(gw.smsc.submits) == 2  # the third never went to the carrier
        record = gw.call(gw.gateway.store.get(ids[2][1]))
        assert record.state.value == "rejected" and record.stop_reason == "frequency_cap"
        assert record.error == Reason.FREQUENCY_CAP.error_code

        # A duplicate: the same text to the same number again gets the first id, sent once.
        first = app.submit(CN, b"Your code is 1234", "OTP")
        again = app.submit(CN, b"Your code is 1234", "OTP")
        assert first[0] == again[0] == 0 and again[1] == first[1]
        assert "stat:DELIVRD" in app.receipt(first[1])
        assert sum(1 for _, sm in gw.smsc.submits if sm == b"Your code is 1234") == 1

        # Marketing gets the signature first and the hint last; UCS-2 now, so two parts.
        text = "Big sale on everything in the shop today only, come and see us soon! " * 2
        status, message_id = app.submit(CN, text.encode(), "MKT")
        assert status == 0 and "stat:DELIVRD" in app.receipt(message_id)
        record = gw.call(gw.gateway.store.get(message_id))
        assert record.message.data_coding == 8
        fixed = "【XX商城】" + text.strip() + "回T退订"
        parts = [r for r in gw.smsc.records if r.data_coding == 8]
        # 139 GSM characters are one SMS; with 【】 the text is UCS-2: 67 characters a part.
        assert len(text.strip()) <= 160 and len(parts) == -(-len(fixed) // 67) == 3
        sent = b"".join(p.short_message[p.short_message[0] + 1 :] for p in parts)
        assert sent.decode("utf-16-be") == fixed

        # An invalid number is refused at submit (ESME_RINVDSTADR).
        status, _ = app.submit("861380013800", b"x", "OTP")
        assert status == 0x0B
    finally:
        app.close()
        gw.close()


def test_marketing_at_23_waits_for_08_and_otp_goes_at_once(tmp_path: Path) -> None:
    gw = Running(tmp_path, datetime(2026, 12, 3, 23, 0, tzinfo=SHANGHAI))
    app = App(gw.port)
    try:
        _, otp = app.submit(CN, b"Your code is 9876", "OTP")
        assert "stat:DELIVRD" in app.receipt(otp)
        status, promo = app.submit(CN, "【XX商城】双十二五折回T退订".encode("utf-16-be"), "MKT", 8)
        assert status == 0
        record = gw.call(gw.gateway.store.get(promo))
        opens = datetime(2026, 12, 4, 8, 0, tzinfo=SHANGHAI).timestamp()
        assert record.message.schedule_at == opens and record.state.value == "accepted"
        assert len(gw.smsc.submits) == 1  # only the OTP went
        gw.clock.now = opens + 1  # morning in Shanghai
        gw.gateway.dispatcher.wake()
        assert "stat:DELIVRD" in app.receipt(promo)
        assert len(gw.smsc.submits) == 2
    finally:
        app.close()
        gw.close()


def test_an_opted_out_number_gets_no_marketing_but_its_otp(tmp_path: Path) -> None:
    gw = Running(tmp_path, datetime(2026, 12, 3, 12, 0, tzinfo=SHANGHAI))
    app = App(gw.port)
    try:
        # The recipient replies 退订 (an MO from the carrier); the app still gets the reply.
        gw.call(gw.smsc.send_mo(CN, "10690001", [("退订".encode("utf-16-be"), 0)]))
        deadline = time.monotonic() + 15
        while not app.mo:
            assert time.monotonic() < deadline, "the MO did not reach the app"
            app.client.read_once()
        assert app.mo == [(CN, "退订".encode("utf-16-be"))]
        found = gw.call(gw.gateway.store.suppression(CN))
        assert [(s.scope, s.source) for s in found] == [("", "mo:10690001")]
        _, promo = app.submit(CN, "【XX商城】双十二五折回T退订".encode("utf-16-be"), "MKT", 8)
        _, otp = app.submit(CN, b"Your code is 5555", "OTP")
        assert "stat:REJECTD" in app.receipt(promo)
        assert "stat:DELIVRD" in app.receipt(otp)
        record = gw.call(gw.gateway.store.get(promo))
        assert record.stop_reason == "opted_out"
        assert [sm for _, sm in gw.smsc.submits] == [b"Your code is 5555"]
    finally:
        app.close()
        gw.close()


def test_the_same_rules_through_the_http_api(tmp_path: Path) -> None:
    gw = Running(tmp_path, datetime(2026, 12, 3, 12, 0, tzinfo=SHANGHAI))
    url = f"http://127.0.0.1:{gw.gateway.http_port}/api/v1/messages"
    try:
        with sqlite3.connect(gw.db, timeout=10) as conn:
            conn.execute(
                "INSERT INTO suppressions VALUES (?, '', ?, 'api:test')", (CN, gw.clock.now)
            )
        send = {"to": [f"+{CN}"], "text": "双十二五折", "class": "marketing"}
        got = httpx.post(url, json=send, auth=("shop", "secret"), timeout=10).json()
        assert got["messages"][0]["stopped"] == "opted_out"
        otp = {"to": [f"+{CN}"], "text": "code 4242", "class": "otp"}
        first = httpx.post(url, json=otp, auth=("shop", "secret"), timeout=10).json()
        again = httpx.post(url, json=otp, auth=("shop", "secret"), timeout=10).json()
        assert again["messages"][0] == {**first["messages"][0], "duplicate": True}
        invalid = httpx.post(
            url, json={"to": ["+861380013800"], "text": "x"}, auth=("shop", "secret"), timeout=10
        )
        assert invalid.status_code == 422
        assert invalid.json()["error"]["code"] == "invalid_number"
        stopped = gw.call(gw.gateway.store.get(got["messages"][0]["id"]))
        _until(
            lambda: gw.call(gw.gateway.store.get(stopped.message.id)).state.value == "rejected",
            "the opted-out marketing message ended REJECTD",
        )
    finally:
        gw.close()


def test_a_batch_goes_through_the_same_rules(tmp_path: Path) -> None:
    gw = Running(tmp_path, datetime(2026, 12, 3, 12, 0, tzinfo=SHANGHAI))
    base = f"http://127.0.0.1:{gw.gateway.http_port}/api/v1/batches"
    other = "8613900139000"
    try:
        with sqlite3.connect(gw.db, timeout=10) as conn:
            conn.execute(
                "INSERT INTO suppressions VALUES (?, '', ?, 'api:test')", (CN, gw.clock.now)
            )
        batch = {
            "text": "双十二五折",
            "class": "marketing",
            "recipients": [f"+{CN}", f"+{other}", "+861380013800"],
        }
        created = httpx.post(base, json=batch, auth=("shop", "secret"), timeout=10)
        assert created.status_code == 202, created.text
        batch_id = created.json()["id"]

        def settled() -> dict[str, Any] | None:
            got = httpx.get(f"{base}/{batch_id}", auth=("shop", "secret"), timeout=10).json()
            return got if got["state"] == "done" and got["pending"] == 0 else None

        progress = _until(settled, "the batch settled")
        assert progress["accepted"] == 2 and progress["refused"] == 1
        assert progress["delivered"] == 1
        assert [r.get("rule") for r in progress["report"]["refused"]] == ["invalid_number"]
        sent = [(d, sm.decode("utf-16-be")) for d, sm in gw.smsc.submits]
        assert sent == [
            (other, "【XX商城】双十二五折回T退订")
        ]  # signed; the opted out one not sent
    finally:
        gw.close()


def test_the_campaign_comes_from_a_configured_tlv(tmp_path: Path) -> None:
    """smpplib writes no vendor TLV: the project's codec on a plain socket does."""
    gw = Running(tmp_path, datetime(2026, 12, 3, 12, 0, tzinfo=SHANGHAI))
    try:
        with Raw(gw.port) as raw:
            raw.bind(BindTransmitter(system_id="shop", password="secret", sequence_number=1))
            raw.send(
                SubmitSm(
                    source_addr="Shop",
                    dest_addr_ton=1,
                    destination_addr=CN,
                    service_type="PAY",
                    short_message=b"Your order shipped",
                    tlvs=(Tlv(0x1501, b"xmas-b\x00"),),
                    sequence_number=2,
                )
            )
            (resp,) = raw.read(1)
        record = gw.call(gw.gateway.store.get(resp.message_id))
        assert (record.message.campaign, record.message.msg_class) == ("xmas-b", "payment_reminder")
    finally:
        gw.close()
