"""Through a carrier: smpplib -> smsgw -> the fake SMSC (smpplib PDUs), and the receipt back."""

from __future__ import annotations

from pathlib import Path

import pytest
import smpplib.client

from drivers.smpp.upstream import SmppUpstream
from gateway.app import Gateway
from gateway.config import load_config
from gateway.smpp.receipt import parse_receipt
from tests.fakes.smsc import Behaviour, FakeSmsc
from tests.integration.loop import LoopThread

CONFIG = """
accounts: [{system_id: shop, password: secret}]
upstreams:
  carrier: {host: 127.0.0.1, port: %d, system_id: gw, password: pw}
routes: [{name: all, targets: [carrier]}]
store: {path: "%s"}
"""


class Running(LoopThread):
    def __init__(self, tmp: Path, behaviour: Behaviour, template: str = CONFIG) -> None:
        super().__init__()
        self.smsc = FakeSmsc(behaviour)
        smsc_port = self.call(self.smsc.start())
        config = load_config("t.yaml", text=template % (smsc_port, tmp / "gw.sqlite3"))
        self.gateway = Gateway(config)
        self.gateway.dispatcher.poll_interval = 0.05
        self.port = self.call(self.gateway.start("127.0.0.1", 0))
        upstream = self.gateway.drivers["carrier"]
        assert isinstance(upstream, SmppUpstream)
        self.call(upstream.wait_bound(10))

    def close(self) -> None:
        self.call(self.gateway.stop())
        self.call(self.smsc.stop())
        self.stop_loop()


def run_app(port: int, count: int) -> tuple[set[str], list[str]]:
    """Submit `count` messages asking for receipts; our ids, and the ids in the receipts."""
    sent: list[object] = []
    received: list[object] = []

    def on_sent(pdu: object) -> None:
        sent.append(pdu)

    def on_received(pdu: object) -> None:
        received.append(pdu)

    c = smpplib.client.Client("127.0.0.1", port, timeout=10, allow_unknown_opt_params=True)
    c.connect()
    c.set_message_sent_handler(on_sent)
    c.set_message_received_handler(on_received)
    c.bind_transceiver(system_id="shop", password="secret")
    for i in range(count):
        c.send_message(
            source_addr="Shop",
            destination_addr=f"4915100000{i:02d}",
            short_message=f"order {i}".encode(),
            registered_delivery=1,
        )
    for _ in range(10 * count + 10):  # bounded
        if len(sent) == count and len(received) == count:
            break
        c.read_once()
    c.unbind()
    c.disconnect()
    ids = {p.message_id.decode() for p in sent}  # type: ignore[attr-defined]
    return ids, [parse_receipt(p.short_message).message_id for p in received]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "behaviour",
    [
        Behaviour(),
        Behaviour(throttle_first=2),
        Behaviour(receipt_before_response=True),
    ],
    ids=["happy", "throttling", "receipt-before-response"],
)
def test_messages_reach_the_carrier_and_receipts_come_back(
    tmp_path: Path, behaviour: Behaviour
) -> None:
    running = Running(tmp_path, behaviour)
    try:
        ids, receipted = run_app(running.port, 4)
        assert len(ids) == 4
        assert sorted(receipted) == sorted(ids)  # our ids, not the carrier's
        assert sorted(d for d, _ in running.smsc.submits) == [
            f"4915100000{i:02d}" for i in range(4)
        ]
    finally:
        running.close()


MO_CONFIG = (
    CONFIG
    + """
mo_routes:
  - {account: shop, prefixes: ["4915100"]}
"""
)


def test_inbound_message_reassembled_and_delivered(tmp_path: Path) -> None:
    running = Running(tmp_path, Behaviour(), MO_CONFIG)
    try:
        text = "Bestellung 42 bitte stornieren 🙏 " * 3  # UCS-2, needs two parts
        body = text.encode("utf-16-be")
        half = 130
        parts = [
            (b"\x05\x00\x03\x2a\x02\x02" + body[half:], 0x40),  # part 2 first: any order
            (b"\x05\x00\x03\x2a\x02\x01" + body[:half], 0x40),
        ]
        running.call(running.smsc.send_mo("4917612345678", "4915100777", parts))

        received: list[object] = []

        def on_received(pdu: object) -> None:
            received.append(pdu)

        c = smpplib.client.Client(
            "127.0.0.1", running.port, timeout=10, allow_unknown_opt_params=True
        )
        c.connect()
        c.set_message_received_handler(on_received)
        c.bind_receiver(system_id="shop", password="secret")
        for _ in range(10):
            if len(received) >= 2:
                break
            c.read_once()
        c.unbind()
        c.disconnect()
        assert len(received) == 2  # re-segmented for the application
        got = b"".join(p.short_message[6:] for p in received).decode("utf-16-be")  # type: ignore[attr-defined]
        assert got == text
        assert {p.source_addr.decode() for p in received} == {"4917612345678"}  # type: ignore[attr-defined]
    finally:
        running.close()
