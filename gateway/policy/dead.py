"""Dead numbers (空号): which final receipts say a number does not exist (pure).

A receipt whose error code is listed for its upstream (or for every upstream, under "*")
counts one failure for its destination; `after` failures make the number dead for `period`
seconds (`Store.record_dead_failures`), and a delivered receipt forgets it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["ANY_UPSTREAM", "DeadRule"]

ANY_UPSTREAM = "*"


@dataclass(frozen=True)
class DeadRule:
    errors: Mapping[str, frozenset[int]] = field(default_factory=dict)
    after: int = 3
    period: float = 30 * 86_400.0

    def counts(self, upstream: str, error: int) -> bool:
        """Whether a final receipt from `upstream` with `error` says the number is absent."""
        return error in self.errors.get(upstream, ()) or error in self.errors.get(ANY_UPSTREAM, ())
