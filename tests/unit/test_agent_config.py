"""The remote-bank and agent configurations: what is refused, with its path."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_agent_config, load_config

ROOT = Path(__file__).resolve().parents[2]

GATEWAY = """
accounts: [{system_id: shop, password: secret}]
%s
modem_banks:
  far: {remote: {agent: shop-floor-1, timeout: 60}}
routes: [{name: all, targets: ["bank:far"]}]
"""


def test_a_remote_bank_is_a_route_target() -> None:
    config = load_config("gw.yaml", text=GATEWAY % 'mqtt: {url: "mqtt://broker:1883"}')
    remote = config.modem_banks["far"].remote
    assert remote is not None and remote.agent == "shop-floor-1" and remote.timeout == 60


def test_a_remote_bank_needs_mqtt() -> None:
    with pytest.raises(ConfigError, match=r"modem_banks\.far\.remote.*needs mqtt"):
        load_config("gw.yaml", text=GATEWAY % "")


def test_a_remote_bank_has_no_ports_of_its_own() -> None:
    text = """
mqtt: {url: "mqtt://broker:1883"}
modem_banks:
  far:
    remote: {agent: a1}
    modems: [{name: m1, port: /dev/ttyUSB0}]
"""
    with pytest.raises(ConfigError, match=r"modem_banks\.far.*no modems of its own"):
        load_config("gw.yaml", text=text)


def test_agent_config_and_its_errors() -> None:
    good = """
name: shop-floor-1
mqtt: {url: "mqtt://broker:1883"}
modem_banks:
  far: {emulate: 2}
"""
    config = load_agent_config("agent.yaml", text=good)
    assert config.name == "shop-floor-1" and config.modem_banks["far"].emulate == 2
    with pytest.raises(
        ConfigError, match=r"modem_banks\.far \(line 4\): modems\[0\] \(m\): give port"
    ):
        load_agent_config(
            "agent.yaml",
            text="name: a\nmqtt: {url: 'mqtt://b'}\nmodem_banks:\n  far: {modems: [{name: m}]}\n",
        )
    with pytest.raises(ConfigError, match="an agent drives local modems only"):
        load_agent_config(
            "agent.yaml",
            text="name: a\nmqtt: {url: 'mqtt://b'}\nmodem_banks: {far: {remote: {agent: b}}}\n",
        )
    with pytest.raises(ConfigError, match="name"):
        load_agent_config("agent.yaml", text="mqtt: {url: 'mqtt://b'}\nmodem_banks: {}\n")


def test_the_shipped_agent_example_is_valid() -> None:
    load_agent_config(ROOT / "config" / "examples" / "agent.yaml", env={"MQTT_PASSWORD": "x"})
