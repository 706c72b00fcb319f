"""Concatenation reference numbers, rotated per destination.

A handset reassembles parts by (sender, reference). Two long messages in flight to one handset
with the same reference get mixed into one, so references rotate per destination, and a reference
still in flight to that destination is skipped. New destinations start at a spread-out point of
a shared counter, so a restart (counters lost) is unlikely to reuse a reference still in flight.

Memory stays bounded: at most `max_destinations` idle destinations are remembered (least
recently used forgotten first). A caller that holds references (`allocate`) must `release`
each one, or its destinations can never be forgotten; a caller that cannot tell when its
message is done - the inbound path, whose re-cut parts go to an application's queue - takes
`rotate` instead, which holds nothing.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["ReferenceAllocator", "ReferencesExhausted"]


class ReferencesExhausted(RuntimeError):
    """Every reference to one destination is in flight."""


class _Dest:
    __slots__ = ("held", "next")

    def __init__(self, start: int) -> None:
        self.next = start
        # None until a reference is held: a destination only rotated through (most of them)
        # costs no empty set (200 octets) each.
        self.held: set[int] | None = None


class ReferenceAllocator:
    """Hands out concatenation references per destination.

    Args:
        bits: 8 (UDH IEI 0x00) or 16 (UDH IEI 0x08, SAR).
        max_destinations: destinations remembered; the least recently used are forgotten
            (unless they have references in flight).
        seed: where the shared counter starts, e.g. random or the node number, so nodes and
            restarts do not start in step.
    """

    def __init__(self, bits: int = 8, *, max_destinations: int = 100_000, seed: int = 0) -> None:
        if bits not in (8, 16):
            raise ValueError("bits must be 8 or 16")
        self._modulus = 1 << bits
        self._max = max_destinations
        self._dests: dict[str, _Dest] = {}
        # The destinations with nothing in flight, least recently used first: the only ones
        # eviction may drop, so it never steps over busy ones.
        self._idle: OrderedDict[str, None] = OrderedDict()
        self._spread = seed % self._modulus

    def allocate(self, destination: str) -> int:
        """The next free reference for `destination`, marked in flight until `release`.

        Raises:
            ReferencesExhausted: all references to this destination are in flight.
        """
        dest = self._dest(destination)
        held = dest.held
        if held is None:
            held = dest.held = set()
        elif len(held) >= self._modulus:
            raise ReferencesExhausted(f"all {self._modulus} references to one destination in use")
        ref = dest.next
        while ref in held:
            ref = (ref + 1) % self._modulus
        dest.next = (ref + 1) % self._modulus
        held.add(ref)
        self._idle.pop(destination, None)
        return ref

    def rotate(self, destination: str) -> int:
        """The next reference for `destination`, not held: the rotation moves on, and the
        references `allocate` holds are skipped, but nothing stays in flight. Two messages
        to one destination get the same reference only `2**bits` rotations apart. Never raises
        `ReferencesExhausted`: with every reference held it returns the next one anyway."""
        dest = self._dest(destination)
        ref = dest.next
        held = dest.held
        if held and len(held) < self._modulus:
            while ref in held:
                ref = (ref + 1) % self._modulus
        dest.next = (ref + 1) % self._modulus
        return ref

    def __len__(self) -> int:
        """Destinations remembered now."""
        return len(self._dests)

    def release(self, destination: str, ref: int) -> None:
        """The message with `ref` to `destination` is done (sent, failed or expired)."""
        dest = self._dests.get(destination)
        if dest is not None and dest.held:
            dest.held.discard(ref)
            if not dest.held:
                dest.held = None
                self._idle[destination] = None  # evictable again, as the most recent

    def in_flight(self, destination: str) -> frozenset[int]:
        dest = self._dests.get(destination)
        return frozenset(dest.held or ()) if dest else frozenset()

    def _dest(self, destination: str) -> _Dest:
        """`destination`'s rotation, remembered (and marked used) from now."""
        dest = self._dests.get(destination)
        if dest is None:
            self._evict()  # before adding, so the new destination is never the one dropped
            # Golden-ratio stride: consecutive new destinations start far apart.
            self._spread = (self._spread + 0x9E37) % self._modulus
            dest = _Dest(self._spread)
            self._dests[destination] = dest
            self._idle[destination] = None
        elif destination in self._idle:
            self._idle.move_to_end(destination)
        return dest

    def _evict(self) -> None:
        """Make room for one more destination by forgetting the least recently used idle
        ones. Destinations with references in flight are kept even past the limit."""
        while len(self._dests) >= self._max and self._idle:
            del self._dests[self._idle.popitem(last=False)[0]]
