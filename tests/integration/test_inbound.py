"""The MO path (`Dispatcher.inbound`, `gateway.inbound`) against the real SQLite store: what
an application's queue gets for every kind of MO, what the upstream is answered, references
that never run out, memory that stays flat, parts sent again, binary and port-addressed MO,
and the addresses a modem or a data_sm brings. `inbound` answers 0 (or None) for "taken"."""

from __future__ import annotations

import asyncio
import gc
import sys
import time
import types
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from drivers.modem.bank import ModemBank
from gateway.config import ModemConfig
from gateway.dispatch import Dispatcher
from gateway.routing import RouteTable
from gateway.routing.mo import MoRoute, MoRouter
from gateway.smpp.codec import decode_pdu, encode_pdu
from gateway.smpp.constants import CommandStatus, Tag
from gateway.smpp.message import message_content
from gateway.smpp.pdu import DataSm, DeliverSm
from gateway.smpp.tlv import Tlv, tlv_raw
from gateway.sms import ConcatMethod, segment
from gateway.sms.tpdu import SmsDeliver, deliver_tpdus
from gateway.sms.tpdu import decode_pdu as decode_tpdu
from gateway.store.sqlite import SqliteStore

ROUTER = MoRouter([MoRoute("shop", ("4930",), None)])
WAP_PORTS = bytes((0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0))  # IEI 0x05: to 2948 from 9200


@asynccontextmanager
async def mo_path(
    path: str | Path, *, router: MoRouter = ROUTER, mo_timeout: float = 300.0
) -> AsyncIterator[tuple[SqliteStore, Dispatcher]]:
    store = SqliteStore(path)
    await store.open()
    try:
        yield store, Dispatcher(store, RouteTable([]), {}, mo_router=router, mo_timeout=mo_timeout)
    finally:
        await store.close()


def run(body: Callable[[], Awaitable[None]], timeout: float = 60.0) -> None:
    asyncio.run(asyncio.wait_for(body(), timeout))


async def queued(store: SqliteStore, account: str = "shop") -> list[DeliverSm]:
    """The deliver_sm PDUs queued for `account`, decoded as the application decodes them."""
    out = []
    for delivery in await store.pending_deliveries(account, time.time(), 100_000):
        pdu = decode_pdu(delivery.pdu)
        assert isinstance(pdu, DeliverSm)
        out.append(pdu)
    return out


def text_of(pdus: list[DeliverSm]) -> str:
    return "".join(message_content(p).text() for p in pdus)


def parts_of(text: str, ref: int, source: str = "4915199999", **kw: Any) -> list[DeliverSm]:
    """A long MO as a carrier sends it: deliver_sm parts with an 8-bit concatenation UDH."""
    segments = segment(text, ref=ref)
    assert segments.total > 1
    return [
        DeliverSm(
            source_addr=source,
            destination_addr="4930123",
            esm_class=0x40,
            data_coding=int(segments.encoding),
            short_message=sm,
            **kw,
        )
        for sm in segments.short_messages()
    ]


# -- item 1: references ---------------------------------------------------------------------------


def test_a_thousand_long_mos_from_one_number_all_reach_the_application(tmp_path: Path) -> None:
    # Each one is cut again for the application and so needs a reference; none is held.
    async def body() -> None:
        async with mo_path(tmp_path / "gw.sqlite3") as (store, dispatcher):
            text = "Please call me back about the delivery on Friday, after six. " * 4
            mo = DeliverSm(source_addr="4915199999", destination_addr="4930123",
                           tlvs=(Tlv(Tag.message_payload, text.encode("ascii")),))  # fmt: skip
            for start in range(0, 1000, 100):  # 100 at a time: group commit
                answers = await asyncio.gather(*(dispatcher.inbound(mo) for _ in range(100)))
                assert not any(answers), start
            pdus = await queued(store)
            assert len(pdus) == 2000
            refs = [message_content(p).concat for p in pdus]
            assert all(c is not None and c.total == 2 for c in refs)
            firsts = [c.ref for c in refs[::2] if c is not None]
            assert len(set(firsts[:256])) == 256  # the rotation goes all the way round
            assert text_of(pdus[:2]) == text

    run(body)


