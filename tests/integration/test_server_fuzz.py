"""Fuzzing the running server over TCP while a well-behaved smpplib client keeps submitting.

Hypothesis writes mutated PDUs - bit flips, truncations, wrong command_lengths, wrong
command_ids, valid PDUs in the wrong state, several PDUs per write, a session's end in the
middle of a write - one connection per example. The invariants (issue 8, acceptance):

* the gateway logs no error and its loop reports no unhandled exception (a traceback is both);
* what the server writes back is well-formed SMPP, and nothing follows a successful
  unbind_resp on a connection;
* the good client, bound all along, gets every submit_sm answered 0.

Bounded: a fixed number of examples (whatever the Hypothesis profile), each ending its
connection with a half-close the server sees at once; the whole test takes some seconds.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import smpplib.client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.server import smpp as server_module
from gateway.smpp import (
    AlertNotification,
    BindReceiver,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    CancelSm,
    DataSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    QuerySm,
    ReplaceSm,
    SmeAddress,
    SubmitMulti,
    SubmitSm,
    Unbind,
    UnbindResp,
    decode_pdu,
    encode_pdu,
    make_tlvs,
)
from gateway.smpp.framing import FrameBuffer
from tests.integration.loop import ServerOnLoop
from tests.integration.wire import GatewayLog

CONFIG = """
listen: {bind_timeout: 2.0}
numbers: {country_code: "49"}
accounts:
  - {system_id: fuzz, password: pw, window: 8, max_binds: 64, throughput: 500}
  - {system_id: good, password: pw, window: 10}
simulated_carriers: {sim: {}}
routes:
  - {name: de, prefixes: ["49"], targets: [sim]}
"""

EXAMPLES = 400  # fixed, under every profile: the test's time is bounded by it
DEST = "4915112345678"

# Every request an application may send, valid, and some it may not (wrong state, wrong side).
_BASE = [
    BindTransceiver(system_id="fuzz", password="pw"),
    BindTransmitter(system_id="fuzz", password="pw"),
    BindReceiver(system_id="fuzz", password="pw", interface_version=0x33),
    BindTransceiver(system_id="fuzz", password="bad"),
    SubmitSm(destination_addr=DEST, short_message=b"fuzz", registered_delivery=1),
    SubmitSm(
        source_addr="Shop",
        source_addr_ton=5,
        destination_addr=DEST,
        esm_class=0x40,
        short_message=b"\x05\x00\x03\x07\x02\x01part",
    ),
    SubmitSm(destination_addr=DEST, schedule_delivery_time="000000010000000R"),
    DataSm(destination_addr=DEST, tlvs=make_tlvs(message_payload=b"payload")),
    DataSm(source_addr="1" * 30, destination_addr=DEST),
    SubmitMulti(
        dest_addresses=(SmeAddress(1, 1, DEST), SmeAddress(0, 0, "x")), short_message=b"multi"
    ),
    QuerySm(message_id="0"),
    CancelSm(message_id="0"),
    ReplaceSm(message_id="0", short_message=b"r", schedule_delivery_time="000000000100000R"),
    EnquireLink(),
    Unbind(),
    GenericNack(),
    DeliverSmResp(),
    BindTransceiverResp(system_id="x"),
    UnbindResp(),
    EnquireLinkResp(),
    Outbind(system_id="x"),
    AlertNotification(source_addr="1", esme_addr="2"),
]
_COMMAND_IDS = [
    0x00000001,
    0x00000002,
    0x00000004,
    0x00000006,
    0x00000009,
    0x00000015,
    0x00000103,
    0x80000000,
    0x80000004,
    0x00000000,
    0x7FFFFFFF,
    0xFFFFFFFF,
]


@st.composite
def _pdu(draw: st.DrawFn) -> bytes:
    """One PDU, valid or mutated."""
    pdu = draw(st.sampled_from(_BASE))
    data = bytearray(encode_pdu(pdu._replace(sequence_number=draw(st.integers(0, 0x7FFFFFFF)))))
    kind = draw(
        st.sampled_from(["valid", "valid", "flip", "truncate", "length", "command_id", "garbage"])
    )
    if kind == "flip":
        for _ in range(draw(st.integers(1, 4))):
            bit = draw(st.integers(0, len(data) * 8 - 1))
            data[bit // 8] ^= 1 << (bit % 8)
    elif kind == "truncate":
        cut = draw(st.integers(0, len(data) - 1))
        data = data[:cut]
        if draw(st.booleans()) and cut >= 4:  # and say so in command_length
            data[:4] = cut.to_bytes(4, "big")
    elif kind == "length":
        length = draw(
            st.one_of(
                st.integers(0, 40),
                st.integers(len(data) - 3, len(data) + 3),
                st.integers(0, 0xFFFFFFFF),
            )
        )
        data[:4] = max(0, length).to_bytes(4, "big")
    elif kind == "command_id":
        command_id = draw(st.one_of(st.sampled_from(_COMMAND_IDS), st.integers(0, 0xFFFFFFFF)))
        data[4:8] = command_id.to_bytes(4, "big")
    elif kind == "garbage":
        data += draw(st.binary(max_size=40))
    return bytes(data)


# A connection: 1-4 writes of 1-5 PDUs each.
_CASES = st.lists(st.lists(_pdu(), min_size=1, max_size=5), min_size=1, max_size=4)


def _answers(data: bytes) -> list[Any]:
    """The server's answers, each of which must be well-formed SMPP."""
    frames = FrameBuffer()
    frames.feed(data)
    out = [decode_pdu(raw) for raw in frames.pdus()]
    assert len(frames) == 0, "the server wrote a partial PDU"
    return out


