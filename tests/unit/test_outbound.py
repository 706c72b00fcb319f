"""drivers.smpp.outbound: a stored message as one upstream's submit_sm PDUs, and MO data_coding.

What we produce is read back by an independent decoder wherever possible: each PDU is encoded
with our codec and parsed by smpplib, UDHs are split by a few lines here, and GSM 7-bit bodies
are decoded with the `gsmcodecs` codec.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import gsmcodecs  # noqa: F401 - registers the "gsm23.038" codec
import pytest
import smpplib.smpp
from hypothesis import event, given
from hypothesis import strategies as st

from drivers.smpp.outbound import allocated_reference, inbound_pdu, submit_pdus
from gateway.config import UpstreamConfig
from gateway.smpp.codec import encode_pdu
from gateway.smpp.constants import CommandStatus, Tag
from gateway.smpp.errors import LocalSmppError
from gateway.smpp.pdu import DataSm, DeliverSm, SubmitSm
from gateway.sms.gsm7 import DEFAULT
from gateway.sms.refs import ReferenceAllocator, ReferencesExhausted
from gateway.sms.segment import ConcatMethod, segment
from gateway.store.base import NewMessage

S = CommandStatus
DEST = "447700900123"
MODES = ("udh", "sar", "payload")
CHARSETS = ("gsm7", "latin1", "ascii")


def config(long_messages: str = "udh", data_coding_0: str = "gsm7") -> UpstreamConfig:
    return UpstreamConfig(
        host="smsc.example",
        port=2775,
        system_id="gw",
        password="pw",
        long_messages=long_messages,  # type: ignore[arg-type]
        data_coding_0=data_coding_0,  # type: ignore[arg-type]
    )


def tlv(tag: int, value: bytes) -> bytes:
    return tag.to_bytes(2, "big") + len(value).to_bytes(2, "big") + value


def sar(ref: int, total: int, seq: int) -> bytes:
    return (
        tlv(Tag.sar_msg_ref_num, ref.to_bytes(2, "big"))
        + tlv(Tag.sar_total_segments, bytes((total,)))
        + tlv(Tag.sar_segment_seqnum, bytes((seq,)))
    )


UMR = tlv(Tag.user_message_reference, b"\x00\x2a")


def message(short_message: bytes = b"", **fields: Any) -> NewMessage:
    defaults: dict[str, Any] = {
        "id": "m1",
        "account": "shop",
        "source_addr": "Shop",
        "destination_addr": DEST,
        "source_addr_ton": 5,
        "dest_addr_ton": 1,
        "dest_addr_npi": 1,
        "service_type": "CMT",
        "protocol_id": 0,
        "priority_flag": 1,
    }
    defaults.update(fields)
    return NewMessage(short_message=short_message, **defaults)


def app_message(text: str, *, in_payload: bool, tlvs: bytes = b"") -> NewMessage:
    """`text` as an application sends it: GSM 7-bit septets with data_coding 0 when the
    default alphabet holds it, else UCS-2."""
    septets = DEFAULT.try_encode(text)
    body, data_coding = (septets, 0) if septets is not None else (text.encode("utf-16-be"), 8)
    if in_payload or len(body) > 254:
        return message(b"", data_coding=data_coding, tlvs=tlv(Tag.message_payload, body) + tlvs)
    return message(body, data_coding=data_coding, tlvs=tlvs)


# -- reading back, independently ------------------------------------------------------------------


class _Client:
    sequence = 0

    def next_sequence(self) -> int:
        return 0


class Part(NamedTuple):
    text: str
    concat: tuple[int, int, int] | None  # ref, total, seq
    via: str  # "udh", "sar" or "" for no concatenation
    ies: tuple[tuple[int, bytes], ...]  # UDH elements other than concatenation
    payload: bool
    air_units: int  # septets (GSM 7-bit on air) or octets
    air_header: int  # UDH octets on air, including the one the SMSC writes for SAR
    data_coding: int


def split_udh(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    end = 1 + data[0]
    ies, p = [], 1
    while p < end:
        iei, n = data[p], data[p + 1]
        ies.append((iei, data[p + 2 : p + 2 + n]))
        p += 2 + n
    assert p == end, "elements overrun the UDHL"
    return ies, data[end:]


def read_part(pdu: SubmitSm, charset: str) -> Part:
    theirs = smpplib.smpp.parse_pdu(encode_pdu(pdu), client=_Client())
    assert theirs.command == "submit_sm"
    assert theirs.registered_delivery == 1
    assert theirs.sequence == 0
    payload = theirs.message_payload
    data = payload if payload is not None else (theirs.short_message or b"")
    assert payload is None or not theirs.short_message
    ies: list[tuple[int, bytes]] = []
    if theirs.esm_class & 0x40:
        ies, body = split_udh(data)
        udh_len = len(data) - len(body)
    else:
        body, udh_len = data, 0
    concat, via = None, ""
    for iei, value in ies:
        if iei == 0x00:
            concat, via = (value[0], value[1], value[2]), "udh"
        elif iei == 0x08:
            concat, via = (value[0] << 8 | value[1], value[2], value[3]), "udh"
    if theirs.sar_msg_ref_num is not None:
        assert concat is None, "both a concatenation UDH and SAR TLVs"
        concat = (theirs.sar_msg_ref_num, theirs.sar_total_segments, theirs.sar_segment_seqnum)
        via = "sar"
        # The SMSC writes the element into the UDH (with a UDHL octet if there is none yet).
        udh_len += (6 if concat[0] > 0xFF else 5) + (0 if udh_len else 1)
    data_coding = theirs.data_coding
    if data_coding == 8:
        text = body.decode("utf-16-be")  # strict: a split surrogate pair fails here
        air = len(body)
    elif data_coding == 0:
        codec = {"gsm7": "gsm23.038", "latin1": "latin-1", "ascii": "ascii"}[charset]
        text = body.decode(codec)
        air = len(text.encode("gsm23.038"))  # the SMSC sends its DC 0 as GSM 7-bit
    else:
        text = body.decode("latin-1")
        air = len(body)
    others = tuple(ie for ie in ies if ie[0] not in (0x00, 0x08))
    return Part(text, concat, via, others, payload is not None, air, udh_len, data_coding)


def fits_one_sms(part: Part) -> bool:
    if part.data_coding == 0:
        return part.air_units * 7 + part.air_header * 8 <= 140 * 8
    return part.air_units + part.air_header <= 140


def read_back(pdus: list[SubmitSm], charset: str) -> tuple[str, list[Part]]:
    parts = [read_part(p, charset) for p in pdus]
    return "".join(p.text for p in parts), parts


def check_series(parts: list[Part], mode: str) -> int:
    """The parts form one well-formed series in the upstream's form; its reference."""
    refs = {p.concat[0] for p in parts if p.concat}
    assert len(refs) == 1
    assert [p.concat for p in parts] == [(*refs, len(parts), i) for i in range(1, len(parts) + 1)]
    assert {p.via for p in parts} == {"sar" if mode == "sar" else "udh"}
    assert all(fits_one_sms(p) and not p.payload for p in parts)
    return refs.pop()


