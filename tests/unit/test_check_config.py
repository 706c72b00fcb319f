"""`smsgw check-config FILE` refuses what `serve` would trip on, each problem with its YAML path
and line: run as the admin runs it, the exact message and exit status."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.routing import QualitySettings, Strategy

BASE = """\
accounts: [{system_id: shop, password: pw}]
routes: [{name: all, targets: [sim]}]
simulated_carriers: {sim: {}}
"""

BROKEN = [
    ("empty", "", "the file is empty: a gateway needs at least accounts and routes"),
    (
        "no-accounts-or-routes",
        "listen: {port: 2775}\n",
        "\n  accounts: none configured, so no application can bind"
        "\n  routes: none configured, so no message can be sent",
    ),
    ("duplicate-key", BASE + "accounts: []\n", "accounts (line 4): given twice (first on line 1)"),
    (
        "duplicate-nested-key",
        BASE + "listen:\n  port: 1\n  host: 127.0.0.1\n  port: 2\n",
        "listen.port (line 7): given twice (first on line 5)",
    ),
    (
        "cross-references",
        "accounts: [{system_id: shop, password: pw}]\n"
        "simulated_carriers: {sim: {}}\n"
        "modem_banks: {local: {emulate: 1}}\n"
        "routes:\n  - name: all\n    targets:\n      - sim\n      - nowhere\n      - bank:nope\n"
        "mo_routes:\n  - account: ghost\n",
        "\n  routes[0].targets[1] (line 8): unknown target 'nowhere'; "
        "known targets: bank:local, sim"
        "\n  routes[0].targets[2] (line 9): unknown target 'bank:nope'; modem banks: local"
        "\n  mo_routes[0].account (line 11): unknown account 'ghost'; accounts: shop",
    ),
    (
        "route-account",
        "accounts: [{system_id: shop, password: pw}]\nsimulated_carriers: {sim: {}}\n"
        "routes:\n  - name: r\n    targets: [sim]\n    accounts: [shop, gost]\n",
        "routes[0].accounts[1] (line 6): unknown account 'gost'; accounts: shop",
    ),
    (
        "unknown-keys",
        BASE + "listen: {hots: 1.2.3.4}\ndispatch:\n  max_atempts: 3\n  zzz: 1\n",
        "\n  listen.hots (line 4): unknown key; did you mean 'host'?"
        "\n  dispatch.max_atempts (line 6): unknown key; did you mean 'max_attempts'?"
        "\n  dispatch.zzz (line 7): unknown key",
    ),
    (
        "unset-variable",
        BASE + "upstreams:\n  c:\n    host: h\n    port: 1\n    system_id: s\n"
        "    password: ${SMSGW_TEST_UNSET}\n",
        "upstreams.c.password (line 9): environment variable SMSGW_TEST_UNSET is not set",
    ),
    (
        "yes-is-not-a-number",
        BASE + "modem_banks:\n  local:\n    emulate: yes\n",
        "modem_banks.local.emulate (line 6): must be a number, got 'yes'",
    ),
    (
        "true-is-not-a-number",
        BASE + "modem_banks:\n  local:\n    emulate: true\n",
        "modem_banks.local.emulate (line 6): must be a number, got true",
    ),
    (
        "yes-is-not-a-boolean",
        BASE + "upstreams:\n  c: {host: h, port: 1, system_id: s, password: p, tls: yes}\n",
        "upstreams.c.tls (line 5): must be true or false, got 'yes'",
    ),
    (
        "quoted-number",
        BASE + "listen:\n  port: '2775'\n",
        "listen.port (line 5): must be a number, got '2775'",
    ),
    (
        "not-yaml",
        BASE + "listen: {port: 1\n",
        "line 5, column 1: not valid YAML: while parsing a flow mapping expected ',' or '}', "
        "but got '<stream end>'",
    ),
    (
        "webhook",
        "accounts:\n  - system_id: shop\n    password: pw\n    webhook:\n"
        "      url: ftp://example.com/hook\n      secret: short\n      events: [receipt, sms]\n"
        "routes: [{name: all, targets: [sim]}]\nsimulated_carriers: {sim: {}}\n",
        "\n  accounts[0].webhook.url (line 5): must be an http:// or https:// URL with a host"
        "\n  accounts[0].webhook.secret (line 6): String should have at least 16 characters"
        "\n  accounts[0].webhook.events[1] (line 7): Input should be 'receipt', 'mo' or 'state'",
    ),
    (
        "quality",
        "accounts: [{system_id: shop, password: pw}]\nsimulated_carriers: {a: {}, b: {}}\n"
        "routes:\n  - name: q\n    strategy: quality\n    targets: [a, b]\n"
        "    quality: {window: 10x, min_sample: 0, probe_share: 1}\n"
        "  - name: t\n    strategy: quality\n    targets: [a, b]\n"
        "    quality: {demote_below: 0.95, promote_above: 0.9}\n"
        "  - name: f\n    targets: [a]\n    quality: {window: 1h}\n",
        "\n  routes[0].quality.window (line 7): '10x' is not a duration: write e.g. 90s, 15m, "
        "24h, 30d"
        "\n  routes[0].quality.min_sample (line 7): Input should be greater than or equal to 1"
        "\n  routes[0].quality.probe_share (line 7): Input should be less than 1"
        "\n  routes[1].quality (line 11): demote_below must not exceed promote_above"
        "\n  routes[2] (line 12): quality settings need strategy: quality",
    ),
    (
        "host-not-an-address",
        BASE + "listen:\n  host: not an address\n",
        "listen.host (line 5): 'not an address' is neither an IP address nor a host name "
        "that resolves",
    ),
]


def _check(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.mark.parametrize(("name", "text", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_config_is_refused_with_its_message(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    result = _check(path)
    sep = "" if message.startswith("\n") else " "
    assert (result.returncode, result.stderr) == (2, f"error: {path}:{sep}{message}\n")
    assert result.stdout == ""


def test_store_folder_that_cannot_be_created_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")  # a file where the folder would have to be
    path = tmp_path / "store.yaml"
    path.write_text(BASE + f"store:\n  path: {tmp_path}/file/sub/gw.sqlite3\n")
    result = _check(path)
    assert (result.returncode, result.stderr) == (
        2,
        f"error: {path}: store.path (line 5): folder {tmp_path}/file/sub cannot be created: "
        f"{tmp_path}/file is not a folder\n",
    )


def test_summary_counts_every_kind_in_english(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        BASE + "modem_banks: {local: {emulate: 2}}\nmo_routes: [{account: shop}]\n"
        "listen: {host: localhost, port: 2775}\n"
        f"store: {{path: {tmp_path}/var/new/gw.sqlite3}}\n"
    )
    result = _check(path)
    assert (result.returncode, result.stdout) == (
        0,
        f"{path}: ok (1 account, 0 upstreams, 1 simulated carrier, 1 modem bank with 2 modems,"
        " 1 route, 1 MO route)\n",
    )
    assert not (tmp_path / "var").exists()  # checked, not created


def test_shipped_default_passes_check_config() -> None:
    result = _check(Path(__file__).parents[2] / "config" / "gateway.yaml")
    assert result.returncode == 0, result.stderr
    assert "1 modem bank with 2 modems" in result.stdout


def test_quality_route_compiles_with_its_settings_or_the_defaults() -> None:
    text = (
        "simulated_carriers: {a: {}, b: {}}\nroutes:\n"
        "  - {name: q, strategy: quality, targets: [a, b], quality: {window: 10m, min_sample: 20,"
        " probe_share: 0.1}}\n"
        "  - {name: d, strategy: quality, targets: [a, b]}\n"
    )
    q, d = load_config("x.yaml", text=text).route_table().routes
    assert q.strategy is Strategy.QUALITY
    assert q.quality == QualitySettings(600.0, 20, 0.8, 0.9, 0.1)
    assert d.quality == QualitySettings(3600.0, 50, 0.8, 0.9, 0.05)


EXAMPLES = sorted((Path(__file__).parents[2] / "config" / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_passes_check_config(path: Path) -> None:
    """As an admin runs it, with a value for each secret the file takes from the environment."""
    names = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", path.read_text()))
    result = _check(path, {name: "7" for name in names})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{path}: ok (")


def test_examples_are_found() -> None:
    assert {p.name for p in EXAMPLES} >= {
        "carriers.yaml",
        "postgres.yaml",
        "shop-cn.yaml",
        "shop-eu.yaml",
    }


def test_environment_may_give_numbers_and_booleans() -> None:
    text = BASE + "node_id: ${NODE}\nupstreams:\n  c: {host: h, port: 1, system_id: s, "
    text += "password: p, tls: '${TLS}'}\n"
    config = load_config("x.yaml", text=text, env={"NODE": "7", "TLS": "true"})
    assert config.node_id == 7
    assert config.upstreams["c"].tls is True
    with pytest.raises(ConfigError, match=r"upstreams.c.tls \(line 6\): must be true or false"):
        load_config("x.yaml", text=text, env={"NODE": "7", "TLS": "yes"})


def test_a_webhook_secret_may_come_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "hook.yaml"
    path.write_text(
        "accounts:\n  - system_id: shop\n    password: pw\n"
        '    webhook: {url: "https://hooks.example/in", secret: "${SMSGW_TEST_HOOK}"}\n'
        "routes: [{name: all, targets: [sim]}]\nsimulated_carriers: {sim: {}}\n"
    )
    result = _check(path, {"SMSGW_TEST_HOOK": "0123456789abcdef0123"})
    assert result.returncode == 0, result.stderr
    (account,) = load_config(path, env={"SMSGW_TEST_HOOK": "0123456789abcdef0123"}).accounts
    assert account.webhook is not None
    assert account.webhook.secret == "0123456789abcdef0123"
    assert account.webhook.events == {"receipt", "mo"}
    assert (account.webhook.max_in_flight, account.webhook.timeout) == (4, 10.0)


def test_references_are_checked_without_the_loader_too() -> None:
    with pytest.raises(ValueError, match=r"routes\[0\].targets\[0\]: unknown target 'x'"):
        GatewayConfig.model_validate({"routes": [{"name": "r", "targets": ["x"]}]})


def test_partial_configs_still_load_without_complete() -> None:
    """Tests and tools build gateways from fragments; only check-config asks for all."""
    assert load_config("x.yaml", text="listen: {port: 0}").accounts == ()


def test_config_readme_lists_every_shipped_file() -> None:
    folder = Path(__file__).parents[2] / "config"
    readme = (folder / "README.md").read_text()
    listed = set(re.findall(r"^- `([^`]+)`:", readme, flags=re.M))
    shipped = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    assert listed == shipped


def test_an_agents_file_is_checked_as_an_agents(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "name: a1\nmqtt: {url: 'mqtt://127.0.0.1'}\nmodem_banks: {b: {remote: {agent: other}}}\n"
    )
    result = _check(path)
    assert result.returncode == 2
    assert "an agent drives local modems only" in result.stderr
