"""What `plan_reload` says a reload changes, and what it says waits for a restart."""

from __future__ import annotations

import asyncio

from gateway.config import GatewayConfig, load_config
from gateway.reload import plan_reload

BASE = """
accounts: [{system_id: shop, password: secret}, {system_id: old, password: o}]
upstreams:
  a: {host: 127.0.0.1, port: 2775, system_id: gw, password: pw}
  b: {host: 127.0.0.1, port: 2776, system_id: gw, password: pw}
simulated_carriers: {sim: {delivery_delay: 0.0}}
routes: [{name: all, targets: [a]}]
store: {path: gw.sqlite3}
"""


def _config(text: str) -> GatewayConfig:
    return load_config("t.yaml", text=text)


def test_the_same_file_changes_nothing() -> None:
    plan = plan_reload(_config(BASE), _config(BASE))
    assert plan.applied() == [] and plan.restart_needed == ()


def test_accounts_upstreams_and_routes_are_named_by_what_happened_to_them() -> None:
    new = (
        BASE.replace("{system_id: old, password: o}", "{system_id: new, password: n}")
        .replace("password: secret}", "password: secret, window: 3}")
        .replace("port: 2776", "port: 2777")
        .replace("targets: [a]", "targets: [b]")
        + "  # c\n"
    )
    new = new.replace(
        "simulated_carriers:",
        "  c: {host: 127.0.0.1, port: 2778, system_id: gw, password: pw}\nsimulated_carriers:",
    )
    plan = plan_reload(_config(BASE), _config(new))
    assert plan.applied() == [
        "accounts added: new",
        "accounts removed: old",
        "accounts changed: shop",
        "upstreams added: c",
        "upstreams changed: b",
        "routes",
    ]
    assert plan.restart_needed == ()


def test_listen_store_and_banks_need_a_restart() -> None:
    new = BASE.replace("gw.sqlite3", "other.sqlite3") + "listen: {port: 2999}\nnode_id: 3\n"
    plan = plan_reload(_config(BASE), _config(new))
    assert plan.restart_needed == ("listen", "store", "node_id")
    assert plan.applied() == []


def test_mo_routes_numbers_and_message_rules_apply_live() -> None:
    new = BASE + (
        "mo_routes: [{account: shop, prefixes: ['49']}]\n"
        "numbers: {country_code: '49'}\n"
        "messages: {default_validity: 3600}\n"
    )
    plan = plan_reload(_config(BASE), _config(new))
    assert plan.applied() == ["mo_routes", "numbers", "messages"]


def test_a_bank_takes_new_limits_live_and_names_what_needs_a_restart() -> None:
    from tests.unit.test_bank import bank_of, config, done, record  # noqa: PLC0415

    limited = [
        {"name": "a", "port": "/x/a", "limits": {"per_minute": 1}},
        {"name": "b", "port": "/x/b", "limits": {"per_minute": 1}},
    ]

    async def scenario() -> None:
        bank, _sink = await bank_of(config(modems=limited))
        try:
            for i in range(2):
                assert (await bank.send(record(i))).ok
            assert not bank.usable()  # both SIMs at their minute's limit
            raised = [{**m, "limits": {"per_minute": 5}} for m in limited]
            assert bank.reconfigure(config(modems=raised, queue=4)) == []
            assert bank.usable() and bank.config.queue == 4
            moved = [raised[0], {**raised[1], "port": "/x/other"}]
            assert bank.reconfigure(config(modems=moved)) == [
                "modem b settings other than limits and number"
            ]
            assert bank.reconfigure(config(modems=moved[:1])) == ["modems added or removed"]
        finally:
            await done(bank)

    asyncio.run(scenario())
