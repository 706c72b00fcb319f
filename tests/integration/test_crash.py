"""kill -9 under load: every message that got a successful submit_sm_resp reaches the carrier,
and every one's receipt reaches the application.

The gateway runs as a subprocess against the fake SMSC (in this process; like a carrier, it
delivers a receipt again until it is answered OK). The test submits a burst without waiting,
kills the gateway with SIGKILL once part of the burst is acknowledged, restarts it on the same
database, waits until the carrier has every acknowledged message, then binds again and waits
for every acknowledged message's receipt. Duplicates at the carrier are allowed only for what
was in flight at the kill (the dispatcher's in-flight cap), and are counted.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import smpplib.client
import smpplib.exceptions

from tests.fakes.smsc import FakeSmsc

CONFIG = """
listen: {host: 127.0.0.1, port: 0}
accounts: [{system_id: app, password: pw, window: 1000}]
upstreams:
  carrier: {host: 127.0.0.1, port: %d, system_id: gw, password: pw, window: 50}
routes: [{name: all, targets: [carrier]}]
dispatch: {max_inflight: %d}
store: {path: "%s", writer: %s}
"""


INFLIGHT = 50  # sends the dispatcher has open at once: the most a kill can leave unrecorded


def start_gateway(
    config: Path, *, keep: list[str] | None = None
) -> tuple[subprocess.Popen[str], int]:
    """`smsgw serve -c config` in a subprocess; its port once it listens. Its output is read
    on (so the pipe never fills), into `keep` when given."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    out = proc.stdout
    lines = keep if keep is not None else []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = out.readline()
        lines.append(line)
        found = re.search(r"listening.*port\"?[=:] ?(\d+)", line)
        if found:
            if keep is None:
                threading.Thread(target=out.read, daemon=True).start()  # keep the pipe drained
            else:
                threading.Thread(target=lambda: lines.extend(out), daemon=True).start()
            return proc, int(found[1])
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError("gateway did not start:\n" + "".join(lines[-30:]))


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_kill_9_loses_no_acknowledged_message(tmp_path: Path, writer: str) -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    smsc = FakeSmsc()
    smsc_port = asyncio.run_coroutine_threadsafe(smsc.start(), loop).result(10)
    config = tmp_path / "gw.yaml"
    config.write_text(CONFIG % (smsc_port, INFLIGHT, tmp_path / "gw.sqlite3", writer))

    proc, port = start_gateway(config)
    acked: list[str] = []
    ids: dict[int, str] = {}  # sequence -> our message id
    receipts: list[str] = []  # our ids, as the receipts name them

    def on_sent(pdu: object) -> None:
        if pdu.status == 0:  # type: ignore[attr-defined]
            acked.append(pdu.sequence)  # type: ignore[attr-defined]
            ids[pdu.sequence] = pdu.message_id.decode()  # type: ignore[attr-defined]

    def on_received(pdu: object) -> None:
        receipts.append(pdu.receipted_message_id.decode())  # type: ignore[attr-defined]

    client = smpplib.client.Client("127.0.0.1", port, timeout=10, allow_unknown_opt_params=True)
    client.connect()
    client.set_message_sent_handler(on_sent)
    client.set_message_received_handler(on_received)
    client.bind_transceiver(system_id="app", password="pw")
    markers: dict[int, str] = {}
    for i in range(400):
        pdu = client.send_message(
            source_addr="App",
            destination_addr="4915100000",
            short_message=f"m{i:04d}".encode(),
            registered_delivery=1,
        )
        markers[pdu.sequence] = f"m{i:04d}"
    try:
        for _ in range(400):  # bounded: read acknowledgements until about half are in
            client.read_once()
            if len(acked) >= 150:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        for _ in range(400):  # what was already on the wire before the kill
            client.read_once()
    except (smpplib.exceptions.ConnectionError, OSError):
        pass
    client._socket = None  # the gateway is gone; nothing to unbind from

    acknowledged = {markers[seq] for seq in acked}
    assert len(acknowledged) >= 150

    proc, _port = start_gateway(config)  # same database: it resumes
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            arrived = {sm.decode() for _dest, sm in smsc.submits}
            if acknowledged <= arrived:
                break
            time.sleep(0.1)
        counts = Counter(sm.decode() for _dest, sm in smsc.submits)
        missing = acknowledged - set(counts)
        assert not missing, f"{len(missing)} acknowledged messages never reached the carrier"
        duplicates = sum(n - 1 for n in counts.values())
        print("acked", len(acknowledged), "arrived", len(counts), "dups", duplicates)
        assert duplicates <= INFLIGHT  # at most what was in flight at the kill

        # Every acknowledged message's receipt reaches the application, across the kill.
        wanted = {ids[seq] for seq in acked}
        app = smpplib.client.Client("127.0.0.1", _port, timeout=10, allow_unknown_opt_params=True)
        app.connect()
        app.set_message_received_handler(on_received)
        app.bind_receiver(system_id="app", password="pw")
        for _ in range(len(wanted) * 3):  # bounded: each read takes one deliver_sm
            if wanted <= set(receipts):
                break
            app.read_once()
        app.unbind()
        app.disconnect()
        missing_receipts = wanted - set(receipts)
        assert not missing_receipts, f"{len(missing_receipts)} receipts never reached the app"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        asyncio.run_coroutine_threadsafe(smsc.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
