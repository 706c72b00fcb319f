"""Tests of gateway.smpp.framing.FrameBuffer: cutting a TCP byte stream into PDUs.

SMPP v3.4 section 3.2: command_length is the first field of every PDU and counts the whole PDU,
itself included, so a length below 16 (the header) can never be right.
"""

from __future__ import annotations

import struct
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.smpp.codec import decode_pdu, encode_pdu
from gateway.smpp.constants import CommandStatus
from gateway.smpp.errors import RemoteSmppError
from gateway.smpp.framing import DEFAULT_MAX_LENGTH, FrameBuffer
from gateway.smpp.pdu import DeliverSm, EnquireLink, GenericNack, SubmitSm, SubmitSmResp
from gateway.smpp.tlv import Tlv, make_tlvs

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEQ = st.integers(0, 2**32 - 1)

PDUS = st.one_of(
    st.builds(lambda s: encode_pdu(EnquireLink(sequence_number=s)), SEQ),
    st.builds(
        lambda s, m: encode_pdu(
            SubmitSm(source_addr="1", destination_addr="2", short_message=m, sequence_number=s)
        ),
        SEQ,
        st.binary(max_size=254),
    ),
    st.builds(
        lambda s, p: encode_pdu(DeliverSm(tlvs=make_tlvs(message_payload=p), sequence_number=s)),
        SEQ,
        st.binary(max_size=600),
    ),
    st.builds(
        lambda s, i: encode_pdu(SubmitSmResp(message_id=i, sequence_number=s)),
        SEQ,
        st.text("0123456789abcdef", max_size=64),
    ),
    st.builds(lambda s: encode_pdu(GenericNack(sequence_number=s, command_status=3)), SEQ),
)
STREAMS = st.lists(PDUS, min_size=1, max_size=8)


def feed_in_chunks(buf: FrameBuffer, data: bytes, cuts: list[int]) -> list[bytes]:
    out: list[bytes] = []
    start = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        buf.feed(data[start:cut])
        out += buf.pdus()
        start = cut
    return out


