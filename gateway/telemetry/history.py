"""What the status page draws and rates from the metrics counters, kept small and pure.

`History` is a ring of per-interval throughput (accepted / sent / delivered), sampled from
the counters' running totals: 90 points of 10 s are the last 15 minutes. `Rates` turns any
running total (a bind's submits, a target's sends) into messages per second between two
samples at least `min_span` apart, so however many pages poll, a rate spans a real interval.
`delivery_rates` is delivered / (delivered + failed + expired) per route and target.
Nothing here reads a clock: callers pass `now`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["History", "Rates", "Totals", "delivery_rates"]

POINTS = 90
INTERVAL = 10.0


@dataclass(frozen=True, slots=True)
class Totals:
    """Running totals since start (counters never go down)."""

    accepted: float = 0.0
    sent: float = 0.0
    delivered: float = 0.0


class History:
    """The last `points` intervals of throughput, as differences of sampled `Totals`."""

    def __init__(self, points: int = POINTS, interval: float = INTERVAL) -> None:
        self.interval = interval
        self.points: deque[tuple[float, Totals]] = deque(maxlen=points)
        self._last: Totals | None = None

    def record(self, now: float, totals: Totals) -> None:
        """One sample: the first only sets the baseline; each later one adds a point."""
        last, self._last = self._last, totals
        if last is None:
            return
        # max(0, ...): a counter reset (metrics rebuilt) must not draw a negative point
        self.points.append(
            (
                now,
                Totals(
                    max(0.0, totals.accepted - last.accepted),
                    max(0.0, totals.sent - last.sent),
                    max(0.0, totals.delivered - last.delivered),
                ),
            )
        )

    def series(self) -> dict[str, Any]:
        """For the page: the interval and one row [at, accepted, sent, delivered] per point."""
        return {
            "interval": self.interval,
            "points": [[at, t.accepted, t.sent, t.delivered] for at, t in self.points],
        }


class Rates:
    """Messages per second of running totals, each keyed (a bind, a target)."""

    def __init__(self, min_span: float = 1.0) -> None:
        self.min_span = min_span
        # key -> (base time, base total, the last rate measured)
        self._samples: dict[Hashable, tuple[float, float, float]] = {}

    def rate(self, key: Hashable, total: float, now: float) -> float:
        """The rate of `total` over the last span of at least `min_span` seconds ending by
        `now` (the previous one while the current span is shorter; 0.0 at first)."""
        sample = self._samples.get(key)
        if sample is None:
            self._samples[key] = (now, total, 0.0)
            return 0.0
        at, base, last = sample
        if now - at < self.min_span:
            return last
        rate = max(0.0, total - base) / (now - at)  # a reset counter counts as still
        self._samples[key] = (now, total, rate)
        return rate

    def forget(self, keep: set[Hashable]) -> None:
        """Drop keys not in `keep` (binds that left), so the table stays bounded."""
        for key in list(self._samples):
            if key not in keep:
                del self._samples[key]


def delivery_rates(outcomes: Mapping[tuple[str, str, str], float]) -> list[dict[str, Any]]:
    """Per (route, target), from counts keyed (outcome, route, target): sent, delivered,
    failed, expired and `rate` = delivered / ended (None while nothing has ended)."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for (outcome, route, target), count in outcomes.items():
        row = rows.setdefault(
            (route, target),
            {"route": route, "target": target, "sent": 0, "delivered": 0, "failed": 0,
             "expired": 0},
        )  # fmt: skip
        if outcome in row:
            row[outcome] += int(count)
    for row in rows.values():
        ended = row["delivered"] + row["failed"] + row["expired"]
        row["rate"] = row["delivered"] / ended if ended else None
    return [rows[key] for key in sorted(rows)]
