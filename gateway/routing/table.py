"""The route table: compiled once from config, looked up per message by a pure function.

Theory of operation
-------------------
Routes name destination prefixes (normalised E.164 digits, see `numbers.normalize`), optional
narrowing (the submitting account, a source address prefix, a service_type) and targets with a
strategy. `RouteTable` compiles them into one dict from prefix to the routes that own it, most
specific first (narrowed before catch-all, then in config order). A lookup tries the number's
prefixes longest first, so it costs at most one dict probe per digit whatever the table's size;
"" is the default route's prefix.

`select_route` is a pure function of the table, the message's routing facts, which targets are
usable now and a `pick` number the caller supplies (a per-message counter), so the same inputs
give the same decision and tests need no state:

* failover: the usable targets in the order written;
* weighted: a weighted round-robin over the usable targets driven by `pick` (consecutive picks
  give each target its share), the others after it as fallbacks;
* least_cost: the usable targets by price, then in the order written;
* quality: the usable targets in the order written here; the dispatcher reorders them by
  their recent delivery (`quality.QualityBoard.order`), which needs outcomes and the clock.

Nothing here knows drivers, sockets or the clock (compare Kannel's ``smscconn_usable``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum

from gateway.routing.quality import QualitySettings

__all__ = [
    "Route",
    "RouteDecision",
    "RouteTable",
    "Strategy",
    "Target",
    "order_targets",
    "select_route",
]


class Strategy(Enum):
    FAILOVER = "failover"
    WEIGHTED = "weighted"
    LEAST_COST = "least_cost"
    QUALITY = "quality"


@dataclass(frozen=True, slots=True)
class Target:
    """A place a route sends to: a driver name (``"carrier-a"``, ``"bank:office"``)."""

    name: str
    weight: int = 1
    price: float | None = None

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"target {self.name}: weight must not be negative")


@dataclass(frozen=True, slots=True)
class Route:
    """One routing rule.

    Attributes:
        name: for logs and statistics.
        prefixes: destination prefixes in normalised E.164 digits; "" matches every number.
        targets: where to send, in order.
        strategy: how to choose among the targets.
        accounts: only messages from these accounts (system_id); empty: any account.
        source_prefixes: only messages whose source_addr starts so; empty: any source.
        service_types: only messages with one of these service_type values; empty: any.
        quality: the `quality` strategy's window and thresholds (unused by the others).
    """

    name: str
    prefixes: tuple[str, ...]
    targets: tuple[Target, ...]
    strategy: Strategy = Strategy.FAILOVER
    accounts: frozenset[str] = field(default_factory=frozenset)
    source_prefixes: tuple[str, ...] = ()
    service_types: frozenset[str] = field(default_factory=frozenset)
    quality: QualitySettings = field(default_factory=QualitySettings)

    def __post_init__(self) -> None:
        if not self.targets:
            raise ValueError(f"route {self.name}: no targets")
        for prefix in self.prefixes:
            if prefix and not (prefix.isascii() and prefix.isdigit()):
                raise ValueError(f"route {self.name}: prefix {prefix!r} must be digits")
        if self.strategy is Strategy.LEAST_COST and any(t.price is None for t in self.targets):
            raise ValueError(f"route {self.name}: least_cost needs a price on every target")

    @property
    def narrowed(self) -> bool:
        return bool(self.accounts or self.source_prefixes or self.service_types)

    def admits(self, account: str, source_addr: str, service_type: str) -> bool:
        """Whether this route's narrowing lets the message through."""
        if self.accounts and account not in self.accounts:
            return False
        if self.service_types and service_type not in self.service_types:
            return False
        return not self.source_prefixes or source_addr.startswith(self.source_prefixes)


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """The route that matched and its usable targets, the one to try first at the front."""

    route: Route
    targets: tuple[Target, ...]


class RouteTable:
    """Routes compiled for lookup. Build a new table on reload; a table never changes."""

    __slots__ = ("_by_prefix", "_longest", "routes")

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(routes)
        by_prefix: dict[str, list[tuple[int, int, Route]]] = {}
        for order, route in enumerate(self.routes):
            for prefix in route.prefixes or ("",):
                by_prefix.setdefault(prefix, []).append((0 if route.narrowed else 1, order, route))
        self._by_prefix = {
            prefix: tuple(route for _, _, route in sorted(entries))
            for prefix, entries in by_prefix.items()
        }
        self._longest = max((len(p) for p in self._by_prefix), default=0)

    def lookup(
        self, destination: str, account: str = "", source_addr: str = "", service_type: str = ""
    ) -> Route | None:
        """The route for a normalised destination: longest prefix first, and at one prefix the
        narrowed routes before the catch-all ones; None when nothing matches."""
        by_prefix = self._by_prefix
        for length in range(min(len(destination), self._longest), -1, -1):
            routes = by_prefix.get(destination[:length])
            if routes:
                for route in routes:
                    if route.admits(account, source_addr, service_type):
                        return route
        return None


def select_route(
    table: RouteTable,
    destination: str,
    *,
    account: str = "",
    source_addr: str = "",
    service_type: str = "",
    usable: Callable[[str], bool] = lambda _name: True,
    pick: int = 0,
) -> RouteDecision | None:
    """Where a message goes.

    Args:
        destination: normalised E.164 digits (`numbers.normalize`).
        usable: whether a target is usable now (connected, healthy, under its limits).
        pick: a per-message number (a counter) that drives the weighted strategy.

    Returns:
        None when no route matches (answer ESME_RINVDSTADR); otherwise the route and its usable
        targets in the order to try, possibly empty (hold the message or answer throttled).
    """
    route = table.lookup(destination, account, source_addr, service_type)
    if route is None:
        return None
    return RouteDecision(route, order_targets(route, usable, pick))


def order_targets(
    route: Route, usable: Callable[[str], bool] = lambda _name: True, pick: int = 0
) -> tuple[Target, ...]:
    """A route's usable targets in the order its strategy tries them (see `select_route`)."""
    targets = tuple(t for t in route.targets if usable(t.name))
    if len(targets) > 1:
        if route.strategy is Strategy.LEAST_COST:
            targets = tuple(sorted(targets, key=lambda t: t.price or 0.0))
        elif route.strategy is Strategy.WEIGHTED:
            targets = _weighted_order(targets, pick)
    return targets


def _weighted_order(targets: tuple[Target, ...], pick: int) -> tuple[Target, ...]:
    """The target whose share of the weight wheel `pick` lands on, then the rest in order.
    Consecutive picks walk the wheel, so over `sum(weights)` picks each target leads
    `weight` times."""
    total = sum(t.weight for t in targets)
    if total == 0:
        return targets
    slot = pick % total
    for index, target in enumerate(targets):
        if slot < target.weight:
            return (target, *targets[:index], *targets[index + 1 :])
        slot -= target.weight
    return targets  # pragma: no cover - the slots cover the wheel