@SETTINGS
@given(pdus=STREAMS, data=st.data())
def test_any_chunking_gives_the_same_pdus(pdus: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(pdus)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    buf = FrameBuffer()
    assert feed_in_chunks(buf, stream, cuts) == pdus
    assert len(buf) == 0
    assert buf.next_pdu() is None


@SETTINGS
@given(pdus=STREAMS)
def test_byte_by_byte_and_all_at_once(pdus: list[bytes]) -> None:
    stream = b"".join(pdus)
    one = FrameBuffer()
    got: list[bytes] = []
    for i in range(len(stream)):
        one.feed(stream[i : i + 1])
        pdu = one.next_pdu()
        if pdu is not None:
            got.append(pdu)
            assert one.next_pdu() is None  # a PDU completes on its last octet, never two at once
    assert got == pdus
    whole = FrameBuffer()
    whole.feed(stream)
    assert whole.pdus() == pdus
    assert [decode_pdu(p) for p in got] == [decode_pdu(p) for p in pdus]


@SETTINGS
@given(pdus=STREAMS, extra=PDUS, data=st.data())
def test_trailing_partial_pdu_stays_buffered(
    pdus: list[bytes], extra: bytes, data: st.DataObject
) -> None:
    keep = data.draw(st.integers(0, len(extra) - 1))
    stream = b"".join(pdus) + extra[:keep]
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    buf = FrameBuffer()
    assert feed_in_chunks(buf, stream, cuts) == pdus
    assert len(buf) == keep
    assert buf.next_pdu() is None
    assert buf.pdus() == []
    buf.feed(extra[keep:])
    assert buf.pdus() == [extra]
    assert len(buf) == 0


def test_pdus_drains_the_buffer() -> None:
    a = encode_pdu(EnquireLink(sequence_number=1))
    b = encode_pdu(SubmitSm(short_message=b"hi", sequence_number=2))
    buf = FrameBuffer()
    buf.feed(a + b + a[:5])
    assert len(buf) == len(a) + len(b) + 5
    assert buf.pdus() == [a, b]
    assert len(buf) == 5
    assert buf.pdus() == []
    assert buf.next_pdu() is None
    buf.feed(a[5:])
    assert buf.next_pdu() == a
    assert len(buf) == 0
    assert buf.pdus() == []


def test_empty_and_short_feeds_wait() -> None:
    buf = FrameBuffer()
    assert buf.next_pdu() is None
    buf.feed(b"")
    assert buf.pdus() == []
    for octet in b"\x00\x00\x00":  # fewer than 4 octets: nothing to judge yet
        buf.feed(bytes((octet,)))
        assert buf.next_pdu() is None
    buf.feed(b"\x10")  # command_length 16
    assert buf.next_pdu() is None  # the rest of the header is not here
    buf.feed(b"\x00\x00\x00\x15" + bytes(8))
    assert buf.next_pdu() == bytes.fromhex("00000010000000150000000000000000")


def test_many_pdus_through_compaction() -> None:
    """Far more than 64 KiB through one buffer, always leaving a partial PDU behind, so the
    buffer's occasional compaction runs; order and content must survive it."""
    pdus = [
        encode_pdu(SubmitSm(short_message=bytes([i % 251]) * (i % 200), sequence_number=i))
        for i in range(2500)
    ]
    stream = b"".join(pdus)
    assert len(stream) > 4 * 65536
    buf = FrameBuffer()
    got: list[bytes] = []
    for start in range(0, len(stream), 777):
        buf.feed(stream[start : start + 777])
        got += buf.pdus()
        assert len(buf) < 777 + 300
    assert got == pdus


def _bad(length: int, rest: bytes = b"") -> bytes:
    return struct.pack(">I", length) + rest


BAD_LENGTHS = st.one_of(st.integers(0, 15), st.integers(DEFAULT_MAX_LENGTH + 1, 2**32 - 1))


@SETTINGS
@given(length=BAD_LENGTHS, have=st.integers(4, 15))
def test_bad_command_length_is_fatal_as_soon_as_it_arrives(length: int, have: int) -> None:
    buf = FrameBuffer()
    head = _bad(length, bytes.fromhex("00000004000000000000002a"))
    buf.feed(head[:3])
    assert buf.next_pdu() is None
    buf.feed(head[3:have])
    with pytest.raises(RemoteSmppError) as info:
        buf.next_pdu()
    err = info.value
    assert (err.status, err.fatal) == (CommandStatus.ESME_RINVCMDLEN, True)
    assert (err.command_id, err.sequence_number) == (None, None)  # the header is not all here
    with pytest.raises(RemoteSmppError):
        buf.pdus()


@SETTINGS
@given(length=BAD_LENGTHS, command_id=st.integers(0, 2**32 - 1), seq=SEQ)
def test_bad_command_length_carries_the_header_when_16_octets_are_there(
    length: int, command_id: int, seq: int
) -> None:
    buf = FrameBuffer()
    buf.feed(struct.pack(">IIII", length, command_id, 0, seq) + b"more")
    with pytest.raises(RemoteSmppError) as info:
        buf.pdus()
    err = info.value
    assert (err.status, err.fatal) == (CommandStatus.ESME_RINVCMDLEN, True)
    assert (err.command_id, err.sequence_number) == (command_id, seq)


def test_bad_length_after_good_pdus() -> None:
    good = encode_pdu(EnquireLink(sequence_number=7))
    buf = FrameBuffer()
    buf.feed(good + _bad(8, bytes(12)))
    assert buf.next_pdu() == good  # what came before the bad length is still delivered
    with pytest.raises(RemoteSmppError) as info:
        buf.next_pdu()
    assert info.value.fatal is True


def test_max_length_boundary() -> None:
    buf = FrameBuffer(max_length=100)
    exact = struct.pack(">I", 100) + bytes(96)
    buf.feed(exact[:50])
    assert buf.next_pdu() is None
    buf.feed(exact[50:])
    assert buf.next_pdu() == exact
    buf.feed(struct.pack(">I", 101))
    with pytest.raises(RemoteSmppError) as info:
        buf.next_pdu()
    assert (info.value.status, info.value.fatal) == (CommandStatus.ESME_RINVCMDLEN, True)
    with pytest.raises(ValueError):
        FrameBuffer(max_length=15)
    smallest = FrameBuffer(max_length=16)
    smallest.feed(encode_pdu(EnquireLink(sequence_number=3)))
    assert len(smallest.pdus()) == 1


def test_two_gigabyte_command_length_allocates_nothing() -> None:
    huge = struct.pack(">IIII", 0x80000000, 4, 0, 9)
    buf = FrameBuffer()
    buf.feed(huge[:4])
    assert len(buf) == 4
    with pytest.raises(RemoteSmppError) as info:
        buf.next_pdu()
    assert info.value.fatal is True
    assert len(buf) == 4

    # even a buffer configured to accept it only holds what was fed
    tracemalloc.start()
    try:
        lenient = FrameBuffer(max_length=2**32 - 1)
        lenient.feed(huge)
        for _ in range(100):
            lenient.feed(b"x" * 100)
            assert lenient.next_pdu() is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(lenient) == 16 + 100 * 100
    assert peak < 1_000_000


def test_feed_accepts_bytes_like() -> None:
    pdu = encode_pdu(EnquireLink(sequence_number=11, tlvs=(Tlv(0x1400, b"v"),)))
    buf = FrameBuffer()
    buf.feed(bytearray(pdu[:10]))
    buf.feed(memoryview(pdu)[10:])
    (got,) = buf.pdus()
    assert got == pdu
    assert isinstance(got, bytes)
