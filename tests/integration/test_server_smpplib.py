"""smpplib, a real SMPP client library, binds to a real server on an ephemeral port."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.smpp

from gateway.server import hash_password
from gateway.smpp import (
    CancelSm,
    CancelSmResp,
    CommandStatus,
    ReplaceSm,
    ReplaceSmResp,
    decode_pdu,
    encode_pdu,
)
from gateway.smpp.framing import FrameBuffer
from gateway.store import MessageState
from tests.integration.loop import ServerOnLoop

CONFIG = """
numbers: {country_code: "49"}
accounts:
  - {system_id: shop, password: secret}
  - {system_id: hashed, password_hash: "%s"}
  - {system_id: slow, password: pw, throughput: 5}
simulated_carriers: {sim: {}}
routes:
  - {name: de, prefixes: ["49"], targets: [sim]}
"""


@pytest.fixture
def running(tmp_path: Path) -> Iterator[ServerOnLoop]:
    r = ServerOnLoop(CONFIG % hash_password("pw2", iterations=1000), tmp_path / "smsgw.sqlite3")
    yield r
    r.close()


def client(port: int) -> smpplib.client.Client:
    c = smpplib.client.Client("127.0.0.1", port, timeout=10, allow_unknown_opt_params=True)
    c.connect()
    return c


def test_bind_submit_is_stored_before_the_response(running: ServerOnLoop) -> None:
    responses = []

    def on_sent(pdu: object) -> None:  # smpplib passes pdu= as a keyword
        responses.append(pdu)

    c = client(running.port)
    c.set_message_sent_handler(on_sent)
    c.bind_transceiver(system_id="shop", password="secret")
    c.send_message(
        source_addr_ton=5,
        source_addr="Shop",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="+49 151 12345678",
        short_message=b"Your code is 1234",
        registered_delivery=1,
    )
    c.read_once()  # the submit_sm_resp
    c.unbind()
    c.disconnect()
    (resp,) = responses
    assert resp.status == 0
    message_id = resp.message_id.decode()
    record = running.call(running.store.get(message_id))
    assert record is not None
    assert record.state is MessageState.ACCEPTED  # type: ignore[attr-defined]
    assert record.message.destination_addr == "4915112345678"  # type: ignore[attr-defined]
    assert record.message.short_message == b"Your code is 1234"  # type: ignore[attr-defined]
    assert record.message.route == "de"  # type: ignore[attr-defined]


def test_no_route_is_invalid_destination(running: ServerOnLoop) -> None:
    c = client(running.port)
    c.bind_transmitter(system_id="shop", password="secret")
    with pytest.raises(smpplib.exceptions.PDUError) as err:
        c.send_message(destination_addr="4412345", short_message=b"x")
        c.read_once()
    assert err.value.args[1] == smpplib.consts.SMPP_ESME_RINVDSTADR
    c.disconnect()


@pytest.mark.parametrize(
    ("system_id", "password", "status"),
    [
        ("shop", "wrong", smpplib.consts.SMPP_ESME_RINVPASWD),
        ("nobody", "x", smpplib.consts.SMPP_ESME_RINVSYSID),
        ("hashed", "nope", smpplib.consts.SMPP_ESME_RINVPASWD),
    ],
)
def test_bad_binds_are_refused_with_the_right_status(
    running: ServerOnLoop, system_id: str, password: str, status: int
) -> None:
    c = client(running.port)
    with pytest.raises(smpplib.exceptions.PDUError) as err:
        c.bind_transceiver(system_id=system_id, password=password)
    assert err.value.args[1] == status
    c.disconnect()


def test_hashed_password_binds(running: ServerOnLoop) -> None:
    c = client(running.port)
    c.bind_receiver(system_id="hashed", password="pw2")
    assert c.state == smpplib.consts.SMPP_CLIENT_STATE_BOUND_RX
    c.unbind()
    c.disconnect()


def test_submit_before_bind_is_invalid_bind_status(running: ServerOnLoop) -> None:
    c = client(running.port)
    c.state = smpplib.consts.SMPP_CLIENT_STATE_BOUND_TX  # make smpplib send it anyway
    with pytest.raises(smpplib.exceptions.PDUError) as err:
        c.send_message(destination_addr="4915112345678", short_message=b"x")
        c.read_once()
    assert err.value.args[1] == smpplib.consts.SMPP_ESME_RINVBNDSTS
    c.disconnect()


def test_query_cancel_and_replace(running: ServerOnLoop) -> None:
    sent: list[object] = []

    def on_sent(pdu: object) -> None:
        sent.append(pdu)

    c = client(running.port)
    c.set_message_sent_handler(on_sent)
    c.bind_transceiver(system_id="shop", password="secret")
    c.send_message(destination_addr="4915112345678", short_message=b"first")
    c.read_once()
    message_id = sent[-1].message_id.decode()  # type: ignore[attr-defined]

    def query() -> object:
        c.send_pdu(smpplib.smpp.make_pdu("query_sm", client=c, message_id=message_id))
        return c.read_pdu()

    answer = query()
    assert answer.status == 0  # type: ignore[attr-defined]
    assert answer.message_state == 1  # type: ignore[attr-defined]  # ENROUTE: not yet sent

    # smpplib has no replace_sm / cancel_sm: those two go over smpplib's socket with our codec.
    def ask(pdu: object) -> object:
        c._socket.sendall(encode_pdu(pdu))  # type: ignore[arg-type]
        frames = FrameBuffer()
        for _ in range(100):  # bounded
            frames.feed(c._socket.recv(4096))
            raw = frames.next_pdu()
            if raw is not None:
                return decode_pdu(raw)
        raise AssertionError("no answer")

    replaced = ask(ReplaceSm(message_id=message_id, short_message=b"second", sequence_number=90))
    assert replaced == ReplaceSmResp(sequence_number=90)
    record = running.call(running.store.get(message_id))
    assert record.message.short_message == b"second"  # type: ignore[attr-defined]
    assert ask(CancelSm(message_id=message_id, sequence_number=91)) == CancelSmResp(
        sequence_number=91
    )
    assert query().message_state == 4  # type: ignore[attr-defined]  # DELETED
    assert ask(CancelSm(message_id=message_id, sequence_number=92)) == CancelSmResp(
        sequence_number=92, command_status=CommandStatus.ESME_RCANCELFAIL
    )
    assert ask(CancelSm(message_id="nope", sequence_number=93)).command_status == (  # type: ignore[attr-defined]
        CommandStatus.ESME_RCANCELFAIL
    )
    c.unbind()
    c.disconnect()


def test_over_the_throughput_limit_is_throttled(running: ServerOnLoop) -> None:
    statuses: list[int] = []

    def on_sent(pdu: object) -> None:
        statuses.append(pdu.status)  # type: ignore[attr-defined]

    c = client(running.port)
    c.set_message_sent_handler(on_sent)
    c.bind_transmitter(system_id="slow", password="pw")
    start = time.monotonic()
    for _ in range(20):  # far faster than 5/s
        try:
            c.send_message(destination_addr="4915112345678", short_message=b"x")
            c.read_once()
        except smpplib.exceptions.PDUError as err:
            statuses.append(err.args[1])
    elapsed = time.monotonic() - start
    c.unbind()
    c.disconnect()
    allowed = 5 + 5 * elapsed + 1  # the burst, what refilled meanwhile, one for rounding
    assert statuses.count(0) <= allowed
    assert statuses.count(0) + statuses.count(smpplib.consts.SMPP_ESME_RTHROTTLED) == 20
    assert statuses.count(smpplib.consts.SMPP_ESME_RTHROTTLED) >= 1


@pytest.mark.parametrize(("version", "told"), [(0x50, 0x34), (0x34, 0x34), (0x33, None)])
def test_interface_version_is_answered_as_3_4(
    running: ServerOnLoop, version: int, told: int | None
) -> None:
    """A v5.0 client (0x50) binds and is told we speak 3.4; a 3.3 client gets no TLV.
    smpplib always writes 0x34, so its PDU is built, changed and sent by hand."""
    seq = smpplib.client.SimpleSequenceGenerator()
    bind = smpplib.smpp.make_pdu(
        "bind_transceiver", client=seq, system_id="shop", password="secret"
    )
    bind.interface_version = version
    with socket.create_connection(("127.0.0.1", running.port), timeout=10) as s:
        s.sendall(bind.generate())
        head = s.recv(4, socket.MSG_WAITALL)
        body = s.recv(int.from_bytes(head, "big") - 4, socket.MSG_WAITALL)
    resp = smpplib.smpp.parse_pdu(head + body, client=seq, allow_unknown_opt_params=True)
    assert resp.command == "bind_transceiver_resp"
    assert resp.status == 0
    assert getattr(resp, "sc_interface_version", None) == told
