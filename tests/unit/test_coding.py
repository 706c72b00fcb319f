"""data_coding / TP-DCS mapping and text encode/decode (gateway.sms.coding).

SMPP v3.4 section 5.2.19 (data_coding) and 3GPP TS 23.038 section 4 (SMS Data Coding Scheme).
"""

from __future__ import annotations

import codecs
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sms.coding import (
    Encoding,
    data_coding_of,
    dcs_of,
    decode_text,
    encode_text,
    encoding_of_data_coding,
    encoding_of_dcs,
)
from gateway.sms.errors import SmsError, UnencodableText

GSM7, ASCII, LATIN1, BINARY, UCS2 = (
    Encoding.GSM7,
    Encoding.ASCII,
    Encoding.LATIN1,
    Encoding.BINARY,
    Encoding.UCS2,
)

# -- SMPP data_coding -----------------------------------------------------------------------------

# SMPP v3.4 5.2.19: the values that name one of our encodings.
SMPP_DATA_CODING = [
    (0x00, GSM7),  # SMSC default alphabet (GSM 7-bit on this link)
    (0x01, ASCII),  # IA5 (CCITT T.50) / ASCII (ANSI X3.4)
    (0x02, BINARY),  # octet unspecified (8-bit binary)
    (0x03, LATIN1),  # Latin 1 (ISO-8859-1)
    (0x04, BINARY),  # octet unspecified (8-bit binary)
    (0x08, UCS2),  # UCS2 (ISO/IEC-10646)
]


@pytest.mark.parametrize(("value", "encoding"), SMPP_DATA_CODING)
def test_smpp_data_coding_values(value: int, encoding: Encoding) -> None:
    assert encoding_of_data_coding(value) is encoding


def test_encoding_values_are_their_smpp_data_coding() -> None:
    assert {e: int(e) for e in Encoding} == {
        GSM7: 0x00,
        ASCII: 0x01,
        LATIN1: 0x03,
        BINARY: 0x04,
        UCS2: 0x08,
    }
    for e in Encoding:
        assert data_coding_of(e) == int(e)
        assert encoding_of_data_coding(data_coding_of(e)) is e
    assert [e for e in Encoding if e.is_octet_text] == [ASCII, LATIN1]


def test_data_coding_zero_means_what_the_link_says() -> None:
    assert encoding_of_data_coding(0x00, default=LATIN1) is LATIN1
    assert encoding_of_data_coding(0x00, default=ASCII) is ASCII
    # and we can write GSM 7-bit as whatever an upstream wants, without touching other codings
    assert data_coding_of(GSM7, gsm7_data_coding=0x01) == 0x01
    assert data_coding_of(UCS2, gsm7_data_coding=0x01) == 0x08


# SMPP v3.4 5.2.19, the other alphabets: (value, sample bytes, text they carry).
SMPP_OTHER_ALPHABETS = [
    (0x05, b"\x82\xa0", "\u3042"),  # JIS (X 0208-1990): HIRAGANA A, as Shift-JIS
    (0x06, b"\xb0\xef", "\u0410\u044f"),  # Cyrillic (ISO-8859-5): А я
    (0x07, b"\xe0\xfa", "\u05d0\u05ea"),  # Latin/Hebrew (ISO-8859-8): alef, tav
    (0x0A, b"\x1b$B$\x22\x1b(B", "\u3042"),  # ISO-2022-JP (Music codes)
    (0x0E, b"\xb0\xa1", "\uac00"),  # KS C 5601: HANGUL GA
]


@pytest.mark.parametrize(("value", "sample", "text"), SMPP_OTHER_ALPHABETS)
def test_smpp_other_alphabets_decode(value: int, sample: bytes, text: str) -> None:
    codec = encoding_of_data_coding(value)
    assert isinstance(codec, str)
    codecs.lookup(codec)  # a real Python codec
    assert decode_text(sample, codec) == text


def test_extended_kanji_is_a_codec() -> None:
    # 0x0D Extended Kanji JIS (X 0212-1990): some codec that reads Japanese, not an Encoding.
    codec = encoding_of_data_coding(0x0D)
    assert isinstance(codec, str)
    assert decode_text(b"\x82\xa0", codec) == "\u3042"


@pytest.mark.parametrize("value", range(0xC0, 0x100))
def test_smpp_gsm_dcs_range_reads_as_tp_dcs(value: int) -> None:
    # SMPP 5.2.19: 0xC0-0xEF "GSM MWI control", 0xF0-0xFF "GSM message class control": the
    # TS 23.038 octet passed through.
    assert encoding_of_data_coding(value) is expected_dcs(value)


# -- TP-DCS ---------------------------------------------------------------------------------------


