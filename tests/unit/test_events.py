"""gateway/telemetry/events.py without a broker: what a link would be handed (its queue is
read before it ever connects), the no-op sink, and the signal watcher's change-only rule."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from gateway.telemetry.events import Events, watch_signal
from gateway.telemetry.mqtt import MqttLink


def _queued(link: MqttLink) -> list[tuple[str, dict[str, Any]]]:
    return [(o.topic, json.loads(o.payload)) for o in link._queue]


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

        task = asyncio.create_task(watch_signal(Events(link), read, interval=0))
        for _ in range(6):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return _queued(link)

    assert [e["dbm"] for _, e in asyncio.run(main())] == [-93, -71, None]
