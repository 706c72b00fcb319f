"""Message ids unique across gateway nodes, without a coordinator.

An id is 64 bits: 41 bits of milliseconds since 2025-01-01 UTC (enough until 2094), 10 bits of
node id (0-1023, from the config), 13 bits of sequence within the millisecond (8,192 ids per
millisecond per node). Written as 16 lower-case hex digits, it fits SMPP's 65-octet message_id
with room to spare, sorts by time, and never collides between nodes whose ids differ.

The clock is passed in. If it steps backwards (NTP), ids keep counting from the last
millisecond used rather than reusing an old one; when a millisecond's sequence runs out, the
next millisecond is borrowed, so `next_id` never fails and never repeats.
"""

from __future__ import annotations

__all__ = ["EPOCH_MS", "MessageIdGenerator", "parse_id"]

EPOCH_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
_NODE_BITS = 10
_SEQ_BITS = 13
_SEQ_MASK = (1 << _SEQ_BITS) - 1


class MessageIdGenerator:
    """Hands out ids for one node.

    Args:
        node_id: 0..1023, unique per gateway node sharing a store.
    """

    __slots__ = ("_last_ms", "_node", "_seq")

    def __init__(self, node_id: int) -> None:
        if not 0 <= node_id < 1 << _NODE_BITS:
            raise ValueError(f"node_id must be 0..{(1 << _NODE_BITS) - 1}")
        self._node = node_id
        self._last_ms = -1
        self._seq = 0

    def next_id(self, now: float) -> str:
        """A new id; `now` is wall-clock seconds since the Unix epoch."""
        ms = int(now * 1000) - EPOCH_MS
        if ms < 0:
            raise ValueError("the clock is before 2025")
        if ms <= self._last_ms:
            ms = self._last_ms  # same millisecond, or the clock went back: keep counting
            self._seq += 1
            if self._seq > _SEQ_MASK:
                ms += 1  # sequence exhausted: borrow the next millisecond
                self._seq = 0
        else:
            self._seq = 0
        self._last_ms = ms
        value = (ms << (_NODE_BITS + _SEQ_BITS)) | (self._node << _SEQ_BITS) | self._seq
        return f"{value:016x}"


def parse_id(message_id: str) -> tuple[float, int, int] | None:
    """(Unix seconds, node, sequence) of an id this module made, or None for any other string."""
    if len(message_id) != 16:
        return None
    try:
        value = int(message_id, 16)
    except ValueError:
        return None
    ms = value >> (_NODE_BITS + _SEQ_BITS)
    node = (value >> _SEQ_BITS) & ((1 << _NODE_BITS) - 1)
    return (ms + EPOCH_MS) / 1000, node, value & _SEQ_MASK