def _retained(root: object, skip: tuple[object, ...]) -> int:
    """Bytes reachable from `root` (not through `skip`, code, classes or modules)."""
    seen: set[int] = {id(s) for s in skip}
    stack = [root]
    total = 0
    opaque = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType,
              types.MethodType, types.CodeType)  # fmt: skip
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, opaque):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def test_two_hundred_thousand_senders_keep_the_mo_path_flat() -> None:
    # Long MOs (two parts for the application: each takes a reference) from 200,000 numbers.
    async def body() -> None:
        async with mo_path(":memory:") as (store, dispatcher):
            sizes = []
            short_message = b"The parcel was left with your neighbour at number 12. " * 4
            for start in range(0, 200_000, 1000):
                mos = [
                    DeliverSm(source_addr=f"4915{i:09d}", destination_addr="4930123",
                              short_message=short_message[:200])
                    for i in range(start, start + 1000)
                ]  # fmt: skip
                answers = await asyncio.gather(*(dispatcher.inbound(mo) for mo in mos))
                assert not any(answers)
                await store.purge(time.time() + 86_400 * 365)  # the queue is not under test
                if start + 1000 in (100_000, 200_000):
                    sizes.append(_retained(dispatcher, (store,)))
            grown = sizes[1] - sizes[0]
            assert grown < 256 * 1024, f"the MO path grew {grown} bytes over 100,000 senders"

    run(body, timeout=300)


# -- item 2: addresses ----------------------------------------------------------------------------


def _modem_deliver_sm(deliver: SmsDeliver) -> DeliverSm:
    """The deliver_sm the modem bank makes of an SMS-DELIVER (its own conversion)."""
    bank = types.SimpleNamespace(bank="bank1")
    modem = ModemConfig(name="a", number="+4930123")
    return ModemBank.deliver_sm(bank, modem, deliver)  # type: ignore[arg-type]


def _tpdus(text: str, originator: str, ref: int = 0) -> list[SmsDeliver]:
    when = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    out = []
    for part in deliver_tpdus(text, originator, timestamp=when, ref=ref):
        deliver = decode_tpdu(part.pdu)
        assert isinstance(deliver, SmsDeliver)
        out.append(deliver)
    return out


def test_a_greek_alphanumeric_sender_from_a_modem_reaches_the_application(tmp_path: Path) -> None:
    async def body() -> None:
        async with mo_path(tmp_path / "gw.sqlite3") as (store, dispatcher):
            (single,) = _tpdus("Your tax refund is ready.", "ΔHMOΣ")
            mo = _modem_deliver_sm(single)
            assert mo.source_addr == "ΔHMOΣ"  # what the bank hands on
            assert not await dispatcher.inbound(mo)
            long_text = "Αθήνα: the water will be off on Monday from 9 to 12. " * 4
            for part in _tpdus(long_text, "€-Bank", ref=5):
                assert not await dispatcher.inbound(_modem_deliver_sm(part))
            first, *rest = await queued(store)
            assert (first.source_addr, first.source_addr_ton) == ("DHMOS", 5)
            # the sender as it came: source_subaddress, "user specified", UTF-8
            assert tlv_raw(first.tlvs, Tag.source_subaddress) == b"\xa0" + "ΔHMOΣ".encode()
            assert text_of([first]) == "Your tax refund is ready."
            assert {p.source_addr for p in rest} == {"E-Bank"}
            assert {tlv_raw(p.tlvs, Tag.source_subaddress) for p in rest} == {
                b"\xa0" + "€-Bank".encode()
            }
            assert text_of(rest) == long_text

    run(body)


def test_a_data_sm_with_a_long_source_address_is_delivered_truncated(tmp_path: Path) -> None:
    short = "mail@shop.example"  # 17 characters: fits as it is
    source = "alerts@monitoring.example.com"  # 29: data_sm allows 64, deliver_sm 20

    async def body() -> None:
        async with mo_path(tmp_path / "gw.sqlite3") as (store, dispatcher):
            with capture_logs() as logs:
                for address in (short, source):
                    mo = DataSm(source_addr=address, destination_addr="4930123",
                                tlvs=(Tlv(Tag.message_payload, b"disk full on db-3"),))  # fmt: skip
                    assert not await dispatcher.inbound(mo)
                long = "49" * 30  # a 60-digit "number", cut into parts
                parts = parts_of("A long one from a long address. " * 8, 9, source=long)
                for part in parts:
                    assert not await dispatcher.inbound(part)
            fits, first, *rest = await queued(store)
            assert (fits.source_addr, fits.tlvs) == (short, ())
            assert first.source_addr == source[:20]
            assert text_of([first]) == "disk full on db-3"
            assert {p.source_addr for p in rest} == {long[:20]}
            assert text_of(rest) == "A long one from a long address. " * 8
            # Too long for source_subaddress's 22 octets: the original is in the log.
            shortened = [
                e for e in logs if e["event"] == "MO address shortened for the application"
            ]
            assert {e["original"] for e in shortened} == {source, long}
            assert all(tlv_raw(p.tlvs, Tag.source_subaddress) is None for p in [first, *rest])

    run(body)


