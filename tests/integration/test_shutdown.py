"""Shutdown as SIGTERM does it: stop accepting, answer what each session already sent (its
window drains), unbind it, and close what does not answer in time."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import smpplib.client
import smpplib.smpp

from tests.integration.loop import ServerOnLoop

CONFIG = """
accounts: [{system_id: app, password: pw, window: 100}]
simulated_carriers: {sim: {}}
routes: [{name: all, targets: [sim]}]
"""


@pytest.fixture
def running(tmp_path: Path) -> Iterator[ServerOnLoop]:
    r = ServerOnLoop(CONFIG, tmp_path / "gw.sqlite3")
    yield r
    r.stop_loop()


def read_pdu(sock: socket.socket, seq: object) -> smpplib.smpp.Command | None:
    head = sock.recv(4, socket.MSG_WAITALL)
    if len(head) < 4:
        return None
    body = sock.recv(int.from_bytes(head, "big") - 4, socket.MSG_WAITALL)
    return smpplib.smpp.parse_pdu(head + body, client=seq, allow_unknown_opt_params=True)


def test_stop_drains_the_window_then_unbinds(running: ServerOnLoop) -> None:
    seq = smpplib.client.SimpleSequenceGenerator()
    sock = socket.create_connection(("127.0.0.1", running.port), timeout=10)
    sock.sendall(
        smpplib.smpp.make_pdu(
            "bind_transceiver", client=seq, system_id="app", password="pw"
        ).generate()
    )
    bind_resp = read_pdu(sock, seq)
    assert bind_resp is not None and bind_resp.status == 0
    burst = b"".join(
        smpplib.smpp.make_pdu(
            "submit_sm",
            client=seq,
            source_addr="Shop",
            destination_addr="4915100000",
            short_message=f"m{i}".encode(),
        ).generate()
        for i in range(50)
    )
    sock.sendall(burst)  # answers not read yet: they are in the window when stop begins

    stopped = threading.Event()
    took: list[float] = []

    def stop() -> None:
        start = time.monotonic()
        running.call(running.server.stop())
        took.append(time.monotonic() - start)
        stopped.set()

    stopper = threading.Thread(target=stop)
    stopper.start()
    seen: list[str] = []
    for _ in range(200):  # bounded: 50 answers, the unbind, then the close
        pdu = read_pdu(sock, seq)
        if pdu is None:
            break
        seen.append(pdu.command)
        if pdu.command == "submit_sm_resp":
            assert pdu.status == 0
        if pdu.command == "unbind":
            resp = smpplib.smpp.make_pdu("unbind_resp", client=seq)
            resp.sequence = pdu.sequence
            sock.sendall(resp.generate())
    assert stopped.wait(20)
    stopper.join(timeout=5)
    sock.close()
    assert seen.count("submit_sm_resp") == 50
    assert seen[-1] == "unbind"  # every answer before the unbind
    assert took[0] < 2.0, "an answered unbind ends the session at once"
    running.call(running.store.close())


def test_a_client_that_never_answers_the_unbind_is_closed(running: ServerOnLoop) -> None:
    client = smpplib.client.Client(
        "127.0.0.1", running.port, timeout=10, allow_unknown_opt_params=True
    )
    client.connect()
    client.bind_receiver(system_id="app", password="pw")  # smpplib never answers unbind
    start = time.monotonic()
    running.call(running.server.stop(grace=10))
    took = time.monotonic() - start
    assert 1.5 <= took < 8, took  # waited for the answer a while, not for the whole grace
    assert client._socket is not None
    client._socket.settimeout(5)
    data = client._socket.recv(65536)  # our unbind, then the close
    assert b"\x00\x00\x00\x06" in data[4:8]  # command_id unbind
    client._socket.close()
    running.call(running.store.close())
