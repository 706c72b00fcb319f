"""The modem bank without modems: stored messages as TPDUs, selection, limits, retries, status
reports and inbound messages, with fake modems and an in-memory SQLite store."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from structlog.testing import capture_logs

from drivers.base import SendResult, UpstreamReceipt
from drivers.modem.at import AtError
from drivers.modem.bank import (
    STATE_OF_REPORT,
    ModemBank,
    TpduError,
    message_tpdus,
    mo_data_coding,
)
from drivers.modem.modem import ModemInfo, ModemSettings, ModemState, SendOutcome
from gateway.config import ModemBankConfig
from gateway.smpp.constants import Tag
from gateway.smpp.tlv import Tlv
from gateway.sms import Encoding
from gateway.sms.refs import ReferenceAllocator
from gateway.sms.tpdu import (
    SmsDeliver,
    SmsStatusReport,
    decode_pdu,
    deliver_tpdus,
    encode_sms_deliver,
    encode_status_report,
)
from gateway.store.base import MessageRecord, MessageState, NewMessage
from gateway.store.sqlite import SqliteStore

NOW = 1_790_000_000.0


def msg(body: bytes = b"hello", **fields: Any) -> NewMessage:
    base: dict[str, Any] = {
        "id": "m1",
        "account": "shop",
        "source_addr": "Shop",
        "destination_addr": "4915112345678",
        "short_message": body,
        "registered_delivery": 1,
        "dest_addr_ton": 1,
    }
    base.update(fields)
    return NewMessage(**base)


def tlv_bytes(*tlvs: Tlv) -> bytes:
    return b"".join(
        t.tag.to_bytes(2, "big") + len(t.value).to_bytes(2, "big") + t.value for t in tlvs
    )


def submits(message: NewMessage) -> list[Any]:
    tpdus, _ref = message_tpdus(message, ReferenceAllocator(), now=NOW)
    return [decode_pdu(t.pdu, direction="mo") for t in tpdus]


# -- the message as TPDUs ---------------------------------------------------------------------


def test_one_part_text_asks_for_a_report_and_keeps_the_plus() -> None:
    (part,) = submits(msg())
    assert part.text == "hello"
    assert part.status_report_request
    assert part.destination == "+4915112345678"
    assert part.udh == ()


def test_long_text_is_cut_here_with_a_reference() -> None:
    refs = ReferenceAllocator()
    tpdus, ref = message_tpdus(msg(b"x" * 400), refs, now=NOW)
    parts = [decode_pdu(t.pdu, direction="mo") for t in tpdus]
    assert len(parts) == 3 and ref is not None
    assert [p.concat.seq for p in parts] == [1, 2, 3]
    assert {p.concat.ref for p in parts} == {ref}
    assert "".join(p.text for p in parts) == "x" * 400
    assert ref in refs.in_flight("4915112345678")  # released by the bank after the send


def test_ucs2_stays_ucs2_and_payload_is_cut() -> None:
    text = "Заказ отправлен " * 12
    body = text.encode("utf-16-be")
    message = msg(b"", data_coding=8, tlvs=tlv_bytes(Tlv(Tag.message_payload, body)))
    parts = submits(message)
    assert len(parts) == 3
    assert {p.encoding for p in parts} == {Encoding.UCS2}
    assert "".join(p.text for p in parts) == text


def test_application_cut_part_goes_as_one_tpdu_with_its_udh() -> None:
    udh = b"\x05\x00\x03\x2a\x03\x02"
    (part,) = submits(msg(udh + "часть".encode("utf-16-be"), data_coding=8, esm_class=0x40))
    assert (part.concat.ref, part.concat.total, part.concat.seq) == (0x2A, 3, 2)
    assert part.text == "часть"


def test_sar_part_gets_a_concatenation_udh() -> None:
    sar = tlv_bytes(
        Tlv(Tag.sar_msg_ref_num, b"\x01\x07"),
        Tlv(Tag.sar_total_segments, b"\x02"),
        Tlv(Tag.sar_segment_seqnum, b"\x01"),
    )
    (part,) = submits(msg(b"first half", tlvs=sar))
    assert (part.concat.ref, part.concat.total, part.concat.seq, part.concat.ref_bits) == (
        0x107,
        2,
        1,
        16,
    )


def test_latin1_goes_as_gsm7_and_binary_is_cut_on_octets() -> None:
    (part,) = submits(msg("Grüße".encode("latin-1"), data_coding=3))
    assert (part.encoding, part.text) == (Encoding.GSM7, "Grüße")
    parts = submits(msg(bytes(range(200)), data_coding=4))
    assert [p.encoding for p in parts] == [Encoding.BINARY] * 2
    assert b"".join(p.user_data for p in parts) == bytes(range(200))


def test_what_cannot_be_carried_fails_permanently() -> None:
    with pytest.raises(TpduError):
        message_tpdus(msg(b"\x09\x00\x03", esm_class=0x40), ReferenceAllocator(), now=NOW)
    too_long = b"\x05\x00\x03\x01\x02\x01" + b"y" * 200
    with pytest.raises(TpduError):
        message_tpdus(msg(too_long, esm_class=0x40), ReferenceAllocator(), now=NOW)


# -- the bank with fake modems ----------------------------------------------------------------


class FakeModem:
    def __init__(self, settings: ModemSettings, sink: Any) -> None:
        self.name = settings.name
        self.settings = settings
        self.sink = sink
        self.imei = f"35000000000000{settings.name[-1]}"
        self._state = ModemState.CLOSED
        self.outcomes: list[SendOutcome] = []
        self.sent: list[Sequence[Any]] = []
        self.mr = 0
        self.blocked: str | None = None  # ModemInfo.send_blocked
        self.last_error: str | None = None

    @property
    def info(self) -> ModemInfo:
        info = ModemInfo(
            port=self.settings.port, imei=self.imei, iccid=f"89{self.imei}", state=self._state
        )
        info.last_error = self.last_error
        if self.blocked is not None:
            # Set only when used, so the other tests run against a ModemInfo without it.
            info.send_blocked = self.blocked
        return info

    @property
    def state(self) -> ModemState:
        return self._state

    def ready(self) -> bool:
        return self._state is ModemState.READY

    def set(self, state: ModemState) -> None:
        self._state = state
        self.sink.state_changed(self)

    async def start(self) -> None:
        self.set(ModemState.READY)

    async def stop(self) -> None:
        self.set(ModemState.CLOSED)

    async def send(self, tpdus: Sequence[Any]) -> SendOutcome:
        await asyncio.sleep(0)
        if self.outcomes:
            return self.outcomes.pop(0)
        self.sent.append(tpdus)
        refs = tuple((self.mr + i) & 0xFF for i in range(len(tpdus)))
        self.mr += len(tpdus)
        return SendOutcome(True, refs)

    async def ussd(self, code: str, timeout: float = 30.0) -> str:
        return f"answer to {code}"


class Sink:
    def __init__(self) -> None:
        self.receipts: list[UpstreamReceipt] = []
        self.inbound_pdus: list[Any] = []

    async def receipt(self, receipt: UpstreamReceipt) -> None:
        self.receipts.append(receipt)

    async def inbound(self, pdu: Any) -> None:
        self.inbound_pdus.append(pdu)

    async def late_result(self, upstream: str, message_id: str, result: SendResult) -> None:
        pass


def config(**bank: Any) -> ModemBankConfig:
    data: dict[str, Any] = {
        "modems": [{"name": "a", "port": "/x/a"}, {"name": "b", "port": "/x/b"}]
    }
    data.update(bank)
    return ModemBankConfig.model_validate(data)


def record(i: int = 0, **fields: Any) -> MessageRecord:
    return MessageRecord(msg(id=f"m{i}", **fields), MessageState.DISPATCHING, NOW, 1, None)


async def bank_of(cfg: ModemBankConfig, store: SqliteStore | None = None) -> tuple[ModemBank, Sink]:
    store = store or SqliteStore(":memory:")
    await store.open()
    bank = ModemBank("t", cfg, store, modem_factory=FakeModem, clock=lambda: NOW)
    sink = Sink()
    await bank.start(sink)
    await bank.wait_ready(timeout=5)
    return bank, sink


async def done(bank: ModemBank) -> None:
    await bank.stop()
    await bank.store.close()


def modems(bank: ModemBank) -> dict[str, FakeModem]:
    return {name: bank.modem(name) for name in ("a", "b")}  # type: ignore[misc]


def test_round_robin_and_ids_name_modem_mr_and_recipient() -> None:
    async def body() -> None:
        bank, _sink = await bank_of(config())
        results = [await bank.send(record(i)) for i in range(4)]
        idents = [r.upstream_id.split("/")[0] for r in results]
        assert idents[0] != idents[1] and idents[:2] == idents[2:]  # a, b, a, b
        assert results[0].upstream_id == f"{idents[0]}/0/4915112345678"
        assert {len(m.sent) for m in modems(bank).values()} == {2}
        await done(bank)

    asyncio.run(body())


def test_limit_moves_traffic_and_a_temporary_failure_tries_the_other_modem_once() -> None:
    async def body() -> None:
        bank, _sink = await bank_of(config(modems=[
            {"name": "a", "port": "/x/a", "limits": {"per_minute": 2}},
            {"name": "b", "port": "/x/b"},
        ]))  # fmt: skip
        a, b = modems(bank).values()
        for i in range(6):
            assert (await bank.send(record(i))).ok
        assert (len(a.sent), len(b.sent)) == (2, 4)
        assert bank.state()[0]["used"] == {"minute": 2, "day": 2, "month": 2}

        temporary = SendOutcome(False, error=AtError("CMS", 500, "unknown error"), reason="x")
        b.outcomes = [temporary]
        a_limit_free = await bank.send(record(9))  # a is at its limit: b fails, nothing else
        assert not a_limit_free.ok and not a_limit_free.permanent and a_limit_free.error == 500

        permanent = dataclasses.replace(temporary, permanent=True)
        b.outcomes = [permanent]
        result = await bank.send(record(10))
        assert result.permanent and not result.ok
        await done(bank)

    asyncio.run(body())


def test_usage_is_read_back_when_a_modem_becomes_ready() -> None:
    async def body() -> None:
        store = SqliteStore(":memory:")
        await store.open()
        await store.count_usage("iccid:8935000000000000a", NOW, 2)
        cfg = config(modems=[{"name": "a", "port": "/x/a", "limits": {"per_day": 2}}])
        bank, _sink = await bank_of(cfg, store)
        assert not bank.usable()  # its SIM used its day already
        await done(bank)

    asyncio.run(body())


def test_status_reports_become_receipts() -> None:
    async def body() -> None:
        bank, sink = await bank_of(config())
        a = modems(bank)["a"]
        sent = await bank.send(record(0))
        when = datetime(2026, 1, 1, tzinfo=UTC)
        for status, state in ((0x00, 2), (0x20, 1), (0x41, 5)):
            pdu = encode_status_report(
                message_ref=0,
                recipient="+4915112345678",
                timestamp=when,
                discharge_time=when,
                status=status,
            )
            report = decode_pdu(pdu.pdu)
            assert isinstance(report, SmsStatusReport)
            await bank.status_report(a, report, pdu.pdu)
            assert sink.receipts[-1].message_state == state
            assert sink.receipts[-1].error == status
        assert {r.upstream_id for r in sink.receipts} == {sent.upstream_id}
        assert {r.upstream for r in sink.receipts} == {"bank:t"}
        await done(bank)

    asyncio.run(body())


def test_inbound_sms_becomes_a_deliver_sm_with_its_udh() -> None:
    async def body() -> None:
        bank, sink = await bank_of(config(modems=[
            {"name": "a", "port": "/x/a", "number": "+4915100000001"},
            {"name": "b", "port": "/x/b"},
        ]))  # fmt: skip
        when = datetime(2026, 1, 1, tzinfo=UTC)
        parts = deliver_tpdus("Ответ " * 20, "+4917612345678", timestamp=when, ref=9)
        deliver = decode_pdu(parts[0].pdu)
        assert isinstance(deliver, SmsDeliver)
        await bank.incoming(modems(bank)["a"], deliver, parts[0].pdu)
        (pdu,) = sink.inbound_pdus
        assert (pdu.source_addr, pdu.source_addr_ton) == ("4917612345678", 1)
        assert (pdu.destination_addr, pdu.dest_addr_ton) == ("4915100000001", 1)
        assert pdu.esm_class == 0x40 and pdu.data_coding == 8
        assert pdu.short_message[:6] == b"\x05\x00\x03\x09\x02\x01"
        await bank.incoming(modems(bank)["b"], deliver, parts[0].pdu)
        assert sink.inbound_pdus[-1].destination_addr == "t"  # no number known: the bank
        assert await bank.ussd("a", "*100#") == "answer to *100#"
        await done(bank)

    asyncio.run(body())


def test_least_loaded_takes_the_modem_with_less_waiting_then_less_sent_today() -> None:
    async def body() -> None:
        bank, _sink = await bank_of(config(selection="least_loaded"))
        a, b = modems(bank).values()
        b.outcomes = []
        first = await asyncio.gather(*(bank.send(record(i)) for i in range(4)))
        assert all(r.ok for r in first)
        assert (len(a.sent), len(b.sent)) == (2, 2)  # queues kept level
        a.set(ModemState.REGISTERING)  # not ready: skipped
        assert (await bank.send(record(9))).ok
        assert (len(a.sent), len(b.sent)) == (2, 3)
        await done(bank)

    asyncio.run(body())


# -- issue 8 item 13: reused TP-MR, no SMSC, a bank that cannot send ----------------------------


def report_at(mr: int, scts: float, status: int = 0) -> tuple[SmsStatusReport, bytes]:
    """A status report and its PDU, as a modem hands them to the bank."""
    when = datetime.fromtimestamp(scts, UTC).replace(microsecond=0)
    pdu = encode_status_report(
        message_ref=mr,
        recipient="+4915112345678",
        timestamp=when,
        discharge_time=when,
        status=status,
    ).pdu
    report = decode_pdu(pdu)
    assert isinstance(report, SmsStatusReport)
    return report, pdu


def test_late_report_for_a_reused_tp_mr_never_settles_the_newer_message() -> None:
    """TP-MR wraps at 255: the old message's report, late, names the newer one's id. Its
    TP-SCTS (when the SMSC took the submit) tells them apart."""

    async def body() -> None:
        store = SqliteStore(":memory:")
        await store.open()
        now = [NOW]
        cfg = config(modems=[{"name": "a", "port": "/x/a"}])
        bank = ModemBank("t", cfg, store, modem_factory=FakeModem, clock=lambda: now[0])
        sink = Sink()
        await bank.start(sink)
        await bank.wait_ready(timeout=5)
        a = modems_of(bank)["a"]
        old = await bank.send(record(0))
        now[0] += 600  # 256 sends later (only the wrap matters here): TP-MR 0 again
        a.mr = 0
        new = await bank.send(record(1))
        assert old.upstream_id == new.upstream_id
        # The old message's report (SC time stamp by its send, 3 s after): not the new one's.
        await bank.status_report(a, *report_at(0, NOW + 3, status=0x41))
        assert sink.receipts == []
        await bank.status_report(a, *report_at(0, now[0] + 2))
        assert [(r.upstream_id, r.message_state) for r in sink.receipts] == [(new.upstream_id, 2)]

        # After a restart only the latest send is known: once the SMSC's clock is learned
        # (here it runs 40 s ahead), a time stamp well before that send is an older message's.
        for i in range(3):
            now[0] += 60
            a.mr = 10 + i
            sent = await bank.send(record(2 + i))
            await bank.status_report(a, *report_at(10 + i, now[0] + 40))
            assert sink.receipts[-1].upstream_id == sent.upstream_id
        count = len(sink.receipts)
        bank._sent_at.clear()  # the restart: send times are in memory only
        now[0] += 60
        a.mr = 20
        await bank.send(record(9))
        await bank.status_report(a, *report_at(20, now[0] - 900 + 40))
        assert len(sink.receipts) == count
        await bank.status_report(a, *report_at(20, now[0] + 41))
        assert len(sink.receipts) == count + 1
        await bank.stop()
        await store.close()

    asyncio.run(body())


def modems_of(bank: ModemBank) -> dict[str, FakeModem]:
    return {row["name"]: bank.modem(row["name"]) for row in bank.state()}  # type: ignore[misc]


def test_modem_without_smsc_is_not_picked_its_messages_go_to_another() -> None:
    async def body() -> None:
        bank, _sink = await bank_of(config())
        a, b = modems(bank).values()
        a.blocked = "no SMSC address on the SIM and none configured (smsc)"
        results = [await bank.send(record(i)) for i in range(4)]
        assert all(r.ok for r in results)
        assert (len(a.sent), len(b.sent)) == (0, 4)
        assert bank.usable() and bank.unusable_reason() is None
        await done(bank)

    asyncio.run(body())


def test_bank_whose_modems_cannot_send_is_unusable_and_fails_with_a_receipt() -> None:
    """A wrong PIN (FAILED) on one modem, no SMSC on the other: the bank says why, and a
    message is failed at once (ESME_RSUBMITFAIL, permanent) instead of waiting for ever."""

    async def body() -> None:
        bank, _sink = await bank_of(config())
        a, b = modems(bank).values()
        a.last_error = "the SIM refused the configured PIN (+CME ERROR 16 (incorrect password))"
        with capture_logs() as logs:
            a.set(ModemState.FAILED)
            assert bank.unusable_reason() is None  # b can still send
            b.blocked = "no SMSC address on the SIM and none configured (smsc)"
            b.set(ModemState.READY)
            assert not bank.usable()
            reason = bank.unusable_reason()
            assert reason is not None and "PIN" in reason and "SMSC" in reason
            async with asyncio.timeout(2):
                result = await bank.send(record(0))
        assert not result.ok and result.permanent and result.error == 0x45
        errors = [e for e in logs if e["log_level"] == "error"]
        assert any("PIN" in str(e.get("reason")) for e in errors), logs
        await done(bank)

    asyncio.run(body())


# -- follow-ups: raw reports, the one state table, 8-bit MO data_coding, refused MO -------------


def test_a_status_report_receipt_keeps_the_report_readable_with_its_pdu() -> None:
    """Every receipt's raw form is kept in the store: a modem's is the report's fields as
    read (TP-ST, SC time stamp, discharge time) and its PDU in hex; its state is read through
    the one table (gateway.store.base), the stat written as the application's receipt has it."""

    async def body() -> None:
        bank, sink = await bank_of(config())
        a = modems(bank)["a"]
        sent = await bank.send(record(0))
        scts = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
        discharged = datetime(2026, 1, 1, 12, 5, tzinfo=UTC)
        for status, state in (
            (0x00, MessageState.DELIVERED),
            (0x41, MessageState.UNDELIVERABLE),
            (0x20, MessageState.SENT),
        ):
            pdu = encode_status_report(
                message_ref=0,
                recipient="+4915112345678",
                timestamp=scts,
                discharge_time=discharged,
                status=status,
            ).pdu
            report = decode_pdu(pdu)
            assert isinstance(report, SmsStatusReport)
            assert STATE_OF_REPORT[report.outcome] is state
            await bank.status_report(a, report, pdu)
            got = sink.receipts[-1]
            assert got.message_state == state.message_state
            text = got.raw.decode()
            assert text.startswith(f"sms-status-report id:{sent.upstream_id} mr:0 ")
            assert f" st:0x{status:02X} " in text
            assert " scts:2026-01-01T12:00:00+00:00 dt:2026-01-01T12:05:00+00:00 " in text
            assert f" stat:{state.stat} " in text
            assert decode_pdu(bytes.fromhex(text.rsplit("pdu:", 1)[1])) == report
        await done(bank)

    asyncio.run(body())


