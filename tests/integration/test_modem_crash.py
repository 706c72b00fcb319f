"""kill -9 while a bank of modems sends: every acknowledged message reaches the network, and
every one's receipt reaches the application.

The modems must outlive the gateway, so they are emulated in this process (`ModemEmulator` on
real pseudo-terminals, behind one `SimNetwork`, each reachable through a stable symlink as
udev keeps /dev/serial/by-id) and only the gateway runs as a subprocess, with a bank whose
modems' `port`s are those links. The test submits a burst without waiting, kills the gateway
with SIGKILL once about half of it is acknowledged and the modems are sending, restarts it on the
same database and the same, still running, modems (the new process reopens their ports; a modem
may still be in the middle of what the killed one asked), waits until the network has every
acknowledged message, then binds again and waits for every acknowledged message's receipt (the
modem's status report, matched and turned into a deliver_sm).

Duplicates at the network are allowed only for what was in flight at the kill: a send the
network took but whose outcome the killed gateway had not recorded yet is sent again after the
restart. The dispatcher hands at most `max_inflight` messages to the bank at once, so no more
than that can be in that state.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import smpplib.client
import smpplib.exceptions

from drivers.modem.emulator import ModemEmulator, Quirks, SimNetwork

CONFIG = """
listen: {{host: 127.0.0.1, port: 0}}
accounts: [{{system_id: app, password: pw, window: 1000}}]
modem_banks:
  b:
    modems:
      - {{name: m1, port: "{port1}", reopen_backoff: 0.2, max_reopen_backoff: 1.0}}
      - {{name: m2, port: "{port2}", reopen_backoff: 0.2, max_reopen_backoff: 1.0}}
routes: [{{name: all, targets: ["bank:b"]}}]
dispatch: {{max_inflight: {inflight}, retry_backoff: 0.2, max_retry_backoff: 1.0,
            max_attempts: 50}}
store: {{path: "{db}"}}
"""

ROOT = Path(__file__).resolve().parents[2]
BURST = 120
INFLIGHT = 8  # messages the dispatcher hands to the bank at once: the most a kill can leave
# sent but unrecorded (each modem sends one at a time; the rest of the eight wait for one)
SLOW = 0.01  # seconds each modem takes per answer: the burst takes seconds, so the kill lands
# in the middle of it


def start_gateway(config: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`smsgw serve` on `config`, its output appended to `log`; the SMPP port it listens on."""
    start = log.stat().st_size if log.exists() else 0
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "-c", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(rb"listening.*port\"?[=:] ?(\d+)", log.read_bytes()[start:])
        if found:
            return proc, int(found[1])
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=10)
    raise AssertionError("gateway did not start:\n" + log.read_text(errors="replace")[-4000:])


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-6000:] if log.exists() else ""


def wait_until(check: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(what())
        time.sleep(0.05)


@pytest.mark.parametrize("kill_at", [10, 60])  # messages at the network when the kill comes
def test_kill_9_while_modems_send_loses_no_acknowledged_message(
    tmp_path: Path, kill_at: int
) -> None:
    network = SimNetwork(report_delay=0.05)
    modems = [
        ModemEmulator(network, link=tmp_path / f"modem{i}", quirks=Quirks(slow=SLOW))
        for i in (1, 2)
    ]
    for modem in modems:
        modem.start()
    config = tmp_path / "gw.yaml"
    config.write_text(
        CONFIG.format(
            port1=modems[0].link,
            port2=modems[1].link,
            inflight=INFLIGHT,
            db=tmp_path / "gw.sqlite3",
        )
    )
    proc: subprocess.Popen[bytes] | None = None
    log = tmp_path / "gateway.log"
    try:
        proc, port = start_gateway(config, log)
        acked: list[int] = []
        ids: dict[int, str] = {}  # sequence -> our message id
        receipts: list[str] = []  # our ids, as the receipts name them

        def on_sent(pdu: Any) -> None:
            if pdu.status == 0:
                acked.append(pdu.sequence)
                ids[pdu.sequence] = pdu.message_id.decode()

        def on_received(pdu: Any) -> None:
            receipts.append(pdu.receipted_message_id.decode())

        client = smpplib.client.Client(
            "127.0.0.1", port, timeout=0.5, allow_unknown_opt_params=True
        )
        client.connect()
        client.set_message_sent_handler(on_sent)
        client.set_message_received_handler(on_received)
        client.bind_transceiver(system_id="app", password="pw")
        markers: dict[int, str] = {}
        for i in range(BURST):
            pdu = client.send_message(
                source_addr="App",
                destination_addr=f"49151{i:06d}",
                short_message=f"m{i:04d}".encode(),
                registered_delivery=1,
            )
            markers[pdu.sequence] = f"m{i:04d}"
        sent_before_kill = 0
        try:
            # Bounded: read acknowledgements until about half are in and the modems are busy.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                client.read_once()
                if len(acked) >= BURST // 2 and len(network.received) >= kill_at:
                    break
            sent_before_kill = len(network.received)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            for _ in range(BURST):  # what was already on the wire before the kill
                client.read_once()
        except (smpplib.exceptions.ConnectionError, OSError):
            pass
        client._socket = None  # the gateway is gone; nothing to unbind from

        acknowledged = {markers[seq] for seq in acked}
        assert len(acknowledged) >= BURST // 2
        assert 0 < sent_before_kill < BURST, "the kill did not land while the modems sent"

        proc, port = start_gateway(config, log)  # same database, same modems: it resumes

        def arrived() -> set[str]:
            return {m.text or "" for m in list(network.received)}

        wait_until(
            lambda: acknowledged <= arrived(),
            120,
            lambda: (
                f"{len(acknowledged - arrived())} acknowledged messages never reached the "
                f"network; the gateway's log ends:\n{tail(log)}"
            ),
        )
        counts = Counter(m.text for m in list(network.received))
        duplicates = sum(n - 1 for n in counts.values())
        print(
            "acked",
            len(acknowledged),
            "sent before the kill",
            sent_before_kill,
            "received",
            len(counts),
            "duplicates",
            duplicates,
        )
        assert duplicates <= INFLIGHT  # at most what was in flight at the kill

        # Every acknowledged message's receipt reaches the application, across the kill.
        wanted = {ids[seq] for seq in acked}
        app = smpplib.client.Client("127.0.0.1", port, timeout=0.5, allow_unknown_opt_params=True)
        app.connect()
        app.set_message_received_handler(on_received)
        app.bind_receiver(system_id="app", password="pw")
        deadline = time.monotonic() + 60
        while not wanted <= set(receipts) and time.monotonic() < deadline:
            app.read_once()  # one deliver_sm, or an enquire_link after the socket timeout
        app.unbind()
        app.disconnect()
        missing = wanted - set(receipts)
        assert not missing, (
            f"{len(missing)} of {len(wanted)} receipts never reached the app; the gateway's "
            f"log ends:\n{tail(log)}"
        )
        print("receipts", len(wanted & set(receipts)), "of", len(wanted))
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for modem in modems:
            modem.stop()