# -- item 2: sizes --------------------------------------------------------------------------------


def test_a_payload_past_255_parts_goes_to_the_application_as_one_message_payload(
    tmp_path: Path,
) -> None:
    text = "Ж" * 17_086  # 34,172 octets of UCS-2: 256 parts of 67 units

    async def body() -> None:
        async with mo_path(tmp_path / "gw.sqlite3") as (store, dispatcher):
            mo = DataSm(source_addr="4915199999", destination_addr="4930123", data_coding=8,
                        tlvs=(Tlv(Tag.message_payload, text.encode("utf-16-be")),))  # fmt: skip
            assert not await dispatcher.inbound(mo)
            (pdu,) = await queued(store)
            assert pdu.short_message == b"" and pdu.data_coding == 8
            assert tlv_raw(pdu.tlvs, Tag.message_payload) == text.encode("utf-16-be")
            assert message_content(pdu).text() == text

    run(body)


def test_a_message_too_big_for_any_deliver_sm_is_refused_permanently(tmp_path: Path) -> None:
    # Two SAR parts of 40,000 octets each: 80,000 octets fit no message_payload.
    def part(seq: int) -> DataSm:
        return DataSm(source_addr="4915199999", destination_addr="4930123", data_coding=4,
                      tlvs=(Tlv(Tag.message_payload, bytes([seq]) * 40_000),
                            Tlv(Tag.sar_msg_ref_num, b"\x00\x07"),
                            Tlv(Tag.sar_total_segments, b"\x02"),
                            Tlv(Tag.sar_segment_seqnum, bytes([seq]))))  # fmt: skip

    async def body() -> None:
        async with mo_path(tmp_path / "gw.sqlite3") as (store, dispatcher):
            assert not await dispatcher.inbound(part(1))  # kept until the message is whole
            with capture_logs() as logs:
                assert await dispatcher.inbound(part(2)) == CommandStatus.ESME_RX_P_APPN
            assert [e["event"] for e in logs] == ["MO refused"]
            assert "message_payload" in logs[0]["reason"]
            assert await queued(store) == []
            assert await store.stale_inbound(time.time() + 3600) == []  # nothing left waiting

    run(body)


# -- item 2: refusals -----------------------------------------------------------------------------


def test_refusals_are_logged_and_answered_with_a_permanent_status(tmp_path: Path) -> None:
    async def body() -> None:
        async with mo_path(tmp_path / "gw.sqlite3") as (store, dispatcher):
            cases = [
                (DeliverSm(source_addr="4915199999", destination_addr="4477001",
                           short_message=b"no route for this number"),
                 CommandStatus.ESME_RX_P_APPN, "no mo_route"),
                (DeliverSm(source_addr="4915199999", destination_addr="4930123", esm_class=0x40,
                           short_message=b"\x09\x00\x03\x01"),
                 CommandStatus.ESME_RINVESMCLASS, "UDH"),
                (DeliverSm(source_addr="4915199999", destination_addr="4930123",
                           short_message=b"both",
                           tlvs=(Tlv(Tag.message_payload, b"both"),)),
                 CommandStatus.ESME_RINVPARLEN, "message_payload"),
            ]  # fmt: skip
            for mo, status, reason in cases:
                with capture_logs() as logs:
                    assert await dispatcher.inbound(mo) == status
                assert [e["event"] for e in logs] == ["MO refused"], mo
                assert reason in logs[0]["reason"]
                assert logs[0]["status"] == status.name
            assert await queued(store) == []

    run(body)


# -- item 2: parts sent again ---------------------------------------------------------------------


