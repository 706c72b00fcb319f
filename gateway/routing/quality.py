"""The `quality` route strategy: targets ordered by their recent delivery (pure; time passed in).

Each final outcome of a message a target sent (delivered, or failed/expired/undeliverable) is
recorded with its receipt latency into per-minute buckets; a target's rate over the rolling
`window` is delivered / final, counted once it has `min_sample` outcomes. Targets are tried
best first: higher rate, then lower median latency; one without enough outcomes yet counts as
good (a new carrier gets traffic to be measured). A target whose rate falls below
`demote_below` is demoted - tried after every healthy one - and promoted back only when its
rate reaches `promote_above` again (hysteresis: no flapping at the threshold). A demoted
target still leads a `probe_share` of the picks, so its recovery can be seen at all.
Demotions and promotions are returned by `record` for the gateway to log and count.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # table.py holds a route's QualitySettings: no import cycle at run time
    from gateway.routing.table import Target

__all__ = ["QualityBoard", "QualitySettings", "Transition"]

_BUCKET = 60.0  # seconds per bucket


@dataclass(frozen=True, slots=True)
class QualitySettings:
    window: float = 3600.0
    min_sample: int = 50
    demote_below: float = 0.80
    promote_above: float = 0.90
    probe_share: float = 0.05

    def __post_init__(self) -> None:
        if not 0 <= self.demote_below <= self.promote_above <= 1:
            raise ValueError("need 0 <= demote_below <= promote_above <= 1")
        if not 0 <= self.probe_share < 1:
            raise ValueError("probe_share must be in [0, 1)")


@dataclass(frozen=True, slots=True)
class Transition:
    target: str
    demoted: bool  # False: promoted back
    rate: float


@dataclass(slots=True)
class _Bucket:
    minute: int
    delivered: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)


@dataclass(slots=True)
class _Track:
    buckets: deque[_Bucket] = field(default_factory=deque)
    demoted: bool = False


class QualityBoard:
    """Rolling delivery quality per target, and the order the `quality` strategy tries them."""

    def __init__(self, settings: QualitySettings = QualitySettings()) -> None:
        self.settings = settings
        self._tracks: dict[str, _Track] = {}

    def record(
        self, target: str, now: float, *, delivered: bool, latency: float | None = None
    ) -> Transition | None:
        """One final outcome of a message `target` sent; the demotion or promotion it caused."""
        track = self._tracks.setdefault(target, _Track())
        minute = int(now // _BUCKET)
        if not track.buckets or track.buckets[-1].minute != minute:
            track.buckets.append(_Bucket(minute))
        bucket = track.buckets[-1]
        if delivered:
            bucket.delivered += 1
        else:
            bucket.failed += 1
        if latency is not None and len(bucket.latencies) < 1000:  # a sample is enough
            bucket.latencies.append(latency)
        return self._update(target, track, now)

    def _expire(self, track: _Track, now: float) -> None:
        oldest = int((now - self.settings.window) // _BUCKET)
        while track.buckets and track.buckets[0].minute <= oldest:
            track.buckets.popleft()

    def _update(self, target: str, track: _Track, now: float) -> Transition | None:
        rate = self.rate(target, now)
        if rate is None:
            return None
        s = self.settings
        if not track.demoted and rate < s.demote_below:
            track.demoted = True
            return Transition(target, demoted=True, rate=rate)
        if track.demoted and rate >= s.promote_above:
            track.demoted = False
            return Transition(target, demoted=False, rate=rate)
        return None

    def rate(self, target: str, now: float) -> float | None:
        """Delivered / final over the window, or None below `min_sample` outcomes."""
        track = self._tracks.get(target)
        if track is None:
            return None
        self._expire(track, now)
        delivered = sum(b.delivered for b in track.buckets)
        total = delivered + sum(b.failed for b in track.buckets)
        if total < self.settings.min_sample:
            return None
        return delivered / total

    def latency(self, target: str, now: float) -> float | None:
        """Median receipt latency over the window (None without any)."""
        track = self._tracks.get(target)
        if track is None:
            return None
        self._expire(track, now)
        values = sorted(v for b in track.buckets for v in b.latencies)
        return values[len(values) // 2] if values else None

    def demoted(self, target: str) -> bool:
        track = self._tracks.get(target)
        return track is not None and track.demoted

    def order(self, targets: Sequence[Target], now: float, pick: int) -> tuple[Target, ...]:
        """`targets` best first; demoted ones last, but one of them leads a `probe_share` of
        the picks (`pick`: a per-message counter)."""

        def key(t: Target) -> tuple[float, float]:
            rate = self.rate(t.name, now)
            latency = self.latency(t.name, now)
            return (-(1.0 if rate is None else rate), latency if latency is not None else 0.0)

        healthy = sorted((t for t in targets if not self.demoted(t.name)), key=key)
        demoted = sorted((t for t in targets if self.demoted(t.name)), key=key)
        share = self.settings.probe_share
        if demoted and healthy and share > 0:
            every = max(1, round(1 / share))
            if pick % every == 0:
                probe = demoted[(pick // every) % len(demoted)]
                return (probe, *healthy, *(t for t in demoted if t is not probe))
        return (*healthy, *demoted)
