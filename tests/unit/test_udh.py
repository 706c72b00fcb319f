"""User data headers (gateway.sms.udh), 3GPP TS 23.040 section 9.2.3.24."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sms.errors import UdhError
from gateway.sms.udh import (
    IEI_CONCAT_8,
    IEI_CONCAT_16,
    IEI_LOCKING_SHIFT,
    IEI_PORT_8,
    IEI_PORT_16,
    IEI_SINGLE_SHIFT,
    Concat,
    InformationElement,
    build_udh,
    concat_ie,
    concat_of,
    parse_udh,
    split_udh,
)

IE = InformationElement


def test_iei_values() -> None:
    # TS 23.040 9.2.3.24 table of IEIs.
    assert (IEI_CONCAT_8, IEI_PORT_8, IEI_PORT_16, IEI_CONCAT_16) == (0x00, 0x04, 0x05, 0x08)
    assert (IEI_SINGLE_SHIFT, IEI_LOCKING_SHIFT) == (0x24, 0x25)


# -- golden headers -------------------------------------------------------------------------------


def test_concat_8bit_golden() -> None:
    # osmocom/libosmocore tests/sms/sms_test.c concatenated_part1_enc: 05 00 03 6F 02 01.
    udh = bytes.fromhex("0500036F0201")
    ies, length = parse_udh(udh + b"body")
    assert length == 6
    assert ies == (IE(0x00, b"\x6f\x02\x01"),)
    assert concat_of(ies) == Concat(ref=0x6F, total=2, seq=1, ref_bits=8)
    assert build_udh([concat_ie(0x6F, 2, 1)]) == udh
    assert split_udh(udh + b"body") == (ies, b"body")


def test_concat_16bit_golden() -> None:
    # TS 23.040 9.2.3.24.8: IEI 08, length 04, reference (2 octets, MSB first), total, sequence.
    udh = bytes.fromhex("06080412340302")
    ies, length = parse_udh(udh)
    assert length == 7
    assert concat_of(ies) == Concat(ref=0x1234, total=3, seq=2, ref_bits=16)
    assert build_udh([concat_ie(0x1234, 3, 2, ref_bits=16)]) == udh


def test_wap_push_header_with_ports_and_concat() -> None:
    # The classic WAP push UDH: 16-bit application ports 2948 (0B84) <- 9200 (23F0),
    # then an 8-bit concatenation IE (TS 23.040 9.2.3.24.4 and 9.2.3.24.1).
    udh = bytes.fromhex("0B05040B8423F00003010201")
    ies, length = parse_udh(udh + b"\x01\x06")
    assert length == 12
    assert ies == (IE(0x05, bytes.fromhex("0B8423F0")), IE(0x00, bytes.fromhex("010201")))
    assert concat_of(ies) == Concat(1, 2, 1, 8)
    assert build_udh(ies) == udh


def test_ports_concat_and_national_shifts_in_one_header() -> None:
    ies = [
        IE(IEI_PORT_8, bytes([0xF5, 0xF6])),
        concat_ie(0xABCD, 5, 4, ref_bits=16),
        IE(IEI_SINGLE_SHIFT, b"\x01"),  # Turkish (TS 23.038 6.2.1.2.4)
        IE(IEI_LOCKING_SHIFT, b"\x01"),
        IE(0x70, b""),  # an element we do not know, kept as it came
    ]
    udh = build_udh(ies)
    assert udh == bytes.fromhex("120402F5F60804ABCD05042401012501017000")
    parsed, length = parse_udh(udh)
    assert length == len(udh) == 19
    assert list(parsed) == ies
    assert concat_of(parsed) == Concat(0xABCD, 5, 4, 16)


def test_empty_header() -> None:
    assert build_udh([]) == b"\x00"
    assert parse_udh(b"\x00rest") == ((), 1)
    assert concat_of(()) is None


# -- round trip -----------------------------------------------------------------------------------

ies_strategy = st.lists(
    st.builds(IE, st.integers(0, 255), st.binary(max_size=20)), max_size=8
).filter(lambda ies: sum(2 + len(d) for _, d in ies) <= 139)


@settings(max_examples=150)
@given(ies_strategy, st.binary(max_size=30))
def test_build_parse_round_trip(ies: list[InformationElement], rest: bytes) -> None:
    udh = build_udh(ies)
    assert udh[0] == len(udh) - 1
    parsed, length = parse_udh(udh + rest)
    assert length == len(udh)
    assert list(parsed) == ies
    assert split_udh(udh + rest) == (tuple(ies), rest)


@settings(max_examples=100)
@given(
    st.sampled_from([8, 16]).flatmap(
        lambda bits: st.tuples(
            st.just(bits),
            st.integers(0, (1 << bits) - 1),
            st.integers(1, 255).flatmap(lambda t: st.tuples(st.just(t), st.integers(1, t))),
        )
    )
)
def test_concat_round_trip(args: tuple[int, int, tuple[int, int]]) -> None:
    bits, ref, (total, seq) = args
    ie = concat_ie(ref, total, seq, ref_bits=bits)
    assert ie.iei == (IEI_CONCAT_8 if bits == 8 else IEI_CONCAT_16)
    assert len(ie.data) == (3 if bits == 8 else 4)
    parsed, _ = parse_udh(build_udh([ie]))
    assert concat_of(parsed) == Concat(ref, total, seq, bits)


# -- malformed headers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",  # UDHI set but no user data
        b"\x05\x00\x03\x01",  # UDHL 5 runs past 4 octets
        b"\x01\x00",  # an IEI with no length octet
        b"\x03\x00\x03\x01\x02",  # the IE's 3 octets run past the 3-octet header
        b"\x02\x00\x01\x07",  # IE length 1 runs past UDHL 2 (the octet after is text)
        b"\x06\x00\x03\x01\x02\x01\x24",  # trailing IEI without its length
        b"\xff" + b"\x00" * 100,
    ],
)
def test_malformed_headers_raise(data: bytes) -> None:
    with pytest.raises(UdhError):
        parse_udh(data)
    with pytest.raises(UdhError):
        split_udh(data)


def test_build_refuses_what_cannot_be_sent() -> None:
    with pytest.raises(UdhError):
        build_udh([IE(0x70, bytes(256))])  # IEDL is one octet
    with pytest.raises(UdhError):
        build_udh([IE(0x70, bytes(138))])  # 1 + 2 + 138 = 141 octets > 140 of TP-UD
    assert len(build_udh([IE(0x70, bytes(137))])) == 140


@settings(max_examples=300)
@given(st.binary(max_size=160))
def test_arbitrary_bytes_parse_or_raise_udh_error(data: bytes) -> None:
    try:
        ies, length = parse_udh(data)
    except UdhError:
        return
    assert length == data[0] + 1 <= len(data)
    assert sum(2 + len(ie.data) for ie in ies) == length - 1
    if length <= 140:
        assert build_udh(ies) == data[:length]
    concat = concat_of(ies)
    if concat is not None:
        assert 1 <= concat.seq <= concat.total


# -- invalid concatenation elements are ignored (TS 23.040 9.2.3.24.1 / .8) -----------------------


@pytest.mark.parametrize(
    "ie",
    [
        IE(IEI_CONCAT_8, b"\x01\x03\x00"),  # sequence 0
        IE(IEI_CONCAT_8, b"\x01\x03\x04"),  # sequence above total
        IE(IEI_CONCAT_8, b"\x01\x00\x00"),  # total 0
        IE(IEI_CONCAT_8, b"\x01\x03"),  # too short
        IE(IEI_CONCAT_8, b"\x01\x03\x01\x00"),  # too long for the 8-bit form
        IE(IEI_CONCAT_16, b"\x01\x02\x03\x00"),  # sequence 0
        IE(IEI_CONCAT_16, b"\x01\x02\x03\x04"),  # sequence above total
        IE(IEI_CONCAT_16, b"\x01\x02\x03"),  # too short for the 16-bit form
        IE(IEI_PORT_16, b"\x0b\x84\x23\xf0"),  # not a concatenation IE at all
    ],
)
def test_invalid_concat_ie_is_ignored(ie: InformationElement) -> None:
    assert concat_of([ie]) is None
    parsed, _ = parse_udh(build_udh([ie]))
    assert concat_of(parsed) is None


def test_invalid_concat_ie_does_not_hide_a_valid_one() -> None:
    ies = [IE(IEI_CONCAT_8, b"\x01\x03\x00"), IE(IEI_CONCAT_8, b"\x07\x03\x02")]
    assert concat_of(ies) == Concat(7, 3, 2, 8)


@pytest.mark.parametrize(
    ("ies", "expected"),
    [
        ([concat_ie(1, 2, 1), concat_ie(9, 4, 3)], Concat(9, 4, 3, 8)),
        ([concat_ie(1, 2, 1), concat_ie(0x1234, 4, 3, 16)], Concat(0x1234, 4, 3, 16)),
        ([concat_ie(0x1234, 4, 3, 16), concat_ie(1, 2, 1)], Concat(1, 2, 1, 8)),
    ],
)
def test_repeated_concat_ie_last_one_wins(ies: list[InformationElement], expected: Concat) -> None:
    # TS 23.040 9.2.3.24: "In the event that IEs determined as not repeatable are duplicated, the
    # last occurrence of the IE shall be used. In the event that two or more IEs occur which have
    # mutually exclusive meanings (e.g. an 8bit port address and a 16bit port address), then the
    # last occurring IE shall be used." (quoted and implemented in oFono src/smsutil.c,
    # sms_extract_concatenation).
    assert concat_of(ies) == expected
