"""A real Mosquitto broker for tests, run from its binary on a free loopback port in a temp dir,
so a test can stop and restart it (persistence on: a restart keeps sessions and QoS 1 messages,
as a production broker does).

Under CI=true a missing `mosquitto` binary fails the test (scripts/ci-services installs it);
elsewhere the test is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

__all__ = ["Broker", "mosquitto_binary"]


def mosquitto_binary() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    message = "mosquitto is not installed (apt-get install mosquitto)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """One mosquitto process; `url` stays the same across `restart`."""

    def __init__(self, directory: Path) -> None:
        self.binary = mosquitto_binary()
        self.directory = directory
        self.port = _free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        conf = directory / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {directory}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 100000\n"
            f"log_dest file {directory}/mosquitto.log\n"
        )
        self.conf = conf

    def start(self, timeout: float = 10.0) -> None:
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.directory / "mosquitto.log").read_text(errors="replace")
                raise RuntimeError(f"mosquitto exited: {log[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)  # bounded by the deadline: the broker's start-up
        raise RuntimeError(f"mosquitto did not listen on {self.port} in {timeout} s")

    def stop(self) -> None:
        """A clean stop (SIGTERM): the broker saves its sessions first."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()
