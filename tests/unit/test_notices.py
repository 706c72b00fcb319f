"""Delivery notices between nodes (issue 12): a burst of deliveries queued within one tick
becomes one MQTT notice naming each account once; a notice from another node wakes this
node's binds of those accounts (paging from the start), one of this node's own is ignored."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from gateway.app import Gateway
from gateway.config import load_config
from gateway.store.sqlite import SqliteStore
from gateway.telemetry.mqtt import MqttMessage

CONFIG = """
node_id: 4
accounts: [{system_id: shop, password: pw}, {system_id: bank, password: pw}]
mqtt: {url: "mqtt://127.0.0.1:1", topic_prefix: gw}
"""


def _gateway(tmp_path: Path) -> Gateway:
    config = load_config("t.yaml", text=CONFIG)
    return Gateway(config, store=SqliteStore(tmp_path / "gw.sqlite3"))


def test_a_burst_becomes_one_notice_per_tick(tmp_path: Path) -> None:
    async def body() -> None:
        gateway = _gateway(tmp_path)
        assert gateway.mqtt is not None  # never started: publish only queues
        for i in range(5000):
            gateway._notify("shop" if i % 3 else "bank")
        await asyncio.sleep(0.05)
        assert gateway.mqtt.queued == 1
        out = gateway.mqtt._queue[0]
        assert out.topic == "gw/node4/deliveries"
        assert json.loads(out.payload) == {"v": 1, "accounts": ["bank", "shop"]}
        gateway._notify("shop")  # a later tick: a notice of its own
        await asyncio.sleep(0.05)
        assert gateway.mqtt.queued == 2
        assert gateway.notices_sent == 2

    asyncio.run(body())


def test_a_notice_wakes_this_nodes_binds_unless_it_is_its_own(tmp_path: Path) -> None:
    gateway = _gateway(tmp_path)
    woken: list[tuple[str, bool]] = []
    gateway.server.notify = lambda account, *, rewind=False: woken.append((account, rewind))  # type: ignore[method-assign]
    payload = json.dumps({"v": 1, "accounts": ["shop", 7]}).encode()
    gateway._on_notice(MqttMessage("gw/node4/deliveries", payload))  # its own
    gateway._on_notice(MqttMessage("gw/node9/deliveries", b'{"v": 2, "accounts": ["shop"]}'))
    assert woken == []
    gateway._on_notice(MqttMessage("gw/node9/deliveries", payload))
    assert woken == [("shop", True)]


def test_own_deliveries_rewind_only_while_other_nodes_queue_too(tmp_path: Path) -> None:
    async def body() -> None:
        gateway = _gateway(tmp_path)
        woken: list[tuple[str, bool]] = []
        gateway.server.notify = lambda account, *, rewind=False: woken.append((account, rewind))  # type: ignore[method-assign]
        gateway._notify("shop")
        gateway._on_notice(MqttMessage("gw/node9/deliveries", b'{"v": 1, "accounts": ["shop"]}'))
        gateway._notify("shop")
        gateway._notify("bank")
        assert woken == [("shop", False), ("shop", True), ("shop", True), ("bank", False)]

    asyncio.run(body())
