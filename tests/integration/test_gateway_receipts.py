"""The whole path with the simulated carrier: smpplib submits, the dispatcher sends, the
carrier's receipt comes back to smpplib as a deliver_sm with our message id."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import smpplib.client
import smpplib.consts
import smpplib.exceptions

from gateway.app import Gateway
from gateway.config import load_config
from gateway.smpp.receipt import parse_receipt
from gateway.store import MessageState
from tests.integration.loop import LoopThread

CONFIG = """
accounts: [{system_id: shop, password: secret}]
simulated_carriers: {sim: {delivery_delay: 0.05, failure_ratio: 0.0}}
routes: [{name: all, targets: [sim]}]
store: {path: "%s"}
"""


class Running(LoopThread):
    def __init__(self, tmp: Path) -> None:
        config = load_config("t.yaml", text=CONFIG % (tmp / "gw.sqlite3"))
        self.gateway = Gateway(config)
        super().__init__()
        self.port = self.call(self.gateway.start("127.0.0.1", 0))

    def close(self) -> None:
        self.call(self.gateway.stop())
        self.stop_loop()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    r = Running(tmp_path)
    yield r
    r.close()


def test_receipt_comes_back_with_our_id(running: Running) -> None:
    sent, received = [], []

    def on_sent(pdu: object) -> None:
        sent.append(pdu)

    def on_received(pdu: object) -> None:
        received.append(pdu)

    c = smpplib.client.Client("127.0.0.1", running.port, timeout=10, allow_unknown_opt_params=True)
    c.connect()
    c.set_message_sent_handler(on_sent)
    c.set_message_received_handler(on_received)
    c.bind_transceiver(system_id="shop", password="secret")
    for i in range(3):
        c.send_message(
            source_addr="Shop",
            destination_addr=f"491511234567{i}",
            short_message=f"order {i} shipped".encode(),
            registered_delivery=1,
        )
    for _ in range(20):  # bounded: 3 responses and 3 receipts
        if len(sent) == 3 and len(received) == 3:
            break
        c.read_once()
    c.unbind()
    c.disconnect()

    ids = {pdu.message_id.decode() for pdu in sent}  # type: ignore[attr-defined]
    assert len(ids) == 3
    receipts = [parse_receipt(pdu.short_message) for pdu in received]  # type: ignore[attr-defined]
    assert {r.message_id for r in receipts} == ids
    assert all(r.stat == "DELIVRD" for r in receipts)
    for pdu in received:
        assert pdu.esm_class & 0x04  # type: ignore[attr-defined]  # SMSC delivery receipt
        assert pdu.receipted_message_id.decode() in ids  # type: ignore[attr-defined]
    for message_id in ids:
        record = running.call(running.gateway.store.get(message_id))
        assert record.state is MessageState.DELIVERED  # type: ignore[attr-defined]


def test_receipt_waits_for_the_application_to_bind(running: Running) -> None:
    sent = []

    def on_sent(pdu: object) -> None:
        sent.append(pdu)

    tx = smpplib.client.Client("127.0.0.1", running.port, timeout=10, allow_unknown_opt_params=True)
    tx.connect()
    tx.set_message_sent_handler(on_sent)
    tx.bind_transmitter(system_id="shop", password="secret")
    tx.send_message(
        source_addr="Shop", destination_addr="4915100000", short_message=b"x", registered_delivery=1
    )
    tx.read_once()
    message_id = sent[0].message_id.decode()  # type: ignore[attr-defined]
    for _ in range(100):  # the receipt is stored even though nobody can take it yet
        record = running.call(running.gateway.store.get(message_id))
        if record.state is MessageState.DELIVERED:  # type: ignore[attr-defined]
            break
        running.call(asyncio.sleep(0.02))
    tx.unbind()
    tx.disconnect()

    received = []

    def on_received(pdu: object) -> None:
        received.append(pdu)

    rx = smpplib.client.Client("127.0.0.1", running.port, timeout=10, allow_unknown_opt_params=True)
    rx.connect()
    rx.set_message_received_handler(on_received)
    rx.bind_receiver(system_id="shop", password="secret")
    for _ in range(5):
        if received:
            break
        rx.read_once()
    rx.unbind()
    rx.disconnect()
    assert [parse_receipt(p.short_message).message_id for p in received] == [message_id]  # type: ignore[attr-defined]


def test_each_receipt_reaches_one_bind_once(running: Running) -> None:
    """Two receivers of one account share the receipts: every receipt arrives, none twice."""
    received: list[object] = []
    stop = threading.Event()

    def listen(client: smpplib.client.Client) -> None:
        client._socket.settimeout(0.1)  # type: ignore[union-attr]  # so `stop` is noticed
        for _ in range(100_000):  # bounded
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError, smpplib.exceptions.ConnectionError):
                client.read_once()

    receivers = []
    for _ in range(2):
        rx = smpplib.client.Client(
            "127.0.0.1", running.port, timeout=10, allow_unknown_opt_params=True
        )
        rx.connect()
        rx.set_message_received_handler(lambda pdu: received.append(pdu))  # noqa: PLW0108 - smpplib passes pdu=
        rx.bind_receiver(system_id="shop", password="secret")
        receivers.append(rx)
    threads = [threading.Thread(target=listen, args=(rx,), daemon=True) for rx in receivers]
    for thread in threads:
        thread.start()

    acked: list[str] = []
    tx = smpplib.client.Client("127.0.0.1", running.port, timeout=10, allow_unknown_opt_params=True)
    tx.connect()
    tx.set_message_sent_handler(lambda pdu: acked.append(pdu.message_id.decode()))
    tx.bind_transmitter(system_id="shop", password="secret")
    count = 300
    for i in range(count):
        tx.send_message(
            source_addr="Shop",
            destination_addr="4915100000",
            short_message=f"m{i}".encode(),
            registered_delivery=1,
        )
    for _ in range(count * 2):  # bounded
        if len(acked) == count:
            break
        tx.read_once()
    assert len(set(acked)) == count

    def settled() -> bool:
        pending = running.call(running.gateway.store.pending_deliveries("shop", time.time(), 1))
        return len({receipt_id(p) for p in received}) == count and not pending

    deadline = time.monotonic() + 30
    while not settled():
        assert time.monotonic() < deadline, "receipts did not all arrive"
        running.call(asyncio.sleep(0.05))
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    tx.unbind()
    tx.disconnect()
    for rx in receivers:
        rx.disconnect()
    ids = [receipt_id(p) for p in received]
    assert set(ids) == set(acked)
    assert len(ids) == count, f"{len(ids) - count} receipts delivered twice"


def receipt_id(pdu: object) -> str:
    return str(parse_receipt(pdu.short_message).message_id)  # type: ignore[attr-defined]
