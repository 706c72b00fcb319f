"""submit_sm / deliver_sm have a decoder written out by hand (gateway.smpp.codec._decode_sm, so
that the compiled build makes it native code); it must agree with the decoder generated from
the declarations on every input: the corpus's PDUs, and each of them cut short, bit-flipped,
or with a C-string overrun."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.smpp import codec
from gateway.smpp.constants import CommandId
from gateway.smpp.message import SmBuilder

CIDS = (int(CommandId.submit_sm), int(CommandId.deliver_sm))


def _outcome(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return ("ok", fn(*args))
    except Exception as exc:
        return ("raised", type(exc).__name__, getattr(exc, "status", None), str(exc))


def _same(body: bytes) -> None:
    for cid in CIDS:
        want = _outcome(codec._GENERATED[cid], body, 0, 7, 0)
        got = _outcome(codec._DECODERS[cid], body, 0, 7, 0)
        assert got == want, body
        # and through the public entry points, header included
        assert _outcome(codec.decode_body, cid, 0, 7, body) == got or want[0] == "raised"


def test_the_hand_written_decoder_is_in_use() -> None:
    for cid in CIDS:
        assert codec._DECODERS[cid] is not codec._GENERATED[cid]


def test_corpus_pdus_and_their_damaged_copies(corpus_path: Path) -> None:
    messages = json.loads(corpus_path.read_text(encoding="utf-8"))["messages"]
    builder = SmBuilder(source_addr_ton=1, source_addr_npi=1, registered_delivery=1)
    for i, m in enumerate(messages[::7]):
        for pdu in builder.build_text(m["text"], m["src"], m["dst"], range(1, 256), ref=i & 0xFF):
            body = pdu[16:]
            _same(body)
            _same(body[: i % len(body)])  # cut short
            j = i % len(body)
            _same(body[:j] + bytes((body[j] ^ 0xFF,)) + body[j + 1 :])  # a NUL lost or gained


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x00",
        b"CMT\x00\x01\x01" + b"1" * 30 + b"\x00",  # source_addr overruns its 21 octets
        b"\x00\x01\x011\x00\x01\x012\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x05ab",  # sm short
        b"\x00\x01\x011\x00\x01\x012\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x02ab\x02\x04\x00",
        b"\x00\x01\x011\x00\x01\x012\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00"
        b"\x04\x24\x00\x03abc",  # message_payload TLV
    ],
)
def test_edges(body: bytes) -> None:
    _same(body)


@given(st.binary(max_size=120))
def test_any_bytes(body: bytes) -> None:
    _same(body)