# -- the hot path: as it came ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_single_gsm7_passes_through(mode: str) -> None:
    m = message(DEFAULT.encode("Your code is 123456"), registered_delivery=0)
    (pdu,) = submit_pdus(m, config(mode), ReferenceAllocator())
    assert pdu == SubmitSm(
        service_type="CMT",
        source_addr_ton=5,
        source_addr="Shop",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr=DEST,
        priority_flag=1,
        registered_delivery=1,
        short_message=m.short_message,
    )
    assert read_back([pdu], "gsm7")[0] == "Your code is 123456"


@pytest.mark.parametrize("mode", ["udh", "payload"])
def test_udh_part_passes_through(mode: str) -> None:
    sm = b"\x05\x00\x03\x07\x02\x01" + DEFAULT.encode("x" * 153)
    m = message(sm, esm_class=0x40)
    (pdu,) = submit_pdus(m, config(mode), ReferenceAllocator())
    assert (pdu.short_message, pdu.esm_class, pdu.data_coding, pdu.tlvs) == (sm, 0x40, 0, ())
    part = read_part(pdu, "gsm7")
    assert part.concat == (7, 2, 1) and part.via == "udh" and fits_one_sms(part)


def test_validity_period_from_expires_at() -> None:
    m = message(b"hi", expires_at=1_700_000_000.0)  # 2023-11-14 22:13:20 UTC
    (pdu,) = submit_pdus(m, config(), ReferenceAllocator())
    assert pdu.validity_period == "231114221320000+"
    assert pdu.schedule_delivery_time == ""


