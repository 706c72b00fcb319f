"""A carrier that exists only in this process, so the gateway can be tried with no contract.

It accepts every message it is given, and after `delivery_delay` seconds reports a receipt:
delivered, or undeliverable for a `failure_ratio` share of messages. The share is exact over
any run of messages (a fixed spacing, not chance), so tests and demos see the same numbers.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets

from drivers.base import ReceiptSink, SendResult, UpstreamReceipt
from gateway.store.base import MessageRecord

__all__ = ["SimulatedCarrier"]

_DELIVERED, _UNDELIVERABLE = 2, 5


class SimulatedCarrier:
    def __init__(self, name: str, *, delivery_delay: float = 1.0, failure_ratio: float = 0.0):
        self.name = name
        self.delivery_delay = delivery_delay
        self.failure_ratio = failure_ratio
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(3).upper()
        self._sink: ReceiptSink | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._sent = 0
        self._failed = 0

    def usable(self) -> bool:
        return self._sink is not None

    async def start(self, sink: ReceiptSink) -> None:
        self._sink = sink

    async def stop(self) -> None:
        self._sink = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def send(self, record: MessageRecord) -> SendResult:
        # Upper-case hex, as many carriers write ids; the per-instance prefix keeps the ids of
        # gateway nodes that share a store (each with its own simulated carrier) apart.
        upstream_id = f"{self._prefix}{next(self._ids):08X}"
        self._sent += 1
        fail = self._failed < int(self._sent * self.failure_ratio)
        if fail:
            self._failed += 1
        task = asyncio.get_running_loop().create_task(self._report(upstream_id, fail))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return SendResult(True, upstream_id)

    async def _report(self, upstream_id: str, fail: bool) -> None:
        await asyncio.sleep(self.delivery_delay)
        sink = self._sink
        if sink is not None:
            state = _UNDELIVERABLE if fail else _DELIVERED
            stat, delivered, err = ("UNDELIV", "000", "001") if fail else ("DELIVRD", "001", "000")
            await sink.receipt(
                UpstreamReceipt(
                    self.name,
                    upstream_id,
                    state,
                    error=1 if fail else 0,
                    done_at=asyncio.get_running_loop().time(),
                    # what a carrier would have written, so the store keeps a text for it too
                    raw=f"id:{upstream_id} dlvrd:{delivered} stat:{stat} err:{err}".encode(),
                )
            )
