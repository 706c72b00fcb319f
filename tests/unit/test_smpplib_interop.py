"""Cross-checks of our SMPP v3.4 codec against smpplib (python-smpplib, an independent
implementation): PDUs smpplib generates decode to the same fields here, and PDUs we encode
parse to the same fields there. No sockets: smpplib's command objects are built with a stand-in
client and `generate()` / `parse()` work on bytes.
"""

from __future__ import annotations

from typing import Any

import pytest
import smpplib.consts
import smpplib.gsm
import smpplib.smpp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.smpp.codec import decode_pdu, encode_pdu
from gateway.smpp.constants import CommandStatus, EsmClass, Tag
from gateway.smpp.message import build_sm_pdus, message_content
from gateway.smpp.pdu import (
    AlertNotification,
    BindReceiver,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    DataSm,
    DeliverSm,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    QuerySm,
    QuerySmResp,
    SubmitSm,
    SubmitSmResp,
    Unbind,
)
from gateway.smpp.tlv import make_tlvs, tlv_value
from gateway.sms.coding import decode_text
from gateway.sms.segment import ConcatMethod, segment

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class _Client:
    """What smpplib's commands need from a client when no socket is involved."""

    sequence = 0

    def next_sequence(self) -> int:
        return 0


def theirs(name: str, seq: int, **fields: Any) -> Any:
    """An smpplib command object. smpplib ignores a `sequence=` keyword when its client already
    has a sequence, so it is set afterwards."""
    pdu = smpplib.smpp.make_pdu(name, client=_Client(), **fields)
    pdu.sequence = seq
    return pdu


def parse(data: bytes) -> Any:
    return smpplib.smpp.parse_pdu(data, client=_Client())


def _latin1(value: bytes | None) -> str:
    return (value or b"").decode("latin-1")


# ---------------------------------------------------------------------------------------------
# smpplib generates, we decode


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("bind_transmitter", BindTransmitter),
        ("bind_receiver", BindReceiver),
        ("bind_transceiver", BindTransceiver),
    ],
)
def test_their_binds(name: str, cls: type[Any]) -> None:
    raw = theirs(
        name,
        17,
        system_id="esme01",
        password="secret",
        system_type="VMA",
        addr_ton=1,
        addr_npi=1,
        address_range="^4477",
    ).generate()
    assert decode_pdu(raw) == cls(
        system_id="esme01",
        password="secret",
        system_type="VMA",
        interface_version=0x34,
        addr_ton=1,
        addr_npi=1,
        address_range="^4477",
        sequence_number=17,
    )


def test_their_submit_sm_gsm() -> None:
    text = "Hello {world} €5 ~ [ok]"
    (part,), coding, esm = smpplib.gsm.make_parts(text)
    raw = theirs(
        "submit_sm",
        1000,
        source_addr_ton=5,
        source_addr_npi=0,
        source_addr="Shop",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="447700900123",
        esm_class=esm,
        data_coding=coding,
        registered_delivery=1,
        short_message=part,
    ).generate()
    pdu = decode_pdu(raw)
    assert pdu == SubmitSm(
        source_addr_ton=5,
        source_addr="Shop",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="447700900123",
        registered_delivery=1,
        short_message=part,
        sequence_number=1000,
    )
    assert message_content(pdu).text() == text


@pytest.mark.parametrize(
    "text",
    [
        "Привет, мир! " * 20,  # Cyrillic, 260 UCS-2 units: 4 parts of 67
        "中文短信测试。" * 30,
        "Ünïcödé ÀÉÎÕÜ ₤ ₹ " * 12,
    ],
)
def test_their_ucs2_multipart_reassembles(text: str) -> None:
    parts, coding, esm = smpplib.gsm.make_parts(
        text, encoding=smpplib.consts.SMPP_ENCODING_ISO10646
    )
    assert coding == 8
    assert esm == EsmClass.UDHI
    assert len(parts) > 1
    contents = []
    for i, part in enumerate(parts):
        raw = theirs(
            "submit_sm",
            50 + i,
            source_addr="src",
            destination_addr="dst",
            esm_class=esm,
            data_coding=coding,
            short_message=part,
        ).generate()
        pdu = decode_pdu(raw)
        assert (pdu.sequence_number, pdu.esm_class, pdu.data_coding) == (50 + i, 0x40, 8)
        assert pdu.short_message == part
        content = message_content(pdu)
        assert content.concat is not None
        assert (content.concat.total, content.concat.seq) == (len(parts), i + 1)
        contents.append(content)
    assert len({c.concat.ref for c in contents if c.concat}) == 1
    assert decode_text(b"".join(c.body for c in contents), contents[0].encoding) == text


