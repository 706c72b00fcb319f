"""A driver whose answers a test scripts: the dispatcher's peer in its own tests.

Each `send` takes the next scripted `SendResult` (or the default), optionally after a delay,
and records the record it was given and how many sends were in flight at once.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass, field

from drivers.base import ReceiptSink, SendResult, UpstreamReceipt
from gateway.store.base import MessageRecord


@dataclass
class ScriptedDriver:
    name: str = "carrier"
    delay: float = 0.0
    parts: int = 1  # upstream ids per message: >1 as if the driver resegmented it
    script: deque[SendResult] = field(default_factory=deque)
    is_usable: bool = True
    sent: list[MessageRecord] = field(default_factory=list)
    ids: dict[str, tuple[str, ...]] = field(default_factory=dict)  # message id -> upstream ids
    inflight: int = 0
    max_inflight: int = 0
    sink: ReceiptSink | None = None
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(0xA000))

    def usable(self) -> bool:
        return self.is_usable

    async def start(self, sink: ReceiptSink) -> None:
        self.sink = sink

    async def stop(self) -> None:
        self.sink = None

    async def send(self, record: MessageRecord) -> SendResult:
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            self.sent.append(record)
            if self.script:
                return self.script.popleft()
            ids = tuple(f"{next(self._counter):X}" for _ in range(self.parts))
            self.ids[record.message.id] = ids
            return SendResult(True, ids[0], upstream_ids=ids if self.parts > 1 else ())
        finally:
            self.inflight -= 1

    async def report(self, upstream_id: str, state: int, error: int = 0) -> None:
        """Deliver a receipt as the upstream would."""
        assert self.sink is not None
        await self.sink.receipt(UpstreamReceipt(self.name, upstream_id, state, error=error))


@dataclass
class DiagnosableDriver(ScriptedDriver):
    """A scripted driver that can say why it will never send as it is
    (`drivers.base.Diagnosable`), as a modem bank whose SIMs all want another PIN does."""

    reason: str | None = None

    def unusable_reason(self) -> str | None:
        return self.reason
