"""The server at its edges, driven over TCP: several PDUs in one write, sessions that end in
the middle of a read, what a v3.3 receiver gets, the checks of query/cancel/replace, addresses
no PDU of ours could carry, and the bind refusals and back-pressure that had no test."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.smpp import (
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    CancelSm,
    CancelSmResp,
    CommandStatus,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    QuerySm,
    QuerySmResp,
    ReplaceSm,
    ReplaceSmResp,
    SubmitSm,
    SubmitSmResp,
    Tag,
    Unbind,
    UnbindResp,
    encode_pdu,
    make_tlvs,
)
from gateway.store import MessageState
from tests.integration.loop import ServerOnLoop
from tests.integration.wire import GatewayLog, Raw

CONFIG = """
numbers: {country_code: "49"}
accounts:
  - {system_id: shop, password: secret}
  - {system_id: slow, password: pw, throughput: 1}
  - {system_id: one, password: pw, max_binds: 1}
  - {system_id: far, password: pw, allow_cidrs: ["10.0.0.0/8"]}
  - {system_id: txonly, password: pw, bind_types: [transmitter]}
  - {system_id: narrow, password: pw, window: 3}
simulated_carriers: {sim: {}}
routes:
  - {name: de, prefixes: ["49"], targets: [sim]}
"""

S = CommandStatus
DEST = "4915112345678"


@pytest.fixture
def running(tmp_path: Path) -> Iterator[ServerOnLoop]:
    r = ServerOnLoop(CONFIG, tmp_path / "gw.sqlite3")
    yield r
    r.close()


@pytest.fixture
def log(running: ServerOnLoop) -> Iterator[GatewayLog]:
    captured = GatewayLog(running.loop)
    yield captured
    captured.close()
    assert captured.errors() == []


def submit(seq: int, **fields: Any) -> SubmitSm:
    return SubmitSm(destination_addr=DEST, short_message=b"hi", sequence_number=seq, **fields)


def trx(system_id: str = "shop", password: str = "secret", seq: int = 1) -> BindTransceiver:
    return BindTransceiver(system_id=system_id, password=password, sequence_number=seq)


# -- item 9: one write that ends a session --------------------------------------------------------


def test_bad_length_right_behind_a_bind_is_nacked_then_closed(
    running: ServerOnLoop, log: GatewayLog
) -> None:
    bad_length = bytes.fromhex("0000000800000004000000000000002a")
    with Raw(running.port) as c:
        c.send(trx(), bad_length, EnquireLink(sequence_number=43))
        bind_resp, nack = c.rest()
    assert isinstance(bind_resp, BindTransceiverResp) and bind_resp.command_status == 0
    assert nack == GenericNack(sequence_number=42, command_status=S.ESME_RINVCMDLEN)


def test_unbind_ends_the_session_after_what_came_before_it_in_the_write(
    running: ServerOnLoop, log: GatewayLog
) -> None:
    with Raw(running.port) as c:
        assert c.bind(trx("slow", "pw")).command_status == 0
        c.send(
            submit(2),
            submit(3),  # over the throughput of 1/s: throttled
            QuerySm(message_id="nope", sequence_number=4),
            Unbind(sequence_number=5),
            submit(6),
            EnquireLink(sequence_number=7),
            trx("slow", "pw", seq=8),
        )
        answers = c.rest()
    *before, unbound = answers  # the unbind_resp last, nothing after it
    # Answered as each is ready (a submit waits for its group commit), in any order.
    ok, throttled, query = sorted(before, key=lambda a: a.sequence_number)
    assert isinstance(ok, SubmitSmResp) and (ok.sequence_number, ok.command_status) == (2, 0)
    assert throttled == SubmitSmResp(sequence_number=3, command_status=S.ESME_RTHROTTLED)
    assert query == QuerySmResp(sequence_number=4, command_status=S.ESME_RQUERYFAIL)
    assert unbound == UnbindResp(sequence_number=5)
    record = running.call(running.store.get(ok.message_id))
    assert record is not None  # answered 0: stored


def test_requests_in_the_bind_segment_are_answered_as_bound_after_the_bind_resp(
    running: ServerOnLoop, log: GatewayLog
) -> None:
    with Raw(running.port) as c:
        c.send(trx(), submit(2), submit(3), submit(4), Unbind(sequence_number=5))
        answers = c.rest()
    assert [type(a) for a in answers] == [
        BindTransceiverResp,
        SubmitSmResp,
        SubmitSmResp,
        SubmitSmResp,
        UnbindResp,
    ]
    assert [(a.sequence_number, a.command_status) for a in answers] == [
        (1, 0),
        (2, 0),
        (3, 0),
        (4, 0),
        (5, 0),
    ]


def test_nothing_behind_a_refused_bind_is_answered(running: ServerOnLoop, log: GatewayLog) -> None:
    with Raw(running.port) as c:
        c.send(trx(password="wrong"), submit(2), QuerySm(message_id="x", sequence_number=3))
        (refused,) = c.rest()
    assert refused == BindTransceiverResp(sequence_number=1, command_status=S.ESME_RINVPASWD)


# -- item 8: addresses the gateway could not answer with --------------------------------------


@pytest.mark.parametrize(
    ("source", "destination", "status"),
    [
        ("1" * 20, DEST, S.ESME_ROK),
        ("1" * 21, DEST, S.ESME_RINVSRCADR),  # a receipt's destination_addr holds 20
        ("x" * 64, DEST, S.ESME_RINVSRCADR),
        ("Shop", "0" + "1" * 19, S.ESME_RINVDSTADR),  # 49 + 19 digits: an upstream cannot take it
    ],
)
def test_data_sm_addresses_no_receipt_could_carry_are_refused(
    running: ServerOnLoop, log: GatewayLog, source: str, destination: str, status: int
) -> None:
    with Raw(running.port) as c:
        assert c.bind(trx()).command_status == 0
        c.send(
            DataSm(
                source_addr=source,
                destination_addr=destination,
                tlvs=make_tlvs(message_payload=b"hello"),
                sequence_number=2,
            )
        )
        (resp,) = c.read(1)
    assert isinstance(resp, DataSmResp)
    assert resp.command_status == status


# -- item 10b ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [0x33, 0x34])
def test_a_v3_3_receiver_gets_its_receipts_without_tlvs(
    running: ServerOnLoop, log: GatewayLog, version: int
) -> None:
    # A receipt as the dispatcher queues it: encoded, with its three TLVs.
    tlvs = (
        *make_tlvs(receipted_message_id="m1", message_state=2),
        (int(Tag.network_error_code), b"\x03\x00\x00"),
    )
    receipt = DeliverSm(esm_class=0x04, short_message=b"id:m1 stat:DELIVRD", tlvs=tlvs)
    with Raw(running.port) as c:
        resp = c.bind(BindReceiver(system_id="shop", password="secret", interface_version=version))
        assert isinstance(resp, BindReceiverResp) and resp.command_status == 0
        running.call(
            running.store.enqueue_delivery("shop", "receipt", encode_pdu(receipt), time.time(), 60)
        )
        running.loop.call_soon_threadsafe(running.server.notify, "shop")
        (got,) = c.read(1)  # decode_pdu checked its command_length against its octets
    assert isinstance(got, DeliverSm)
    assert got.tlvs == (() if version == 0x33 else tlvs)
    assert got.short_message == receipt.short_message


def _stored(running: ServerOnLoop, c: Raw, **fields: Any) -> str:
    c.send(submit(2, **fields))
    (resp,) = c.read(1)
    assert resp.command_status == 0
    return str(resp.message_id)


def test_query_cancel_replace_verify_the_source_addr(
    running: ServerOnLoop, log: GatewayLog
) -> None:
    with Raw(running.port) as c:
        assert c.bind(trx()).command_status == 0
        message_id = _stored(running, c, source_addr="Shop", source_addr_ton=5)
        c.send(
            QuerySm(message_id=message_id, source_addr="Other", sequence_number=3),
            QuerySm(message_id=message_id, source_addr="", sequence_number=4),
            ReplaceSm(
                message_id=message_id, source_addr="Other", short_message=b"x", sequence_number=5
            ),
            CancelSm(message_id=message_id, source_addr="Other", sequence_number=6),
            CancelSm(message_id=message_id, source_addr="", sequence_number=7),
            CancelSm(
                message_id=message_id,
                source_addr="Shop",
                destination_addr="4915199999999",
                sequence_number=8,
            ),
        )
        answers = c.read(6)
        assert answers == [
            QuerySmResp(sequence_number=3, command_status=S.ESME_RQUERYFAIL),
            QuerySmResp(sequence_number=4, command_status=S.ESME_RQUERYFAIL),
            ReplaceSmResp(sequence_number=5, command_status=S.ESME_RREPLACEFAIL),
            CancelSmResp(sequence_number=6, command_status=S.ESME_RCANCELFAIL),
            CancelSmResp(sequence_number=7, command_status=S.ESME_RCANCELFAIL),
            CancelSmResp(sequence_number=8, command_status=S.ESME_RCANCELFAIL),
        ]
        record = running.call(running.store.get(message_id))
        assert record.state is MessageState.ACCEPTED  # not cancelled
        assert record.message.short_message == b"hi"  # not replaced
        c.send(
            QuerySm(message_id=message_id, source_addr="Shop", sequence_number=9),
            CancelSm(
                message_id=message_id, source_addr="Shop", destination_addr=DEST, sequence_number=10
            ),
        )
        query, cancel = c.read(2)
    assert (query.command_status, query.message_state) == (0, 1)  # ENROUTE
    assert cancel == CancelSmResp(sequence_number=10)
    assert running.call(running.store.get(message_id)).state is MessageState.CANCELLED


def _smpp_time(epoch: float) -> str:
    """Absolute SMPP time in UTC (SMPP v3.4 7.1.1)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%y%m%d%H%M%S") + "000+"


