from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.routing import (
    NumberPlan,
    Route,
    RouteTable,
    Strategy,
    Target,
    normalize,
    select_route,
)

DE = NumberPlan(country_code="49")
US = NumberPlan(country_code="1", national_prefix="1", international_prefix="011")


@pytest.mark.parametrize(
    ("raw", "plan", "expected"),
    [
        ("+49 151 1234-5678", DE, "4915112345678"),
        ("0049 151 12345678", DE, "4915112345678"),
        ("0151/12345678", DE, "4915112345678"),
        ("(0151) 123.456.78", DE, "4915112345678"),
        ("4915112345678", DE, "4915112345678"),
        ("+4915112345678", NumberPlan(), "4915112345678"),
        ("015112345678", NumberPlan(), "015112345678"),  # no country: digits as they are
        ("011 44 20 7946 0000", US, "442079460000"),
        ("1 212 555 0100", US, "12125550100"),
        ("22333", DE, "22333"),  # a short code
        ("", DE, None),
        ("+", DE, None),
        ("00", DE, None),
        ("Shop", DE, None),
        ("+49 151 ١٢٣", DE, None),  # non-ASCII digits are refused, not read
        ("1" * 21, DE, None),
    ],
)
def test_normalize(raw: str, plan: NumberPlan, expected: str | None) -> None:
    assert normalize(raw, plan) == expected


def test_number_plan_refuses_non_digits() -> None:
    with pytest.raises(ValueError, match="country_code"):
        NumberPlan(country_code="+49")


A, B, C = Target("carrier-a"), Target("carrier-b"), Target("bank:office")
TABLE = RouteTable(
    [
        Route("default", ("",), (C,)),
        Route("germany", ("49",), (A, B)),
        Route("de-mobile", ("4915", "4916", "4917"), (B, A)),
        Route("otp-account", ("49",), (C,), accounts=frozenset({"otp"})),
        Route("shop-sender", ("4915",), (A,), source_prefixes=("Shop",)),
        Route("marketing", ("",), (B,), service_types=frozenset({"MKT"})),
    ]
)


@pytest.mark.parametrize(
    ("destination", "kwargs", "route"),
    [
        ("4915112345678", {}, "de-mobile"),
        ("4930123456", {}, "germany"),
        ("4412345", {}, "default"),
        ("", {}, "default"),
        ("4930123456", {"account": "otp"}, "otp-account"),
        ("4915112345678", {"account": "otp"}, "de-mobile"),  # longer prefix wins first
        ("4915112345678", {"source_addr": "ShopDE"}, "shop-sender"),
        ("4412345", {"service_type": "MKT"}, "marketing"),
    ],
)
def test_longest_prefix_then_narrowing(
    destination: str, kwargs: dict[str, str], route: str
) -> None:
    found = TABLE.lookup(destination, **kwargs)
    assert found is not None
    assert found.name == route


def test_no_route_without_default() -> None:
    table = RouteTable([Route("de", ("49",), (A,))])
    assert select_route(table, "4412345") is None


def test_failover_skips_unusable_targets() -> None:
    decision = select_route(TABLE, "4930123456", usable=lambda name: name != "carrier-a")
    assert decision is not None
    assert decision.route.name == "germany"
    assert decision.targets == (B,)
    nothing = select_route(TABLE, "4930123456", usable=lambda _name: False)
    assert nothing is not None
    assert nothing.targets == ()


def test_least_cost_orders_by_price() -> None:
    cheap, dear = Target("cheap", price=0.010), Target("dear", price=0.045)
    table = RouteTable([Route("lcr", ("",), (dear, cheap), strategy=Strategy.LEAST_COST)])
    decision = select_route(table, "4412345")
    assert decision is not None
    assert decision.targets == (cheap, dear)
    with pytest.raises(ValueError, match="price"):
        Route("bad", ("",), (A,), strategy=Strategy.LEAST_COST)


def test_weighted_round_robin_gives_each_target_its_share() -> None:
    x, y, z = Target("x", weight=5), Target("y", weight=3), Target("z", weight=2)
    table = RouteTable([Route("w", ("",), (x, y, z), strategy=Strategy.WEIGHTED)])
    firsts = Counter()
    for pick in range(1000):
        decision = select_route(table, "1", pick=pick)
        assert decision is not None
        assert sorted(t.name for t in decision.targets) == ["x", "y", "z"]  # rest as fallback
        firsts[decision.targets[0].name] += 1
    assert firsts == {"x": 500, "y": 300, "z": 200}


def test_route_validation() -> None:
    with pytest.raises(ValueError, match="no targets"):
        Route("empty", ("49",), ())
    with pytest.raises(ValueError, match="digits"):
        Route("bad", ("+49",), (A,))


prefixes = st.text(alphabet="0123456789", max_size=5)


@given(
    st.lists(st.tuples(prefixes, st.integers(0, 3)), min_size=1, max_size=30),
    st.text(alphabet="0123456789", max_size=15),
)
def test_lookup_is_the_longest_matching_prefix(entries: list[tuple[str, int]], number: str) -> None:
    routes = [Route(f"r{i}", (p,), (Target(f"t{t}"),)) for i, (p, t) in enumerate(entries)]
    table = RouteTable(routes)
    matching = [r for r in routes if number.startswith(r.prefixes[0])]
    found = table.lookup(number)
    if not matching:
        assert found is None
    else:
        longest = max(len(r.prefixes[0]) for r in matching)
        first = next(r for r in matching if len(r.prefixes[0]) == longest)  # config order
        assert found is first
