"""gateway/telemetry/mqtt.py against a real Mosquitto: QoS 1 round trip, bounded queue that
counts what it drops, and a broker restart that loses nothing queued meanwhile."""

from __future__ import annotations

import asyncio
import json

import aiomqtt
import pytest

from gateway.telemetry.mqtt import MqttLink, MqttMessage, broker_address
from tests.broker import Broker


def test_broker_address() -> None:
    assert broker_address("mqtt://u:p%40ss@host") == ("host", 1883, False, "u", "p@ss")
    assert broker_address("mqtts://h:9000") == ("h", 9000, True, None, None)
    with pytest.raises(ValueError, match="scheme"):
        broker_address("http://h")


async def _collect(url: str, topic: str, seen: set[int], ready: asyncio.Event) -> None:
    """Subscribe with a kept session (fixed id, clean_session false), across broker
    restarts, adding each number received to `seen` (the caller cancels it)."""
    host, port, *_ = broker_address(url)
    while True:
        try:
            async with aiomqtt.Client(
                host, port, identifier="collector", clean_session=False
            ) as client:
                await client.subscribe(topic, qos=1)
                ready.set()
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    seen.add(json.loads(message.payload)["n"])
        except aiomqtt.MqttError:
            await asyncio.sleep(0.1)  # the broker is restarting; the caller's timeout bounds it


def test_publish_subscribe_and_restart(mqtt_broker: Broker) -> None:
    async def main() -> None:
        link = MqttLink(mqtt_broker.url, node="n1", prefix="t")
        assert link.topic("events", "x") == "t/n1/events/x"
        received: list[MqttMessage] = []
        arrived = asyncio.Event()

        def on_command(message: MqttMessage) -> None:
            received.append(message)
            arrived.set()

        await link.subscribe("t/n1/cmd/#", on_command)
        link.start()
        assert await link.wait_connected(10)
        ready = asyncio.Event()
        seen: set[int] = set()
        collector = asyncio.create_task(_collect(mqtt_broker.url, "t/n1/events/#", seen, ready))
        await asyncio.wait_for(ready.wait(), 10)
        for n in range(100):
            assert link.publish(link.topic("events", "x"), {"n": n})

        # The broker goes away; what is published meanwhile waits and goes after it returns.
        await asyncio.to_thread(mqtt_broker.stop)
        async with asyncio.timeout(10):
            while link.connected.is_set():
                await asyncio.sleep(0.02)
        for n in range(100, 300):
            link.publish(link.topic("events", "x"), {"n": n})
        assert link.queued >= 200
        await asyncio.to_thread(mqtt_broker.start)
        assert await link.wait_connected(20)
        async with asyncio.timeout(30):
            while len(seen) < 300:
                await asyncio.sleep(0.05)
        collector.cancel()
        assert seen == set(range(300))  # nothing lost: neither in flight nor queued
        assert link.dropped == 0

        # The subscription was made again on the new connection.
        host, port, *_ = broker_address(mqtt_broker.url)
        async with aiomqtt.Client(host, port) as client:
            await client.publish("t/n1/cmd/send", b'{"id": 1}', qos=1)
        await asyncio.wait_for(arrived.wait(), 10)
        assert received[0].topic == "t/n1/cmd/send" and received[0].json() == {"id": 1}
        assert link.connects == 2
        await link.stop()

    asyncio.run(main())


def test_full_queue_drops_and_counts() -> None:
    async def main() -> None:
        # No broker at all: nothing blocks, the queue is bounded, drops are counted.
        link = MqttLink("mqtt://127.0.0.1:9", node="n", queue=10)
        link.start()
        results = [link.publish(link.topic("e"), b"x") for _ in range(25)]
        assert results.count(True) == 10 and link.dropped == 15 and link.queued == 10
        async with asyncio.timeout(10):
            while link.last_error is None:
                await asyncio.sleep(0.02)
        assert not link.connected.is_set()
        await link.stop()

    asyncio.run(main())


def test_filters_registered_while_connecting_are_all_subscribed(mqtt_broker: Broker) -> None:
    async def main() -> set[str]:
        link = MqttLink(mqtt_broker.url, node="n", prefix="t")
        got: set[str] = set()
        for i in range(3):
            await link.subscribe(f"t/early/{i}", lambda m: got.add(m.topic))
        link.start()
        # Registered while the link connects and subscribes the first ones (each await
        # lets its loop run): none may be left out of this connection.
        for i in range(40):
            await link.subscribe(f"t/late/{i}", lambda m: got.add(m.topic))
            await asyncio.sleep(0.001)
        assert await link.wait_connected(10)
        host, port, *_ = broker_address(mqtt_broker.url)
        topics = [f"t/early/{i}" for i in range(3)] + [f"t/late/{i}" for i in range(40)]
        async with aiomqtt.Client(host, port) as client:
            for topic in topics:
                await client.publish(topic, b"x", qos=1)
        async with asyncio.timeout(10):
            while len(got) < len(topics):
                await asyncio.sleep(0.02)
        await link.stop()
        return got

    assert len(asyncio.run(main())) == 43


def test_a_shared_subscription_gives_each_message_to_one_node(mqtt_broker: Broker) -> None:
    # What two gateway nodes do with an agent's receipts and MO (drivers/remote.py).
    async def main() -> tuple[list[str], list[str]]:
        links = [MqttLink(mqtt_broker.url, node=f"n{i}", prefix="t") for i in range(2)]
        got: tuple[list[str], list[str]] = ([], [])
        for link, mine in zip(links, got, strict=True):
            await link.subscribe(
                "$share/g/t/agent/a/up", lambda m, mine=mine: mine.append(m.payload.decode())
            )
            link.start()
            assert await link.wait_connected(10)
        host, port, *_ = broker_address(mqtt_broker.url)
        async with aiomqtt.Client(host, port) as client:
            for i in range(40):
                await client.publish("t/agent/a/up", f"{i}".encode(), qos=1)
        async with asyncio.timeout(10):
            while len(got[0]) + len(got[1]) < 40:
                await asyncio.sleep(0.02)
        for link in links:
            await link.stop()
        return got

    first, second = asyncio.run(main())
    assert not set(first) & set(second)  # each to one node, not to every node
    assert sorted(first + second, key=int) == [f"{i}" for i in range(40)]
    assert first and second  # and both nodes take a share
