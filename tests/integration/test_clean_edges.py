"""Clean edges (issue 8, item 12): a carrier that resets the link while we write, and receipts
that arrive while the gateway stops. Each answer is kept or refused; nothing raises, and the
gateway's log shows no traceback."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import smpplib.client

from drivers.smpp.upstream import SmppUpstream
from gateway.app import Gateway
from gateway.config import load_config
from gateway.smpp.pdu import EnquireLink
from gateway.store.base import MessageState
from gateway.store.sqlite import SqliteStore
from tests.fakes.smsc import Behaviour, FakeSmsc
from tests.integration.loop import LoopThread

BAD = ("Traceback", "store is not open", "Exception in callback", "exception was never retrieved")

RESET_CONFIG = """
accounts: [{system_id: app, password: pw, window: 1000}]
upstreams:
  carrier: {host: 127.0.0.1, port: %d, system_id: gw, password: pw, window: 50}
routes: [{name: all, targets: [carrier]}]
dispatch: {retry_backoff: 0.05, max_retry_backoff: 0.2}
store: {path: "%s"}
"""


class UvloopThread(LoopThread):
    """The gateway's loop as `smsgw serve` runs it: uvloop, where a write to a transport the
    peer has reset raises instead of being dropped. Errors the loop reports are kept."""

    def __init__(self) -> None:
        uvloop = pytest.importorskip("uvloop")
        self.loop = uvloop.new_event_loop()
        self.errors: list[str] = []
        self.loop.set_exception_handler(lambda _loop, ctx: self.errors.append(repr(ctx)))
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()


def test_a_carrier_that_resets_the_link_mid_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The carrier resets the link (RST) every 10 accepted submit_sm, right behind an
    enquire_link the gateway answers at once, while the gateway has a window of PDUs to write.
    Every message still reaches it and gets its receipt; no traceback, no loop error."""
    running = UvloopThread()
    smsc = FakeSmsc(Behaviour(reset_after=10, reset_every=10))
    smsc_port = running.call(smsc.start())
    config = load_config("t.yaml", text=RESET_CONFIG % (smsc_port, tmp_path / "gw.sqlite3"))
    gateway = Gateway(config)
    gateway.dispatcher.poll_interval = 0.05
    upstream = gateway.drivers["carrier"]
    assert isinstance(upstream, SmppUpstream)
    upstream.backoff, upstream.max_backoff = 0.02, 0.05  # many resets in a short test
    count = 300
    try:
        port = running.call(gateway.start("127.0.0.1", 0))
        running.call(upstream.wait_bound(10))
        acked, receipts = _through(port, count)
        assert len(acked) == count
        assert set(acked) <= set(receipts)  # every message went through, across the resets
        assert smsc.resets >= 20  # it did reset, again and again
    finally:
        running.call(gateway.stop())
        running.call(smsc.stop())
        running.stop_loop()
    log = capsys.readouterr().out
    assert not [bad for bad in BAD if bad in log], log[-3000:]
    assert not running.errors


