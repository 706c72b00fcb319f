"""A backlog of deliveries queued while an application was unbound (issue 13, item 5): when
it binds they come in the order they were queued (the queue's ids), each once, read ahead of
the bind in pages while it answers; a restart mid-drain offers the unanswered ones again."""

from __future__ import annotations

import time
from pathlib import Path

from gateway.smpp import BindReceiver, DeliverSm, DeliverSmResp, encode_pdu
from tests.integration.loop import ServerOnLoop
from tests.integration.wire import Raw

CONFIG = """
numbers: {country_code: "49"}
accounts:
  - {system_id: shop, password: secret, window: 4}
simulated_carriers: {sim: {}}
routes:
  - {name: de, prefixes: ["49"], targets: [sim]}
"""

QUEUED = 60  # fifteen windows: many pages of the read-ahead (two windows each)


def _queue(r: ServerOnLoop, count: int) -> list[bytes]:
    texts = [f"id:m{i} stat:DELIVRD".encode() for i in range(count)]
    for text in texts:
        pdu = encode_pdu(DeliverSm(esm_class=0x04, short_message=text))
        r.call(r.store.enqueue_delivery("shop", "receipt", pdu, time.time(), 600))
    return texts


def _drain(c: Raw, count: int, *, answer: bool = True) -> list[bytes]:
    """Read `count` deliver_sm, answering each window as it comes (or none)."""
    got: list[bytes] = []
    while len(got) < count:
        (pdu,) = c.read(1)
        assert isinstance(pdu, DeliverSm)
        got.append(pdu.short_message)
        if answer:
            c.send(DeliverSmResp(sequence_number=pdu.sequence_number))
    return got


def test_a_backlog_drains_in_queue_order_each_once(tmp_path: Path) -> None:
    r = ServerOnLoop(CONFIG, tmp_path / "gw.sqlite3")
    try:
        texts = _queue(r, QUEUED)  # nobody bound: they wait in the store
        with Raw(r.port) as c:
            assert c.bind(BindReceiver(system_id="shop", password="secret")).command_status == 0
            assert _drain(c, QUEUED) == texts
            more = _queue(r, 6)  # queued while bound, after a drained read-ahead
            r.loop.call_soon_threadsafe(r.server.notify, "shop")
            assert _drain(c, 6) == more
            assert c.silent_for(0.5)  # nothing twice
        assert r.call(r.store.pending_deliveries("shop", time.time(), 100)) == []
    finally:
        r.close()


def test_a_restart_mid_drain_offers_the_unanswered_again_in_order(tmp_path: Path) -> None:
    db = tmp_path / "gw.sqlite3"
    r = ServerOnLoop(CONFIG, db)
    try:
        texts = _queue(r, QUEUED)
        with Raw(r.port) as c:
            assert c.bind(BindReceiver(system_id="shop", password="secret")).command_status == 0
            answered = _drain(c, 20)
            unanswered = _drain(c, 4, answer=False)  # a full window, never answered
            assert answered + unanswered == texts[:24]
    finally:
        r.close()  # the answered ones are removed before the store closes
    r = ServerOnLoop(CONFIG, db)  # the same file: its leases are this node's
    try:
        with Raw(r.port) as c:
            assert c.bind(BindReceiver(system_id="shop", password="secret")).command_status == 0
            assert _drain(c, QUEUED - 20) == texts[20:]
            assert c.silent_for(0.5)
        assert r.call(r.store.pending_deliveries("shop", time.time(), 100)) == []
    finally:
        r.close()
