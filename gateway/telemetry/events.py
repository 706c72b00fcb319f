"""Operator events as JSON on MQTT (docs/EVENTS.md is the schema).

`Events` is the one sink the parts of the gateway tell what happened: a message changed state,
a receipt came, an MO was handed on, a modem or an upstream link changed, a reload ended. It
builds a small dict and appends it to its topic's batch; every `FLUSH` seconds (or at
`MAX_BATCH` events) a topic's batch goes to `MqttLink.publish` as one MQTT message whose
payload is a JSON array. One MQTT publish costs the client library about 85 us of CPU, which
at four events a message would cost more than the message itself; a batch costs that once.
`publish` never waits (a bounded queue that counts what it drops). With no broker configured
(`link` None) every method returns at its first line.

Events are published after the store has the change, at QoS 1: at least once, so consumers
key on (message id, state). Every payload carries `v` (the schema version: fields are only
ever added under one version), `type`, `node` and `at` (unix seconds).

`watch_changes` polls what has no hook of its own (modem signal, which the modems read on
their health poll) and publishes only changes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.telemetry.mqtt import MqttLink

__all__ = ["FLUSH", "MAX_BATCH", "SCHEMA_VERSION", "Events", "watch_signal"]

SCHEMA_VERSION = 1
FLUSH = 0.02  # seconds an event may wait for others of its topic
MAX_BATCH = 500  # events in one MQTT message at most

_KINDS = {
    "message.state": ("message", "state"),
    "receipt": ("receipt",),
    "mo": ("mo",),
    "modem.state": ("modem", "state"),
    "modem.signal": ("modem", "signal"),
    "upstream.link": ("upstream", "link"),
    "reload": ("reload",),
}


class Events:
    """The event sink; `Events(None)` (or `Events.off()`) drops everything at no cost."""

    __slots__ = ("_batches", "_flushing", "_publish", "_topics", "clock", "dropped", "link", "node")

    def __init__(self, link: MqttLink | None, clock: Callable[[], float] = time.time) -> None:
        self.link = link
        self.clock = clock
        self.node = link.node if link is not None else ""
        self._topics = {k: link.topic(*parts) for k, parts in _KINDS.items()} if link else {}
        self._publish = link.publish if link is not None else None
        self._batches: dict[str, list[dict[str, Any]]] = {}
        self._flushing: asyncio.TimerHandle | None = None
        self.dropped = 0  # events in batches the link's full queue refused

    @classmethod
    def off(cls) -> Events:
        return cls(None)

    @property
    def enabled(self) -> bool:
        return self.link is not None

    def emit(self, kind: str, fields: dict[str, Any]) -> None:
        """Publish `fields` as a `kind` event (a key of the topic table)."""
        publish = self._publish
        if publish is None:
            return
        fields["v"] = SCHEMA_VERSION
        fields["type"] = kind
        fields["node"] = self.node
        fields["at"] = self.clock()
        batch = self._batches.get(kind)
        if batch is None:
            batch = self._batches[kind] = []
        batch.append(fields)
        if len(batch) >= MAX_BATCH:
            self._send(kind)
        elif self._flushing is None:
            self._flushing = asyncio.get_running_loop().call_later(FLUSH, self.flush)

    def _send(self, kind: str) -> None:
        batch = self._batches.pop(kind, None)
        if batch and self._publish is not None and not self._publish(self._topics[kind], batch):
            self.dropped += len(batch)

    def flush(self) -> None:
        """Hand every batch to the link now (the timer's call; `Gateway.stop` calls it too)."""
        if self._flushing is not None:
            self._flushing.cancel()
            self._flushing = None
        for kind in list(self._batches):
            self._send(kind)

    # -- messages -----------------------------------------------------------------------------

    def message_state(
        self,
        message_id: str,
        state: str,
        account: str,
        route: str,
        *,
        target: str | None = None,
        error: int | None = None,
    ) -> None:
        """A message's new state (a `MessageState` value), once the store has it."""
        if self._publish is None:
            return
        self.emit(
            "message.state",
            {
                "id": message_id,
                "state": state,
                "account": account,
                "route": route,
                "target": target,
                "error": error,
            },
        )

    def accepted(self, messages: Iterable[Any]) -> None:
        """Messages (`NewMessage`) just made durable: one `accepted` event each."""
        if self._publish is None:
            return
        for m in messages:
            self.message_state(m.id, "accepted", m.account, m.route)

    def receipt(
        self,
        upstream: str,
        upstream_id: str,
        *,
        message_id: str | None,
        state: str,
        message_state: int,
        error: int,
    ) -> None:
        """A receipt kept: matched to `message_id`, or unknown (None)."""
        if self._publish is None:
            return
        self.emit(
            "receipt",
            {
                "upstream": upstream,
                "upstream_id": upstream_id,
                "matched": message_id is not None,
                "id": message_id,
                "state": state,
                "message_state": message_state,
                "error": error,
            },
        )

    def mo(self, source: str, destination: str, account: str, text: str, parts: int) -> None:
        """An inbound message (reassembled) queued for `account`."""
        if self._publish is None:
            return
        self.emit(
            "mo",
            {"from": source, "to": destination, "account": account, "text": text, "parts": parts},
        )

    # -- links --------------------------------------------------------------------------------

    def modem_state(self, bank: str, modem: str, state: str) -> None:
        if self._publish is None:
            return
        self.emit("modem.state", {"bank": bank, "modem": modem, "state": state})

    def modem_signal(self, bank: str, modem: str, dbm: int | None) -> None:
        if self._publish is None:
            return
        self.emit("modem.signal", {"bank": bank, "modem": modem, "dbm": dbm})

    def upstream_link(self, upstream: str, link: str, state: str, error: str | None) -> None:
        """An upstream connection bound (`bound`) or lost (`down`, with the last error)."""
        if self._publish is None:
            return
        self.emit(
            "upstream.link", {"upstream": upstream, "link": link, "state": state, "error": error}
        )

    def reload(self, ok: bool, detail: str | list[str] | None) -> None:
        if self._publish is None:
            return
        self.emit("reload", {"ok": ok, "detail": detail})


async def watch_signal(
    events: Events,
    rows: Callable[[], Iterable[Mapping[str, Any]]],
    interval: float = 1.0,
) -> None:
    """Until cancelled: each modem's signal (`rows()`: the banks' state rows), published when
    it changes. The modems read it on their health poll, so polling their last reading here
    every `interval` costs a few dict reads and misses nothing they saw."""
    seen: dict[tuple[str, str], int | None] = {}
    while True:
        for row in rows():
            key = (str(row["bank"]), str(row["name"]))
            dbm = row["signal_dbm"]
            first = key not in seen
            if first or seen[key] != dbm:
                seen[key] = dbm
                if not (first and dbm is None):  # no reading yet is no news
                    events.modem_signal(key[0], key[1], dbm)
        await asyncio.sleep(interval)