def test_replace_sm_applies_a_new_schedule_and_validity(
    running: ServerOnLoop, log: GatewayLog
) -> None:
    with Raw(running.port) as c:
        assert c.bind(trx()).command_status == 0
        message_id = _stored(running, c, schedule_delivery_time="000000010000000R")  # 1 h
        before = running.call(running.store.get(message_id)).message
        start = time.time()
        c.send(  # absolute schedule in 2 h, relative validity of 3 h (from the replace)
            ReplaceSm(
                message_id=message_id,
                schedule_delivery_time=_smpp_time(start + 7200),
                validity_period="000000030000000R",
                short_message=b"later",
                sequence_number=3,
            )
        )
        assert c.read(1) == [ReplaceSmResp(sequence_number=3)]
        after = running.call(running.store.get(message_id)).message
        assert after.short_message == b"later"
        assert after.schedule_at == pytest.approx(start + 7200, abs=2)  # whole seconds
        assert after.expires_at == pytest.approx(start + 3 * 3600, abs=2)
        assert before.schedule_at == pytest.approx(start + 3600, abs=2)

        # A new relative schedule alone: the validity period moves with it.
        c.send(
            ReplaceSm(
                message_id=message_id,
                schedule_delivery_time="000000000500000R",
                short_message=b"sooner",
                sequence_number=4,
            )
        )
        assert c.read(1) == [ReplaceSmResp(sequence_number=4)]
        moved = running.call(running.store.get(message_id)).message
        assert moved.schedule_at == pytest.approx(time.time() + 300, abs=2)
        assert moved.expires_at - moved.schedule_at == pytest.approx(
            after.expires_at - after.schedule_at, abs=1
        )
        # A validity that ends before the schedule is refused, and nothing changes.
        c.send(
            ReplaceSm(
                message_id=message_id,
                validity_period="000000000100000R",
                short_message=b"never",
                sequence_number=5,
            )
        )
        assert c.read(1) == [ReplaceSmResp(sequence_number=5, command_status=S.ESME_RINVEXPIRY)]
    assert running.call(running.store.get(message_id)).message == moved


