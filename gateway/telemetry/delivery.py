"""The store's delivery statistics for the status page and the metrics: the last day per
(hour, route, target), read at most once per `ttl` however many pages, feeds and scrapes ask
(one small indexed query; the rows are hours x routes x targets)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import structlog

from gateway.store.base import StatsRow

if TYPE_CHECKING:
    from gateway.store.base import Store

__all__ = ["DeliveryStats", "summed"]

DAY = 86_400.0
log = structlog.get_logger("smsgw.stats")


def summed(rows: list[StatsRow], since: float, group: tuple[str, ...]) -> list[StatsRow]:
    """`rows` of hours from `since` (rounded down to its hour) summed per `group`."""
    start = since // 3600 * 3600
    out: dict[tuple[Any, ...], StatsRow] = {}
    for row in rows:
        if float(row.key["hour"]) < start:
            continue
        key = tuple(row.key[g] for g in group)
        seen = out.get(key)
        if seen is None:
            out[key] = replace(row, key={g: row.key[g] for g in group})
            continue
        out[key] = replace(
            seen,
            accepted=seen.accepted + row.accepted,
            sent=seen.sent + row.sent,
            delivered=seen.delivered + row.delivered,
            failed=seen.failed + row.failed,
            expired=seen.expired + row.expired,
            rejected=seen.rejected + row.rejected,
            cancelled=seen.cancelled + row.cancelled,
            latency=tuple(a + b for a, b in zip(seen.latency, row.latency, strict=True)),
        )
    return [out[k] for k in sorted(out)]


class DeliveryStats:
    """The last day's statistics per hour, route and target, cached for `ttl` seconds."""

    def __init__(
        self, store: Store, *, ttl: float = 5.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.clock = clock
        self.rows: list[StatsRow] | None = None  # None: never read (or the store failed)
        self._read_at = -float("inf")
        self._lock = asyncio.Lock()

    async def read(self) -> list[StatsRow] | None:
        """The rows, read again when older than `ttl`; None when the store cannot say."""
        async with self._lock:  # viewers arriving together share one query
            now = self.clock()
            if now - self._read_at < self.ttl:
                return self.rows
            self._read_at = now
            try:
                self.rows = await self.store.stats(
                    now - DAY, now + 3600, ("hour", "route", "target")
                )
            except Exception as exc:  # the page and the scrape go on without them
                log.warning("delivery statistics not read", error=str(exc))
                self.rows = None
            return self.rows

    def per_route(self, since: float) -> list[dict[str, Any]]:
        """Per (route, target) from `since`, as the status page's delivery card shows them."""
        return [
            {
                **row.key,
                "sent": row.sent,
                "delivered": row.delivered,
                "failed": row.failed,
                "expired": row.expired,
                "pending": row.pending,
                "rate": row.delivery_rate,
                "latency_p50": row.latency_p50,
                "latency_p95": row.latency_p95,
            }
            for row in summed(self.rows or [], since, ("route", "target"))
        ]