@pytest.mark.parametrize(
    ("dcs", "data_coding"),
    [
        (0xF5, 0xF5),  # 8-bit, class 1 (ME-specific)
        (0xF6, 0xF6),  # 8-bit, class 2 (SIM data download)
        (0x16, 0x16),  # 8-bit, class 2, general data coding group
        (0x04, 0x04),
        (0x05, 0x04),  # 8-bit without a class: as data_coding 0x05 would read as JIS
        (0x44, 0x44),  # 8-bit, marked for automatic deletion
    ],
)
def test_an_8_bit_sms_keeps_its_dcs_as_data_coding(dcs: int, data_coding: int) -> None:
    async def body() -> None:
        bank, sink = await bank_of(config())
        ports = b"\x06\x05\x04\x0b\x84\x23\xf0"  # application ports 2948 <- 9200 (WAP push)
        pdu = encode_sms_deliver(
            originator="+4917612345678",
            body=b"\x01\x06\x03\xc4",
            encoding=Encoding.BINARY,
            udh=ports,
            dcs=dcs,
            timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        ).pdu
        deliver = decode_pdu(pdu)
        assert isinstance(deliver, SmsDeliver)
        await bank.incoming(modems(bank)["a"], deliver, pdu)
        (got,) = sink.inbound_pdus
        assert got.data_coding == data_coding
        assert got.esm_class == 0x40 and got.short_message == ports + b"\x01\x06\x03\xc4"
        await done(bank)

    asyncio.run(body())