def expected_dcs(dcs: int) -> Encoding:
    """TS 23.038 section 4, written out group by group."""
    group = dcs >> 4
    if group < 0x8:  # 00xx general data coding, 01xx automatic deletion: same low bits
        if dcs & 0x20:  # bit 5: compressed (TS 23.042) -> octets we hand on
            return BINARY
        return {0b00: GSM7, 0b01: BINARY, 0b10: UCS2, 0b11: GSM7}[(dcs >> 2) & 0b11]
    if group in (0xC, 0xD):  # message waiting indication, discard / store: GSM 7-bit
        return GSM7
    if group == 0xE:  # message waiting indication, store: UCS2
        return UCS2
    if group == 0xF:  # data coding / message class: bit 2 = message coding
        return BINARY if dcs & 0x04 else GSM7
    return GSM7  # 1000..1011 reserved: "assumed to be the GSM 7 bit default alphabet"


@pytest.mark.parametrize("dcs", range(256))
def test_every_tp_dcs_octet(dcs: int) -> None:
    assert encoding_of_dcs(dcs) is expected_dcs(dcs)


@pytest.mark.parametrize(
    ("dcs", "encoding"),
    [
        (0x00, GSM7),
        (0x04, BINARY),
        (0x08, UCS2),
        (0x0C, GSM7),  # reserved alphabet -> default alphabet
        (0x10, GSM7),  # class 0 (flash)
        (0x11, GSM7),  # class 1
        (0x12, GSM7),  # class 2 (SIM)
        (0x16, BINARY),  # 8-bit class 2: SIM data download
        (0x18, UCS2),  # UCS2 flash
        (0x24, BINARY),  # compressed GSM 7-bit
        (0x2A, BINARY),  # compressed UCS2 class 2
        (0x40, GSM7),  # marked for automatic deletion
        (0x44, BINARY),
        (0x48, UCS2),
        (0x80, GSM7),  # reserved group
        (0xB4, GSM7),
        (0xC0, GSM7),  # MWI discard message
        (0xC8, GSM7),  # MWI discard, voicemail waiting active
        (0xD8, GSM7),  # MWI store message
        (0xE0, UCS2),  # MWI store message, UCS2
        (0xE8, UCS2),
        (0xF0, GSM7),  # GSM 7-bit class 0
        (0xF1, GSM7),
        (0xF4, BINARY),  # 8-bit class 0
        (0xF5, BINARY),  # 8-bit class 1: WAP push
        (0xF6, BINARY),  # 8-bit class 2: SIM OTA
        (0xF8, GSM7),  # bit 3 reserved, bit 2 clear
        (0xFF, BINARY),
    ],
)
def test_tp_dcs_examples(dcs: int, encoding: Encoding) -> None:
    assert encoding_of_dcs(dcs) is encoding


@pytest.mark.parametrize(
    ("encoding", "message_class", "dcs"),
    [
        (GSM7, None, 0x00),
        (BINARY, None, 0x04),
        (UCS2, None, 0x08),
        (GSM7, 0, 0x10),
        (GSM7, 1, 0x11),
        (GSM7, 2, 0x12),
        (GSM7, 3, 0x13),
        (BINARY, 1, 0x15),
        (BINARY, 2, 0x16),
        (UCS2, 0, 0x18),
        (UCS2, 3, 0x1B),
    ],
)
def test_dcs_of(encoding: Encoding, message_class: int | None, dcs: int) -> None:
    assert dcs_of(encoding, message_class) == dcs
    assert encoding_of_dcs(dcs) is encoding


@pytest.mark.parametrize("encoding", [ASCII, LATIN1])
def test_dcs_of_octet_text_is_refused(encoding: Encoding) -> None:
    # There is no ASCII or Latin-1 on the air interface.
    with pytest.raises(SmsError):
        dcs_of(encoding)


# -- encode_text ----------------------------------------------------------------------------------


def test_encode_text_examples() -> None:
    assert encode_text("A\u20ac", GSM7) == b"A\x1b\x65"  # unpacked septets, escape pair
    assert encode_text("A", UCS2) == b"\x00A"
    # A character outside the BMP is a surrogate pair: hbjorgo/ATLib PduTests.cs encodes
    # U+1F600 as UCS-2 user data D83DDE00.
    assert encode_text("\U0001f600", UCS2) == bytes.fromhex("D83DDE00")
    assert encode_text("\u00e7\u00ff", LATIN1) == b"\xe7\xff"
    assert encode_text("abc", ASCII) == b"abc"


