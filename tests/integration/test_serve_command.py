"""`smsgw serve` as a user runs it: a subprocess on an ephemeral port, stopped with SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import smpplib.client

CONFIG = """
listen: {host: 127.0.0.1, port: 0}
accounts: [{system_id: demo, password: demo}]
simulated_carriers: {sim: {delivery_delay: 0.0}}
routes: [{name: all, targets: [sim]}]
store: {path: "%s"}
"""


def test_serve_accepts_a_bind_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG % (tmp_path / "var" / "gw.sqlite3"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        port = None
        deadline = time.monotonic() + 30
        assert proc.stdout is not None
        while port is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            found = re.search(r"listening.*port\"?[=:] ?(\d+)", line)
            if found:
                port = int(found[1])
        assert port, "the gateway did not say where it listens"
        client = smpplib.client.Client("127.0.0.1", port, timeout=10, allow_unknown_opt_params=True)
        client.connect()
        client.bind_transmitter(system_id="demo", password="demo")
        client.unbind()
        client.disconnect()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert (tmp_path / "var" / "gw.sqlite3").exists()
