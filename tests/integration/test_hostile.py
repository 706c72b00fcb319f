"""Hostile and broken clients never hurt a well-behaved one."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import smpplib.client
import smpplib.exceptions

from gateway.smpp import CommandStatus, GenericNack, decode_pdu
from tests.integration.loop import ServerOnLoop

CONFIG = """
listen: {bind_timeout: 1.0}
accounts: [{system_id: good, password: pw, window: 100, max_binds: 10}]
simulated_carriers: {sim: {}}
routes: [{name: all, targets: [sim]}]
"""


@pytest.fixture
def running(tmp_path: Path) -> Iterator[ServerOnLoop]:
    r = ServerOnLoop(CONFIG, tmp_path / "gw.sqlite3")
    yield r
    r.close()


def raw(port: int, payload: bytes, *, timeout: float = 5.0) -> bytes:
    """Send `payload`, return everything the server writes until it closes (bounded)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = s.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)
    raise AssertionError("the server kept the connection open")


def slow_client(port: int) -> float:
    """One byte every 0.2 s of a bind that never completes; seconds until the server hangs up."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        for byte in bytes.fromhex("0000002f00000009"):  # the start of a bind_transceiver
            try:
                s.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.2)
        s.settimeout(5)
        try:
            while s.recv(1024):
                pass
        except OSError:
            pass
    return time.monotonic() - start


def wrong_password(port: int) -> int:
    c = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
    c.connect()
    try:
        c.bind_transceiver(system_id="good", password="guess")
    except smpplib.exceptions.PDUError as err:
        return int(err.args[1])
    finally:
        c.disconnect()
    return 0


def good_client(port: int, count: int) -> int:
    acked: list[object] = []

    def on_sent(pdu: object) -> None:
        if pdu.status == 0:  # type: ignore[attr-defined]
            acked.append(pdu)

    c = smpplib.client.Client("127.0.0.1", port, timeout=10, allow_unknown_opt_params=True)
    c.connect()
    c.set_message_sent_handler(on_sent)
    c.bind_transmitter(system_id="good", password="pw")
    for i in range(count):
        c.send_message(destination_addr="4915100000", short_message=f"ok {i}".encode())
        c.read_once()
    c.unbind()
    c.disconnect()
    return len(acked)


def test_hostile_clients_do_not_hurt_a_good_one(running: ServerOnLoop) -> None:
    port = running.port
    with ThreadPoolExecutor(max_workers=32) as pool:
        garbage = pool.submit(raw, port, bytes(range(256)) * 4)
        http = pool.submit(raw, port, b"GET / HTTP/1.1\r\nHost: smsgw\r\n\r\n")
        huge = pool.submit(raw, port, bytes.fromhex("7fffffff00000004000000000000002a"))
        slow = pool.submit(slow_client, port)
        guesses = [pool.submit(wrong_password, port) for _ in range(20)]
        good = pool.submit(good_client, port, 50)

        assert good.result(timeout=60) == 50  # every submit answered OK meanwhile
        # Garbage that reads as a plausible length waits for the rest: the bind timer closes it.
        assert garbage.result(30) == b""
        for answer in (http.result(30), huge.result(30)):
            (nack,) = [decode_pdu(answer[: int.from_bytes(answer[:4], "big")])]
            assert isinstance(nack, GenericNack)
            assert nack.command_status == CommandStatus.ESME_RINVCMDLEN
        assert decode_pdu(huge.result(30)[:16]).sequence_number == 42
        assert all(g.result(30) == CommandStatus.ESME_RINVPASWD for g in guesses)
        assert slow.result(30) < 5.0  # closed by the bind timeout, not left to hang