def test_tlvs_kept_on_a_passed_through_message() -> None:
    port = tlv(Tag.source_port, b"\x23\x28")
    m = message(DEFAULT.encode("hello"), tlvs=UMR + port)
    (pdu,) = submit_pdus(m, config("sar"), ReferenceAllocator())
    assert b"".join(tlv(t, v) for t, v in pdu.tlvs) == UMR + port
    theirs = smpplib.smpp.parse_pdu(encode_pdu(pdu), client=_Client())
    assert theirs.user_message_reference == 42 and theirs.source_port == 0x2328


# -- parts: UDH <-> SAR ---------------------------------------------------------------------------


def test_udh_part_to_sar_strips_concat_and_keeps_other_elements() -> None:
    port = bytes((0x05, 0x04, 0x23, 0xF0, 0x00, 0x00))  # 16-bit application ports
    udh = bytes((11, 0x00, 0x03, 0x2A, 0x03, 0x02)) + port
    body = DEFAULT.encode("second part")
    m = message(udh + body, esm_class=0x43, tlvs=UMR)
    (pdu,) = submit_pdus(m, config("sar"), ReferenceAllocator())
    part = read_part(pdu, "gsm7")
    assert part.concat == (0x2A, 3, 2) and part.via == "sar"
    assert part.ies == ((0x05, port[2:]),)
    assert part.text == "second part"
    assert pdu.esm_class == 0x43  # UDHI stays: the port element is still there
    assert pdu.tlvs[0].tag == Tag.user_message_reference


def test_udh_part_to_sar_drops_udhi_when_nothing_is_left() -> None:
    m = message(b"\x06\x08\x04\x12\x34\x02\x02" + DEFAULT.encode("tail"), esm_class=0x40)
    (pdu,) = submit_pdus(m, config("sar"), ReferenceAllocator())
    assert pdu.esm_class == 0 and pdu.short_message == DEFAULT.encode("tail")
    assert read_part(pdu, "gsm7").concat == (0x1234, 2, 2)


@pytest.mark.parametrize(("ref", "iei"), [(0x2A, 0x00), (0x1234, 0x08)])
def test_sar_part_to_udh(ref: int, iei: int) -> None:
    body = "€" * 5 + "end"
    m = message(DEFAULT.encode(body), tlvs=UMR + sar(ref, 2, 2))
    (pdu,) = submit_pdus(m, config("udh"), ReferenceAllocator())
    assert pdu.esm_class & 0x40
    assert pdu.short_message[1] == iei
    assert [t.tag for t in pdu.tlvs] == [Tag.user_message_reference]
    part = read_part(pdu, "gsm7")
    assert (part.concat, part.via, part.text) == ((ref, 2, 2), "udh", body)


def test_sar_part_passes_through_to_sar() -> None:
    m = message(DEFAULT.encode("x" * 153), tlvs=sar(9, 2, 1) + UMR)
    (pdu,) = submit_pdus(m, config("sar"), ReferenceAllocator())
    assert pdu.short_message == m.short_message
    assert b"".join(tlv(t, v) for t, v in pdu.tlvs) == m.tlvs


def test_sar_part_to_payload_upstream_goes_as_udh() -> None:
    m = message("ünïcødé".encode("utf-16-be"), data_coding=8, tlvs=sar(300, 3, 3))
    (pdu,) = submit_pdus(m, config("payload"), ReferenceAllocator())
    part = read_part(pdu, "gsm7")
    assert (part.concat, part.via, part.payload, part.text) == (
        (300, 3, 3),
        "udh",
        False,
        "ünïcødé",
    )