def test_nothing_is_written_to_a_transport_closed_under_the_reader(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The state a reset leaves for a turn or two: the transport is closed (the loop saw the
    RST) but the connection's reader has not heard yet, and an answer is waiting to be written
    (here an enquire_link; under load a submit_sm or a deliver_sm_resp). It is not written (under
    uvloop that raises); the link is then lost, reconnects, and carries messages again."""
    running = UvloopThread()
    smsc = FakeSmsc()
    smsc_port = running.call(smsc.start())
    config = load_config("t.yaml", text=RESET_CONFIG % (smsc_port, tmp_path / "gw.sqlite3"))
    gateway = Gateway(config)
    upstream = gateway.drivers["carrier"]
    assert isinstance(upstream, SmppUpstream)
    upstream.backoff, upstream.max_backoff = 0.02, 0.05

    async def reset_under_the_reader() -> bool:
        conn = upstream.connections[0]
        assert conn.writer is not None and conn.session is not None
        writer, session = conn.writer, conn.session
        writer.transport.abort()  # as the loop does on ECONNRESET
        await asyncio.sleep(0)  # uvloop has closed the handle; the reader hears a turn later
        assert conn.writer is writer and conn.session is session  # the window is open
        session.send(EnquireLink(), asyncio.get_running_loop().time())
        upstream._flush(conn)  # what the reader loop or `_flush_soon` would do now
        return writer.is_closing()

    try:
        port = running.call(gateway.start("127.0.0.1", 0))
        running.call(upstream.wait_bound(10))
        binds = smsc.binds
        assert running.call(reset_under_the_reader())
        _until(lambda: smsc.binds > binds, 10)
        running.call(upstream.wait_bound(10))
        acked, receipts = _through(port, 5)
        assert len(acked) == 5
        assert set(acked) <= set(receipts)
    finally:
        running.call(gateway.stop())
        running.call(smsc.stop())
        running.stop_loop()
    log = capsys.readouterr().out
    assert not [bad for bad in BAD if bad in log], log[-3000:]
    assert not running.errors


def _through(port: int, count: int) -> tuple[list[str], list[str]]:
    """An application submits `count` messages; our ids acknowledged, and those receipted."""
    acked: list[str] = []
    receipts: list[str] = []
    client = smpplib.client.Client("127.0.0.1", port, timeout=1, allow_unknown_opt_params=True)
    client.set_message_sent_handler(lambda pdu: acked.append(pdu.message_id.decode()))
    client.set_message_received_handler(
        lambda pdu: receipts.append(pdu.receipted_message_id.decode())
    )
    client.connect()
    client.bind_transceiver(system_id="app", password="pw")
    for i in range(count):
        client.send_message(
            source_addr="Shop",
            destination_addr=f"49151{i:05d}",
            short_message=f"{i:04d} ".encode() + b"x" * 100,
            registered_delivery=1,
        )
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:  # bounded; each read returns within 1 s
        if len(acked) == count and set(acked) <= set(receipts):
            break
        client.read_once()
    client.unbind()
    client.disconnect()
    return acked, receipts


# -- receipts during shutdown ------------------------------------------------------------------

STOP_CONFIG = """
accounts: [{system_id: shop, password: secret, window: 500}]
upstreams:
  carrier: {host: 127.0.0.1, port: %d, system_id: gw, password: pw, window: 200}
routes: [{name: all, targets: [carrier]}]
mo_routes: [{account: shop, prefixes: [""]}]
dispatch: {retry_backoff: 0.1, max_retry_backoff: 0.5}
store: {path: "%s"}
"""


class SlowStore(SqliteStore):
    """SQLite whose receipt matching takes as long as PostgreSQL's under a receipt burst
    (issue 8, item 11: 300-500 ms), so receipts are still in hand when the gateway stops."""

    async def match_receipts(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.3)
        return await super().match_receipts(*args, **kwargs)

    async def finish_inbound(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.3)  # an MO is kept as slowly
        return await super().finish_inbound(*args, **kwargs)


class Carrier(LoopThread):
    """The gateway in this process on a loop thread, the fake carrier on the same loop."""

    def __init__(self, tmp: Path, smsc: FakeSmsc) -> None:
        super().__init__()
        self.errors: list[str] = []
        self.loop.set_exception_handler(lambda _loop, ctx: self.errors.append(repr(ctx)))
        self.smsc = smsc
        self.tmp = tmp
        self.call(self.smsc.start())
        self.gateway = self.start_gateway()

    def start_gateway(self) -> Gateway:
        text = STOP_CONFIG % (self.smsc.port, self.tmp / "gw.sqlite3")
        config = load_config("t.yaml", text=text)
        gateway = Gateway(config, store=SlowStore(config.store.path))
        gateway.dispatcher.poll_interval = 0.05
        upstream = gateway.drivers["carrier"]
        assert isinstance(upstream, SmppUpstream)
        upstream.backoff = 0.05
        self.port = self.call(gateway.start("127.0.0.1", 0))
        self.call(upstream.wait_bound(10))
        return gateway

    def states(self, ids: list[str]) -> list[MessageState]:
        async def get() -> list[MessageState]:
            records = [await self.gateway.store.get(i) for i in ids]
            return [r.state for r in records if r is not None]

        return self.call(get())  # type: ignore[no-any-return]


@pytest.fixture
def carrier(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Carrier]:
    # capsys first: the gateway's loggers bind the stdout they find when they are built.
    c = Carrier(tmp_path, FakeSmsc(Behaviour(hold_receipts=True)))
    yield c
    c.call(c.smsc.stop())
    c.stop_loop()


@pytest.mark.parametrize(
    ("count", "mos"), [(200, 0), (0, 50), (200, 20)], ids=["receipts", "mo", "both"]
)
def test_receipts_arriving_while_the_gateway_stops(
    carrier: Carrier,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    count: int,
    mos: int,
) -> None:
    """Receipts and MO come together just as the gateway stops: each is made durable and
    answered, or not answered OK (the carrier keeps it and delivers it again); none raises.
    After a restart the carrier's resends settle every message and every MO is taken."""
    caplog.set_level(logging.DEBUG)
    ids = _submit(carrier.port, count)
    assert len(ids) == count
    _until(lambda: len(carrier.smsc.receipts_sent) == count, 20)  # every send recorded

    async def burst_then_stop() -> list[str]:
        await carrier.smsc.release_receipts()
        for i in range(mos):
            text = f"stop {i}".encode("utf-16-be")
            await carrier.smsc.send_mo(f"4917{i:08d}", "4915100", [(text, 0)])
        await asyncio.sleep(0.1)  # the gateway has read them: receipts and MO in hand
        await carrier.gateway.stop()
        # Nothing the upstream took is still being kept once the store is closed.
        return [
            t.get_coro().__qualname__  # type: ignore[union-attr]
            for t in asyncio.all_tasks()
            if "_take" in t.get_coro().__qualname__  # type: ignore[union-attr]
        ]

    assert carrier.call(burst_then_stop()) == []
    output = capsys.readouterr().out + caplog.text
    assert not [bad for bad in BAD if bad in output], output[-3000:]
    assert not carrier.errors

    # Every receipt the carrier had answered OK is durable; the others it still holds.
    answered_ok = carrier.smsc.delivered_ok
    carrier.gateway = carrier.start_gateway()  # same database; the carrier delivers again
    settled_at_stop = sum(s is MessageState.DELIVERED for s in carrier.states(ids))
    assert settled_at_stop + mos >= answered_ok  # what it was told OK about was kept
    _until(lambda: all(s is MessageState.DELIVERED for s in carrier.states(ids)), 20)
    _until(lambda: carrier.smsc.pending() == 0, 20)  # every receipt and MO answered OK at last
    assert carrier.smsc.delivered_ok >= count + mos
    carrier.call(carrier.gateway.stop())
    output = capsys.readouterr().out + caplog.text
    assert not [bad for bad in BAD if bad in output], output[-3000:]
    assert not carrier.errors


def _submit(port: int, count: int) -> list[str]:
    """Submit `count` messages asking for receipts; our message ids."""
    ids: list[str] = []
    client = smpplib.client.Client("127.0.0.1", port, timeout=1, allow_unknown_opt_params=True)
    client.set_message_sent_handler(lambda pdu: ids.append(pdu.message_id.decode()))
    client.connect()
    client.bind_transmitter(system_id="shop", password="secret")
    for i in range(count):
        client.send_message(
            source_addr="Shop",
            destination_addr=f"49151{i:05d}",
            short_message=f"order {i}".encode(),
            registered_delivery=1,
        )
    for _ in range(count + 20):  # bounded: one answer a read
        if len(ids) == count:
            break
        client.read_once()
    client.unbind()
    client.disconnect()
    return ids


def _until(condition: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s")