def test_their_gsm_multipart_reassembles() -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 8  # 360 septets, no escapes
    parts, coding, esm = smpplib.gsm.make_parts(text)
    assert len(parts) == 3
    contents = [
        message_content(
            decode_pdu(
                theirs(
                    "submit_sm",
                    i,
                    esm_class=esm,
                    data_coding=coding,
                    short_message=p,
                    source_addr="a",
                    destination_addr="b",
                ).generate()
            )
        )
        for i, p in enumerate(parts)
    ]
    assert [c.concat.seq for c in contents if c.concat] == [1, 2, 3]
    assert decode_text(b"".join(c.body for c in contents), contents[0].encoding) == text


def test_their_deliver_sm_receipt() -> None:
    receipt = (
        b"id:7a1c sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 "
        b"stat:DELIVRD err:000 text:hi"
    )
    raw = theirs(
        "deliver_sm",
        3,
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr="447700900123",
        destination_addr="Shop",
        esm_class=0x04,
        short_message=receipt,
        receipted_message_id="7a1c",
        message_state=2,
    ).generate()
    pdu = decode_pdu(raw)
    assert isinstance(pdu, DeliverSm)
    assert (pdu.sequence_number, pdu.esm_class, pdu.short_message) == (3, 0x04, receipt)
    assert (pdu.source_addr, pdu.destination_addr) == ("447700900123", "Shop")
    assert tlv_value(pdu.tlvs, Tag.receipted_message_id) == "7a1c"
    assert tlv_value(pdu.tlvs, Tag.message_state) == 2
    assert encode_pdu(pdu) == raw


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("enquire_link", EnquireLink(sequence_number=77)),
        ("unbind", Unbind(sequence_number=77)),
        ("enquire_link_resp", EnquireLinkResp(sequence_number=77)),
    ],
)
def test_their_empty_pdus(name: str, expected: Any) -> None:
    raw = theirs(name, 77).generate()
    assert raw == encode_pdu(expected)
    assert decode_pdu(raw) == expected


def test_their_generic_nack() -> None:
    raw = theirs("generic_nack", 0x01020304, status=CommandStatus.ESME_RINVCMDID).generate()
    assert decode_pdu(raw) == GenericNack(
        sequence_number=0x01020304, command_status=CommandStatus.ESME_RINVCMDID
    )


def test_their_query_sm() -> None:
    raw = theirs(
        "query_sm",
        12,
        message_id="abc123",
        source_addr_ton=2,
        source_addr_npi=1,
        source_addr="1234",
    ).generate()
    assert decode_pdu(raw) == QuerySm(
        message_id="abc123",
        source_addr_ton=2,
        source_addr_npi=1,
        source_addr="1234",
        sequence_number=12,
    )


def test_their_data_sm_with_message_payload() -> None:
    payload = b"a long message over data_sm " * 20
    raw = theirs(
        "data_sm",
        5,
        source_addr="1111",
        dest_addr_ton=1,
        destination_addr="2222",
        registered_delivery=1,
        data_coding=3,
        message_payload=payload,
    ).generate()
    pdu = decode_pdu(raw)
    assert pdu == DataSm(
        source_addr="1111",
        dest_addr_ton=1,
        destination_addr="2222",
        registered_delivery=1,
        data_coding=3,
        tlvs=make_tlvs(message_payload=payload),
        sequence_number=5,
    )
    assert message_content(pdu).body == payload


LATIN1 = st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=20)
ASCII_ADDR = st.text(st.sampled_from("0123456789ABCDEFabcdef+ "), max_size=20)
BYTE = st.integers(0, 255)