def test_sar_part_too_long_for_a_udh() -> None:
    # 153 septets leave room for the SMSC's 6-octet header, not for our 7-octet one.
    m = message(DEFAULT.encode("x" * 153), tlvs=sar(0x1234, 2, 1))
    with pytest.raises(LocalSmppError) as err:
        submit_pdus(m, config("udh"), ReferenceAllocator())
    assert err.value.status == S.ESME_RINVMSGLEN


# -- whole messages cut here ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["udh", "sar"])
def test_payload_cut_without_splitting_escapes(mode: str) -> None:
    text = "a" * 152 + "€" + "[b]" * 60  # the escape pair of € straddles septet 153
    m = app_message(text, in_payload=True, tlvs=UMR)
    refs = ReferenceAllocator()
    pdus = submit_pdus(m, config(mode), refs)
    joined, parts = read_back(pdus, "gsm7")
    assert joined == text
    assert parts[0].text == "a" * 152  # one septet short
    ref = check_series(parts, mode)
    assert allocated_reference(pdus) == ref and refs.in_flight(DEST) == {ref}
    assert all(p.tlvs[0] == (Tag.user_message_reference, b"\x00\x2a") for p in pdus)
    assert all(t.tag != Tag.message_payload for p in pdus for t in p.tlvs)


def test_ucs2_cut_keeps_surrogate_pairs_whole() -> None:
    text = "a" * 66 + "😀" + "é😀" * 50
    m = app_message(text, in_payload=True)
    pdus = submit_pdus(m, config("udh"), ReferenceAllocator())
    joined, parts = read_back(pdus, "gsm7")  # each part decodes strictly on its own
    assert joined == text
    assert parts[0].text == "a" * 66
    check_series(parts, "udh")


@pytest.mark.parametrize("mode", ["udh", "sar"])
def test_sixteen_bit_reference_sizes(mode: str) -> None:
    refs = ReferenceAllocator(16, seed=0x1000)
    text = "z" * 400
    pdus = submit_pdus(app_message(text, in_payload=True), config(mode), refs)
    joined, parts = read_back(pdus, "gsm7")
    assert joined == text
    assert check_series(parts, mode) > 0xFF
    assert [len(p.text) for p in parts] == [152, 152, 96]


def test_long_short_message_is_cut_or_moved_to_payload() -> None:
    text = "Order 1234 shipped. " * 10  # 200 septets in short_message
    m = app_message(text, in_payload=False)
    assert len(m.short_message) == 200
    pdus = submit_pdus(m, config("udh"), ReferenceAllocator())
    assert read_back(pdus, "gsm7")[0] == text and len(pdus) == 2
    (pdu,) = submit_pdus(m, config("payload"), ReferenceAllocator())
    (part,) = read_back([pdu], "gsm7")[1]
    assert part.payload and part.text == text and pdu.short_message == b""


def test_payload_passes_through_to_payload_upstream() -> None:
    m = app_message("x" * 500, in_payload=True, tlvs=UMR)
    (pdu,) = submit_pdus(m, config("payload"), ReferenceAllocator())
    assert pdu.short_message == b"" and b"".join(tlv(t, v) for t, v in pdu.tlvs) == m.tlvs


def test_short_payload_goes_in_short_message() -> None:
    m = app_message("short one", in_payload=True)
    refs = ReferenceAllocator()
    (pdu,) = submit_pdus(m, config("sar"), refs)
    assert (pdu.short_message, pdu.tlvs) == (DEFAULT.encode("short one"), ())
    assert refs.in_flight(DEST) == frozenset() and allocated_reference([pdu]) is None


def test_port_elements_ride_in_every_part() -> None:
    port = (0x05, b"\x0b\x84\x23\xf0")
    udh = bytes((6, 0x05, 4)) + port[1]
    m = message(b"", esm_class=0x40, data_coding=4, tlvs=tlv(Tag.message_payload, udh + bytes(300)))
    for mode in ("udh", "sar"):
        pdus = submit_pdus(m, config(mode), ReferenceAllocator())
        parts = [read_part(p, "gsm7") for p in pdus]
        check_series(parts, mode)
        assert all(p.ies == (port,) for p in parts)
        assert sum(len(p.text) for p in parts) == 300
        assert all(len(p.text) <= 140 - (6 + 6) for p in parts)


