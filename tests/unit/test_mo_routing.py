from __future__ import annotations

import pytest

from gateway.routing.mo import MoRoute, MoRouter

ROUTER = MoRouter(
    [
        MoRoute("catch-all"),
        MoRoute("shop", ("4915100",)),
        MoRoute("optout", ("4915100",), keyword="STOP"),
        MoRoute("bank", ("49151009",)),
    ]
)


@pytest.mark.parametrize(
    ("destination", "text", "account"),
    [
        ("4915100123", "hello", "shop"),
        ("4915100123", "stop please", "optout"),  # keyword, any case
        ("4915100123", "STOPPED", "shop"),  # a whole first word only
        ("4915100912", "stop", "bank"),  # longer prefix first
        ("4412345", "hi", "catch-all"),
        ("4915100123", "", "shop"),
    ],
)
def test_mo_routes(destination: str, text: str, account: str) -> None:
    assert ROUTER.account_for(destination, text) == account


def test_no_match() -> None:
    assert MoRouter([MoRoute("a", ("49",))]).account_for("44", "x") is None
