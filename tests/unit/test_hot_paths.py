"""The fused hot paths give exactly what the general paths give.

`SmBuilder.build_text` (segment + build in one pass) and `tpdu.submit_tpdus` (whole-message
septet packing) exist only for speed; they must be byte-identical to composing the general
functions, on the standard corpus and on text aimed at the part boundaries.
"""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from gateway.smpp import RemoteSmppError, SubmitSm, decode_pdu
from gateway.smpp.message import SmBuilder, message_content, pdu_text
from gateway.sms import SmsError, segment
from gateway.sms.tpdu import encode_sms_submit, submit_tpdus

BUILDER = SmBuilder(
    source_addr_ton=1, source_addr_npi=1, dest_addr_ton=1, dest_addr_npi=1, registered_delivery=1
)
SEQ = range(7, 7 + 255)

# Text that puts escapes (GSM 7-bit) and surrogate pairs (UCS-2) on and around part boundaries.
_GSM = st.sampled_from(list("abc €[]{}^~|\\@£"))
_UCS = st.sampled_from(["中", "😀", "a", "€", "🇩🇪"])
boundary_text = st.one_of(
    st.text(max_size=700),
    st.lists(_GSM, min_size=150, max_size=620).map("".join),
    st.lists(_UCS, min_size=60, max_size=300).map("".join),
)


def _general_sm(text: str, ref: int) -> list[bytes]:
    return BUILDER.build(segment(text, ref=ref), "Shop", "4915112345678", SEQ)


def _general_tpdus(text: str, ref: int, mr: int) -> list[str]:
    seg = segment(text, ref=ref)
    return [
        encode_sms_submit(
            destination="+4915112345678",
            body=body,
            encoding=seg.encoding,
            udh=udh,
            message_ref=(mr + i) & 0xFF,
            status_report=True,
        ).hex
        for i, (body, udh) in enumerate(zip(seg.bodies, seg.udhs, strict=True))
    ]


@given(boundary_text, st.integers(0, 255))
def test_build_text_equals_build_of_segment(text: str, ref: int) -> None:
    assert BUILDER.build_text(text, "Shop", "4915112345678", SEQ, ref=ref) == _general_sm(text, ref)


@given(boundary_text, st.integers(0, 255), st.integers(0, 255))
def test_submit_tpdus_equals_encoding_each_part(text: str, ref: int, mr: int) -> None:
    fast = submit_tpdus(text, "+4915112345678", ref=ref, message_ref=mr, status_report=True)
    assert [t.hex for t in fast] == _general_tpdus(text, ref, mr)


def test_corpus_identical(corpus_path: Path) -> None:
    messages = json.loads(corpus_path.read_text(encoding="utf-8"))["messages"]
    for i, m in enumerate(messages):
        text = m["text"]
        assert BUILDER.build_text(text, "Shop", "4915112345678", SEQ, ref=i & 0xFF) == (
            _general_sm(text, i & 0xFF)
        )
        fast = submit_tpdus(text, "+4915112345678", ref=i & 0xFF, message_ref=i, status_report=True)
        assert [t.hex for t in fast] == _general_tpdus(text, i & 0xFF, i)


def _content_text(pdu: SubmitSm) -> str | type[Exception]:
    try:
        return message_content(pdu).text()
    except (RemoteSmppError, SmsError) as exc:
        return type(exc)


def _fast_text(pdu: SubmitSm) -> str | type[Exception]:
    try:
        return pdu_text(pdu)
    except (RemoteSmppError, SmsError) as exc:
        return type(exc)


@given(
    st.binary(max_size=254),
    st.sampled_from([0, 0x40, 0x43]),
    st.sampled_from([0, 1, 3, 4, 8, 0xF0]),
)
def test_pdu_text_equals_message_content_text(sm: bytes, esm_class: int, data_coding: int) -> None:
    pdu = SubmitSm(short_message=sm, esm_class=esm_class, data_coding=data_coding)
    assert _fast_text(pdu) == _content_text(pdu)


@given(boundary_text)
def test_pdu_text_of_built_parts(text: str) -> None:
    pdus = [decode_pdu(p) for p in BUILDER.build_text(text, "Shop", "4915112345678", SEQ)]
    assert "".join(pdu_text(p) for p in pdus) == text  # type: ignore[arg-type]
