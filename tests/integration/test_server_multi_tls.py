"""submit_multi and the TLS listener, against real peers.

smpplib has no submit_multi, so the test writes it itself, byte by byte from SMPP v3.4
section 4.5.1 with `struct` (not with our codec), on the socket of an smpplib client that
smpplib bound; the submit_multi_resp is read the same way (4.5.2). The TLS listener is
checked with smpplib's own TLS support and a certificate from a throwaway CA (trustme).
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import smpplib.client
import smpplib.consts
import trustme

from gateway.smpp import CommandStatus
from gateway.store import MessageState
from tests.integration.loop import ServerOnLoop

S = CommandStatus
CONFIG = """
numbers: {country_code: "49"}
accounts: [{system_id: shop, password: secret}]
simulated_carriers: {sim: {}}
routes: [{name: de, prefixes: ["49"], targets: [sim]}]
"""
SUBMIT_MULTI, SUBMIT_MULTI_RESP = 0x00000021, 0x80000021


def cstr(text: str) -> bytes:
    return text.encode("ascii") + b"\x00"


def submit_multi(
    dests: list[tuple[int, int, str] | str],
    body: bytes,
    seq: int,
    *,
    schedule: str = "",
) -> bytes:
    """A submit_multi PDU, encoded here from the specification's table."""
    out = cstr("") + bytes((5, 0)) + cstr("Shop") + bytes((len(dests),))
    for dest in dests:
        if isinstance(dest, str):  # dest_flag 2: a distribution list name
            out += b"\x02" + cstr(dest)
        else:  # dest_flag 1: an SME address
            ton, npi, addr = dest
            out += bytes((1, ton, npi)) + cstr(addr)
    out += bytes((0, 0, 0)) + cstr(schedule) + cstr("") + bytes((1, 0, 0, 0))
    out += bytes((len(body),)) + body
    return struct.pack(">IIII", 16 + len(out), SUBMIT_MULTI, 0, seq) + out


def read_submit_multi_resp(
    c: smpplib.client.Client,
) -> tuple[int, int, str, list[tuple[int, int, str, int]]]:
    """(status, sequence_number, message_id, unsuccess_smes) of the next PDU."""
    head = c._recv_exact(16)
    length, command_id, status, seq = struct.unpack(">IIII", head)
    assert command_id == SUBMIT_MULTI_RESP
    body = c._recv_exact(length - 16)
    end = body.index(b"\x00")
    message_id, p = body[:end].decode("ascii"), end + 1
    failed = []
    for _ in range(body[p]):
        ton, npi = body[p + 1], body[p + 2]
        end = body.index(b"\x00", p + 3)
        addr = body[p + 3 : end].decode("ascii")
        (error,) = struct.unpack_from(">I", body, end + 1)
        failed.append((ton, npi, addr, error))
        p = end + 4
    return status, seq, message_id, failed


@pytest.fixture
def running(tmp_path: Path) -> Iterator[ServerOnLoop]:
    r = ServerOnLoop(CONFIG, tmp_path / "smsgw.sqlite3")
    yield r
    r.close()


def bound(port: int, ssl_context: ssl.SSLContext | None = None) -> smpplib.client.Client:
    c = smpplib.client.Client(
        "127.0.0.1", port, timeout=10, ssl_context=ssl_context, allow_unknown_opt_params=True
    )
    c.connect()
    c.bind_transceiver(system_id="shop", password="secret")
    return c


def stored_with_body(running: ServerOnLoop, body: bytes) -> list[object]:
    # Nothing dispatches in this server: every accepted message is still claimable.
    records = running.call(running.store.claim_due(time.time() + 1, 10_000))
    return [r for r in records if r.message.short_message == body]


