from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import ConfigError, load_config

GOOD = """
node_id: 3
listen: {host: 0.0.0.0, port: 2775}
numbers: {country_code: "49"}
accounts:
  - system_id: shop
    password: ${SHOP_PASSWORD}
    throughput: 200
  - system_id: otp
    password_hash: "$argon2id$v=19$..."
upstreams:
  carrier-a: {host: smsc.example.net, port: 2775, system_id: gw, password: "$${X}"}
simulated_carriers:
  sim: {delivery_delay: 0.5, failure_ratio: 0.1}
routes:
  - name: de-mobile
    prefixes: ["4915", "4916", "4917"]
    targets: [carrier-a, sim]
  - name: otp
    prefixes: ["49"]
    accounts: [otp]
    strategy: weighted
    targets: [{name: carrier-a, weight: 3}, {name: sim, weight: 1}]
  - name: default
    targets: [sim]
"""


def test_good_config_loads_and_compiles() -> None:
    config = load_config("gw.yaml", text=GOOD, env={"SHOP_PASSWORD": "s3cret"})
    assert config.node_id == 3
    assert config.accounts[0].password == "s3cret"
    assert config.upstreams["carrier-a"].password == "${X}"  # $${ is a literal ${
    table = config.route_table()
    route = table.lookup("4915112345678")
    assert route is not None
    assert route.name == "de-mobile"
    otp = table.lookup("4930123", account="otp")
    assert otp is not None
    assert otp.name == "otp"
    assert [t.weight for t in otp.targets] == [3, 1]
    assert config.numbers.plan().country_code == "49"


def _problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config("gw.yaml", text=text, env=env or {})
    return err.value.problems


def test_errors_name_the_path_and_line() -> None:
    text = GOOD.replace('prefixes: ["49"]', 'prefixes: ["+49"]').replace("port: 2775}", "prot: 1}")
    problems = _problems(text, {"SHOP_PASSWORD": "x"})
    assert any(
        p.startswith("routes[1].prefixes[0] (line 20): a prefix must be digits") for p in problems
    ), problems
    assert any(p == "listen.prot (line 3): unknown key; did you mean 'port'?" for p in problems), (
        problems
    )


def test_environment_default() -> None:
    text = "accounts: [{system_id: a, password: '${PW:-fallback}'}]"
    assert load_config("x", text=text, env={}).accounts[0].password == "fallback"
    assert load_config("x", text=text, env={"PW": "real"}).accounts[0].password == "real"


def test_the_shipped_default_config_is_valid() -> None:
    config = load_config(Path(__file__).parents[2] / "config" / "gateway.yaml", env={})
    assert config.accounts[0].system_id == "demo"
    assert config.route_table().lookup("4915112345678") is not None
    assert config.modem_banks["local"].emulate == 2  # a newcomer sees modems at work


def test_modem_bank_errors_name_path_and_line() -> None:
    text = (
        "modem_banks:\n  b:\n    emulate: 1\n    modems:\n"
        "      - name: m\n        limits: {per_day: 0}\n"
    )
    assert _problems(text) == [
        "modem_banks.b.modems[0].limits.per_day (line 6): "
        "Input should be greater than or equal to 1"
    ]


def test_missing_environment_variable_is_named() -> None:
    assert _problems(GOOD) == [
        "accounts[0].password (line 7): environment variable SHOP_PASSWORD is not set"
    ]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("routes: [{name: r, targets: [nowhere]}]", "unknown target 'nowhere'"),
        ("routes: [{name: r, targets: ['bank:none']}]", "unknown target 'bank:none'"),
        ("modem_banks: {b: {}}", "a bank needs modems (or emulate: N)"),
        ("modem_banks: {b: {modems: [{name: m}]}}", "give port or candidates"),
        ("modem_banks: {b: {emulate: 1, modems: [{name: m}, {name: n}]}}", "only 1 emulated"),
        ("modem_banks: {b: {emulate: 2, modems: [{name: m}, {name: m}]}}", "given twice"),
        ("modem_banks: {'a/b': {emulate: 1}}", "may hold only"),
        ("accounts: [{system_id: a, password: x}, {system_id: a, password: y}]", "given twice"),
        ("accounts: [{system_id: a}]", "exactly one of password and password_hash"),
        ("store: {backend: postgres}", "needs a dsn"),
        ("- just a list", "top level must be a mapping"),
        ("a: [", "not valid YAML"),
    ],
)
def test_bad_configs(text: str, fragment: str) -> None:
    assert any(fragment in p for p in _problems(text)), _problems(text)


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "routes: [{name: d, targets: [sim]}]\nsimulated_carriers: {sim: {}}\n"
        "accounts: [{system_id: a, password: p}]\n"
        f"store: {{path: {tmp_path}/gw.sqlite3}}\n"
    )
    assert main(["check-config", str(good)]) == 0
    assert (
        "ok (1 account, 0 upstreams, 1 simulated carrier, 0 modem banks, 1 route, 0 MO routes)"
        in capsys.readouterr().out
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen: {port: 99999}\n")
    assert main(["check-config", str(bad)]) == 2
    assert "listen.port (line 1)" in capsys.readouterr().err
    assert main(["check-config", str(tmp_path / "missing.yaml")]) == 2


# agent.yaml is an agent's (tests/unit/test_agent_config.py reads it).
SHIPPED = sorted(
    p for p in (Path(__file__).parents[2] / "config").glob("**/*.yaml") if p.name != "agent.yaml"
)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    """Every configuration we ship is valid, given values for the secrets it references."""
    names = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", path.read_text()))
    config = load_config(path, env={name: "7" for name in names})
    assert config.routes, "a shipped configuration routes somewhere"
    for route in config.routes:
        for target in route.targets:
            name = target if isinstance(target, str) else target.name
            assert (
                name in config.upstreams
                or name in config.simulated_carriers
                or name.removeprefix("bank:") in config.modem_banks
            )


def test_shipped_configs_are_found() -> None:
    assert {p.name for p in SHIPPED} >= {"gateway.yaml", "carriers.yaml", "postgres.yaml"}