def test_parts_sent_again_after_their_message_was_delivered_are_not_delivered_twice(
    tmp_path: Path,
) -> None:
    text = "Yes, please deliver it to the back door; the front one is locked all week. " * 3

    async def body() -> None:
        async with mo_path(tmp_path / "gw.sqlite3") as (store, dispatcher):
            parts = parts_of(text, 31)
            for part in parts:
                assert not await dispatcher.inbound(part)
            first = await queued(store)
            assert text_of(first) == text
            # The carrier lost our deliver_sm_resps and sends every part again, in another
            # order and with other sequence numbers.
            for i, part in enumerate(reversed(parts)):
                assert not await dispatcher.inbound(part._replace(sequence_number=900 + i))
            assert len(await queued(store)) == len(first)
            # ... and a restart does not make it forget (the store remembers, not memory).
        async with mo_path(tmp_path / "gw.sqlite3") as (store, dispatcher):
            assert not await dispatcher.inbound(parts[-1])
            assert len(await queued(store)) == len(first)
            assert await store.stale_inbound(time.time() + 3600) == []

    run(body)


def test_a_reused_reference_with_new_text_is_a_new_message(tmp_path: Path) -> None:
    async def body() -> None:
        async with mo_path(tmp_path / "gw.sqlite3") as (store, dispatcher):
            one = "The first long message from this phone, about the order. " * 3
            two = "The second long message, later, with the same reference. " * 3
            for text in (one, two):
                for part in parts_of(text, 200):
                    assert not await dispatcher.inbound(part)
            pdus = await queued(store)
            n = len(segment(one, ref=0).bodies)
            assert (text_of(pdus[:n]), text_of(pdus[n:])) == (one, two)

    run(body)


# -- item 3: binary and port-addressed MO ---------------------------------------------------------


def test_binary_and_port_addressed_mo_keep_their_form(tmp_path: Path) -> None:
    push = bytes((len(WAP_PORTS),)) + WAP_PORTS  # UDHL + the port element

    async def body() -> None:
        async with mo_path(tmp_path / "gw.sqlite3") as (store, dispatcher):
            sent = [
                DeliverSm(source_addr="4915199999", destination_addr="4930123", esm_class=0x40,
                          data_coding=0xF5, short_message=push + b"\x01\x06\x03\xae\x81\xea"),
                DeliverSm(source_addr="4915199999", destination_addr="4930123", data_coding=4,
                          protocol_id=0x7F, short_message=bytes(range(140))),
                # Port-addressed GSM 7-bit text (an app-directed SMS): not rebuilt either.
                DeliverSm(source_addr="4915199999", destination_addr="4930123", esm_class=0x40,
                          data_coding=0, short_message=b"\x06\x05\x04\x3e\x80\x00\x00hi app"),
            ]  # fmt: skip
            for mo in sent:
                assert not await dispatcher.inbound(mo)
            got = await queued(store)
            assert [(p.esm_class, p.data_coding, p.protocol_id, p.short_message) for p in got] == [
                (m.esm_class, m.data_coding, m.protocol_id, m.short_message) for m in sent
            ]

    run(body)


def test_multipart_binary_is_reassembled_with_its_port_in_every_part(tmp_path: Path) -> None:
    data = bytes(range(256)) + bytes(range(100))  # 356 octets: three parts of 128

    async def body() -> None:
        async with mo_path(tmp_path / "gw.sqlite3") as (store, dispatcher):
            # As a WAP gateway sends it: port element, then a 16-bit concatenation element.
            parts = [data[i : i + 127] for i in range(0, len(data), 127)]  # beside 13 octets
            for seq in (3, 1, 2, 1):  # any order, one repeated
                udh = bytes((12,)) + WAP_PORTS + bytes((0x08, 4, 0x12, 0x34, 3, seq))
                mo = DeliverSm(source_addr="4915199999", destination_addr="4930123",
                               esm_class=0x40, data_coding=4,
                               short_message=udh + parts[seq - 1])  # fmt: skip
                assert not await dispatcher.inbound(mo)
            got = await queued(store)
            assert len(got) == 3  # 356 octets beside a 12-octet UDH: 128 + 128 + 100
            contents = [message_content(p) for p in got]
            assert {p.data_coding for p in got} == {4} and {p.esm_class for p in got} == {0x40}
            assert all(c.udh.startswith(bytes((11,)) + WAP_PORTS) for c in contents)
            assert [c.concat.seq for c in contents if c.concat] == [1, 2, 3]
            assert len({c.concat.ref for c in contents if c.concat}) == 1
            assert b"".join(c.body for c in contents) == data

    run(body)