def test_binary_payload_cut_on_octets() -> None:
    data = bytes(range(256)) * 2
    m = message(b"", data_coding=4, tlvs=tlv(Tag.message_payload, data))
    pdus = submit_pdus(m, config("udh"), ReferenceAllocator())
    assert [len(p.short_message) - 6 for p in pdus] == [134, 134, 134, 110]
    assert b"".join(p.short_message[6:] for p in pdus) == data


def test_references_exhausted_is_not_bad_input() -> None:
    refs = ReferenceAllocator()
    for _ in range(256):
        refs.allocate(DEST)
    with pytest.raises(ReferencesExhausted):
        submit_pdus(app_message("y" * 300, in_payload=True), config("udh"), refs)


# -- data_coding 0 for Latin-1 / ASCII upstreams ------------------------------------------------


@pytest.mark.parametrize(
    ("charset", "text", "data_coding"),
    [
        ("latin1", "Café [12] ~ {ok}", 0),  # in both: Latin-1 bytes with DC 0
        ("latin1", "Price: 5€", 8),  # € is not Latin-1
        ("latin1", "ΔΩ", 8),
        ("ascii", "Hello [world] ^|\\", 0),
        ("ascii", "Café", 8),  # é is not ASCII
        ("gsm7", "Café €", 0),
    ],
)
def test_data_coding_0_translation(charset: str, text: str, data_coding: int) -> None:
    (pdu,) = submit_pdus(
        app_message(text, in_payload=False), config("udh", charset), ReferenceAllocator()
    )
    assert pdu.data_coding == data_coding
    part = read_part(pdu, charset)
    assert part.text == text
    if charset != "gsm7" and data_coding == 0:
        assert pdu.short_message == text.encode("latin-1")


def test_translation_cuts_by_septets_on_air() -> None:
    text = "[x]" * 100  # 500 septets on air, 300 Latin-1 octets on the wire
    pdus = submit_pdus(
        app_message(text, in_payload=True), config("udh", "latin1"), ReferenceAllocator()
    )
    joined, parts = read_back(pdus, "latin1")
    assert joined == text and all(p.data_coding == 0 for p in parts)
    check_series(parts, "udh")
    assert len(parts) == 4  # ceil(500 / 153), escape pairs kept whole


def test_translation_to_ucs2_recuts() -> None:
    text = "€" + "a" * 150  # one SMS in GSM 7-bit, three in UCS-2
    m = app_message(text, in_payload=False)
    assert len(m.short_message) == 152
    pdus = submit_pdus(m, config("sar", "latin1"), ReferenceAllocator())
    joined, parts = read_back(pdus, "latin1")
    assert joined == text and len(parts) == 3 and {p.data_coding for p in parts} == {8}
    check_series(parts, "sar")


def test_translated_part_keeps_its_place() -> None:
    m = message(b"\x05\x00\x03\x05\x02\x02" + DEFAULT.encode("Ça €"), esm_class=0x40)
    (pdu,) = submit_pdus(m, config("udh", "latin1"), ReferenceAllocator())
    part = read_part(pdu, "latin1")
    assert (part.text, part.concat, part.data_coding) == ("Ça €", (5, 2, 2), 8)


def test_translated_part_that_no_longer_fits() -> None:
    m = message(b"\x05\x00\x03\x05\x02\x01" + DEFAULT.encode("€" + "a" * 100), esm_class=0x40)
    with pytest.raises(LocalSmppError) as err:
        submit_pdus(m, config("udh", "latin1"), ReferenceAllocator())
    assert err.value.status == S.ESME_RINVMSGLEN


