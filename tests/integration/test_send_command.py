"""`smsgw send` as an admin runs it: a subprocess against a whole gateway (simulated carriers)
on an ephemeral port, printing ids and receipts and saying how it went in its exit code."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.config import load_config
from tests.integration.loop import LoopThread

CONFIG = """
listen: {host: 127.0.0.1, port: 0}
accounts:
  - {system_id: shop, password: secret}
  - {system_id: other, password: pw2}
simulated_carriers:
  fast: {delivery_delay: 0.05}
  failing: {delivery_delay: 0.05, failure_ratio: 1.0}
  slow: {delivery_delay: 600}
routes:
  - {name: de, prefixes: ["49"], targets: [fast]}
  - {name: fr, prefixes: ["33"], targets: [failing]}
  - {name: it, prefixes: ["39"], targets: [slow]}
store: {path: "%s"}
"""
ROOT = Path(__file__).resolve().parents[2]


class Running(LoopThread):
    def __init__(self, tmp: Path) -> None:
        self.config_path = tmp / "gateway.yaml"
        self.config_path.write_text(CONFIG % (tmp / "gw.sqlite3"))
        self.gateway = Gateway(load_config(self.config_path))
        super().__init__()
        self.port: int = self.call(self.gateway.start("127.0.0.1", 0))

    def close(self) -> None:
        self.call(self.gateway.stop())
        self.stop_loop()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    r = Running(tmp_path_factory.mktemp("gw"))
    yield r
    r.close()


def send(
    running: Running, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "gateway.cli", "send", "-c", str(running.config_path)]
    command += ["--port", str(running.port), *args]
    environ = {k: v for k, v in os.environ.items() if k != "SMSGW_PASSWORD"}
    environ.update(env or {})
    environ["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=60, env=environ
    )


def test_send_with_receipt(running: Running) -> None:
    done = send(running, "--to", "+49 151 12345678", "--from", "Shop", "--dlr", "Your code: 1234")
    assert done.returncode == 0, done.stderr
    (message_id,) = re.findall(r"^part 1/1: id=(\S+)$", done.stdout, re.M)
    receipt = re.search(r"^receipt: id=(\S+) stat=(\w+) err=(\S+)$", done.stdout, re.M)
    assert receipt is not None, done.stdout
    assert receipt[1] == message_id
    assert receipt[2] == "DELIVRD"
    record = running.call(running.gateway.store.get(message_id))
    assert record.message.account == "shop"  # the configuration's first account
    assert record.message.destination_addr == "4915112345678"
    assert record.message.source_addr == "Shop"
    assert record.message.registered_delivery == 1


def test_long_text_goes_in_parts_each_with_its_receipt(running: Running) -> None:
    text = "Your order has shipped. " * 12  # 288 GSM characters: two parts
    done = send(running, "--to", "4915112345678", "--dlr", text)
    assert done.returncode == 0, done.stderr
    ids = re.findall(r"^part \d/2: id=(\S+)$", done.stdout, re.M)
    assert len(ids) == 2
    receipts = re.findall(r"^receipt: id=(\S+) stat=DELIVRD", done.stdout, re.M)
    assert sorted(receipts) == sorted(ids)
    records = [running.call(running.gateway.store.get(i)) for i in ids]
    udhs = [r.message.short_message[:6] for r in records]
    assert all(r.message.esm_class & 0x40 for r in records)
    assert {u[:3] for u in udhs} == {b"\x05\x00\x03"}
    assert {u[3] for u in udhs} == {udhs[0][3]}  # one concatenation reference
    assert sorted((u[4], u[5]) for u in udhs) == [(2, 1), (2, 2)]


def test_without_dlr_prints_the_id_and_returns(running: Running) -> None:
    done = send(running, "--to", "391234567", "--timeout", "20", "no receipt wanted")
    assert done.returncode == 0, done.stderr
    assert re.search(r"^part 1/1: id=\S+$", done.stdout, re.M)
    assert "receipt" not in done.stdout


def test_failed_delivery_exits_1(running: Running) -> None:
    done = send(running, "--to", "33612345678", "--dlr", "will not arrive")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert re.search(r"^receipt: id=\S+ stat=UNDELIV", done.stdout, re.M)


def test_refused_submit_exits_1(running: Running) -> None:
    done = send(running, "--to", "4412345678", "no route there")
    assert done.returncode == 1
    assert "refused ESME_RINVDSTADR" in done.stderr


def test_timeout_exits_3(running: Running) -> None:
    done = send(running, "--to", "391234567", "--dlr", "--timeout", "2.5", "slow carrier")
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert re.search(r"^part 1/1: id=\S+$", done.stdout, re.M)  # accepted, never receipted
    assert "timed out" in done.stderr


def test_password_from_the_environment_and_other_account(running: Running) -> None:
    done = send(
        running,
        "--system-id",
        "other",
        "--to",
        "4915112345678",
        "hi",
        env={"SMSGW_PASSWORD": "pw2"},
    )
    assert done.returncode == 0, done.stderr
    (message_id,) = re.findall(r"id=(\S+)", done.stdout)
    assert running.call(running.gateway.store.get(message_id)).message.account == "other"


def test_wrong_password_exits_2(running: Running) -> None:
    done = send(running, "--password", "nope", "--to", "4915112345678", "hi")
    assert done.returncode == 2
    assert "ESME_RINVPASWD" in done.stderr


def test_nobody_listening_exits_2(running: Running, tmp_path: Path) -> None:
    import socket  # noqa: PLC0415

    with socket.socket() as s:  # a port that was free a moment ago, now closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "gateway.cli", "send", "--port", str(port)]
    command += ["--system-id", "x", "--password", "y", "--to", "491", "hi"]
    done = subprocess.run(  # noqa: PLW1510 - the exit code is what is tested
        command,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 2
    assert "error:" in done.stderr


def test_missing_account_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(  # noqa: PLW1510 - the exit code is what is tested
        [sys.executable, "-m", "gateway.cli", "send", "--port", "1", "--to", "491", "hi"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,  # no config/gateway.yaml here
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 2
    assert "--system-id" in done.stderr
