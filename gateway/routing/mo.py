"""Inbound (MO) messages to accounts: by the number they were sent to, and optionally by their
first word (``STOP``, ``HELP``, a campaign keyword). Pure, compiled once like the route table.

A rule with a keyword beats one without at the same number prefix; a longer prefix beats a
shorter one; then config order. Keywords compare case-insensitively.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["MoRoute", "MoRouter"]


@dataclass(frozen=True, slots=True)
class MoRoute:
    account: str
    prefixes: tuple[str, ...] = ("",)
    keyword: str | None = None


class MoRouter:
    def __init__(self, routes: Iterable[MoRoute]) -> None:
        self.routes = tuple(routes)
        ranked = []
        for order, route in enumerate(self.routes):
            for prefix in route.prefixes:
                ranked.append((-len(prefix), route.keyword is None, order, prefix, route))
        self._ranked = [
            (prefix, route) for *_, prefix, route in sorted(ranked, key=lambda r: r[:3])
        ]

    def account_for(self, destination: str, text: str) -> str | None:
        """The account that gets an MO sent to `destination` with `text`, or None."""
        words = text.split(None, 1)
        first = words[0].casefold() if words else ""
        for prefix, route in self._ranked:
            if not destination.startswith(prefix):
                continue
            if route.keyword is None or route.keyword.casefold() == first:
                return route.account
        return None