# -- item 14: bind refusals and back-pressure --------------------------------------------------


@pytest.mark.parametrize(
    ("bind", "status"),
    [
        (BindTransceiver(system_id="far", password="pw"), S.ESME_RBINDFAIL),  # not 10.0.0.0/8
        (BindReceiver(system_id="txonly", password="pw"), S.ESME_RBINDFAIL),
        (BindTransceiver(system_id="txonly", password="pw"), S.ESME_RBINDFAIL),
        (BindTransmitter(system_id="txonly", password="pw"), S.ESME_ROK),
        (BindTransceiver(system_id="nobody", password="pw"), S.ESME_RINVSYSID),
        (BindTransceiver(system_id="far", password="nope"), S.ESME_RINVPASWD),
    ],
)
def test_binds_refused_by_address_and_type(
    running: ServerOnLoop, log: GatewayLog, bind: Any, status: int
) -> None:
    with Raw(running.port) as c:
        assert c.bind(bind._replace(sequence_number=1)).command_status == status


def test_max_binds_refuses_one_more_and_frees_the_place_on_unbind(
    running: ServerOnLoop, log: GatewayLog
) -> None:
    with Raw(running.port) as first:
        assert first.bind(trx("one", "pw")).command_status == 0
        with Raw(running.port) as second:
            assert second.bind(trx("one", "pw")).command_status == S.ESME_RBINDFAIL
        first.send(Unbind(sequence_number=2))
        assert first.rest() == [UnbindResp(sequence_number=2)]
    with Raw(running.port) as again:  # the place is freed before the socket closes
        assert again.bind(trx("one", "pw")).command_status == 0