def _connection(port: int, writes: list[list[bytes]]) -> bytes:
    """Write each write whole, half-close, and read until the server closes (bounded)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            for chunks in writes:
                s.sendall(b"".join(chunks))
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server closed first (a framing error): what it wrote is still there
        got = bytearray()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                return bytes(got)
            got += data
    if time.monotonic() >= deadline:
        raise AssertionError("the server kept a half-closed connection open")
    return bytes(got)


class GoodClient(threading.Thread):
    """smpplib, bound as a transmitter, submitting and reading each answer until told to stop."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.statuses: list[int] = []
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            c = smpplib.client.Client(
                "127.0.0.1", self.port, timeout=10, allow_unknown_opt_params=True
            )
            c.connect()
            c.set_message_sent_handler(lambda pdu: self.statuses.append(pdu.status))
            c.bind_transmitter(system_id="good", password="pw")
            while not self.stop.is_set() and self.sent < 100_000:
                c.send_message(destination_addr=DEST, short_message=f"good {self.sent}".encode())
                self.sent += 1
                for _ in range(10):  # bounded: an enquire_link may come first
                    if len(self.statuses) >= self.sent:
                        break
                    c.read_once()
            c.unbind()
            c.disconnect()
        except BaseException as exc:  # reported by the test
            self.error = exc


async def _settled(running: ServerOnLoop) -> bool:
    """Wait (bounded) until the server runs no connection but the good client's, then let the
    loop run the callbacks that report a handler's exception."""
    for _ in range(500):
        if len(running.server._tasks) <= 1:
            for _ in range(3):
                await asyncio.sleep(0)
            return True
        await asyncio.sleep(0.01)
    return False


@pytest.fixture
def running(tmp_path: Path) -> Iterator[ServerOnLoop]:
    # A refused bind waits before closing (to slow password guessing); not 1 s per example here.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(server_module, "_REJECT_DELAY", 0.01)
        r = ServerOnLoop(CONFIG, tmp_path / "gw.sqlite3")
        yield r
        r.close()


def test_mutated_pdus_never_hurt_the_server_or_a_good_client(running: ServerOnLoop) -> None:
    log = GatewayLog(running.loop)
    examples: list[object] = []
    good = GoodClient(running.port)
    good.start()
    try:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(_CASES)
        def one_connection(writes: list[list[bytes]]) -> None:
            examples.append(writes)
            before = len(log.errors())
            answers = _answers(_connection(running.port, writes))
            for i, answer in enumerate(answers):
                if isinstance(answer, UnbindResp) and answer.command_status == 0:
                    assert i == len(answers) - 1, f"answered after the unbind_resp: {answers}"
            # This connection's handler is over (only the good client's is left), so whatever
            # it raised or logged is in: a failure is pinned on the example that caused it.
            assert running.call(_settled(running))
            assert log.errors()[before:] == []

        one_connection()
    finally:
        good.stop.set()
        good.join(timeout=30)
        log.close()
    assert good.error is None, repr(good.error)
    assert not good.is_alive()
    assert len(examples) >= EXAMPLES // 2  # Hypothesis did run them
    assert good.sent > 0
    assert good.statuses == [0] * good.sent  # every message answered, and answered 0
    assert log.errors() == []
