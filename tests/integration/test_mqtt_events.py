"""MQTT events end to end: a gateway with a fake carrier (half its deliveries fail) and an
emulated modem publishes to a Mosquitto of the test's own; a real subscriber, subscribed before
the gateway starts, sees every kind of event, in state order per message, as many as the link
says it published. With the broker away, traffic flows and the full queue's drops are counted.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from prometheus_client import generate_latest

from gateway.app import Gateway
from gateway.config import load_config
from gateway.telemetry.mqtt import broker_address
from tests.broker import Broker
from tests.fakes.smsc import Behaviour, FakeSmsc
from tests.integration.loop import LoopThread
from tests.integration.test_modem_bank import App
from tests.integration.wait import until

CONFIG = """
listen: {{host: 127.0.0.1, port: 0}}
accounts: [{{system_id: shop, password: secret}}{more}]
upstreams:
  carrier: {{host: 127.0.0.1, port: {smsc}, system_id: gw, password: pw}}
modem_banks:
  b:
    emulate: 1
    modems: [{{name: m1, number: "+4915100000001", health_interval: 0.3}}]
routes: [{{name: all, targets: [carrier]}}]
mo_routes: [{{account: shop, prefixes: ["49151"]}}]
store: {{path: "{db}"}}
mqtt: {{url: "{url}", topic_prefix: t, node: n1, queue: {queue}}}
"""

STATE_ORDER = ["accepted", "sent"]
FINAL = {"delivered", "undeliverable"}


class Subscribed(LoopThread):
    """A gateway on a loop thread, and a subscriber to `t/#` on the same loop."""

    def __init__(self, tmp: Path, url: str, *, queue: int = 10_000) -> None:
        super().__init__()
        self.tmp = tmp
        self.smsc = FakeSmsc(Behaviour(fail_share=0.5, seed=7))
        self.values = {
            "smsc": self.call(self.smsc.start()),
            "db": tmp / "gw.sqlite3",
            "url": url,
            "queue": queue,
        }
        self.path = tmp / "gateway.yaml"
        self.write()
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.messages = 0  # MQTT messages received (each a batch of events)
        self._subscriber: asyncio.Task[None] | None = None
        self.gateway = Gateway(load_config(self.path))
        self.gateway.config_path = str(self.path)
        self.gateway.dispatcher.poll_interval = 0.05

    def write(self, more: str = "") -> None:
        self.path.write_text(CONFIG.format(more=more, **self.values))

    def subscribe(self, url: str) -> None:
        async def start() -> None:
            ready = asyncio.Event()
            self._subscriber = asyncio.get_running_loop().create_task(self._collect(url, ready))
            async with asyncio.timeout(10):
                await ready.wait()

        self.call(start())

    async def _collect(self, url: str, ready: asyncio.Event) -> None:
        host, port, *_ = broker_address(url)
        async with aiomqtt.Client(host, port) as client:
            await client.subscribe("t/#", qos=1)
            ready.set()
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                self.messages += 1
                if str(message.topic).endswith("/deliveries"):
                    continue  # a notice to the other nodes, not an event
                batch = json.loads(message.payload)  # an array of events
                assert isinstance(batch, list) and batch
                self.events.extend((str(message.topic), e) for e in batch)

    def start(self) -> int:
        port: int = self.call(self.gateway.start("127.0.0.1", 0))
        self.call(self.gateway.banks["b"].wait_ready(timeout=30), timeout=40)
        return port

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for _, e in self.events if e["type"] == kind]

    def close(self) -> None:
        async def stop() -> None:
            await self.gateway.stop()
            await self.smsc.stop()
            if self._subscriber is not None:
                self._subscriber.cancel()
                await asyncio.gather(self._subscriber, return_exceptions=True)

        self.call(stop(), timeout=60)
        self.stop_loop()


@pytest.fixture
def subscribed(tmp_path: Path) -> Iterator[Callable[..., Subscribed]]:
    """Builds the test's `Subscribed` (stopped after the test, however it ends)."""
    runs: list[Subscribed] = []

    def make(url: str, **kwargs: Any) -> Subscribed:
        runs.append(Subscribed(tmp_path, url, **kwargs))
        return runs[-1]

    yield make
    for run in runs:
        run.close()