@pytest.mark.parametrize(
    ("text", "encoding", "position"),
    [
        ("abc\u20ac", LATIN1, 3),
        ("a\u00e9", ASCII, 1),
        ("ab\u4e2d", GSM7, 2),
        ("a\ud800b", UCS2, 1),  # a lone surrogate has no UTF-16 form
        ("\udc00", UCS2, 0),
    ],
)
def test_encode_text_refuses_with_the_position(
    text: str, encoding: Encoding, position: int
) -> None:
    with pytest.raises(UnencodableText) as exc:
        encode_text(text, encoding)
    assert exc.value.position == position


def test_binary_is_not_text() -> None:
    with pytest.raises(SmsError):
        encode_text("abc", BINARY)


# -- decode_text: strict and replace --------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "replaced"),
    [
        (b"\x00A\x00", "A\ufffd"),  # odd length: half a code unit left over
        (b"\xd8\x3d", "\ufffd"),  # lone high surrogate at the end
        (b"\xd8\x3d\x00A", "\ufffdA"),  # high surrogate followed by a non-surrogate
        (b"\xde\x00\x00A", "\ufffdA"),  # lone low surrogate
    ],
)
def test_bad_ucs2(data: bytes, replaced: str) -> None:
    with pytest.raises(UnencodableText):
        decode_text(data, UCS2)
    assert decode_text(data, UCS2, errors="replace") == replaced


def test_surrogate_pair_decodes() -> None:
    assert decode_text(bytes.fromhex("0041D83DDE000042"), UCS2) == "A\U0001f600B"


GSM7_NOT_SEPTETS = [
    (b"\x80", "\ufffd"),
    (b"A\xffB", "A\ufffdB"),
    (b"AB\xc0", "AB\ufffd"),
    (b"\xe5", "\ufffd"),  # not the euro sign (0x1B 0x65)
]


@pytest.mark.parametrize(("data", "replaced"), GSM7_NOT_SEPTETS)
def test_gsm7_bytes_above_0x7f_strict(data: bytes, replaced: str) -> None:
    # A byte above 0x7F is not a septet: strict refuses it.
    with pytest.raises(UnencodableText):
        decode_text(data, GSM7)


@pytest.mark.parametrize(("data", "replaced"), GSM7_NOT_SEPTETS)
def test_gsm7_bytes_above_0x7f_replace(data: bytes, replaced: str) -> None:
    # The module's docstring: '"replace" gives U+FFFD instead, for text that must be delivered
    # whatever a sender did (a lone surrogate, a byte that is not a septet)'.
    assert decode_text(data, GSM7, errors="replace") == replaced


def test_gsm7_escape_then_byte_above_0x7f() -> None:
    with pytest.raises(UnencodableText):
        decode_text(b"A\x1b\xe5", GSM7)


def test_gsm7_escape_then_byte_above_0x7f_replace() -> None:
    assert "\ufffd" in decode_text(b"A\x1b\xe5", GSM7, errors="replace")


def test_ascii_strict_and_replace() -> None:
    with pytest.raises(UnencodableText) as exc:
        decode_text(b"A\x80", ASCII)
    assert exc.value.position == 1
    assert decode_text(b"A\x80", ASCII, errors="replace") == "A\ufffd"


def test_latin1_and_binary_decode_every_octet() -> None:
    every = bytes(range(256))
    assert decode_text(every, LATIN1) == "".join(map(chr, range(256)))
    assert decode_text(every, BINARY) == "".join(map(chr, range(256)))


def test_other_codec_strict_and_replace() -> None:
    with pytest.raises(UnencodableText):
        decode_text(b"\xff\xff", "shift_jis")
    assert "\ufffd" in decode_text(b"\xff\xff", "shift_jis", errors="replace")


@settings(max_examples=300)
@given(st.binary(max_size=200), st.sampled_from([GSM7, ASCII, LATIN1, BINARY, UCS2]))
def test_decode_never_raises_anything_else(data: bytes, encoding: Encoding) -> None:
    with contextlib.suppress(UnencodableText):
        decode_text(data, encoding)
    out = decode_text(data, encoding, errors="replace")
    out.encode("utf-8")  # no lone surrogates leak out


@settings(max_examples=200)
@given(st.text(max_size=200))
def test_ucs2_round_trip(text: str) -> None:
    data = encode_text(text, UCS2)
    assert len(data) == 2 * sum(2 if ord(c) > 0xFFFF else 1 for c in text)
    assert decode_text(data, UCS2) == text


@settings(max_examples=100)
@given(st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=200))
def test_latin1_round_trip(text: str) -> None:
    assert decode_text(encode_text(text, LATIN1), LATIN1) == text
    if text.isascii():
        assert decode_text(encode_text(text, ASCII), ASCII) == text