@SETTINGS
@given(
    seq=st.integers(0, 2**31 - 1),
    ints=st.tuples(*[BYTE] * 10),
    addrs=st.tuples(ASCII_ADDR, ASCII_ADDR),
    service_type=st.text(st.sampled_from("CMTWAPUSD"), max_size=5),
    short_message=st.binary(min_size=1, max_size=254),
)
def test_their_submit_sm_any_fields(
    seq: int,
    ints: tuple[int, ...],
    addrs: tuple[str, str],
    service_type: str,
    short_message: bytes,
) -> None:
    names = [
        "source_addr_ton",
        "source_addr_npi",
        "dest_addr_ton",
        "dest_addr_npi",
        "esm_class",
        "protocol_id",
        "priority_flag",
        "registered_delivery",
        "replace_if_present_flag",
        "data_coding",
    ]
    fields = dict(zip(names, ints, strict=True))
    raw = theirs(
        "submit_sm",
        seq,
        service_type=service_type,
        source_addr=addrs[0],
        destination_addr=addrs[1],
        short_message=short_message,
        **fields,
    ).generate()
    assert decode_pdu(raw) == SubmitSm(
        service_type=service_type,
        source_addr=addrs[0],
        destination_addr=addrs[1],
        short_message=short_message,
        sequence_number=seq,
        **fields,
    )


# ---------------------------------------------------------------------------------------------
# We encode, smpplib parses


def test_our_submit_sm_with_sar_tlvs() -> None:
    raw = encode_pdu(
        SubmitSm(
            service_type="CMT",
            source_addr_ton=5,
            source_addr="Shop",
            dest_addr_ton=1,
            dest_addr_npi=1,
            destination_addr="447700900123",
            registered_delivery=1,
            data_coding=8,
            short_message="½ price".encode("utf-16-be"),
            tlvs=make_tlvs(sar_msg_ref_num=0xBEEF, sar_total_segments=3, sar_segment_seqnum=2),
            sequence_number=123456,
        )
    )
    p = parse(raw)
    assert (p.command, p.sequence, p.status) == ("submit_sm", 123456, 0)
    assert (p.service_type, p.source_addr, p.destination_addr) == (b"CMT", b"Shop", b"447700900123")
    assert (p.source_addr_ton, p.dest_addr_ton, p.dest_addr_npi) == (5, 1, 1)
    assert (p.esm_class, p.data_coding, p.registered_delivery) == (0, 8, 1)
    assert p.sm_length == 14
    assert p.short_message == "½ price".encode("utf-16-be")
    assert (p.sar_msg_ref_num, p.sar_total_segments, p.sar_segment_seqnum) == (0xBEEF, 3, 2)


def test_our_deliver_sm_receipt() -> None:
    raw = encode_pdu(
        DeliverSm(
            source_addr="447700900123",
            destination_addr="Shop",
            esm_class=0x04,
            short_message=b"id:abc stat:DELIVRD",
            tlvs=make_tlvs(receipted_message_id="abc", message_state=2),
            sequence_number=9,
        )
    )
    p = parse(raw)
    assert (p.command, p.sequence) == ("deliver_sm", 9)
    assert (p.source_addr, p.destination_addr, p.esm_class) == (b"447700900123", b"Shop", 4)
    assert p.short_message == b"id:abc stat:DELIVRD"
    assert (p.receipted_message_id, p.message_state) == (b"abc", 2)


@pytest.mark.parametrize("method", [ConcatMethod.UDH8, ConcatMethod.UDH16, ConcatMethod.SAR])
@pytest.mark.parametrize("text", ["x" * 400, "Ж" * 200, "a€" * 120])
def test_our_multipart_parses(method: ConcatMethod, text: str) -> None:
    segs = segment(text, ref=0x42, method=method)
    wires = build_sm_pdus(
        segs,
        source_addr="Gateway",
        destination_addr="447700900123",
        sequence_numbers=range(500, 500 + len(segs.bodies)),
        registered_delivery=1,
    )
    assert len(wires) == len(segs.bodies) > 1
    for i, raw in enumerate(wires):
        p = parse(raw)
        assert (p.command, p.sequence) == ("submit_sm", 500 + i)
        assert (p.source_addr, p.destination_addr) == (b"Gateway", b"447700900123")
        assert (p.dest_addr_ton, p.dest_addr_npi, p.registered_delivery) == (1, 1, 1)
        assert p.data_coding == (0 if segs.encoding == 0 else 8)
        assert p.short_message == segs.udhs[i] + segs.bodies[i]
        if method is ConcatMethod.SAR:
            assert p.esm_class == 0
            assert (p.sar_msg_ref_num, p.sar_total_segments, p.sar_segment_seqnum) == (
                0x42,
                len(wires),
                i + 1,
            )
        else:
            assert p.esm_class == EsmClass.UDHI
            assert p.sar_msg_ref_num is None
            header = p.short_message[: p.short_message[0] + 1]
            assert header[-2:] == bytes((len(wires), i + 1))


