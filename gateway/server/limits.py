"""Throughput limits: a token bucket per account, the clock passed in."""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """`rate` tokens a second, up to `burst` saved up; `take` spends one if there is one.

    Over its rate an application gets ESME_RTHROTTLED (SMPP v3.4 5.1.3) and is expected to
    back off and resend; nothing is queued on its behalf.
    """

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float | None = None, *, now: float = 0.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._tokens = self.burst
        self._last = now

    def take(self, now: float, count: int = 1) -> bool:
        """Spend `count` tokens if there are as many (all or none)."""
        elapsed = max(0.0, now - self._last)  # a clock that steps back refills nothing
        self._last = max(self._last, now)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        if self._tokens >= count:
            self._tokens -= count
            return True
        return False

    def wait(self, count: int = 1) -> float:
        """Seconds until `count` tokens are there (as of the last `take`); inf if never."""
        if count > self.burst:
            return float("inf")
        return max(0.0, (count - self._tokens) / self.rate)
