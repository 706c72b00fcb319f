"""The modem driver (`drivers.modem.modem.Modem`) against the emulator through a real pty.

Every wait is bounded: the sink's own events, the modem's state changes, or a condition on the
emulator checked until a deadline.
"""

from __future__ import annotations

import asyncio
import os
import select
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import serial

from drivers.modem.emulator import ModemEmulator, Quirks, SimNetwork
from drivers.modem.modem import (
    Modem,
    ModemFailed,
    ModemSettings,
    ModemState,
    SendOutcome,
    UssdError,
)
from gateway.sms.tpdu import (
    SmsDeliver,
    SmsStatusReport,
    deliver_tpdus,
    encode_status_report,
    submit_tpdus,
)

DEST = "+491701234567"
SENDER = "+4915112345"


class Sink:
    """Collects what the modem hands on; `gate` makes `incoming` wait, `fail` makes it raise."""

    def __init__(self) -> None:
        self.delivers: list[tuple[SmsDeliver, bytes]] = []
        self.reports: list[SmsStatusReport] = []
        self.states: list[ModemState] = []
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.fail = False
        self._changed = asyncio.Event()

    async def incoming(self, modem: Modem, deliver: SmsDeliver, raw: bytes) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeError("the store is down")
        self.delivers.append((deliver, raw))
        self._changed.set()

    async def status_report(self, modem: Modem, report: SmsStatusReport, raw: bytes) -> None:
        self.reports.append(report)
        self._changed.set()

    def state_changed(self, modem: Modem) -> None:
        self.states.append(modem.state)

    async def until(self, pred: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not pred():
                self._changed.clear()
                await self._changed.wait()


async def eventually(pred: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Until `pred()` holds (for conditions inside the emulator, which has no events for us)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def settings(port: str, **kw: Any) -> ModemSettings:
    base = ModemSettings(
        name="m1",
        port=port,
        command_timeout=3.0,
        send_timeout=5.0,
        reopen_backoff=0.05,
        max_reopen_backoff=0.3,
        init_timeout=5.0,
        registration_timeout=15.0,
        send_backoff=0.05,
    )
    return replace(base, **kw)


@asynccontextmanager
async def running(
    network: SimNetwork,
    *,
    quirks: Quirks | None = None,
    ready: bool = True,
    emu: ModemEmulator | None = None,
    **kw: Any,
) -> AsyncIterator[tuple[Modem, ModemEmulator, Sink]]:
    own = emu is None
    if emu is None:
        emu = ModemEmulator(network, quirks=quirks)
        emu.start()
    sink = Sink()
    port = kw.pop("port", str(emu.link) if emu.link is not None else emu.port)
    modem = Modem(settings(port, **kw), sink)
    await modem.start()
    try:
        if ready:
            await modem.wait_ready(15)
        yield modem, emu, sink
    finally:
        await modem.stop()
        if own:
            emu.stop()


def run(coro: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(coro())


@pytest.fixture
def network() -> SimNetwork:
    return SimNetwork(report_delay=0.1)


def count(emu: ModemEmulator, prefix: str) -> int:
    return sum(1 for c in emu.commands if c.upper().startswith(prefix.upper()))


async def received(network: SimNetwork, n: int) -> list[Any]:
    return await asyncio.to_thread(network.wait_received, n, 10.0)


# -- getting ready --------------------------------------------------------------------------------


def test_ready_sequence_and_info(network: SimNetwork) -> None:
    async def main() -> None:
        async with running(network) as (modem, emu, sink):
            info = modem.info
            assert info.state is ModemState.READY and modem.ready()
            assert (info.imei, info.imsi, info.iccid) == (emu.imei, emu.imsi, emu.iccid)
            assert (info.manufacturer, info.model, info.revision) == ("SMSGW", "EMU-1", "EMU-1.0.0")
            assert info.signal_dbm == -113 + 2 * 20
            assert (info.registration, info.operator) == ("home", "SimNet")
            assert info.smsc == network.smsc
            assert info.port == emu.port and info.last_error is None
            order = [
                "AT",
                "ATE0V1",
                "AT+CMEE=1",
                "AT+CPIN?",
                "AT+CMGF=0",
                'AT+CPMS="SM","SM","SM"',
                "AT+CNMI=2,1,0,2,0",
                "AT+CSMS?",
                "AT+CSCA?",
                "AT+CREG=1",  # SMS routing is set before registration (issue 8 item 13)
                "AT+CREG?",
                "AT+CGSN",
                "AT+CIMI",
            ]
            positions = [emu.commands.index(c) for c in order]
            assert positions == sorted(positions), emu.commands
            assert sink.states[:6] == [
                ModemState.OPENING,
                ModemState.INITIALISING,
                ModemState.SIM_WAIT,
                ModemState.INITIALISING,
                ModemState.REGISTERING,
                ModemState.INITIALISING,
            ]
            assert sink.states[-1] is ModemState.READY
        assert modem.state is ModemState.CLOSED

    run(main)


def test_pin_from_settings(network: SimNetwork) -> None:
    async def main() -> None:
        async with running(network, quirks=Quirks(pin="4321"), pin="4321") as (modem, emu, _):
            assert emu.commands.count('AT+CPIN="4321"') == 1
            assert modem.info.imsi == emu.imsi

    run(main)


def test_pin_required_but_none_configured_fails(network: SimNetwork) -> None:
    async def main() -> None:
        async with running(network, quirks=Quirks(pin="4321"), ready=False) as (modem, emu, _):
            with pytest.raises(ModemFailed, match="PIN"):
                await modem.wait_ready(10)
            assert modem.state is ModemState.FAILED
            assert "none is configured" in (modem.info.last_error or "")
            assert count(emu, "AT+CPIN=") == 0

    run(main)


def test_wrong_pin_is_tried_once_only(network: SimNetwork) -> None:
    async def main() -> None:
        async with running(network, quirks=Quirks(pin="4321"), pin="1111", ready=False) as (
            modem,
            emu,
            _,
        ):
            with pytest.raises(ModemFailed, match="refused the configured PIN"):
                await modem.wait_ready(10)
            assert count(emu, "AT+CPIN=") == 1
            assert emu.pin_attempts == 2

    run(main)


def test_sim_busy_is_retried(network: SimNetwork) -> None:
    async def main() -> None:
        async with running(network, quirks=Quirks(sim_busy=3)) as (modem, emu, _):
            assert count(emu, "AT+CPIN?") >= 4
            assert modem.ready()

    run(main)


def test_slow_registration(network: SimNetwork) -> None:
    async def main() -> None:
        quirks = Quirks(registration_delay=1.5)
        async with running(network, quirks=quirks) as (modem, emu, sink):
            assert count(emu, "AT+CREG?") >= 2
            assert sink.states.count(ModemState.REGISTERING) == 1
            assert modem.info.registration == "home"

    run(main)


def test_echo_urcs_mid_answer_and_vendor_flood(network: SimNetwork) -> None:
    async def main() -> None:
        quirks = Quirks(echo=True, urc_mid_answer=True, urc_flood_ms=30)
        async with running(network, quirks=quirks) as (modem, emu, _):
            assert modem.info.imei == emu.imei and modem.info.operator == "SimNet"
            outcome = await modem.send(submit_tpdus("through the noise", DEST))
            assert outcome.ok, outcome
            (msg,) = await received(network, 1)
            assert msg.text == "through the noise"

    run(main)


# -- sending --------------------------------------------------------------------------------------


def test_send_single_and_three_part_ucs2(network: SimNetwork) -> None:
    async def main() -> None:
        async with running(network) as (modem, emu, _):
            network.set_next_mr(emu, 254)
            outcome = await modem.send(submit_tpdus("hello", DEST))
            assert outcome == SendOutcome(True, (254,))
            text = "Доставка заказа №4711 — " * 6
            parts = submit_tpdus(text, DEST, ref=42)
            assert len(parts) == 3
            outcome = await modem.send(parts)
            assert outcome.ok and outcome.message_refs == (255, 0, 1)  # TP-MR wraps
            first, whole = await received(network, 2)
            assert first.text == "hello"
            assert whole.text == text and whole.message_refs == (255, 0, 1)
            assert modem.info.sent == 2 and modem.info.failed == 0
            # bytes work as well as submit_tpdus' results
            assert (await modem.send([parts[0].pdu])).ok

    run(main)


@pytest.mark.parametrize("code", [500, 512])
def test_intermittent_cms_errors_are_retried(network: SimNetwork, code: int) -> None:
    async def main() -> None:
        quirks = Quirks(cms_error_every=2, cms_error_code=code)
        async with running(network, quirks=quirks) as (modem, emu, _):
            texts = [f"retry {code} #{i}" for i in range(3)]
            for text in texts:
                outcome = await modem.send(submit_tpdus(text, DEST))
                assert outcome.ok, outcome
            got = await received(network, 3)
            assert [m.text for m in got] == texts  # each once
            assert count(emu, "AT+CMGS=") > 3

    run(main)


def test_transient_errors_give_up_after_the_cap(network: SimNetwork) -> None:
    async def main() -> None:
        quirks = Quirks(cms_error_every=1, cms_error_code=512)
        async with running(network, quirks=quirks, send_tries=3) as (modem, emu, _):
            outcome = await modem.send(submit_tpdus("never", DEST))
            assert not outcome.ok and not outcome.permanent
            assert outcome.error is not None and outcome.error.code == 512
            assert count(emu, "AT+CMGS=") == 3
            assert modem.info.failed == 1

    run(main)


def test_permanent_errors(network: SimNetwork) -> None:
    async def main() -> None:
        async with running(network) as (modem, emu, _):
            # A TPDU the SMSC cannot read: +CMS ERROR: 304, not retried.
            outcome = await modem.send([bytes.fromhex("0001000B91")])
            assert not outcome.ok and outcome.permanent
            assert outcome.error is not None and outcome.error.code == 304
            assert count(emu, "AT+CMGS=") == 1
            network.reject(DEST, 21)
            outcome = await modem.send(submit_tpdus("refused", DEST))
            assert outcome.permanent and outcome.error is not None and outcome.error.code == 21
            assert count(emu, "AT+CMGS=") == 2

    run(main)


def test_storage_full_drains_storage_then_sends(network: SimNetwork) -> None:
    async def main() -> None:
        async with running(network) as (modem, emu, sink):
            sink.fail = True  # the first inbound message cannot be kept: it stays stored
            network.inject(emu, SENDER, "waiting in storage")
            await asyncio.wait_for(sink.entered.wait(), 10)
            await eventually(lambda: len(emu.stored("SM")) == 1, "a stored message")
            sink.fail = False
            emu.quirks.cms_error_code = 322
            emu.quirks.cms_error_every = 1
            sending = asyncio.create_task(modem.send(submit_tpdus("after the drain", DEST)))
            await sink.until(lambda: len(sink.delivers) == 1)
            emu.quirks.cms_error_every = 0
            outcome = await sending
            assert outcome.ok, outcome
            assert sink.delivers[0][0].text == "waiting in storage"
            assert emu.stored("SM") == {}
            (msg,) = await received(network, 1)
            assert msg.text == "after the drain"

    run(main)


def test_missing_smsc(network: SimNetwork) -> None:
    async def main() -> None:
        # Configured: set at start-up when the SIM has none.
        quirks = Quirks(no_smsc=True)
        async with running(network, quirks=quirks, smsc="+15550000000") as (modem, emu, _):
            assert modem.info.smsc == "+15550000000"
            assert 'AT+CSCA="+15550000000",145' in emu.commands
            assert (await modem.send(submit_tpdus("via configured smsc", DEST))).ok
        # Not configured: this modem cannot send, another one of the bank can (issue 8 item
        # 13): not permanent, and the modem says so before any send.
        async with running(network, quirks=Quirks(no_smsc=True)) as (modem, emu, _):
            assert modem.info.smsc is None
            assert modem.info.send_blocked is not None and "smsc" in modem.info.send_blocked
            outcome = await modem.send(submit_tpdus("nowhere", DEST))
            assert not outcome.ok and not outcome.permanent
            assert "smsc" in outcome.reason
            assert count(emu, "AT+CMGS=") == 0

    run(main)


def test_cms_330_during_send_sets_the_smsc(network: SimNetwork) -> None:
    async def main() -> None:
        # Every second AT+CMGS says the SMSC is unknown: the first send goes through, the
        # second sets AT+CSCA from the settings and its retry (the third) goes through.
        quirks = Quirks(cms_error_every=2, cms_error_code=330)
        async with running(network, quirks=quirks, smsc="+15559999999") as (modem, emu, _):
            assert count(emu, "AT+CSCA=") == 0  # the SIM had one
            assert (await modem.send(submit_tpdus("before", DEST))).ok
            outcome = await modem.send(submit_tpdus("after CSCA", DEST))
            assert outcome.ok, outcome
            assert count(emu, "AT+CMGS=") == 3
            assert 'AT+CSCA="+15559999999",145' in emu.commands
            assert modem.info.smsc == "+15559999999"
            assert [m.text for m in await received(network, 2)] == ["before", "after CSCA"]

    run(main)


# -- status reports -------------------------------------------------------------------------------


def test_status_report_stored_cdsi(network: SimNetwork) -> None:
    async def main() -> None:
        async with running(network) as (modem, emu, sink):
            network.set_next_mr(emu, 77)
            outcome = await modem.send(submit_tpdus("report me", DEST, status_report=True))
            assert outcome.message_refs == (77,)
            await sink.until(lambda: len(sink.reports) == 1)
            report = sink.reports[0]
            assert (report.message_ref, report.recipient) == (77, DEST)
            assert report.delivered
            await eventually(lambda: emu.stored("SR") == {}, "the report deleted")
            assert any(c.startswith("AT+CMGD=") for c in emu.commands)

    run(main)


def test_status_report_direct_cds(network: SimNetwork) -> None:
    async def main() -> None:
        async with running(network) as (_, emu, sink):
            now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
            pdu = encode_status_report(
                message_ref=9,
                recipient=DEST,
                timestamp=now,
                discharge_time=now,
                status=0x41,
                smsc=network.smsc,
            )
            network.inject_urc(emu, f"+CDS: {pdu.tpdu_length}\r\n{pdu.hex}")
            await sink.until(lambda: len(sink.reports) == 1)
            assert sink.reports[0].message_ref == 9 and sink.reports[0].failed

    run(main)


# -- receiving ------------------------------------------------------------------------------------


def test_inbound_deleted_only_after_the_sink_returned(network: SimNetwork) -> None:
    async def main() -> None:
        async with running(network) as (modem, emu, sink):
            sink.gate = asyncio.Event()
            (sent,) = network.inject(emu, SENDER, "keep me safe")
            await asyncio.wait_for(sink.entered.wait(), 10)
            assert len(emu.stored("SM")) == 1  # the sink has not returned yet
            await asyncio.sleep(0.3)  # the modem does not delete it meanwhile either
            assert len(emu.stored("SM")) == 1
            sink.gate.set()
            await sink.until(lambda: len(sink.delivers) == 1)
            deliver, raw = sink.delivers[0]
            assert (deliver.originator, deliver.text) == (SENDER, "keep me safe")
            assert raw == sent.pdu
            await eventually(lambda: emu.stored("SM") == {}, "the message deleted")
            assert modem.info.received == 1

    run(main)


def test_inbound_direct_cmt(network: SimNetwork) -> None:
    async def main() -> None:
        async with running(network) as (_, emu, sink):
            now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
            (pdu,) = deliver_tpdus("straight to us", SENDER, timestamp=now, smsc=network.smsc)
            network.inject_urc(emu, f"+CMT: ,{pdu.tpdu_length}\r\n{pdu.hex}")
            await sink.until(lambda: len(sink.delivers) == 1)
            deliver, raw = sink.delivers[0]
            assert deliver.text == "straight to us" and raw == pdu.pdu
            assert count(emu, "AT+CNMA") == 0  # AT+CSMS? said phase 2: no acknowledgement

    run(main)


def test_multipart_inbound(network: SimNetwork) -> None:
    async def main() -> None:
        async with running(network) as (_, emu, sink):
            text = "part one, part two and part three of a long inbound message " * 3
            network.inject(emu, SENDER, text, parts=3)
            await sink.until(lambda: len(sink.delivers) == 3)
            parts = sorted(
                (d for d, _ in sink.delivers), key=lambda d: d.concat.seq if d.concat else 0
            )
            assert [p.concat.seq for p in parts if p.concat] == [1, 2, 3]
            assert "".join(p.text or "" for p in parts) == text
            await eventually(lambda: emu.stored("SM") == {}, "all parts deleted")

    run(main)


def test_stored_messages_drained_at_start(network: SimNetwork) -> None:
    async def main() -> None:
        emu = ModemEmulator(network)
        emu.start()
        try:
            network.inject(emu, SENDER, "sent while we were away")
            network.inject(emu, SENDER, "and another")
            await eventually(lambda: len(emu.stored("SM")) == 2, "two stored messages")
            async with running(network, emu=emu) as (_, _, sink):
                await sink.until(lambda: len(sink.delivers) == 2)
                assert sorted(d.text or "" for d, _ in sink.delivers) == [
                    "and another",
                    "sent while we were away",
                ]
                await eventually(lambda: emu.stored("SM") == {}, "storage empty")
        finally:
            emu.stop()

    run(main)


def test_a_report_announced_during_set_up_is_handed_on_once_ready() -> None:
    """A restarted gateway learns the modem's IMEI, which names its reports, only when it
    identifies the modem: an indication that comes during set-up waits for READY."""
    network = SimNetwork(report_delay=1.0)  # the report comes after the first modem stopped
    seen: list[tuple[ModemState, str | None]] = []

    class Watching(Sink):
        async def status_report(self, modem: Modem, report: SmsStatusReport, raw: bytes) -> None:
            seen.append((modem.state, modem.info.imei))
            await super().status_report(modem, report, raw)

        def state_changed(self, modem: Modem) -> None:
            super().state_changed(modem)
            if modem.state is ModemState.REGISTERING:  # set-up is under way: announce it now
                network.inject_urc(emu, f'+CDSI: "SR",{index}')

    async def main() -> None:
        nonlocal index
        async with running(network, emu=emu) as (modem, _, _):
            assert (await modem.send(submit_tpdus("report me", DEST, status_report=True))).ok
        await eventually(lambda: len(emu.stored("SR")) == 1, "the report stored")
        (index,) = emu.stored("SR")
        emu.quirks.slow = 0.05  # a set-up long enough for the indication to land in it
        sink = Watching()
        again = Modem(settings(emu.port), sink)  # a new process: nothing known of the modem
        await again.start()
        try:
            await again.wait_ready(15)
            await sink.until(lambda: len(sink.reports) == 1)
            assert seen == [(ModemState.READY, emu.imei)]
            await eventually(lambda: emu.stored("SR") == {}, "the report deleted")
        finally:
            await again.stop()

    index = 0
    emu = ModemEmulator(network)
    emu.start()
    try:
        run(main)
    finally:
        emu.stop()


def test_a_modem_left_at_the_prompt_by_another_process(network: SimNetwork) -> None:
    """A process killed between AT+CMGS and its PDU leaves the modem at "> ", taking whatever
    comes as the message: the driver leaves the prompt (ESC) when it opens the port."""
    emu = ModemEmulator(network)
    emu.start()
    try:
        fd = os.open(emu.port, os.O_RDWR | os.O_NOCTTY)
        try:
            os.write(fd, b"AT+CMGS=20\r")
            got = b""
            deadline = time.monotonic() + 10
            while b"> " not in got:
                left = deadline - time.monotonic()
                assert left > 0, f"no prompt: {got!r}"
                if select.select([fd], [], [], left)[0]:
                    got += os.read(fd, 100)
        finally:
            os.close(fd)  # gone without a PDU, as a process killed at that moment

        async def main() -> None:
            async with running(network, emu=emu) as (modem, _, _):
                assert (await modem.send(submit_tpdus("after the prompt", DEST))).ok
                (msg,) = await received(network, 1)
                assert msg.text == "after the prompt"

        run(main)
    finally:
        emu.stop()


def test_ussd(network: SimNetwork) -> None:
    async def main() -> None:
        async with running(network) as (modem, _, _):
            assert await modem.ussd("*100#") == "Your balance is 12.34 EUR"
            with pytest.raises(UssdError, match="not supported"):
                await modem.ussd("*999#", timeout=5)

    run(main)


# -- unplug, identity, a busy port --------------------------------------------------------------


def test_unplug_while_idle_and_replug(network: SimNetwork, tmp_path: Path) -> None:
    async def main() -> None:
        emu = ModemEmulator(network, link=tmp_path / "by-id" / "modem1")
        emu.start()
        try:
            async with running(network, emu=emu) as (modem, _, sink):
                emu.unplug()
                await modem.wait_state(ModemState.CLOSED, ModemState.OPENING, timeout=10)
                assert not modem.ready()
                outcome = await modem.send(submit_tpdus("while unplugged", DEST))
                assert not outcome.ok and not outcome.permanent
                emu.replug()
                await modem.wait_ready(15)
                assert modem.info.port == emu.port
                assert (await modem.send(submit_tpdus("after replug", DEST))).ok
                (msg,) = await received(network, 1)
                assert msg.text == "after replug"
                assert sink.states.count(ModemState.READY) == 2
        finally:
            emu.stop()

    run(main)


def test_unplug_during_a_send(network: SimNetwork, tmp_path: Path) -> None:
    async def main() -> None:
        emu = ModemEmulator(network, link=tmp_path / "modem1")
        emu.start()
        try:
            async with running(network, emu=emu) as (modem, _, _):
                emu.quirks.slow = 3.0  # the prompt never comes before the unplug
                sending = asyncio.create_task(modem.send(submit_tpdus("lost in transit", DEST)))
                await eventually(lambda: count(emu, "AT+CMGS=") == 1, "AT+CMGS written")
                emu.unplug()
                outcome = await asyncio.wait_for(sending, 10)
                assert not outcome.ok and not outcome.permanent, outcome
                assert "port lost" in outcome.reason
                assert network.received == []
                emu.quirks.slow = 0.0
                emu.replug()
                await modem.wait_ready(15)
                assert (await modem.send(submit_tpdus("second try", DEST))).ok
                (msg,) = await received(network, 1)
                assert msg.text == "second try"
        finally:
            emu.stop()

    run(main)


def test_replugged_on_another_port_found_by_imei(network: SimNetwork, tmp_path: Path) -> None:
    async def main() -> None:
        links = tmp_path / "by-id"
        ours = ModemEmulator(network, link=links / "ours")
        other = ModemEmulator(network, link=links / "other")
        decoy: ModemEmulator | None = None
        ours.start()
        other.start()
        try:
            first_port = ours.port
            async with running(
                network,
                emu=ours,
                port=first_port,
                imei=ours.imei,
                candidates=(str(links / "*"),),
            ) as (modem, _, _):
                assert modem.info.port == first_port
                ours.unplug()
                await modem.wait_state(ModemState.CLOSED, ModemState.OPENING, timeout=10)
                # Another modem may now get the old pty number; ours comes back elsewhere.
                decoy = ModemEmulator(network, link=links / "decoy")
                decoy.start()
                ours.replug()
                await modem.wait_ready(20)
                assert modem.info.imei == ours.imei and modem.info.port == ours.port
                assert (await modem.send(submit_tpdus("same modem", DEST))).ok
                (msg,) = await received(network, 1)
                assert msg.modem == ours.imei
        finally:
            for emu in (ours, other, decoy):
                if emu is not None:
                    emu.stop()

    run(main)


def test_configured_port_missing_found_by_iccid(network: SimNetwork, tmp_path: Path) -> None:
    async def main() -> None:
        links = tmp_path / "by-id"
        other = ModemEmulator(network, link=links / "a")
        ours = ModemEmulator(network, link=links / "b")
        other.start()
        ours.start()
        try:
            async with running(
                network,
                emu=ours,
                port=str(tmp_path / "gone"),
                iccid=ours.iccid,
                candidates=(str(links / "*"),),
            ) as (modem, _, _):
                assert modem.info.iccid == ours.iccid and modem.info.port == ours.port
        finally:
            other.stop()
            ours.stop()

    run(main)


def test_port_held_by_another_process_is_named(network: SimNetwork) -> None:
    holder_code = (
        "import serial, sys, time\n"
        "s = serial.Serial(sys.argv[1], exclusive=True)\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n"
    )

    async def main() -> None:
        emu = ModemEmulator(network)
        emu.start()
        proc = subprocess.Popen(
            [sys.executable, "-c", holder_code, emu.port],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 10)
            assert line.strip() == "held"
            async with running(network, emu=emu, ready=False) as (modem, _, _):
                await eventually(
                    lambda: f"pid {proc.pid}" in (modem.info.last_error or ""),
                    "the holder named",
                )
                assert f"port {emu.port} is held by pid {proc.pid}" in (modem.info.last_error or "")
                assert not modem.ready()
                assert proc.stdin is not None
                proc.stdin.close()  # the holder lets go: the modem comes up
                await asyncio.to_thread(proc.wait, 10)
                await modem.wait_ready(15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            emu.stop()

    run(main)


def test_a_modem_left_in_numeric_mode_gets_ready(network: SimNetwork) -> None:
    """Another tool saved ATV0: the modem answers "0" / "4"; the driver still starts and
    puts it back into words."""

    async def main() -> None:
        emu = ModemEmulator(network)
        emu.start()
        try:
            with serial.Serial(emu.port, 115200, timeout=2) as port:
                port.write(b"ATV0\r")
                answer = port.read_until(b"0\r")
                assert answer.endswith(b"0\r"), answer
            async with running(network, emu=emu) as (modem, _emu, _sink):
                assert modem.ready()
                assert "ATE0V1" in emu.commands
        finally:
            emu.stop()

    run(main)