def test_other_data_codings_are_not_translated() -> None:
    m = message("Café".encode("latin-1"), data_coding=3)
    (pdu,) = submit_pdus(m, config("udh", "ascii"), ReferenceAllocator())
    assert (pdu.data_coding, pdu.short_message) == (3, b"Caf\xe9")


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"short_message": b"hi", "tlvs": tlv(Tag.message_payload, b"there")}, S.ESME_RINVPARLEN),
        ({"data_coding": 8, "tlvs": tlv(Tag.message_payload, b"\x00a\x00")}, S.ESME_RINVPARLEN),
        ({"data_coding": 8, "short_message": b"\x00a\x00"}, S.ESME_RINVMSGLEN),
        ({"esm_class": 0x40, "short_message": b"\x09\x00\x03"}, S.ESME_RINVESMCLASS),
        ({"esm_class": 0x40, "short_message": b"\x05\x00\x03\x01\x02\x00ab"}, S.ESME_RINVESMCLASS),
        ({"short_message": b"ab", "tlvs": sar(1, 2, 1)[:-5]}, S.ESME_RMISSINGOPTPARAM),
        ({"short_message": b"ab", "tlvs": sar(1, 2, 3)}, S.ESME_RINVOPTPARAMVAL),
        (
            {
                "esm_class": 0x40,
                "short_message": b"\x05\x00\x03\x01\x02\x01ab",
                "tlvs": sar(1, 2, 1),
            },
            S.ESME_RINVOPTPARAMVAL,
        ),
        ({"short_message": b"ab", "tlvs": UMR[:-1]}, S.ESME_RINVOPTPARSTREAM),
        (
            {"short_message": b"ab", "tlvs": tlv(Tag.user_message_reference, b"\x01")},
            S.ESME_RINVPARLEN,
        ),
        (
            {"short_message": b"\x05\x00\x03\x01\x02\x01" + b"x" * 160, "esm_class": 0x40},
            S.ESME_RINVMSGLEN,
        ),
        (
            {"data_coding": 8, "tlvs": tlv(Tag.message_payload, "é".encode("utf-16-be") * 32767)},
            S.ESME_RINVMSGLEN,
        ),
    ],
    ids=[
        "both-bodies",
        "odd-ucs2-payload",
        "odd-ucs2-short-message",
        "udhl-past-end",
        "concat-seq-0",
        "partial-sar",
        "sar-seq-past-total",
        "udh-and-sar",
        "truncated-tlvs",
        "tlv-bad-length",
        "part-too-long",
        "too-many-parts",
    ],
)
@pytest.mark.parametrize("mode", MODES)
def test_bad_input(fields: dict[str, Any], status: CommandStatus, mode: str) -> None:
    refs = ReferenceAllocator()
    fields = dict(fields)
    sm = fields.pop("short_message", b"")
    if mode == "payload" and status == S.ESME_RINVMSGLEN and "tlvs" in fields:
        # Too many parts for UDH or SAR; a payload upstream takes it whole, as it came.
        (pdu,) = submit_pdus(message(sm, **fields), config(mode), refs)
        assert b"".join(tlv(t, v) for t, v in pdu.tlvs) == fields["tlvs"]
        return
    with pytest.raises(LocalSmppError) as err:
        submit_pdus(message(sm, **fields), config(mode), refs)
    assert err.value.status == status
    assert refs.in_flight(DEST) == frozenset()  # nothing leaked on the way out


def test_non_septet_byte_for_a_latin1_upstream() -> None:
    with pytest.raises(LocalSmppError) as err:
        submit_pdus(message(b"ab\x80"), config("udh", "latin1"), ReferenceAllocator())
    assert err.value.status == S.ESME_RINVMSGLEN


# -- inbound --------------------------------------------------------------------------------------


@pytest.mark.parametrize("charset", ["latin1", "ascii"])
@pytest.mark.parametrize("cls", [DeliverSm, DataSm])
def test_inbound_dc0_from_latin1_upstreams(charset: str, cls: type[Any]) -> None:
    pdu = cls(source_addr=DEST, destination_addr="1234", data_coding=0)
    out = inbound_pdu(pdu, config("udh", charset))
    assert out == pdu._replace(data_coding=3)


