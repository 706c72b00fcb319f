"""The dispatcher's side of the `quality` strategy: one board per quality route, fed with final
outcomes, ordering each message's targets, logging and counting demotions and promotions, and
kept across a reload that keeps the route. No loop, no store: the seams are `_order`, `_learn`
and `swap_routes`, with the clock passed in."""

from __future__ import annotations

from typing import Any, cast

from structlog.testing import capture_logs

from gateway.dispatch import Dispatcher
from gateway.routing import NumberPlan, QualitySettings, Route, RouteTable, Strategy
from gateway.routing import Target as T
from gateway.routing.mo import MoRouter
from gateway.store.base import Store
from gateway.telemetry.metrics import Metrics

SETTINGS = QualitySettings(window=600.0, min_sample=20, probe_share=0.1)
QUALITY = Route("q", ("",), (T("bad"), T("good")), Strategy.QUALITY, quality=SETTINGS)
FAILOVER = Route("f", ("49",), (T("bad"), T("good")))


class _Driver:
    def __init__(self, name: str) -> None:
        self.name = name

    def usable(self) -> bool:
        return True


class _Clock:
    now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _dispatcher(clock: _Clock) -> Dispatcher:
    drivers: dict[str, Any] = {n: _Driver(n) for n in ("bad", "good")}
    d = Dispatcher(cast(Store, None), RouteTable([QUALITY, FAILOVER]), drivers, clock=clock)
    d.metrics = Metrics()
    return d


def _firsts(d: Dispatcher, route: Route, n: int) -> list[str]:
    return [d._order(route)[0].name for _ in range(n)]


def _transitions(d: Dispatcher) -> dict[tuple[str, str, str], float]:
    assert d.metrics is not None
    return {
        (s.labels["route"], s.labels["target"], s.labels["change"]): s.value
        for family in d.metrics.route_transitions.collect()
        for s in family.samples
        if s.name.endswith("_total")
    }


def test_unmeasured_targets_go_in_the_order_written() -> None:
    d = _dispatcher(_Clock())
    assert set(_firsts(d, QUALITY, 30)) == {"bad"}


def test_demoted_target_gets_the_probe_share_then_is_promoted_back() -> None:
    clock = _Clock()
    d = _dispatcher(clock)
    with capture_logs() as logs:
        for n in range(20):
            d._learn("q", "bad", clock.now, n % 5 == 0, 0.5)  # 20% delivered
            d._learn("q", "good", clock.now, True, 0.5)
    demoted = [e for e in logs if e["event"] == "route target demoted"]
    assert demoted == [
        {"event": "route target demoted", "route": "q", "target": "bad", "rate": 0.2,
         "log_level": "warning"}
    ]  # fmt: skip
    assert _transitions(d) == {("q", "bad", "demoted"): 1.0}
    firsts = _firsts(d, QUALITY, 100)
    assert firsts.count("bad") == 10  # probe_share 0.1, exactly: picks are counted per route
    assert {d._order(QUALITY)[-1].name for _ in range(9)} == {"bad"}  # a fallback still

    clock.now += 601  # the failures leave the window; a recovered target is seen by probes
    with capture_logs() as logs:
        for _ in range(20):
            d._learn("q", "bad", clock.now, True, 0.4)
            d._learn("q", "good", clock.now, True, 0.5)
    assert [(e["event"], e["log_level"], e["rate"]) for e in logs] == [
        ("route target promoted", "info", 1.0)
    ]
    assert _transitions(d)[("q", "bad", "promoted")] == 1.0
    assert set(_firsts(d, QUALITY, 20)) == {"bad"}  # equal rate, lower latency


def test_only_quality_routes_learn() -> None:
    clock = _Clock()
    d = _dispatcher(clock)
    for _ in range(30):
        d._learn("f", "bad", clock.now, False, None)
        d._learn("gone", "bad", clock.now, False, None)
        d._learn("q", "", clock.now, False, None)  # ended before any target took it
    assert set(d._boards) <= {"q"}
    assert _transitions(d) == {}
    assert set(_firsts(d, FAILOVER, 5)) == {"bad"}


def test_reload_keeping_the_route_keeps_its_board() -> None:
    clock = _Clock()
    d = _dispatcher(clock)
    for _ in range(20):
        d._learn("q", "bad", clock.now, False, None)
    board = d._boards["q"]
    assert board.demoted("bad")
    wider = QualitySettings(window=3600.0, min_sample=20, probe_share=0.5)
    kept = Route("q", ("",), (T("bad"), T("good")), Strategy.QUALITY, quality=wider)
    d.swap_routes(RouteTable([kept]), MoRouter(()), NumberPlan())
    assert d._boards["q"] is board and board.demoted("bad")
    assert board.settings == wider
    assert _firsts(d, kept, 10).count("bad") == 5

    plain = Route("q", ("",), (T("bad"), T("good")))
    d.swap_routes(RouteTable([plain]), MoRouter(()), NumberPlan())
    assert "q" not in d._boards
    assert set(_firsts(d, plain, 5)) == {"bad"}
