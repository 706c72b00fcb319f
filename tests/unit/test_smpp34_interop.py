"""Cross-checks with smpp34, an independent SMPP v3.4 codec written in Rust.

smpplib (test_smpplib_interop.py) is one peer; a second, unrelated implementation in another
language catches what two Python codecs could agree on by accident.
"""

from __future__ import annotations

import smpp34
from hypothesis import given
from hypothesis import strategies as st

from gateway.smpp import DeliverSm, SubmitSm, Tlv, decode_pdu, encode_pdu, make_tlvs
from gateway.smpp.message import SmBuilder, pdu_text
from gateway.sms import segment

addresses = st.text(alphabet="0123456789", min_size=1, max_size=20)
octet = st.integers(0, 255)


@given(
    source=addresses,
    destination=addresses,
    short_message=st.binary(max_size=254),
    esm_class=octet,
    data_coding=octet,
    registered_delivery=octet,
    seq=st.integers(1, 0x7FFFFFFF),
)
def test_smpp34_reads_our_submit_sm(
    *,
    source: str,
    destination: str,
    short_message: bytes,
    esm_class: int,
    data_coding: int,
    registered_delivery: int,
    seq: int,
) -> None:
    ours = SubmitSm(
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr=source,
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr=destination,
        esm_class=esm_class,
        data_coding=data_coding,
        registered_delivery=registered_delivery,
        short_message=short_message,
        tlvs=make_tlvs(sar_msg_ref_num=7, sar_total_segments=2, sar_segment_seqnum=1),
        sequence_number=seq,
    )
    theirs = smpp34.decode(encode_pdu(ours))
    assert isinstance(theirs, smpp34.SubmitSm)
    assert theirs.sequence_number == seq
    assert (theirs.source_addr, theirs.destination_addr) == (source, destination)
    assert (theirs.source_addr_ton, theirs.dest_addr_npi) == (1, 1)
    assert (theirs.esm_class, theirs.data_coding) == (esm_class, data_coding)
    assert theirs.registered_delivery == registered_delivery
    assert theirs.short_message == short_message
    assert [(t.tag, t.value) for t in theirs.tlvs] == [(t.tag, t.value) for t in ours.tlvs]


@given(
    source=addresses,
    destination=addresses,
    short_message=st.binary(max_size=254),
    esm_class=octet,
    data_coding=octet,
    seq=st.integers(1, 0x7FFFFFFF),
)
def test_we_read_smpp34_submit_sm(
    *,
    source: str,
    destination: str,
    short_message: bytes,
    esm_class: int,
    data_coding: int,
    seq: int,
) -> None:
    theirs = smpp34.SubmitSm(
        source,
        destination,
        short_message,
        source_addr_ton=5,
        dest_addr_ton=1,
        dest_addr_npi=1,
        esm_class=esm_class,
        data_coding=data_coding,
        registered_delivery=1,
        tlvs=[smpp34.Tlv(0x1401, b"vendor")],
        sequence_number=seq,
    )
    ours = decode_pdu(theirs.encode())
    assert ours == SubmitSm(
        source_addr_ton=5,
        source_addr=source,
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr=destination,
        esm_class=esm_class,
        data_coding=data_coding,
        registered_delivery=1,
        short_message=short_message,
        tlvs=(Tlv(0x1401, b"vendor"),),
        sequence_number=seq,
    )


@given(st.text(max_size=600))
def test_smpp34_reads_every_part_we_build(text: str) -> None:
    builder = SmBuilder(command_id=0x00000005)  # deliver_sm, as the gateway sends MO
    try:
        pdus = builder.build(segment(text, ref=9), "Shop", "4915112345678", range(1, 300))
    except ValueError:  # a lone surrogate: nothing to send
        return
    parts = []
    for raw in pdus:
        theirs = smpp34.decode(raw)
        assert isinstance(theirs, smpp34.DeliverSm)
        ours = decode_pdu(raw)
        assert isinstance(ours, DeliverSm)
        assert theirs.short_message == ours.short_message
        assert (theirs.esm_class, theirs.data_coding) == (ours.esm_class, ours.data_coding)
        parts.append(pdu_text(ours))
    assert "".join(parts) == text
