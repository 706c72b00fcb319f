"""Many binds of one account (issue 13, item 4): a notice of queued deliveries wakes one of the
account's binds, not each of them (with a thousand binds, one store read per bind per receipt
was the gateway's whole CPU), yet a backlog larger than one window still spreads over the binds
at once; idle binds do not read the store on timers of their own."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gateway.server.smpp as server_module
from gateway.smpp import BindReceiver, DeliverSm, DeliverSmResp, decode_pdu, encode_pdu
from tests.integration.loop import ServerOnLoop
from tests.integration.wire import GatewayLog, Raw

CONFIG = """
numbers: {country_code: "49"}
accounts:
  - {system_id: shop, password: secret, max_binds: 8, window: 3}
simulated_carriers: {sim: {}}
routes:
  - {name: de, prefixes: ["49"], targets: [sim]}
"""
BINDS = 4


class CountingStore:
    """The real store, counting the reads of the deliver_sm queue."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def pending_deliveries(self, *args: Any, **kwargs: Any) -> Any:
        self.reads += 1
        return await self._store.pending_deliveries(*args, **kwargs)


@pytest.fixture
def running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[ServerOnLoop]:
    # The account's rescan: sped up where the test is about it, else out of the way.
    rescan = 0.25 if "rescan" in request.node.name else 60.0
    monkeypatch.setattr(server_module, "_REDELIVER", rescan)
    r = ServerOnLoop(CONFIG, tmp_path / "gw.sqlite3")
    yield r
    r.close()


@pytest.fixture
def log(running: ServerOnLoop) -> Iterator[GatewayLog]:
    captured = GatewayLog(running.loop)
    yield captured
    captured.close()
    assert captured.errors() == []


def _queue(running: ServerOnLoop, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        receipt = DeliverSm(esm_class=0x04, short_message=f"id:m{i} stat:DELIVRD".encode())
        running.call(
            running.store.enqueue_delivery("shop", "receipt", encode_pdu(receipt), time.time(), 60)
        )
    running.loop.call_soon_threadsafe(running.server.notify, "shop")


def _arrived(clients: list[Raw], quiet: float = 0.3) -> list[list[DeliverSm]]:
    """What each client got until all were quiet for `quiet` s (deliver_sm, unanswered)."""
    got: list[list[DeliverSm]] = [[] for _ in clients]
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if all(c.silent_for(quiet) for c in clients):
            break
    for c, out in zip(clients, got, strict=True):
        while (raw := c.frames.next_pdu()) is not None:
            pdu = decode_pdu(raw)
            assert isinstance(pdu, DeliverSm)
            out.append(pdu)
    return got


def test_one_notice_wakes_one_bind_and_a_backlog_spreads_over_the_binds(
    running: ServerOnLoop, log: GatewayLog
) -> None:
    clients = [Raw(running.port) for _ in range(BINDS)]
    try:
        for c in clients:
            assert c.bind(BindReceiver(system_id="shop", password="secret")).command_status == 0
        counting = CountingStore(running.store)
        running.server.store = counting  # type: ignore[assignment]
        # One receipt: one bind gets it, after one read of the queue (not one per bind).
        _queue(running, 1)
        first = _arrived(clients, quiet=0.1)
        assert sorted(len(g) for g in first) == [0, 0, 0, 1]
        assert counting.reads == 1
        # Ten, more than one window of 3: they spread over the binds at once, unanswered.
        _queue(running, 10, start=1)
        got = _arrived(clients, quiet=0.1)
        texts = [p.short_message for g in (*first, *got) for p in g]
        assert len(texts) == len(set(texts)) == 11
        assert max(len(a) + len(b) for a, b in zip(first, got, strict=True)) <= 3  # windows
        for c, a, b in zip(clients, first, got, strict=True):
            c.send(*(DeliverSmResp(sequence_number=p.sequence_number) for p in (*a, *b)))
        deadline = time.monotonic() + 5.0
        while running.call(running.store.pending_deliveries("shop", time.time(), 20)):
            assert time.monotonic() < deadline, "answered deliveries still queued"
            time.sleep(0.05)
    finally:
        running.server.store = running.store
        for c in clients:
            c.sock.close()


def test_idle_binds_share_one_rescan_of_the_queue(running: ServerOnLoop, log: GatewayLog) -> None:
    clients = [Raw(running.port) for _ in range(BINDS)]
    try:
        for c in clients:
            assert c.bind(BindReceiver(system_id="shop", password="secret")).command_status == 0
        counting = CountingStore(running.store)
        running.server.store = counting  # type: ignore[assignment]
        time.sleep(1.3)  # about five rescans of 0.25 s
        # One bind looks each rescan: about 5 reads (a timer per bind made it about 20).
        assert 3 <= counting.reads <= 7
        # A delivery nobody was told about is found by the rescan.
        receipt = DeliverSm(esm_class=0x04, short_message=b"id:quiet stat:DELIVRD")
        running.call(
            running.store.enqueue_delivery("shop", "receipt", encode_pdu(receipt), time.time(), 60)
        )
        got = _arrived(clients, quiet=0.6)
        assert [p.short_message for g in got for p in g] == [receipt.short_message]
    finally:
        running.server.store = running.store
        for c in clients:
            c.sock.close()