def test_every_event_arrives_in_order_and_counted(
    mqtt_broker: Broker, subscribed: Callable[..., Subscribed]
) -> None:
    run = subscribed(mqtt_broker.url)
    run.subscribe(mqtt_broker.url)
    port = run.start()
    app = App(port)
    gateway = run.gateway
    link = gateway.mqtt
    assert link is not None
    try:
        # Modem state on start, and the upstream bound.
        until(lambda: {"m1": "ready"} in [{e["modem"]: e["state"]} for e in run.of("modem.state")],
              "modem ready event")  # fmt: skip
        until(lambda: [e for e in run.of("upstream.link") if e["state"] == "bound"], "bound")

        for i in range(8):
            app.submit(f"4917000000{i:02d}", f"order {i} shipped")
        app.pump(lambda: len(app.acks) == 8 and len(app.receipts) == 8, 30, "8 receipts")
        ids = set(app.ids)
        assert len(ids) == 8

        def ended() -> bool:
            states = {e["id"]: e["state"] for e in run.of("message.state")}
            return all(states.get(i) in FINAL for i in ids)

        until(ended, "every message's final state event")

        # An MO through the emulated modem.
        modem = gateway.emulated["b"].modems["m1"]
        gateway.emulated["b"].network.inject(modem, "4915700000009", "STATUS of my order?")
        app.pump(lambda: len(app.mo) == 1, 30, "the MO at the application")
        until(lambda: run.of("mo"), "mo event")

        # A signal change the modem reads on its health poll.
        gateway.emulated["b"].network.set_signal(modem, 10)
        until(lambda: [e for e in run.of("modem.signal") if e["dbm"] == -93], "signal event")

        # A good reload, then a bad one (the old configuration keeps running).
        run.write(", {system_id: other, password: pw2}")
        assert run.call(gateway.reload()).error is None
        run.path.write_text("routes: [\n")
        assert run.call(gateway.reload()).error is not None

        # The carrier drops the link: down, then bound again.
        run.call(run.smsc.drop_all())
        until(lambda: [e for e in run.of("upstream.link") if e["state"] == "down"], "down")
        until(
            lambda: len([e for e in run.of("upstream.link") if e["state"] == "bound"]) >= 2,
            "bound again",
        )
        until(lambda: len(run.of("reload")) == 2, "reload events")
        until(lambda: link.queued == 0 and link.published == run.messages, "all published")
    finally:
        app.close()

    # Every payload: schema version 1, its type, this node, a time; on the topic of its type.
    for topic, event in run.events:
        assert event["v"] == 1
        assert event["node"] == "n1"
        assert isinstance(event["at"], float)
        assert topic == "t/n1/" + event["type"].replace(".", "/")
    kinds = {e["type"] for _, e in run.events}
    assert kinds == {
        "message.state", "receipt", "mo", "modem.state", "modem.signal", "upstream.link", "reload"
    }  # fmt: skip

    # Per message: accepted, sent, then its end, in that order, each once.
    history: dict[str, list[str]] = defaultdict(list)
    for e in run.of("message.state"):
        if e["id"] in ids:
            assert e["account"] == "shop" and e["route"] == "all"
            history[e["id"]].append(e["state"])
    finals = set()
    for message_id in ids:
        *steps, final = history[message_id]
        assert steps == STATE_ORDER, history[message_id]
        assert final in FINAL
        finals.add(final)
    assert finals == FINAL  # the carrier failed some and delivered others (seeded)
    sent = [e for e in run.of("message.state") if e["state"] == "sent"]
    assert {e["target"] for e in sent} == {"carrier"}
    failed = [e for e in run.of("message.state") if e["state"] == "undeliverable"]
    assert all(e["error"] == 1 for e in failed)  # the carrier's err:

    receipts = run.of("receipt")
    assert {r["id"] for r in receipts} == ids
    assert all(r["matched"] and r["upstream"] == "carrier" for r in receipts)
    assert {r["state"] for r in receipts} == FINAL

    (mo,) = run.of("mo")
    assert mo["from"] == "4915700000009"
    assert mo["to"] == "4915100000001"
    assert (mo["account"], mo["text"], mo["parts"]) == ("shop", "STATUS of my order?", 1)

    states = [e["state"] for e in run.of("modem.state") if e["modem"] == "m1"]
    assert states[-1] == "ready" and "opening" in states
    assert [e["ok"] for e in run.of("reload")] == [True, False]
    bad = run.of("reload")[1]
    assert isinstance(bad["detail"], str) and bad["detail"]
    down = next(e for e in run.of("upstream.link") if e["state"] == "down")
    assert down["upstream"] == "carrier" and down["link"]

    status = run.call(gateway.status())
    assert status["mqtt"]["connected"] is True
    assert status["mqtt"]["dropped"] == 0
    assert gateway.metrics is not None
    text = generate_latest(gateway.metrics.registry).decode()
    assert "smsgw_mqtt_connected 1.0" in text
    assert f"smsgw_mqtt_published_total {float(link.published)}" in text
    assert "smsgw_mqtt_dropped_total 0.0" in text


def test_broker_away_traffic_flows_and_drops_are_counted(
    mqtt_broker: Broker, subscribed: Callable[..., Subscribed]
) -> None:
    mqtt_broker.stop()  # its port stays ours: nothing listens there now
    run = subscribed(mqtt_broker.url, queue=1)
    port = run.start()
    app = App(port)
    gateway = run.gateway
    link = gateway.mqtt
    assert link is not None
    try:
        for i in range(10):
            app.submit(f"4917000000{i:02d}", f"order {i} shipped")
        app.pump(lambda: len(app.acks) == 10 and len(app.receipts) == 10, 30, "10 receipts")
        assert len(app.ids) == 10
    finally:
        app.close()
    # Per message: accepted, sent, ended (three events), and the modem's and link's, in
    # batches; the queue keeps the first batch, the rest are counted and dropped.
    gateway.events.flush()
    assert not link.connected.is_set()
    assert link.queued == 1
    dropped = link.dropped
    kept = sum(len(json.loads(o.payload)) for o in link._queue)
    assert dropped >= 1 and gateway.events.dropped >= 1
    assert kept + gateway.events.dropped >= 10 * 3  # every event kept or counted
    status = run.call(gateway.status())
    assert status["mqtt"]["connected"] is False
    assert status["mqtt"]["dropped"] == dropped
    assert gateway.metrics is not None
    text = generate_latest(gateway.metrics.registry).decode()
    assert "smsgw_mqtt_connected 0.0" in text
    assert "smsgw_mqtt_queued 1.0" in text
    assert f"smsgw_mqtt_dropped_total {float(dropped)}" in text
