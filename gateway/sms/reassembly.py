"""Reassembly of incoming concatenated messages.

Parts are keyed by (sender, recipient, reference width, reference, total), so one reference used
by two senders, or by one sender for two recipients, stays apart. Parts may come in any order; a
repeated part number is ignored (first copy wins: networks retransmit). Bodies are kept as bytes
and joined before decoding, so a surrogate or escape pair that a careless sender split across
parts still decodes.

The clock is passed in: `add` and `expire` take `now` (seconds, any monotonic origin), and
`next_deadline` says when the shell should call `expire` again. A message not complete within
`timeout` is released with what arrived, marked partial, rather than held forever.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["Reassembled", "Reassembler"]

M = TypeVar("M")


@dataclass(frozen=True, slots=True)
class Reassembled(Generic[M]):
    """A whole message, or what arrived of it before the timeout.

    Attributes:
        bodies: each part's body in part order; None where a part never arrived.
        meta: what the caller passed with the first part that arrived (e.g. coding, PDU).
    """

    sender: str
    recipient: str
    ref: int
    total: int
    bodies: tuple[bytes | None, ...]
    meta: M
    first_seen: float

    @property
    def partial(self) -> bool:
        return any(b is None for b in self.bodies)

    @property
    def missing(self) -> tuple[int, ...]:
        """1-based numbers of the parts that never arrived."""
        return tuple(i + 1 for i, b in enumerate(self.bodies) if b is None)

    def body(self) -> bytes:
        """The parts that arrived, joined in order."""
        return b"".join(b for b in self.bodies if b is not None)


@dataclass(slots=True)
class _Pending(Generic[M]):
    bodies: list[bytes | None]
    meta: M
    first_seen: float
    count: int = 0
    deadline: float = field(default=0.0)


_Key = tuple[str, str, int, int, int]


class Reassembler(Generic[M]):
    """Collects parts until a message is whole or its time is up.

    Args:
        timeout: seconds from a message's first part to releasing it partial.
        max_pending: messages held at once; past it the oldest is released partial, so a
            flood of first parts cannot grow memory without bound.
    """

    def __init__(self, timeout: float = 300.0, *, max_pending: int = 100_000) -> None:
        self.timeout = timeout
        self.max_pending = max_pending
        self._pending: dict[_Key, _Pending[M]] = {}
        self._deadlines: list[tuple[float, _Key]] = []

    def __len__(self) -> int:
        return len(self._pending)

    def add(
        self,
        *,
        sender: str,
        recipient: str,
        ref: int,
        total: int,
        seq: int,
        body: bytes,
        meta: M,
        now: float,
        ref_bits: int = 8,
    ) -> list[Reassembled[M]]:
        """Add one part.

        Returns:
            Messages finished by this call: the one this part completed, and any the
            `max_pending` cap pushed out partial. Usually empty or one.

        Raises:
            ValueError: `seq` is not within 1..`total`.
        """
        if not 0 < seq <= total:
            raise ValueError(f"part {seq} of {total} is out of range")
        done: list[Reassembled[M]] = []
        if total == 1:
            return [Reassembled(sender, recipient, ref, 1, (body,), meta, now)]
        key = (sender, recipient, ref_bits, ref, total)
        pending = self._pending.get(key)
        if pending is None:
            if len(self._pending) >= self.max_pending:
                done.extend(self._release_oldest())
            pending = _Pending([None] * total, meta, now, 0, now + self.timeout)
            self._pending[key] = pending
            heapq.heappush(self._deadlines, (pending.deadline, key))
        if pending.bodies[seq - 1] is None:
            pending.bodies[seq - 1] = body
            pending.count += 1
        if pending.count == total:
            del self._pending[key]
            done.append(self._finish(key, pending))
        return done

    def expire(self, now: float) -> list[Reassembled[M]]:
        """Release, partial, every message whose deadline is at or before `now`."""
        out = []
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, key = heapq.heappop(self._deadlines)
            pending = self._pending.get(key)
            if pending is not None and pending.deadline == deadline:
                del self._pending[key]
                out.append(self._finish(key, pending))
        return out

    def next_deadline(self) -> float | None:
        """When `expire` next has something to release, or None when nothing is pending."""
        while self._deadlines:
            deadline, key = self._deadlines[0]
            pending = self._pending.get(key)
            if pending is not None and pending.deadline == deadline:
                return deadline
            heapq.heappop(self._deadlines)  # completed or replaced: drop the stale entry
        return None

    def _release_oldest(self) -> list[Reassembled[M]]:
        deadline = self.next_deadline()
        return self.expire(deadline) if deadline is not None else []

    @staticmethod
    def _finish(key: _Key, pending: _Pending[M]) -> Reassembled[M]:
        sender, recipient, _bits, ref, total = key
        return Reassembled(
            sender, recipient, ref, total, tuple(pending.bodies), pending.meta, pending.first_seen
        )