def test_our_message_payload_parses() -> None:
    text = "long text " * 40
    (raw,) = build_sm_pdus(
        segment(text, method=ConcatMethod.PAYLOAD),
        source_addr="A",
        destination_addr="B",
        sequence_numbers=[1],
    )
    p = parse(raw)
    assert (p.sm_length, p.short_message) == (0, b"")
    assert p.message_payload == text.encode("ascii")  # GSM 7-bit septets of letters = ASCII


@pytest.mark.parametrize(
    ("ours", "check"),
    [
        (EnquireLink(sequence_number=4), {"command": "enquire_link"}),
        (EnquireLinkResp(sequence_number=4), {"command": "enquire_link_resp"}),
        (Unbind(sequence_number=4), {"command": "unbind"}),
        (
            GenericNack(sequence_number=4, command_status=3),
            {"command": "generic_nack", "status": 3},
        ),
        (SubmitSmResp(message_id="abc-123", sequence_number=4), {"message_id": b"abc-123"}),
        (
            BindTransceiverResp(
                system_id="SMSC", tlvs=make_tlvs(sc_interface_version=0x34), sequence_number=4
            ),
            {"system_id": b"SMSC", "sc_interface_version": 0x34},
        ),
        (
            BindTransmitter(
                system_id="me", password="pw", system_type="X", addr_ton=1, sequence_number=4
            ),
            {
                "system_id": b"me",
                "password": b"pw",
                "system_type": b"X",
                "addr_ton": 1,
                "interface_version": 0x34,
            },
        ),
        (
            QuerySmResp(
                message_id="m1",
                final_date="240101120000000+",
                message_state=2,
                error_code=0,
                sequence_number=4,
            ),
            {"message_id": b"m1", "final_date": b"240101120000000+", "message_state": 2},
        ),
        (
            AlertNotification(
                source_addr_ton=1,
                source_addr="123",
                esme_addr="456",
                tlvs=make_tlvs(ms_availability_status=1),
                sequence_number=4,
            ),
            {"source_addr": b"123", "esme_addr": b"456", "ms_availability_status": 1},
        ),
        (
            DataSm(
                source_addr="1",
                destination_addr="2",
                esm_class=0x40,
                data_coding=4,
                tlvs=make_tlvs(
                    message_payload=b"\x06\x05\x04\x0b\x84\x23\xf0payload", sar_msg_ref_num=9
                ),
                sequence_number=4,
            ),
            {
                "esm_class": 0x40,
                "data_coding": 4,
                "sar_msg_ref_num": 9,
                "message_payload": b"\x06\x05\x04\x0b\x84\x23\xf0payload",
            },
        ),
    ],
)
def test_our_pdus_parse(ours: Any, check: dict[str, Any]) -> None:
    p = parse(encode_pdu(ours))
    assert p.sequence == 4
    for name, value in check.items():
        assert getattr(p, name) == value, name


@SETTINGS
@given(
    seq=st.integers(0, 2**32 - 1),
    ints=st.tuples(*[BYTE] * 10),
    addrs=st.tuples(LATIN1, LATIN1),
    short_message=st.binary(min_size=1, max_size=254),
    ref=st.integers(0, 0xFFFF),
)
def test_our_submit_sm_any_fields(
    seq: int, ints: tuple[int, ...], addrs: tuple[str, str], short_message: bytes, ref: int
) -> None:
    source, dest = addrs
    names = [
        "source_addr_ton",
        "source_addr_npi",
        "dest_addr_ton",
        "dest_addr_npi",
        "esm_class",
        "protocol_id",
        "priority_flag",
        "registered_delivery",
        "replace_if_present_flag",
        "data_coding",
    ]
    fields = dict(zip(names, ints, strict=True))
    raw = encode_pdu(
        SubmitSm(
            source_addr=source,
            destination_addr=dest,
            short_message=short_message,
            tlvs=make_tlvs(sar_msg_ref_num=ref),
            sequence_number=seq,
            **fields,
        )
    )
    p = parse(raw)
    assert (p.command, p.sequence) == ("submit_sm", seq)
    assert (_latin1(p.source_addr), _latin1(p.destination_addr)) == (source, dest)
    assert p.short_message == short_message
    assert p.sar_msg_ref_num == ref
    for name, value in fields.items():
        assert getattr(p, name) == value, name
