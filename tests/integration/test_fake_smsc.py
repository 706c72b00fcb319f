"""The fake carrier's receipt behaviours, checked from outside with smpplib as the ESME (no
smsgw in between): what each switch makes the carrier send is what the ladder and the crash
test rely on."""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import smpplib.client
import smpplib.exceptions

from tests.fakes.smsc import Behaviour, FakeSmsc
from tests.integration.loop import LoopThread


class Esme:
    """A transceiver bound to a fake started with `behaviour`; collects what comes back."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.loop = LoopThread()
        self.smsc = FakeSmsc(behaviour)
        port = self.loop.call(self.smsc.start())
        self.responses: list[Any] = []
        self.delivers: list[tuple[float, Any]] = []
        self.client = smpplib.client.Client(
            "127.0.0.1", port, timeout=0.2, allow_unknown_opt_params=True
        )
        # smpplib calls handlers with pdu=...: a bound list.append takes no keywords
        self.client.set_message_sent_handler(lambda pdu: self.responses.append(pdu))  # noqa: PLW0108
        self.client.set_message_received_handler(
            lambda pdu: self.delivers.append((time.monotonic(), pdu))
        )
        self.client.connect()
        self.client.bind_transceiver(system_id="gw", password="pw")

    def submit(self, destination: str, text: bytes, **fields: Any) -> None:
        self.client.send_message(
            source_addr="Shop",
            destination_addr=destination,
            short_message=text,
            registered_delivery=1,
            **fields,
        )

    def read_until(self, responses: int, delivers: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # bounded; each read returns within 0.2 s
            if len(self.responses) >= responses and len(self.delivers) >= delivers:
                return
            self.client.read_once()
        raise AssertionError(f"{len(self.responses)} responses, {len(self.delivers)} delivers")

    def texts(self) -> list[str]:
        return [p.short_message.decode() for _t, p in self.delivers]

    def close(self) -> None:
        if self.client._socket is not None:
            _quietly(self.client.unbind)
            self.client.disconnect()
        self.loop.call(self.smsc.stop())
        self.loop.stop_loop()


def _quietly(call: Any) -> None:
    with contextlib.suppress(smpplib.exceptions.ConnectionError, OSError):
        call()


@pytest.fixture
def esme(request: pytest.FixtureRequest) -> Iterator[Esme]:
    e = Esme(request.param)
    yield e
    e.close()


def _fields(text: str) -> dict[str, str]:
    return dict(part.split(":", 1) for part in text.split() if ":" in part)


@pytest.mark.parametrize(
    "esme",
    [Behaviour(seed=5, fail_share=0.5, fail_error=34, receipt_delays=(0.05, 0.6))],
    indirect=True,
)
def test_delays_in_the_range_and_one_true_outcome_per_message(esme: Esme) -> None:
    sent_at = time.monotonic()
    for i in range(20):
        esme.submit(f"4915{i:08d}", f"m{i}".encode())
    esme.read_until(20, 20)
    waited = [t - sent_at for t, _p in esme.delivers]
    assert min(waited) >= 0.04 and max(waited) <= 2.0  # 0.05-0.6 s, and a read's slack
    assert max(waited) - min(waited) > 0.2  # spread over the range, not all at once
    truth = {r.upstream_id: r.delivered for r in esme.smsc.records}
    for _t, pdu in esme.delivers:
        upstream_id = pdu.receipted_message_id.decode()
        fields = _fields(pdu.short_message.decode())
        assert fields["stat"] == ("DELIVRD" if truth[upstream_id] else "UNDELIV")
        assert fields["err"] == ("000" if truth[upstream_id] else "034")
        assert pdu.message_state == (2 if truth[upstream_id] else 5)
    assert 4 <= sum(not ok for ok in truth.values()) <= 16  # about half failed
    again = FakeSmsc(Behaviour(seed=5, fail_share=0.5))
    assert all(  # a resend has the same fate: it depends on the message and the seed only
        again.outcome_of(r.destination, r.short_message) == r.delivered for r in esme.smsc.records
    )


UDH = [b"\x05\x00\x03\x07\x03" + bytes([n]) for n in (1, 2, 3)]


@pytest.mark.parametrize(
    ("esme", "part"),
    [
        (Behaviour(multipart_receipts="all"), None),
        (Behaviour(multipart_receipts="last"), 3),
        (Behaviour(multipart_receipts="first"), 1),
    ],
    indirect=["esme"],
    ids=["all", "last", "first"],
)
def test_multipart_receipts(esme: Esme, part: int | None) -> None:
    for udh in UDH:
        esme.submit("491511111", udh + b"part", esm_class=0x40)
    esme.read_until(3, 3 if part is None else 1)
    esme.read_until(3, 0, timeout=0.3)  # nothing more comes
    ids = [r.upstream_id for r in esme.smsc.records]
    receipted = [p.receipted_message_id.decode() for _t, p in esme.delivers]
    assert receipted == (ids if part is None else [ids[part - 1]])


@pytest.mark.parametrize("esme", [Behaviour(intermediate=True)], indirect=True)
def test_intermediate_notification_before_the_receipt(esme: Esme) -> None:
    esme.submit("491511111", b"hello")
    esme.read_until(1, 2)
    (_, first), (_, last) = esme.delivers
    assert (first.esm_class, first.message_state) == (0x20, 1)
    assert _fields(first.short_message.decode())["stat"] == "ENROUTE"
    assert (last.esm_class, last.message_state) == (0x04, 2)


@pytest.mark.parametrize("esme", [Behaviour(receipt_flag=False)], indirect=True)
def test_receipt_without_the_receipt_bit(esme: Esme) -> None:
    esme.submit("491511111", b"hello")
    esme.read_until(1, 1)
    ((_t, pdu),) = esme.delivers
    assert pdu.esm_class == 0
    assert pdu.receipted_message_id is None and pdu.message_state is None  # text only
    assert _fields(pdu.short_message.decode())["id"] == esme.smsc.records[0].upstream_id


@pytest.mark.parametrize("esme", [Behaviour(stat_word="ACKED", receipt_tlvs=False)], indirect=True)
def test_vendor_stat_word(esme: Esme) -> None:
    esme.submit("491511111", b"hello")
    esme.read_until(1, 1)
    assert _fields(esme.texts()[0])["stat"] == "ACKED"


@pytest.mark.parametrize(
    ("esme", "check"),
    [
        (Behaviour(id_format="decimal", id_start=7, receipt_id="zeros"), "0000000007"),
        (Behaviour(id_start=0x1E4, receipt_id="decimal"), "484"),
        (Behaviour(id_start=0xABC, receipt_id="lower"), "abc"),
        (Behaviour(id_format="uuid", receipt_id="stripped"), "uuid-stripped"),
        (Behaviour(id_format="uuid", receipt_id="upper"), "uuid-upper"),
    ],
    indirect=["esme"],
    ids=["decimal-zeros", "hex-as-decimal", "hex-lower", "uuid-stripped", "uuid-upper"],
)
def test_id_formats_and_spellings(esme: Esme, check: str) -> None:
    esme.submit("491511111", b"hello")
    esme.read_until(1, 1)
    given = esme.responses[0].message_id.decode()
    in_text = _fields(esme.texts()[0])["id"]
    tlv = esme.delivers[0][1].receipted_message_id.decode()
    assert tlv == given  # the TLV carries the id as given
    if check.startswith("uuid"):
        uuid.UUID(given)  # a UUID
        want = given.lstrip("0").upper() if check == "uuid-stripped" else given.upper()
        assert in_text == want
    else:
        assert in_text == check


@pytest.mark.parametrize("esme", [Behaviour(text_disagrees=True)], indirect=True)
def test_text_disagrees_with_the_tlvs(esme: Esme) -> None:
    esme.submit("491511111", b"hello")
    esme.read_until(1, 1)
    given = esme.responses[0].message_id.decode()
    pdu = esme.delivers[0][1]
    fields = _fields(pdu.short_message.decode())
    assert pdu.receipted_message_id.decode() == given and pdu.message_state == 2
    assert fields["id"] == f"{int(given, 16) + 1:X}" and fields["stat"] == "UNDELIV"


@pytest.mark.parametrize("esme", [Behaviour(hold_responses=True)], indirect=True)
def test_held_responses_count_the_outstanding(esme: Esme) -> None:
    for i in range(4):
        esme.submit(f"49151111{i}", b"x")
    deadline = time.monotonic() + 5
    while esme.smsc.outstanding() < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert esme.smsc.outstanding() == 4 and not esme.responses
    assert esme.loop.call(esme.smsc.release_responses()) == 4
    esme.read_until(4, 4)
    assert esme.smsc.max_outstanding == 4 and esme.smsc.outstanding() == 0


@pytest.mark.parametrize("esme", [Behaviour(reset_after=2)], indirect=True)
def test_reset_after(esme: Esme) -> None:
    esme.submit("491511110", b"x")
    esme.submit("491511111", b"x")
    with pytest.raises((ConnectionResetError, smpplib.exceptions.ConnectionError)):
        esme.read_until(10, 10, timeout=5)  # the link is reset (RST), not closed (FIN)
    assert esme.smsc.resets == 1
    if esme.client._socket is not None:
        esme.client._socket.close()
    esme.client._socket = None  # gone: nothing to unbind


def test_reset_is_a_reset() -> None:
    """What the gateway's socket sees: ECONNRESET on read, not an orderly end of stream."""
    loop = LoopThread()
    smsc = FakeSmsc(Behaviour(reset_after=1))
    port = loop.call(smsc.start())
    try:
        seq = smpplib.client.SimpleSequenceGenerator()
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        bind = smpplib.smpp.make_pdu("bind_transceiver", client=seq, system_id="g", password="p")
        submit = smpplib.smpp.make_pdu(
            "submit_sm", client=seq, destination_addr="4915", short_message=b"x"
        )
        sock.sendall(bind.generate() + submit.generate())
        with pytest.raises(ConnectionResetError):
            for _ in range(100):  # bounded: the answers, then the reset
                if not sock.recv(65536):
                    break
        sock.close()
    finally:
        loop.call(smsc.stop())
        loop.stop_loop()