def test_incomplete_binary_is_delivered_partial_after_the_timeout(tmp_path: Path) -> None:
    async def body() -> None:
        async with mo_path(tmp_path / "gw.sqlite3", mo_timeout=0.2) as (store, dispatcher):
            udh = bytes((11,)) + WAP_PORTS + bytes((0x00, 3, 0x42, 2, 1))
            mo = DeliverSm(source_addr="4915199999", destination_addr="4930123",
                           esm_class=0x40, data_coding=4,
                           short_message=udh + b"\x01\x02")  # fmt: skip
            assert not await dispatcher.inbound(mo)
            await dispatcher.start()
            try:
                deadline = time.monotonic() + 10
                while not await queued(store):
                    assert time.monotonic() < deadline, "the partial message never came"
                    await asyncio.sleep(0.05)
            finally:
                await dispatcher.stop()
            (pdu,) = await queued(store)
            assert pdu.data_coding == 4
            assert pdu.short_message == bytes((len(WAP_PORTS),)) + WAP_PORTS + b"\x01\x02"

    run(body)


def test_sar_and_16_bit_text_reach_the_application_as_8_bit_udh(tmp_path: Path) -> None:
    text = "Ünïcödé and plain text over SAR parts, cut again for the application. " * 3

    async def body() -> None:
        async with mo_path(tmp_path / "gw.sqlite3") as (store, dispatcher):
            segments = segment(text, ref=0x1234, method=ConcatMethod.SAR)
            for i, body_ in enumerate(segments.bodies, start=1):
                mo = DeliverSm(source_addr="4915199999", destination_addr="4930123",
                               data_coding=int(segments.encoding), short_message=body_,
                               tlvs=(Tlv(Tag.sar_msg_ref_num, b"\x12\x34"),
                                     Tlv(Tag.sar_total_segments, bytes([segments.total])),
                                     Tlv(Tag.sar_segment_seqnum, bytes([i]))))  # fmt: skip
                assert not await dispatcher.inbound(mo)
            got = await queued(store)
            assert text_of(got) == text
            assert all(p.esm_class == 0x40 and p.short_message[:3] == b"\x05\x00\x03" for p in got)

    run(body)


def test_a_pair_split_across_parts_still_decodes(tmp_path: Path) -> None:
    # A careless sender cut between the two halves of a surrogate pair (UCS-2) and between
    # an escape and its character (GSM 7-bit): the bodies are joined before decoding.
    cases = [
        (8, "😀".encode("utf-16-be"), 2, "😀"),  # halves of two octets each
        (0, b"\x1b\x65", 1, "€"),  # the escape, then its character
    ]

    async def body() -> None:
        async with mo_path(tmp_path / "gw.sqlite3") as (store, dispatcher):
            for ref, (data_coding, octets, cut, char) in enumerate(cases):
                halves = {1: octets[:cut], 2: octets[cut:]}
                for seq in (2, 1):
                    udh = bytes((5, 0, 3, ref, 2, seq))
                    mo = DeliverSm(source_addr="4915199999", destination_addr="4930123",
                                   esm_class=0x40, data_coding=data_coding,
                                   short_message=udh + halves[seq])  # fmt: skip
                    assert not await dispatcher.inbound(mo)
                assert text_of((await queued(store))[ref:]) == char

    run(body)


def test_a_message_whole_but_not_queued_before_a_crash_is_queued_by_the_timeout(
    tmp_path: Path,
) -> None:
    # The process died after the store had the last part (the message taken) and before the
    # deliveries were queued: the carrier resends that part (it was never answered), which
    # is recognised, and the timeout path queues the message - once.
    text = "Crash test: this long message was whole when the process died, honestly. " * 3
    parts = parts_of(text, 44)

    async def body() -> None:
        async with mo_path(tmp_path / "gw.sqlite3") as (store, dispatcher):
            for part in parts[:-1]:
                assert not await dispatcher.inbound(part)
            last = parts[-1]
            concat = message_content(last).concat
            assert concat is not None
            key = f"4915199999|4930123|8:44|{concat.total}"
            raw = encode_pdu(last._replace(sequence_number=0))
            assert await store.add_inbound_part(key, concat.seq, concat.total, raw, time.time())
        async with mo_path(tmp_path / "gw.sqlite3", mo_timeout=0.2) as (store, dispatcher):
            assert not await dispatcher.inbound(last)  # the carrier's resend
            assert await queued(store) == []
            await dispatcher.start()
            try:
                deadline = time.monotonic() + 10
                while not await queued(store):
                    assert time.monotonic() < deadline, "the message never came"
                    await asyncio.sleep(0.05)
            finally:
                await dispatcher.stop()
            assert text_of(await queued(store)) == text

    run(body)