class HeldStore:
    """The real store, with `accept` held until the test lets it go."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.release = asyncio.Event()
        self.accepts = 0
        self.lock = threading.Lock()
        self.waiting = threading.Condition(self.lock)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def accept(self, message: Any) -> None:
        with self.waiting:
            self.accepts += 1
            self.waiting.notify_all()
        await self.release.wait()
        await self._store.accept(message)

    def wait_accepts(self, count: int, timeout: float = 5.0) -> bool:
        with self.waiting:
            return self.waiting.wait_for(lambda: self.accepts >= count, timeout)


def test_a_full_window_stops_the_server_reading(running: ServerOnLoop, log: GatewayLog) -> None:
    held = HeldStore(running.store)
    running.server.store = held  # type: ignore[assignment]
    try:
        with Raw(running.port) as c:
            assert c.bind(BindTransmitter(system_id="narrow", password="pw")).command_status == 0
            for seq in (2, 3, 4):  # the window is 3
                c.send(submit(seq))
            assert held.wait_accepts(3)
            c.send(EnquireLink(sequence_number=5), submit(6))
            # Not read: not even the enquire_link, which the session answers by itself.
            assert c.silent_for(0.5)
            assert held.accepts == 3
            running.loop.call_soon_threadsafe(held.release.set)
            answers = c.read(5)
    finally:
        running.server.store = running.store
    assert held.accepts == 4
    assert sorted((a.sequence_number, a.command_status) for a in answers) == [
        (2, 0),
        (3, 0),
        (4, 0),
        (5, 0),
        (6, 0),
    ]
    assert answers.index(EnquireLinkResp(sequence_number=5)) >= 3  # after the window drained


def test_a_deliver_sm_left_unanswered_goes_again_after_the_response_timeout(
    tmp_path: Path,
) -> None:
    # The app reads the receipt but never answers it: after listen.response_timeout it is
    # offered again on the same bind (before, it stayed "in flight" until a restart).
    r = ServerOnLoop(CONFIG + "listen: {response_timeout: 0.5}\n", tmp_path / "gw.sqlite3")
    try:
        receipt = DeliverSm(esm_class=0x04, short_message=b"id:m1 stat:DELIVRD")
        with Raw(r.port) as c:
            resp = c.bind(BindReceiver(system_id="shop", password="secret"))
            assert resp.command_status == 0
            r.call(
                r.store.enqueue_delivery("shop", "receipt", encode_pdu(receipt), time.time(), 60)
            )
            r.loop.call_soon_threadsafe(r.server.notify, "shop")
            (first,) = c.read(1)
            started = time.monotonic()
            (again,) = c.read(1)  # not answered: it comes again
            assert isinstance(again, DeliverSm) and again.short_message == receipt.short_message
            assert again.sequence_number != first.sequence_number
            assert time.monotonic() - started >= 0.4  # after the timeout, not at once
            c.send(DeliverSmResp(sequence_number=again.sequence_number))
            assert c.silent_for(1.0)  # answered: not sent a third time
        assert r.call(r.store.pending_deliveries("shop", time.time(), 10)) == []
    finally:
        r.close()
