"""What `plan_reload` says a reload changes, and what it says waits for a restart."""

from __future__ import annotations

import asyncio
from typing import Any

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


def test_a_policy_section_added_changed_or_removed_applies_live() -> None:
    with_rules = BASE + "policy: {dedup_window: 60}\n"
    assert plan_reload(_config(BASE), _config(with_rules)).applied() == ["policy"]
    assert plan_reload(_config(BASE), _config(BASE + "policy: {}\n")).applied() == ["policy"]
    assert plan_reload(_config(with_rules), _config(with_rules)).applied() == []
    assert plan_reload(_config(with_rules), _config(BASE)).applied() == ["policy"]


def test_banks_added_and_removed_apply_live() -> None:
    new = BASE + "modem_banks: {usb: {emulate: 2}}\n"
    plan = plan_reload(_config(BASE), _config(new))
    assert plan.applied() == ["modem banks added: usb"] and plan.restart_needed == ()
    plan = plan_reload(_config(new), _config(BASE))
    assert plan.applied() == ["modem banks removed: usb"] and plan.restart_needed == ()


def test_a_bank_takes_new_limits_and_modems_live() -> None:
    from tests.unit.test_bank import FakeModem, bank_of, config, done, record  # noqa: PLC0415

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
            a, b = bank.modem("a"), bank.modem("b")
            raised = [{**m, "limits": {"per_minute": 5}} for m in limited]
            assert await bank.reconfigure(config(modems=raised, queue=4)) == []
            assert bank.usable() and bank.config.queue == 4
            assert bank.modem("a") is a and bank.modem("b") is b  # kept running
            # b moves port: stopped, and started again with its new settings.
            moved = [raised[0], {**raised[1], "port": "/x/other"}]
            assert await bank.reconfigure(config(modems=moved)) == []
            assert b.state.name == "CLOSED" and bank.modem("a") is a
            b2 = bank.modem("b")
            assert b2 is not b and b2.settings.port == "/x/other" and b2.ready()
            # c added, a removed: c starts, a stops and is never picked again.
            added = [moved[1], {"name": "c", "port": "/x/c"}]
            assert await bank.reconfigure(config(modems=added)) == []
            assert a.state.name == "CLOSED" and bank.modem("c").ready()
            assert [row["name"] for row in bank.state()] == ["b", "c"]
            sent_by = set()
            for i in range(2, 8):
                result = await bank.send(record(i))
                assert result.ok and result.upstream_id is not None
                sent_by.add(result.upstream_id.split("/")[0])
            assert isinstance(a, FakeModem) and len(a.sent) == 1  # only its send before
            assert len(sent_by) == 2  # b and c share the traffic
        finally:
            await done(bank)

    asyncio.run(scenario())


def test_a_removed_modem_finishes_its_send_before_it_stops() -> None:
    from tests.unit.test_bank import bank_of, config, done, record  # noqa: PLC0415

    async def scenario() -> None:
        bank, _sink = await bank_of(config())
        try:
            running = {name: bank.modem(name) for name in ("a", "b")}
            gate = asyncio.Event()
            for modem in running.values():
                original = modem.send

                async def slow(tpdus: object, original: Any = original) -> Any:
                    await gate.wait()
                    return await original(tpdus)

                modem.send = slow  # type: ignore[method-assign]
            sending = asyncio.create_task(bank.send(record(0)))
            async with asyncio.timeout(5):
                while not any(row["queue"] for row in bank.state()):
                    await asyncio.sleep(0.01)
            queued = next(row["name"] for row in bank.state() if row["queue"])
            keep = "b" if queued == "a" else "a"
            others = [m for m in config().modems if m.name == keep]
            reconfiguring = asyncio.create_task(
                bank.reconfigure(config(modems=[m.model_dump() for m in others]), drain=5)
            )
            await asyncio.sleep(0.05)
            assert not reconfiguring.done()  # waits for the send under way
            assert running[queued].ready()
            gate.set()
            async with asyncio.timeout(5):
                assert (await sending).ok
                assert await reconfiguring == []
            assert [row["name"] for row in bank.state()] == [keep]
            assert not running[queued].ready()  # stopped once its send was answered
        finally:
            await done(bank)

    asyncio.run(scenario())