def test_text_sms_data_coding_is_its_alphabet() -> None:
    assert [mo_data_coding(dcs, enc) for dcs, enc in (
        (0x00, Encoding.GSM7), (0x10, Encoding.GSM7), (0xF0, Encoding.GSM7),
        (0x08, Encoding.UCS2), (0x18, Encoding.UCS2),
    )] == [0, 0, 0, 8, 8]  # fmt: skip


def test_an_inbound_sms_refused_for_good_is_logged_by_the_bank() -> None:
    """The MO path refuses it (a permanent status): the modem deletes it from the SIM, since
    it can never be handed on - and the bank says so, with the PDU, so it is not lost unseen."""

    class Refusing(Sink):
        async def inbound(self, pdu: Any) -> int:  # type: ignore[override]
            self.inbound_pdus.append(pdu)
            return 0x63  # ESME_RX_P_APPN: no mo_route for the number

    async def body() -> None:
        store = SqliteStore(":memory:")
        await store.open()
        bank = ModemBank("t", config(), store, modem_factory=FakeModem, clock=lambda: NOW)
        await bank.start(Refusing())
        await bank.wait_ready(timeout=5)
        (part,) = deliver_tpdus(
            "STOP", "+4917612345678", timestamp=datetime(2026, 1, 1, tzinfo=UTC)
        )
        deliver = decode_pdu(part.pdu)
        assert isinstance(deliver, SmsDeliver)
        with capture_logs() as logs:
            await bank.incoming(modems(bank)["a"], deliver, part.pdu)
        (told,) = [e for e in logs if e["log_level"] == "warning"]
        assert told["modem"] == "a" and told["status"] == "0x00000063"
        assert told["pdu"] == part.pdu.hex()
        await done(bank)

    asyncio.run(body())