def test_submit_multi_one_message_per_destination(running: ServerOnLoop) -> None:
    c = bound(running.port)
    body = b"multi to three"
    dests: list[tuple[int, int, str] | str] = [
        (1, 1, "+49 151 1111111"),
        (1, 1, "4412345"),  # no route
        "friends",  # a distribution list: we have none
        (1, 1, "4915122222222"),
        (1, 1, "49abc"),  # not a number
    ]
    c._socket.sendall(submit_multi(dests, body, 0x7000))
    status, seq, message_id, failed = read_submit_multi_resp(c)
    c.unbind()
    c.disconnect()
    assert (status, seq) == (0, 0x7000)
    assert failed == [
        (1, 1, "4412345", S.ESME_RINVDSTADR),
        (0, 0, "friends", S.ESME_RINVDSTADR),
        (1, 1, "49abc", S.ESME_RINVDSTADR),
    ]
    records = stored_with_body(running, body)
    by_destination = {r.message.destination_addr: r for r in records}  # type: ignore[attr-defined]
    assert set(by_destination) == {"491511111111", "4915122222222"}
    ids = {r.message.id for r in records}  # type: ignore[attr-defined]
    assert len(ids) == 2  # each destination its own message and id
    # The response carries the first accepted destination's id.
    assert by_destination["491511111111"].message.id == message_id  # type: ignore[attr-defined]
    for r in records:
        assert r.message.registered_delivery == 1  # type: ignore[attr-defined]
        assert r.message.expires_at is not None  # type: ignore[attr-defined]


def test_submit_multi_with_no_good_destination_fails(running: ServerOnLoop) -> None:
    c = bound(running.port)
    c._socket.sendall(submit_multi([(1, 1, "4412345"), "list"], b"nowhere", 9))
    status, seq, message_id, failed = read_submit_multi_resp(c)
    c.disconnect()
    assert (status, seq, message_id) == (S.ESME_RSUBMITFAIL, 9, "")
    assert [f[3] for f in failed] == [S.ESME_RINVDSTADR, S.ESME_RINVDSTADR]
    assert stored_with_body(running, b"nowhere") == []


def test_submit_multi_bad_schedule(running: ServerOnLoop) -> None:
    c = bound(running.port)
    raw = submit_multi([(1, 1, "4915111111111")], b"when?", 10, schedule="241331120000000+")
    c._socket.sendall(raw)
    status, _seq, message_id, failed = read_submit_multi_resp(c)
    c.disconnect()
    assert (status, message_id, failed) == (S.ESME_RINVSCHED, "", [])


def test_submit_multi_schedule_is_kept(running: ServerOnLoop) -> None:
    c = bound(running.port)
    raw = submit_multi([(1, 1, "4915111111111")], b"later", 11, schedule="000000010000000R")
    c._socket.sendall(raw)
    status, _seq, message_id, _failed = read_submit_multi_resp(c)
    c.disconnect()
    assert status == 0
    record = running.call(running.store.get(message_id))
    assert record.state is MessageState.ACCEPTED
    assert record.message.schedule_at == pytest.approx(record.message.accepted_at + 3600)
    assert stored_with_body(running, b"later") == []  # not due for an hour


# -- TLS -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_running(tmp_path: Path, ca: trustme.CA) -> Iterator[ServerOnLoop]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    config = CONFIG + (
        f"listen: {{tls_port: 0, tls_cert: '{tmp_path / 'cert.pem'}', "
        f"tls_key: '{tmp_path / 'key.pem'}'}}\n"
    )
    r = ServerOnLoop(config, tmp_path / "smsgw.sqlite3")
    yield r
    r.close()


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.check_hostname = False  # smpplib wraps without a server name; the chain is checked
    return context


def test_tls_bind_and_submit(tls_running: ServerOnLoop, ca: trustme.CA) -> None:
    port = tls_running.server.tls_port
    assert port is not None and port != tls_running.port
    c = bound(port, client_context(ca))
    assert c.state == smpplib.consts.SMPP_CLIENT_STATE_BOUND_TRX
    assert isinstance(c._socket, ssl.SSLSocket)
    c.send_message(
        source_addr_ton=5,
        source_addr="Shop",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="4915112345678",
        short_message=b"over TLS",
    )
    resp = c.read_pdu()
    c.unbind()
    c.disconnect()
    assert resp.command == "submit_sm_resp"
    assert resp.status == 0
    record = tls_running.call(tls_running.store.get(resp.message_id.decode()))
    assert record.message.short_message == b"over TLS"
    assert record.message.account == "shop"


def test_plain_port_still_serves_with_tls_configured(tls_running: ServerOnLoop) -> None:
    c = bound(tls_running.port)
    assert c.state == smpplib.consts.SMPP_CLIENT_STATE_BOUND_TRX
    c.unbind()
    c.disconnect()


def test_tls_server_presents_the_configured_certificate(
    tls_running: ServerOnLoop, ca: trustme.CA
) -> None:
    port = tls_running.server.tls_port
    assert port is not None
    # Checked with the host name this time: the certificate is the one issued for 127.0.0.1.
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    # Without our CA the handshake fails: it really is the throwaway certificate.
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")
