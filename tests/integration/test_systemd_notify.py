"""The systemd notify protocol as systemd speaks it: `smsgw serve` as a subprocess with
NOTIFY_SOCKET on a datagram socket of ours (READY=1 once listening, WATCHDOG=1 from the loop,
STOPPING=1 on SIGTERM), and gateway.telemetry.systemd's messages on their own."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.telemetry import systemd

CONFIG = """
listen: {host: 127.0.0.1, port: 0}
accounts: [{system_id: demo, password: demo}]
simulated_carriers: {sim: {delivery_delay: 0.0}}
routes: [{name: all, targets: [sim]}]
store: {path: "%s"}
logging: {format: json}
"""


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    # A short directory: AF_UNIX paths are limited to 107 bytes.
    folder = tempfile.mkdtemp(prefix="smsgw-notify-", dir="/tmp")
    path = os.path.join(folder, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    try:
        yield sock, path
    finally:
        sock.close()
        shutil.rmtree(folder, ignore_errors=True)


def _receive(sock: socket.socket, until: str, deadline: float) -> list[str]:
    """Datagrams up to and including the first holding `until` (a line), bounded in time."""
    got: list[str] = []
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no {until} in time; got {got}"
        sock.settimeout(left)
        message = sock.recv(4096).decode()
        got.append(message)
        if until in message.splitlines():
            return got


def _serve(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG % (tmp_path / "var" / "gw.sqlite3"))
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **env},
    )


def _listening_port(proc: subprocess.Popen[str]) -> int:
    """The port of the `listening` line (logged before READY=1, so already in the pipe)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "listening":
            return int(event["port"])
    raise AssertionError("the gateway did not log where it listens")


def test_ready_after_listening_watchdog_fed_and_stopping_on_sigterm(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    proc = _serve(tmp_path, {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    try:
        before = _receive(sock, "READY=1", time.monotonic() + 30)
        assert not any("WATCHDOG=1" in m for m in before[:-1]), "watchdog before ready"
        port = _listening_port(proc)
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # READY=1 came once the port accepts connections
        # WATCHDOG_USEC=200000: a ping every 0.1 s; five within 5 s is plenty of slack.
        deadline = time.monotonic() + 5
        pings = 0
        while pings < 5:
            pings += sum("WATCHDOG=1" in m for m in _receive(sock, "WATCHDOG=1", deadline))
        proc.send_signal(signal.SIGTERM)
        after = _receive(sock, "STOPPING=1", time.monotonic() + 20)
        assert "READY=1" not in "\n".join(after)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_no_watchdog_when_it_is_meant_for_another_process(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    proc = _serve(tmp_path, {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"})
    try:
        _receive(sock, "READY=1", time.monotonic() + 30)
        proc.send_signal(signal.SIGTERM)
        got = _receive(sock, "STOPPING=1", time.monotonic() + 20)
        assert not any("WATCHDOG=1" in m for m in got)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_reloading_carries_monotonic_usec_and_ready_follows(
    notify_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    start = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert systemd.notify_reloading()
    assert systemd.notify_ready()
    sock.settimeout(5)
    reloading, ready = sock.recv(4096).decode(), sock.recv(4096).decode()
    assert "RELOADING=1" in reloading.splitlines()
    found = re.search(r"^MONOTONIC_USEC=(\d+)$", reloading, re.MULTILINE)
    assert found and start <= int(found[1]) <= start + 10_000_000
    assert "READY=1" in ready.splitlines()


def test_abstract_namespace_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"smsgw-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify("WATCHDOG=1")
        sock.settimeout(5)
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_outside_systemd_everything_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert not systemd.notify_ready()
    assert systemd.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd.watchdog_interval() == 15.0


def test_control_socket_in_systemds_runtime_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.config import GatewayConfig  # noqa: PLC0415

    config = GatewayConfig.model_validate({"store": {"path": str(tmp_path / "gw.sqlite3")}})
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    assert config.control_path() == tmp_path / "smsgw.sock"
    monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/smsgw")  # RuntimeDirectory=smsgw
    assert config.control_path() == Path("/run/smsgw/smsgw.sock")
    explicit = GatewayConfig.model_validate({"control_socket": str(tmp_path / "c.sock")})
    assert explicit.control_path() == tmp_path / "c.sock"