@pytest.mark.parametrize(
    ("pdu", "charset"),
    [
        (DeliverSm(data_coding=0, short_message=b"hi"), "gsm7"),
        (DeliverSm(data_coding=8, short_message=b"\x00h"), "latin1"),
        (DeliverSm(esm_class=0x04, data_coding=0, short_message=b"id:1 stat:DELIVRD"), "latin1"),
        (DataSm(esm_class=0x04, data_coding=0), "ascii"),
    ],
)
def test_inbound_unchanged(pdu: DeliverSm | DataSm, charset: str) -> None:
    assert inbound_pdu(pdu, config("udh", charset)) is pdu


# -- properties ----------------------------------------------------------------------------------

_CHARS = st.one_of(
    st.sampled_from(list("abc XYZ 019.,\n€[]{}~^\\|éèàÇÅßÑñ£¥§¿ΔΩΣ@")),
    st.characters(min_codepoint=0x1F600, max_codepoint=0x1F64F),  # emoji: surrogate pairs
    st.characters(blacklist_categories=("Cs",)),
)
# Runs of repeated chunks, so that texts of several parts are common and escapes, accents and
# emoji land on part boundaries.
_TEXT = st.lists(
    st.tuples(st.text(_CHARS, min_size=1, max_size=12), st.integers(1, 60)), max_size=5
).map(lambda runs: "".join(chunk * n for chunk, n in runs)[:1200])


@given(
    text=_TEXT,
    mode=st.sampled_from(MODES),
    charset=st.sampled_from(CHARSETS),
    in_payload=st.booleans(),
    wide=st.booleans(),
)
def test_any_text_reaches_any_upstream(
    text: str, mode: str, charset: str, in_payload: bool, wide: bool
) -> None:
    refs = ReferenceAllocator(16 if wide else 8, seed=0x1234 if wide else 7)
    m = app_message(text, in_payload=in_payload)
    pdus = submit_pdus(m, config(mode, charset), refs)
    joined, parts = read_back(pdus, charset)
    assert joined == text
    event("several parts" if len(parts) > 1 else "one PDU")
    if len(parts) > 1:
        ref = check_series(parts, mode)
        assert allocated_reference(pdus) == ref
        assert refs.in_flight(DEST) == {ref}
        refs.release(DEST, ref)
    else:
        assert allocated_reference(pdus) is None and refs.in_flight(DEST) == frozenset()
        (part,) = parts
        assert part.concat is None
        assert part.payload or fits_one_sms(part)
        if mode == "payload" and in_payload:
            assert part.payload
    assert all(len(p.short_message) <= 254 for p in pdus)


_ONE_SMS = st.one_of(
    st.text(st.sampled_from(list("abc 12 €[]{} éñ")), max_size=70),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),
)


@given(
    text=_ONE_SMS,
    mode=st.sampled_from(MODES),
    charset=st.sampled_from(CHARSETS),
    with_tlv=st.booleans(),
)
def test_single_message_passes_through_unchanged(
    text: str, mode: str, charset: str, with_tlv: bool
) -> None:
    m = app_message(text, in_payload=False, tlvs=UMR if with_tlv else b"")
    if m.data_coding == 0 and charset != "gsm7":
        event("translated")
        return  # translated: covered above
    (pdu,) = submit_pdus(m, config(mode, charset), ReferenceAllocator())
    assert (pdu.short_message, pdu.data_coding, pdu.esm_class) == (
        m.short_message,
        m.data_coding,
        m.esm_class,
    )
    assert b"".join(tlv(t, v) for t, v in pdu.tlvs) == m.tlvs
    assert (pdu.source_addr, pdu.destination_addr, pdu.service_type) == ("Shop", DEST, "CMT")


