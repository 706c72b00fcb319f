"""Issue 8 item 13: no status report and no inbound message lost, on any vendor.

Each test switches on one quirk of the emulator (`drivers.modem.emulator_quirks`), modelled on
a vendor's manual or a public bug report, and shows the driver (`Modem`, through a real pty)
handling it. Every wait is bounded: the sink's own events, the modem's state changes, or a
condition on the emulator checked until a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from drivers.modem.bank import ModemBank
from drivers.modem.emulator import ModemEmulator, Quirks, SimNetwork, vendor
from drivers.modem.modem import Modem, ModemSettings, ModemState
from gateway.config import ModemBankConfig
from gateway.dispatch import Dispatcher
from gateway.routing import Route, RouteTable, Target
from gateway.sms.tpdu import submit_tpdus
from gateway.store.base import MessageRecord, MessageState, NewMessage
from gateway.store.sqlite import SqliteStore
from tests.integration.test_modem_driver import Sink, eventually

DEST = "+491701234567"
SENDER = "+4915112345"


def settings(port: str, **kw: Any) -> ModemSettings:
    base = ModemSettings(
        name="m1",
        port=port,
        command_timeout=3.0,
        send_timeout=5.0,
        reopen_backoff=0.05,
        max_reopen_backoff=0.3,
        init_timeout=8.0,
        registration_timeout=15.0,
        send_backoff=0.05,
    )
    # Polling on quiet is off unless a test is about it: each test shows one mechanism.
    kw = {"poll_quiet": 0.0, **kw}
    # Settings the driver does not have are left out, so this file also runs against the
    # driver before issue 8 (to show each test fails there for the reason it names).
    known = {f.name for f in fields(ModemSettings)}
    return replace(base, **{k: v for k, v in kw.items() if k in known})


@asynccontextmanager
async def running(
    emu: ModemEmulator, *, ready: bool = True, **kw: Any
) -> AsyncIterator[tuple[Modem, Sink]]:
    sink = Sink()
    port = str(emu.link) if emu.link is not None else emu.port
    modem = Modem(settings(port, **kw), sink)
    await modem.start()
    try:
        if ready:
            await modem.wait_ready(15)
        yield modem, sink
    finally:
        await modem.stop()


def run(coro: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(coro())


def count(emu: ModemEmulator, prefix: str) -> int:
    return sum(1 for c in emu.commands if c.upper().startswith(prefix.upper()))


async def first_drain_done(emu: ModemEmulator) -> None:
    """The drain that starts serving has listed the message storage: what arrives from now
    on is found only by what the test is about."""
    await eventually(lambda: count(emu, "AT+CMGL=4") >= 1, "the first drain")


async def send_and_unplug(modem: Modem, emu: ModemEmulator, network: SimNetwork, n: int) -> None:
    """Send `n` messages asking for reports, unplug before the reports come, and wait (still
    unplugged) until the network holds them all, due."""
    for i in range(n):
        outcome = await modem.send(submit_tpdus(f"report {i}", DEST, status_report=True))
        assert outcome.ok, outcome
    emu.unplug()
    await modem.wait_state(ModemState.CLOSED, ModemState.OPENING, timeout=10)

    def held() -> bool:
        due = network.last_due(emu.imei)
        return due is not None and due <= network.now()

    await eventually(held, "every report due, held by the network")


def test_vendor_profiles_parse_as_quirks() -> None:
    quirks = Quirks.parse(["vendor=quectel", "zero_based_index=0"])
    assert (quirks.vendor, quirks.urc_port, quirks.zero_based_index) == (
        "quectel",
        "usbmodem",
        False,
    )
    emu = ModemEmulator(SimNetwork(), quirks=quirks)
    assert (emu.manufacturer, emu.model) == ("Quectel", "EC25")
    assert ModemEmulator(SimNetwork(), quirks=quirks, manufacturer="x").manufacturer == "x"
    with pytest.raises(ValueError, match="sim800"):
        Quirks.parse(["vendor=nokia"])


# -- reports held over a replug -------------------------------------------------------------------


def test_reports_held_over_a_replug_come_after_cnmi_is_set(tmp_path: Path) -> None:
    """The network hands over what it held as the modem registers; a modem with AT+CNMI
    <ds>=0 then throws reports away. The driver watches for the unplugged port (no growing
    backoff) and sets routing before it waits to register."""

    async def main() -> None:
        network = SimNetwork(report_delay=0.5)
        quirks = Quirks(drop_unrouted_reports=True, registration_delay=2.0)
        emu = ModemEmulator(network, quirks=quirks, link=tmp_path / "modem1")
        emu.start()
        try:
            async with running(emu, reopen_backoff=0.2, max_reopen_backoff=30) as (modem, sink):
                await send_and_unplug(modem, emu, network, 5)
                assert sink.reports == []
                # Away for seconds: a doubling reopen backoff would reach seconds too, and the
                # modem would register (2 s) before the driver is back. It is watched for.
                await asyncio.sleep(4.0)
                emu.replug()
                await sink.until(lambda: len(sink.reports) == 5, timeout=15)
                assert sorted(r.message_ref for r in sink.reports) == [0, 1, 2, 3, 4]
        finally:
            emu.stop()

    run(main)


# -- SIM800: SMS Ready ----------------------------------------------------------------------------


def test_sim800_sms_ready_is_waited_for_without_reopening() -> None:
    """SIMCom SIM800: SMS commands answer ERROR until "SMS Ready" (Seeed-Studio/GPRS_SIM900
    #39). The driver waits for it on the open port instead of closing and reopening."""

    async def main() -> None:
        network = SimNetwork(report_delay=0.1)
        with ModemEmulator(network, quirks=Quirks(sms_ready_delay=1.5)) as emu:
            async with running(emu) as (modem, sink):
                assert ModemState.CLOSED not in sink.states, sink.states
                assert count(emu, "AT+CMGF=0") >= 2  # refused at first, then taken
                assert (await modem.send(submit_tpdus("ready", DEST, status_report=True))).ok
                await sink.until(lambda: len(sink.reports) == 1)

    run(main)


def test_sim800_replug_loses_no_report(tmp_path: Path) -> None:
    """SIM800 after a replug: "SMS Ready" after ~1 s, registration after ~2 s, reports thrown
    away while <ds> is 0. Every held report reaches the sink."""

    async def main() -> None:
        network = SimNetwork(report_delay=0.5)
        profile, quirks = vendor("sim800")
        emu = ModemEmulator(
            network,
            quirks=quirks,
            manufacturer=profile.manufacturer,
            model=profile.model,
            link=tmp_path / "sim800",
        )
        emu.start()
        try:
            async with running(emu) as (modem, sink):
                await send_and_unplug(modem, emu, network, 5)
                emu.replug()
                await sink.until(lambda: len(sink.reports) == 5, timeout=15)
        finally:
            emu.stop()

    run(main)


# -- Quectel: URCs on the other port, and polling -------------------------------------------------


def test_quectel_is_told_to_send_urcs_to_this_port() -> None:
    """Quectel EC2x/EG25 AT manual, AT+QURCCFG: URCs go to the "urcport" only."""

    async def main() -> None:
        network = SimNetwork(report_delay=0.1)
        profile, quirks = vendor("quectel")
        emu = ModemEmulator(
            network, quirks=quirks, manufacturer=profile.manufacturer, model=profile.model
        )
        with emu:
            async with running(emu) as (modem, sink):
                assert 'AT+QURCCFG="urcport","usbat"' in emu.commands
                assert emu.urc_port == "usbat"
                network.inject(emu, SENDER, "to the AT port")
                assert (await modem.send(submit_tpdus("reported", DEST, status_report=True))).ok
                await sink.until(lambda: len(sink.delivers) == 1 and len(sink.reports) == 1)
                assert sink.delivers[0][0].text == "to the AT port"

    run(main)


def test_storage_is_polled_when_urcs_are_quiet() -> None:
    """URCs that never arrive (a Quectel whose "urcport" does not stick, a port mix-up):
    stored messages and reports are found by listing every memory after a quiet spell."""

    async def main() -> None:
        network = SimNetwork(report_delay=0.1)
        with ModemEmulator(network, quirks=Quirks(sms_urcs_lost=True)) as emu:
            async with running(emu, health_interval=0.3, poll_quiet=0.5) as (modem, sink):
                await first_drain_done(emu)
                network.inject(emu, SENDER, "no +CMTI for me")
                assert (await modem.send(submit_tpdus("no +CDSI", DEST, status_report=True))).ok
                await sink.until(lambda: len(sink.delivers) == 1 and len(sink.reports) == 1)
                await eventually(lambda: not emu.stored("SM") and not emu.stored("SR"), "deleted")
                assert count(emu, "AT+CMGL=4") >= 2

    run(main)


# -- a report announced in the wrong memory -------------------------------------------------------


def test_report_announced_in_the_wrong_memory_is_found_at_once() -> None:
    """+CDSI: "SM",<n> for a report stored in "SR": every memory is read right away, not at
    some later health round (there is none in this test)."""

    async def main() -> None:
        network = SimNetwork(report_delay=0.1)
        with ModemEmulator(network, quirks=Quirks(cdsi_wrong_mem=True)) as emu:
            async with running(emu, health_interval=600) as (modem, sink):
                network.set_next_mr(emu, 42)
                assert (await modem.send(submit_tpdus("where?", DEST, status_report=True))).ok
                await sink.until(lambda: len(sink.reports) == 1, timeout=5)
                assert sink.reports[0].message_ref == 42
                await eventually(lambda: emu.stored("SR") == {}, "the report deleted")

    run(main)


# -- storage watched while connected --------------------------------------------------------------


def test_storage_filling_is_drained_from_the_health_round() -> None:
    """AT+CPMS? in the health round: a memory three quarters full is drained (here the
    indications are lost, and polling on quiet is off)."""

    async def main() -> None:
        network = SimNetwork(report_delay=0.1)
        quirks = Quirks(sms_urcs_lost=True)
        with ModemEmulator(network, quirks=quirks, capacity={"SM": 4}) as emu:
            async with running(emu, health_interval=0.3) as (_, sink):
                await first_drain_done(emu)
                for i in range(3):
                    network.inject(emu, SENDER, f"filling {i}")
                await sink.until(lambda: len(sink.delivers) == 3)
                assert sorted(d.text or "" for d, _raw in sink.delivers) == [
                    "filling 0",
                    "filling 1",
                    "filling 2",
                ]
                assert count(emu, "AT+CPMS?") >= 1
                await eventually(lambda: emu.stored("SM") == {}, "storage empty")

    run(main)


def test_huawei_smmemfull_drains_storage() -> None:
    """Huawei ^SMMEMFULL: "SM": drained at once (no health round, no polling here)."""

    async def main() -> None:
        network = SimNetwork(report_delay=0.1)
        quirks = Quirks(sms_urcs_lost=True, smmemfull=True)
        with ModemEmulator(network, quirks=quirks, capacity={"SM": 2}) as emu:
            async with running(emu, health_interval=600) as (_, sink):
                await first_drain_done(emu)
                network.inject(emu, SENDER, "one")
                network.inject(emu, SENDER, "two")
                await sink.until(lambda: len(sink.delivers) == 2, timeout=5)
                network.inject(emu, SENDER, "three")  # room again: it is stored
                await eventually(lambda: len(emu.stored("SM")) == 1, "the third stored")

    run(main)


def test_reports_kept_with_inbound_messages_are_routed_directly() -> None:
    """Firmware that stores status reports in <mem3> with inbound messages (+CDSI: "SM"):
    they take the slots inbound messages need. After the first such report the driver has
    them delivered as +CDS (AT+CSMS=1, acknowledged with AT+CNMA), so none takes a slot."""

    async def main() -> None:
        network = SimNetwork(report_delay=0.1)
        quirks = Quirks(reports_in_mem3=True)
        with ModemEmulator(network, quirks=quirks, capacity={"SM": 3}) as emu:
            async with running(emu) as (modem, sink):
                assert (await modem.send(submit_tpdus("first", DEST, status_report=True))).ok
                await sink.until(lambda: len(sink.reports) == 1)
                await eventually(lambda: "AT+CNMI=2,1,0,1,0" in emu.commands, "direct routing")
                assert "AT+CSMS=1" in emu.commands
                for i in range(4):
                    outcome = await modem.send(submit_tpdus(f"more {i}", DEST, status_report=True))
                    assert outcome.ok
                for i in range(3):
                    network.inject(emu, SENDER, f"inbound {i}")
                await sink.until(lambda: len(sink.reports) == 5 and len(sink.delivers) == 3)
                assert emu.delivered_direct == 4  # the four later reports, as +CDS
                assert emu.unacked == 0
                await eventually(lambda: emu.stored("SM") == {}, "storage empty")

    run(main)


# -- numeric codes, CMS 321 -----------------------------------------------------------------------


def test_numeric_cms_codes_are_kept() -> None:
    """An RP cause the modem has no words for (AT+CMEE=2 says "unknown error", which reads as
    500, transient) keeps its number: 28 "unidentified subscriber" is permanent."""

    async def main() -> None:
        network = SimNetwork(report_delay=0.1)
        network.reject(DEST, 28)
        with ModemEmulator(network) as emu:
            async with running(emu) as (modem, _):
                outcome = await modem.send(submit_tpdus("nobody", DEST))
                assert not outcome.ok and outcome.permanent, outcome
                assert outcome.error is not None and outcome.error.code == 28
                assert count(emu, "AT+CMGS=") == 1  # not retried

    run(main)


def test_empty_slot_answered_with_cms_321_is_not_an_error() -> None:
    """SIMCom / Quectel answer AT+CMGR of an empty slot with +CMS ERROR: 321."""

    async def main() -> None:
        network = SimNetwork(report_delay=0.1)
        with ModemEmulator(network, quirks=Quirks(empty_slot_321=True)) as emu:
            with capture_logs() as logs:
                async with running(emu) as (_, sink):
                    network.inject_urc(emu, '+CMTI: "SM",7')  # a slot that is empty
                    await eventually(lambda: count(emu, "AT+CMGR=7") == 1, "the slot read")
                    # Handled after it (one worker, in order): the modem still reads.
                    network.inject(emu, SENDER, "after the empty one")
                    await sink.until(lambda: len(sink.delivers) == 1)
            failed = [e for e in logs if e.get("log_level") in ("error", "exception")]
            assert failed == [], failed
            assert not any(e.get("exc_info") for e in logs)

    run(main)


# -- a wrong PIN is logged as an error ------------------------------------------------------------


def test_wrong_pin_is_logged_as_an_error() -> None:
    async def main() -> None:
        network = SimNetwork(report_delay=0.1)
        with ModemEmulator(network, quirks=Quirks(pin="1234")) as emu:
            with capture_logs() as logs:
                async with running(emu, ready=False, pin="0000") as (modem, _):
                    await modem.wait_state(ModemState.FAILED, timeout=10)
            errors = [e for e in logs if e.get("log_level") == "error"]
            assert any("PIN" in str(e.get("reason", "")) for e in errors), logs
            assert emu.pin_attempts == 2  # tried once only

    run(main)


# -- USSD and repeated +CMT -----------------------------------------------------------------------


def test_huawei_packed_ussd_answer_is_decoded() -> None:
    """Huawei E173 / E3372: USSD both ways as packed GSM 7-bit hex with DCS 15."""

    async def main() -> None:
        network = SimNetwork(report_delay=0.1, ussd={"*100#": "Balance: 5.00 EUR @ 12:00"})
        emu = ModemEmulator(network, quirks=Quirks(ussd_packed=True), manufacturer="huawei")
        with emu:
            async with running(emu) as (modem, _):
                assert await modem.ussd("*100#", timeout=5) == "Balance: 5.00 EUR @ 12:00"
                assert any(c.startswith('AT+CUSD=1,"AA180C3602"') for c in emu.commands)

    run(main)


def test_cmt_repeated_after_a_late_cnma_is_handed_on_once() -> None:
    """Phase 2+ (+CSMS: 1): a +CMT whose AT+CNMA comes after the modem's timeout is delivered
    again (27.005 3.4.4). The application gets it once."""

    async def main() -> None:
        network = SimNetwork(report_delay=0.1)
        emu = ModemEmulator(network, quirks=Quirks(cmt_always=True), ack_timeout=0.3)
        with emu:
            async with running(emu) as (_, sink):
                sink.gate = asyncio.Event()
                network.inject(emu, SENDER, "only once")
                await asyncio.wait_for(sink.entered.wait(), 5)
                await eventually(lambda: emu.delivered_direct >= 2, "the +CMT repeated")
                sink.gate.set()
                await sink.until(lambda: len(sink.delivers) == 1)
                # What comes next is handled after the repeat (one worker, in order).
                network.inject(emu, SENDER, "the next one")
                await sink.until(lambda: len(sink.delivers) >= 2)
                assert [d.text for d, _raw in sink.delivers] == ["only once", "the next one"]

    run(main)


@pytest.fixture(autouse=True)
def _reset_structlog() -> None:
    structlog.contextvars.clear_contextvars()


# -- a bank whose modems cannot send ------------------------------------------------------------


class _Receipts:
    async def receipt(self, receipt: Any) -> None:
        pass

    async def inbound(self, pdu: Any) -> None:
        pass

    async def late_result(self, upstream: str, message_id: str, result: Any) -> None:
        pass


def test_bank_moves_messages_off_a_modem_without_smsc_and_fails_them_when_none_can_send(
    tmp_path: Path,
) -> None:
    """Real drivers on emulated modems: m1 has no SMSC address (CMS 330, none configured),
    m2 a SIM whose PIN is not the configured one. Messages go by m2 while it is up; once it is
    FAILED the bank is unusable, says why, and fails a message at once with a receipt."""

    async def main() -> None:
        network = SimNetwork(report_delay=0.1)
        no_smsc = ModemEmulator(network, quirks=Quirks(no_smsc=True))
        locked = ModemEmulator(network, quirks=Quirks(pin="1234"), link=tmp_path / "m2")
        with no_smsc, locked:
            cfg = ModemBankConfig.model_validate(
                {
                    "modems": [
                        {"name": "m1", "port": no_smsc.port, "reopen_backoff": 0.05},
                        {"name": "m2", "port": str(tmp_path / "m2"), "pin": "1234"},
                    ]
                }
            )
            store = SqliteStore(":memory:")
            await store.open()
            bank = ModemBank("b", cfg, store)
            try:
                await bank.start(_Receipts())
                await bank.wait_ready(1, timeout=15)  # m2: m1 is READY but cannot send
                m1 = bank.modem("m1")
                assert isinstance(m1, Modem)
                await m1.wait_state(ModemState.READY, timeout=15)
                assert m1.info.send_blocked is not None
                assert bank.usable() and bank.unusable_reason() is None
                record = MessageRecord(
                    NewMessage(
                        id="x1",
                        account="shop",
                        source_addr="Shop",
                        destination_addr="491701234567",
                        dest_addr_ton=1,
                        short_message=b"by m2",
                        registered_delivery=1,
                    ),
                    MessageState.DISPATCHING,
                    0.0,
                    1,
                    None,
                )
                assert (await bank.send(record)).ok
                (got,) = await asyncio.to_thread(network.wait_received, 1, 10.0)
                assert got.modem == locked.imei  # not the modem without an SMSC
                assert count(no_smsc, "AT+CMGS=") == 0

                # m2 is replugged and its SIM now refuses the configured PIN: FAILED.
                locked.quirks.pin = "9999"
                with capture_logs() as logs:
                    locked.replug()
                    m2 = bank.modem("m2")
                    assert isinstance(m2, Modem)
                    await m2.wait_state(ModemState.FAILED, timeout=15)
                    assert not bank.usable()
                    reason = bank.unusable_reason()
                    assert reason is not None and "PIN" in reason and "SMSC" in reason
                    async with asyncio.timeout(5):
                        result = await bank.send(record)
                assert not result.ok and result.permanent and result.error == 0x45
                errors = [e for e in logs if e.get("log_level") == "error"]
                assert any(
                    e.get("event") == "modem bank cannot send: fix and restart" for e in errors
                )
            finally:
                await bank.stop()
                await store.close()

    run(main)


def test_dispatcher_fails_at_once_what_a_bank_with_a_wrong_pin_can_never_send(
    tmp_path: Path,
) -> None:
    """The whole path with a real bank: its one modem's SIM refuses the configured PIN
    (FAILED). The dispatcher does not requeue the message until max_age: it ends FAILED at
    once (ESME_RSUBMITFAIL) with a receipt for the application, the reason logged once."""

    async def main() -> None:
        network = SimNetwork(report_delay=0.1)
        with ModemEmulator(network, quirks=Quirks(pin="1234")) as locked:
            cfg = ModemBankConfig.model_validate(
                {"modems": [{"name": "m1", "port": locked.port, "pin": "4321"}]}
            )
            store = SqliteStore(tmp_path / "gw.sqlite3")
            await store.open()
            bank = ModemBank("b", cfg, store)
            routes = RouteTable([Route("modems", ("",), (Target("bank:b"),))])
            dispatcher = Dispatcher(store, routes, {"bank:b": bank})  # max_age: an hour
            dispatcher.poll_interval = 0.02
            await dispatcher.start()
            try:
                m1 = bank.modem("m1")
                assert isinstance(m1, Modem)
                await m1.wait_state(ModemState.FAILED, timeout=15)
                assert bank.unusable_reason() is not None
                with capture_logs() as logs:
                    for i in range(3):
                        await store.accept(
                            NewMessage(
                                id=f"x{i}",
                                account="shop",
                                source_addr="Shop",
                                destination_addr="491701234567",
                                short_message=b"never sent",
                                registered_delivery=1,
                                route="modems",
                                accepted_at=time.time(),
                            )
                        )
                    dispatcher.wake()
                    async with asyncio.timeout(5):
                        while True:
                            records = [await store.get(f"x{i}") for i in range(3)]
                            if all(r is not None and r.state.final for r in records):
                                break
                            await asyncio.sleep(0.02)
                for r in records:
                    assert r is not None and (r.state, r.error) == (MessageState.FAILED, 0x45)
                assert len(await store.pending_deliveries("shop", time.time(), 10)) == 3
                assert count(locked, "AT+CMGS=") == 0
                told = [e for e in logs if e.get("route") == "modems"]
                assert len(told) == 1 and "PIN" in told[0]["reason"], told
            finally:
                await dispatcher.stop()
                await store.close()

    run(main)
