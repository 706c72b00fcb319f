"""`policy.dead_numbers`: error codes per upstream (or "*"), after, period; an unknown upstream
is refused at its line, and no codes means nothing is counted."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, load_config
from gateway.policy.dead import DeadRule

BASE = """
accounts: [{system_id: shop, password: secret}]
simulated_carriers: {sim: {}}
modem_banks: {usb: {emulate: 1}}
routes: [{name: all, targets: [sim]}]
store: {path: gw.sqlite3}
"""


def test_codes_per_upstream_and_for_all() -> None:
    text = BASE + (
        "policy:\n  dead_numbers:\n    errors: {sim: [1, 11], 'bank:usb': [500], '*': [99]}\n"
        "    after: 2\n    period: 7d\n"
    )
    rule = load_config("t.yaml", text=text).policy.dead_numbers.rule()
    assert rule == DeadRule(
        {"sim": frozenset({1, 11}), "bank:usb": frozenset({500}), "*": frozenset({99})},
        2,
        7 * 86_400.0,
    )
    assert rule.counts("sim", 11) and rule.counts("bank:usb", 99) and rule.counts("other", 99)
    assert not rule.counts("sim", 500) and not rule.counts("sim", 0)


def test_no_codes_count_nothing() -> None:
    assert load_config("t.yaml", text=BASE).policy.dead_numbers.rule() is None


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("errors: {carrier: [1]}", "line 9): unknown upstream 'carrier'"),
        ("{period: never}", "'never' is not a duration"),
        ("{after: 0}", "greater than or equal to 1"),
        ("{errors: {sim: [x]}}", "errors.sim[0] (line 8): Input should be a valid integer"),
    ],
)
def test_mistakes_are_named(section: str, message: str) -> None:
    text = BASE + f"policy:\n  dead_numbers:\n    {section}\n"
    if section.startswith("{"):
        text = BASE + f"policy:\n  dead_numbers: {section}\n"
    with pytest.raises(ConfigError) as caught:
        load_config("t.yaml", text=text)
    assert message in str(caught.value)