@given(
    text=_TEXT,
    came=st.sampled_from(["udh", "sar"]),
    mode=st.sampled_from(MODES),
    charset=st.sampled_from(CHARSETS),
    ref=st.integers(0, 0xFFFF),
)
def test_application_parts_keep_their_series(
    text: str, came: str, mode: str, charset: str, ref: int
) -> None:
    """Parts the application cut (with our segmenter, in either form) reach any upstream as
    the same series: same reference, total and order, and the text reassembles."""
    method = {
        "udh": ConcatMethod.UDH16 if ref > 0xFF else ConcatMethod.UDH8,
        "sar": ConcatMethod.SAR,
    }
    segs = segment(text, ref=ref, method=method[came])
    event("a series" if segs.total > 1 else "one part")
    if segs.total == 1:
        return  # not a series
    refs = ReferenceAllocator()
    out: list[SubmitSm] = []
    for i, (udh, body) in enumerate(zip(segs.udhs, segs.bodies, strict=True), 1):
        dc = 0 if segs.encoding.name == "GSM7" else 8
        if came == "udh":
            m = message(udh + body, esm_class=0x40, data_coding=dc)
        else:
            m = message(body, data_coding=dc, tlvs=sar(ref, segs.total, i))
        try:
            out.extend(submit_pdus(m, config(mode, charset), refs))
        except LocalSmppError as exc:
            # Only a part that must become UCS-2 for this upstream, and then no longer fits.
            assert exc.status == S.ESME_RINVMSGLEN
            assert dc == 0 and charset != "gsm7"
            part_text = DEFAULT.decode(body)
            assert len(part_text.encode("utf-16-be")) > 134
            event("a part too long for UCS-2")
            return
    assert refs.in_flight(DEST) == frozenset()  # the application's reference, not ours
    joined, parts = read_back(out, charset)
    assert joined == text
    assert [p.concat for p in parts] == [(ref, segs.total, i) for i in range(1, segs.total + 1)]
    assert {p.via for p in parts} == {"sar" if mode == "sar" else "udh"}
    assert all(fits_one_sms(p) for p in parts)


# -- other alphabets ------------------------------------------------------------------------------


def test_national_shift_rides_in_every_part_or_goes_as_ucs2() -> None:
    from gateway.sms.national import alphabet  # noqa: PLC0415 - only this test needs it

    turkish = alphabet(0, 1)  # default locking table, Turkish single shift
    text = "ş" * 100 + "Ğ" * 40 + "abc" * 20
    septets = turkish.encode(text)
    shift = bytes((3, 0x24, 1, 1))
    m = message(b"", esm_class=0x40, tlvs=tlv(Tag.message_payload, shift + septets))
    pdus = submit_pdus(m, config("udh"), ReferenceAllocator())
    texts = []
    for pdu in pdus:
        ies, body = split_udh(pdu.short_message)
        assert (0x24, b"\x01") in ies
        assert len(body) * 7 + (len(pdu.short_message) - len(body)) * 8 <= 1120
        texts.append(body.decode("gsm23.038-0-1"))
    assert "".join(texts) == text
    pdus = submit_pdus(m, config("udh", "latin1"), ReferenceAllocator())
    joined, parts = read_back(pdus, "latin1")
    assert joined == text and {p.data_coding for p in parts} == {8}
    assert all(p.ies == () for p in parts)  # the shift means nothing to UCS-2
    check_series(parts, "udh")


def test_multibyte_charset_goes_as_ucs2_when_cut() -> None:
    text = "안녕하세요 " * 40
    m = message(b"", data_coding=0x0E, tlvs=tlv(Tag.message_payload, text.encode("euc_kr")))
    pdus = submit_pdus(m, config("sar"), ReferenceAllocator())
    joined, parts = read_back(pdus, "gsm7")
    assert joined == text and {p.data_coding for p in parts} == {8}
    check_series(parts, "sar")
    (pdu,) = submit_pdus(m, config("payload"), ReferenceAllocator())
    assert pdu.data_coding == 0x0E and pdu.tlvs == ((Tag.message_payload, text.encode("euc_kr")),)


def test_single_byte_charset_cut_on_octets() -> None:
    text = "Привет мир " * 30  # ISO 8859-5, data_coding 6: one octet a character
    m = message(b"", data_coding=6, tlvs=tlv(Tag.message_payload, text.encode("iso8859_5")))
    pdus = submit_pdus(m, config("udh"), ReferenceAllocator())
    assert {p.data_coding for p in pdus} == {6}
    assert [len(p.short_message) for p in pdus] == [140, 140, 68]
    assert b"".join(p.short_message[6:] for p in pdus).decode("iso8859_5") == text
