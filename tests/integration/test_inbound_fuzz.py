"""Fuzzing the MO path: hypothesis makes deliver_sm and data_sm MOs - addresses of any
characters and up to 64 long, any data_coding and esm_class, valid, random and broken UDH,
concatenated messages whose parts come in any order and repeated, SAR parts, message_payloads
up to 40 KB - and hands them to `Dispatcher.inbound` on a real store (SQLite; PostgreSQL too
when one is reachable).

The invariant: `inbound` raises nothing; it answers 0/None (taken) or a refusal status that
was logged with its reason; and every deliver_sm it queued is one an SMPP 3.4 application
can take - it decodes, re-encodes to the same octets, has ASCII addresses of at most 20
characters, esm_class 0 or 0x40 with a UDH that parses, at most 254 octets of short_message
(none beside a message_payload) - and its text decodes. After the timeout every incomplete
message has been delivered (or refused) and nothing is left waiting.

Bounded: a fixed number of examples per backend, derandomized, no deadline per example.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from gateway.dispatch import Dispatcher
from gateway.routing import RouteTable
from gateway.routing.mo import MoRoute, MoRouter
from gateway.smpp.codec import decode_pdu, encode_pdu
from gateway.smpp.constants import Tag
from gateway.smpp.message import message_content
from gateway.smpp.pdu import DataSm, DeliverSm
from gateway.smpp.tlv import TLV_SPECS, Tlv, tlv_raw
from gateway.sms.coding import decode_text
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore

EXAMPLES = int(os.environ.get("SMSGW_FUZZ_EXAMPLES", "300"))
ROUTER = MoRouter([MoRoute("shop", ("49", "0")), MoRoute("stop", ("49",), keyword="STOP")])
ACCOUNTS = ("shop", "stop")

# -- strategies -----------------------------------------------------------------------------------

_GSM_EXTRA = "ΔΦΓΛΩΠΨΣΘΞ€£¥èéùìòÇØøÅåÆæßÉÄÖÑÜ§¿äöñüà¡¤"
addresses = st.one_of(
    st.text("0123456789", min_size=1, max_size=20).map(lambda d: "49" + d),
    st.text(st.sampled_from("ABCXYZabc 0-9" + _GSM_EXTRA), min_size=1, max_size=11),
    st.text(max_size=64),  # anything a driver's object could hold, NUL and lone surrogates too
)
data_codings = st.one_of(
    st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 0x10, 0x18, 0xC0, 0xE0, 0xF0,
                     0xF4, 0xF5, 0xF6]),
    st.integers(0, 255),
)  # fmt: skip
texts = st.one_of(
    st.text(max_size=400),
    st.sampled_from(["STOP", "stop now", "Ответ", "Ж" * 17_100, "x" * 20_000, "€[]"]),
)


@st.composite
def payload_bytes(draw: st.DrawFn) -> bytes:
    """Bodies: encoded text, random octets, or a large patterned block (up to 40 KB)."""
    kind = draw(st.sampled_from(["text", "random", "big"]))
    if kind == "text":
        encoding = draw(st.sampled_from(["utf-16-be", "latin-1", "ascii"]))
        return draw(texts).encode(encoding, "replace")
    if kind == "random":
        return draw(st.binary(max_size=300))
    size = draw(st.integers(0, 40_000))
    seed = draw(st.integers(0, 255))
    return bytes((seed + i * 7) & 0xFF for i in range(size))


elements = st.one_of(
    st.tuples(st.just(0x04), st.binary(min_size=2, max_size=2)),  # 8-bit ports
    st.tuples(st.just(0x05), st.binary(min_size=4, max_size=4)),  # 16-bit ports
    st.tuples(st.sampled_from([0x24, 0x25]), st.integers(0, 15).map(lambda n: bytes((n,)))),
    st.tuples(st.integers(1, 255).filter(lambda i: i != 8), st.binary(max_size=8)),  # others
)
# A lone part of a concatenated message (its siblings never come) now and then.
lone_concat = st.tuples(st.sampled_from([0x00, 0x08]), st.binary(min_size=3, max_size=4))


def udh_of(ies: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(bytes((iei, len(data))) + data for iei, data in ies)
    return bytes((len(body) & 0xFF,)) + body


@st.composite
def udhs(draw: st.DrawFn) -> bytes:
    """A UDH (UDHL included): well formed, or random octets that may not parse."""
    if draw(st.booleans()):
        ies = draw(st.lists(elements, max_size=3))
        if draw(st.integers(0, 9)) == 0:
            ies.append(draw(lone_concat))
        return udh_of(ies)
    return draw(st.binary(min_size=1, max_size=20))


Mo = DeliverSm | DataSm
# TLVs an upstream may add: subaddresses (any length), a vendor tag, a language indicator.
carrier_tlvs = st.lists(
    st.one_of(
        st.builds(Tlv, st.sampled_from([int(Tag.source_subaddress), int(Tag.dest_subaddress)]),
                  st.binary(max_size=30)),
        st.builds(Tlv, st.integers(0x1400, 0x3FFF), st.binary(max_size=10)),
        st.builds(Tlv, st.just(int(Tag.language_indicator)), st.binary(min_size=1, max_size=1)),
    ),
    max_size=2,
)  # fmt: skip


def make_pdu(draw: st.DrawFn, body: bytes, esm_class: int, tlvs: tuple[Tlv, ...], **kw: Any) -> Mo:
    """A deliver_sm (body in short_message when it fits) or a data_sm (body in payload)."""
    tlvs = (*tlvs, *draw(carrier_tlvs))
    where = draw(st.sampled_from(["short_message", "deliver_sm payload", "data_sm"]))
    if where == "short_message" and len(body) <= 254:
        return DeliverSm(esm_class=esm_class, short_message=body, tlvs=tlvs, **kw)
    tlvs = (*tlvs, Tlv(Tag.message_payload, body))
    if where == "data_sm":
        return DataSm(esm_class=esm_class, tlvs=tlvs, **kw)
    return DeliverSm(esm_class=esm_class, tlvs=tlvs, **kw)


@st.composite
def messages(draw: st.DrawFn) -> list[Mo]:
    """One MO as the PDUs an upstream hands on: a single PDU, or a concatenated message's
    parts (UDH 8/16-bit reference or SAR) in any order with repeats and gaps."""
    common: dict[str, Any] = {
        "source_addr": draw(addresses),
        "destination_addr": draw(st.sampled_from(["4930123", "+4930123", "0301234"]))
        if draw(st.integers(0, 3))
        else draw(addresses),
        "source_addr_ton": draw(st.sampled_from([0, 1, 5])),
        "data_coding": draw(data_codings),
    }
    esm_extra = draw(st.sampled_from([0, 0x80, 0x03]))
    if draw(st.integers(0, 2)) == 0:  # one PDU
        esm_class = esm_extra | draw(st.sampled_from([0, 0x40]))
        body = draw(payload_bytes())
        if esm_class & 0x40:
            body = draw(udhs()) + body
        return [make_pdu(draw, body, esm_class, (), **common)]
    total = draw(st.integers(2, 5))
    ref = draw(st.integers(0, 0xFFFF))
    how = draw(st.sampled_from(["udh8", "udh16", "sar"]))
    extra = draw(st.lists(elements.filter(lambda e: e[0] not in (0x00, 0x08)), max_size=2))
    bodies = [draw(st.binary(max_size=140)) for _ in range(total)]
    order = draw(st.lists(st.integers(1, total), min_size=1, max_size=total + 3))
    pdus = []
    for seq in order:
        tlvs: tuple[Tlv, ...] = ()
        if how == "sar":
            tlvs = (Tlv(Tag.sar_msg_ref_num, ref.to_bytes(2, "big")),
                    Tlv(Tag.sar_total_segments, bytes((total,))),
                    Tlv(Tag.sar_segment_seqnum, bytes((seq,))))  # fmt: skip
            head = udh_of(extra) if extra else b""
        elif how == "udh8":
            head = udh_of([*extra, (0x00, bytes((ref & 0xFF, total, seq)))])
        else:
            head = udh_of([*extra, (0x08, ref.to_bytes(2, "big") + bytes((total, seq)))])
        esm_class = esm_extra | (0x40 if head else 0)
        pdus.append(make_pdu(draw, head + bodies[seq - 1], esm_class, tlvs, **common))
    return pdus


# -- the check ------------------------------------------------------------------------------------


def check_for_application(raw: bytes) -> None:
    """`raw` is a deliver_sm an SMPP 3.4 application can take."""
    pdu = decode_pdu(raw)
    assert isinstance(pdu, DeliverSm)
    assert encode_pdu(pdu) == raw  # one canonical encoding: nothing our codec reads differently
    for address in (pdu.source_addr, pdu.destination_addr):
        assert address.isascii() and address.isprintable() and len(address) <= 20, address
    assert pdu.esm_class in (0, 0x40)
    assert len(pdu.short_message) <= 254
    assert all(t.tag in TLV_SPECS for t in pdu.tlvs)  # no TLV a strict client library refuses
    payload = tlv_raw(pdu.tlvs, Tag.message_payload)
    assert payload is None or pdu.short_message == b""
    content = message_content(pdu)  # a UDH indicator has a UDH that parses
    assert bool(content.udh) == bool(pdu.esm_class & 0x40)
    decode_text(content.body, content.encoding, content.alphabet, "replace")


class Path_:
    """One store, one dispatcher and the deliveries seen so far, on one event loop."""

    def __init__(self, runner: asyncio.Runner, store: SqliteStore | PostgresStore) -> None:
        self.runner = runner
        self.store = store
        self.dispatcher = Dispatcher(store, RouteTable([]), {}, mo_router=ROUTER)
        self.seen: dict[str, int] = dict.fromkeys(ACCOUNTS, 0)
        self.queued = 0

    async def _new_deliveries(self, now: float) -> None:
        for account in ACCOUNTS:
            while batch := await self.store.pending_deliveries(
                account, now, 500, after=self.seen[account]
            ):
                for delivery in batch:
                    check_for_application(delivery.pdu)
                    self.seen[account] = delivery.id
                    self.queued += 1

    async def one(self, pdus: list[Mo]) -> None:
        for pdu in pdus:
            before = self.queued
            with capture_logs() as logs:
                status = await self.dispatcher.inbound(pdu)
            if status:  # refused: permanently, and said why
                (refusal,) = [e for e in logs if e["event"] == "MO refused"]
                assert refusal["reason"] and refusal["status"]
                assert status not in (0x14, 0x58, 0x64), status  # never "try again"
                continue
            await self._new_deliveries(time.time())
            concat = message_content(pdu).concat  # it was taken: it reads
            if concat is None or concat.total == 1:  # a whole message: queued at once
                assert self.queued > before, pdu

    async def flush(self) -> None:
        """Everything incomplete goes out (or is refused) after the timeout."""
        later = time.time() + 10 * 86_400
        await self.dispatcher._inbound.housekeeping(later)
        await self._new_deliveries(time.time())
        assert await self.store.stale_inbound(later) == []


def fuzz(runner: asyncio.Runner, store: SqliteStore | PostgresStore, examples: int) -> int:
    path = Path_(runner, store)

    def bounded(coro: Awaitable[None]) -> None:
        runner.run(asyncio.wait_for(coro, 60))

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=os.environ.get("SMSGW_FUZZ_RANDOM") != "1",
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.large_base_example],
    )  # fmt: skip
    @given(messages())
    def check(pdus: list[Mo]) -> None:
        bounded(path.one(pdus))

    check()
    bounded(path.flush())
    return path.queued


def test_fuzz_the_mo_path_on_sqlite(tmp_path: Path) -> None:
    with asyncio.Runner() as runner:
        store = SqliteStore(tmp_path / "gw.sqlite3")
        runner.run(store.open())
        try:
            assert fuzz(runner, store, EXAMPLES) > EXAMPLES // 4  # most MOs reach the app
        finally:
            runner.run(store.close())


def _postgres_dsn() -> str:
    dsn = os.environ.get("SMSGW_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")

    async def ping() -> None:
        conn = await asyncpg.connect(dsn, timeout=5)
        await conn.close(timeout=5)

    try:
        asyncio.run(asyncio.wait_for(ping(), 10))
    except Exception as exc:
        reason = f"PostgreSQL (SMSGW_TEST_POSTGRES_DSN) not reachable: {exc!r}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return dsn


def test_fuzz_the_mo_path_on_postgres() -> None:
    dsn = _postgres_dsn()
    schema = f"smsgw_test_{uuid.uuid4().hex[:16]}"

    async def drop() -> None:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close(timeout=10)

    with asyncio.Runner() as runner:
        store = PostgresStore(dsn, schema=schema, min_size=1, max_size=4)
        runner.run(store.open())
        try:
            assert fuzz(runner, store, EXAMPLES // 2) > EXAMPLES // 8
        finally:
            runner.run(store.close())
            runner.run(drop())
