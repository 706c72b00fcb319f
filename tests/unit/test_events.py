"""gateway/telemetry/events.py without a broker: what a link would be handed (its queue is
read before it ever connects), the no-op sink, and the signal watcher's change-only rule."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from gateway.telemetry.events import FLUSH, MAX_BATCH, Events, watch_signal
from gateway.telemetry.mqtt import MqttLink


def _queued(link: MqttLink) -> list[tuple[str, dict[str, Any]]]:
    """Each event handed to the link (a message's payload is an array of them)."""
    return [(o.topic, e) for o in link._queue for e in json.loads(o.payload)]


def test_off_is_a_no_op() -> None:
    events = Events.off()
    assert not events.enabled
    events.message_state("id", "sent", "shop", "all", target="carrier")
    events.accepted([object()])  # not even looked at
    events.reload(True, None)


def test_payloads_carry_the_envelope_on_their_topic() -> None:
    async def main() -> list[tuple[str, dict[str, Any]]]:
        link = MqttLink("mqtt://127.0.0.1:1", node="n7", prefix="p")
        events = Events(link, clock=lambda: 12.5)
        events.message_state("m1", "delivered", "shop", "all", target="carrier")
        events.receipt(
            "carrier", "ABC", message_id=None, state="undeliverable", message_state=5, error=1
        )
        events.mo("4915700000009", "4915100000001", "shop", "hi", 2)
        events.modem_state("b", "m1", "ready")
        events.upstream_link("carrier", "0/trx", "down", "reset")
        events.reload(False, "routes: bad")
        assert not link._queue  # batched: nothing is handed over before the flush
        events.flush()
        return _queued(link)

    queued = asyncio.run(main())
    assert [t for t, _ in queued] == [
        "p/n7/message/state",
        "p/n7/receipt",
        "p/n7/mo",
        "p/n7/modem/state",
        "p/n7/upstream/link",
        "p/n7/reload",
    ]
    for topic, event in queued:
        assert (event["v"], event["node"], event["at"]) == (1, "n7", 12.5)
        assert topic == "p/n7/" + event["type"].replace(".", "/")
    assert queued[0][1]["target"] == "carrier" and queued[0][1]["error"] is None
    assert queued[1][1]["matched"] is False and queued[1][1]["id"] is None
    assert queued[2][1]["from"] == "4915700000009" and queued[2][1]["parts"] == 2


def test_signal_is_published_on_change_only() -> None:
    async def main() -> list[tuple[str, dict[str, Any]]]:
        link = MqttLink("mqtt://127.0.0.1:1", node="n", prefix="p")
        readings = iter([None, -93, -93, -93, -71, None])
        rows: list[dict[str, Any]] = []

        def read() -> list[dict[str, Any]]:
            rows[:] = [{"bank": "b", "name": "m1", "signal_dbm": next(readings, None)}]
            return rows

        events = Events(link)
        task = asyncio.create_task(watch_signal(events, read, interval=0))
        for _ in range(6):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        events.flush()
        return _queued(link)

    assert [e["dbm"] for _, e in asyncio.run(main())] == [-93, -71, None]


def test_events_are_batched_per_topic_in_order_and_bounded() -> None:
    async def main() -> MqttLink:
        link = MqttLink("mqtt://127.0.0.1:1", node="n", prefix="p")
        events = Events(link, clock=lambda: 1.0)
        for i in range(MAX_BATCH + 3):
            events.message_state(f"m{i}", "sent", "shop", "all")
        events.reload(True, None)
        # A full batch goes at once; the rest when the timer fires.
        assert len(link._queue) == 1
        await asyncio.sleep(FLUSH * 3)
        return link

    link = asyncio.run(main())
    sizes = [(o.topic, len(json.loads(o.payload))) for o in link._queue]
    assert sizes == [("p/n/message/state", MAX_BATCH), ("p/n/message/state", 3), ("p/n/reload", 1)]
    ids = [e["id"] for t, e in _queued(link) if t.endswith("state")]
    assert ids == [f"m{i}" for i in range(MAX_BATCH + 3)]


def test_a_refused_batch_counts_its_events() -> None:
    async def main() -> Events:
        link = MqttLink("mqtt://127.0.0.1:1", node="n", prefix="p", queue=1)
        events = Events(link)
        events.reload(True, None)
        events.flush()
        for i in range(4):
            events.message_state(f"m{i}", "sent", "shop", "all")
        events.flush()  # the link's queue is full: four events lost, and counted
        return events

    events = asyncio.run(main())
    assert events.dropped == 4 and events.link is not None and events.link.dropped == 1
