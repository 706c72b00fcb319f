"""`smsgw serve` as a user runs it: a subprocess on an ephemeral port, stopped with SIGTERM."""

from __future__ import annotations

from pathlib import Path

import smpplib.client

from tests.integration.serve import Served

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
    served = Served(config)
    try:
        port = served.port()
        client = smpplib.client.Client("127.0.0.1", port, timeout=10, allow_unknown_opt_params=True)
        client.connect()
        client.bind_transmitter(system_id="demo", password="demo")
        client.unbind()
        client.disconnect()
        assert served.stop() == 0
    finally:
        served.kill()
    assert (tmp_path / "var" / "gw.sqlite3").exists()
