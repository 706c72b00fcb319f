"""The dispatcher against the real SQLite store and a scripted driver: retries with backoff,
their count and age bounds, targets that cannot take a message, expiry, late responses,
receipts per part, intermediate notifications and the retention purge."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import smpplib.client
import smpplib.smpp

from drivers.base import SendResult
from gateway.config import DispatchConfig
from gateway.dispatch import Dispatcher, _receipt_pdu
from gateway.routing import Route, RouteTable, Target
from gateway.routing.mo import MoRoute, MoRouter
from gateway.smpp.codec import decode_pdu, encode_pdu
from gateway.smpp.constants import CommandId
from gateway.smpp.message import SmBuilder, message_content
from gateway.smpp.receipt import Receipt, ReceiptState, format_receipt_bytes, parse_receipt
from gateway.sms import segment
from gateway.store.base import Delivery, MessageRecord, MessageState, NewMessage
from gateway.store.sqlite import SqliteStore
from tests.fakes.drivers import ScriptedDriver

ROUTES = RouteTable([Route("all", ("",), (Target("carrier"),))])
FAST = DispatchConfig(retry_backoff=0.02, max_retry_backoff=0.05, max_attempts=3)


def message(i: int, **kw: object) -> NewMessage:
    fields: dict[str, object] = {
        "id": f"m{i:04d}",
        "account": "shop",
        "source_addr": "Shop",
        "destination_addr": "4915112345678",
        "short_message": f"order {i} shipped".encode(),
        "registered_delivery": 1,
        "route": "all",
        "accepted_at": time.time(),
    }
    fields.update(kw)
    return NewMessage(**fields)  # type: ignore[arg-type]


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Wait for `condition` (bounded); fail the test when it never holds."""
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.01)


def run(
    tmp: Path,
    driver: ScriptedDriver,
    body: Callable[[SqliteStore, Dispatcher], Awaitable[None]],
    settings: DispatchConfig = FAST,
) -> None:
    async def main() -> None:
        store = SqliteStore(tmp / "gw.sqlite3")
        await store.open()
        dispatcher = Dispatcher(store, ROUTES, {"carrier": driver}, settings=settings)
        dispatcher.poll_interval = 0.02
        await dispatcher.start()
        try:
            await asyncio.wait_for(body(store, dispatcher), 30)
        finally:
            await dispatcher.stop()
            await store.close()

    asyncio.run(main())


async def state_of(store: SqliteStore, message_id: str) -> MessageState:
    record = await store.get(message_id)
    assert record is not None
    return record.state


async def receipts_for(store: SqliteStore) -> list[Delivery]:
    return await store.pending_deliveries("shop", time.time(), 1000)


def app_receipt(delivery: Delivery) -> smpplib.smpp.Command:
    """The queued deliver_sm as an independent client library reads it."""
    return smpplib.smpp.parse_pdu(
        delivery.pdu,
        client=smpplib.client.SimpleSequenceGenerator(),
        allow_unknown_opt_params=True,
    )


def test_temporary_errors_retry_then_send(tmp_path: Path) -> None:
    driver = ScriptedDriver()
    driver.script.extend([SendResult(False, error=0x58), SendResult(False, error=0x14)])

    async def body(store: SqliteStore, dispatcher: Dispatcher) -> None:
        await store.accept(message(1))
        dispatcher.wake()

        async def sent() -> bool:
            return await state_of(store, "m0001") is MessageState.SENT

        await until(sent)
        assert len(driver.sent) == 3
        record = await store.get("m0001")
        assert record is not None and record.attempts == 3
        states = [s for _, s in await store.history("m0001")]
        assert states.count(MessageState.DISPATCHING) == 3

    run(tmp_path, driver, body)


def test_retries_stop_at_max_attempts_and_the_app_hears(tmp_path: Path) -> None:
    driver = ScriptedDriver()
    driver.script.extend([SendResult(False, error=0x58)] * 10)

    async def body(store: SqliteStore, dispatcher: Dispatcher) -> None:
        await store.accept(message(1))
        dispatcher.wake()

        async def failed() -> bool:
            return await state_of(store, "m0001") is MessageState.FAILED

        await until(failed)
        assert len(driver.sent) == FAST.max_attempts
        (delivery,) = await receipts_for(store)
        pdu = app_receipt(delivery)
        receipt = parse_receipt(pdu.short_message)
        assert receipt.message_id == "m0001"
        assert receipt.stat == "UNDELIV"
        assert receipt.err == f"{0x58:03d}"

    run(tmp_path, driver, body)


def test_retries_stop_at_max_age(tmp_path: Path) -> None:
    driver = ScriptedDriver()
    driver.script.extend([SendResult(False, error=0x58)] * 10)
    settings = DispatchConfig(retry_backoff=0.02, max_attempts=100, max_age=1.0)

    async def body(store: SqliteStore, dispatcher: Dispatcher) -> None:
        await store.accept(message(1, accepted_at=time.time() - 0.5))
        dispatcher.wake()

        async def failed() -> bool:
            return await state_of(store, "m0001") is MessageState.FAILED

        await until(failed)
        assert 1 < len(driver.sent) < 100  # retried, but stopped by age, not by count

    run(tmp_path, driver, body, settings)


def test_permanent_error_fails_at_once(tmp_path: Path) -> None:
    driver = ScriptedDriver()
    driver.script.append(SendResult(False, error=0x0B, permanent=True))

    async def body(store: SqliteStore, dispatcher: Dispatcher) -> None:
        await store.accept(message(1))
        dispatcher.wake()

        async def failed() -> bool:
            return await state_of(store, "m0001") is MessageState.FAILED

        await until(failed)
        assert len(driver.sent) == 1
        record = await store.get("m0001")
        assert record is not None and record.error == 0x0B
        assert len(await receipts_for(store)) == 1

    run(tmp_path, driver, body)


def test_no_usable_target_waits_without_spending_attempts(tmp_path: Path) -> None:
    driver = ScriptedDriver(is_usable=False)

    async def body(store: SqliteStore, dispatcher: Dispatcher) -> None:
        await store.accept(message(1))
        dispatcher.wake()

        async def claimed_twice() -> bool:
            states = [s for _, s in await store.history("m0001")]
            return states.count(MessageState.DISPATCHING) >= 2 and states[-1] is (
                MessageState.ACCEPTED
            )

        await until(claimed_twice)
        record = await store.get("m0001")
        assert record is not None and record.attempts == 0
        assert record.state is MessageState.ACCEPTED
        driver.is_usable = True

        async def sent() -> bool:
            return await state_of(store, "m0001") is MessageState.SENT

        await until(sent)
        record = await store.get("m0001")
        assert record is not None and record.attempts == 1

    run(tmp_path, driver, body)


def test_expired_message_ends_with_an_expired_receipt(tmp_path: Path) -> None:
    driver = ScriptedDriver()

    async def body(store: SqliteStore, dispatcher: Dispatcher) -> None:
        await store.accept(message(1, expires_at=time.time() - 1))
        dispatcher.wake()

        async def expired() -> bool:
            return await state_of(store, "m0001") is MessageState.EXPIRED

        await until(expired)
        assert driver.sent == []
        (delivery,) = await receipts_for(store)
        assert parse_receipt(app_receipt(delivery).short_message).stat == "EXPIRED"

    run(tmp_path, driver, body)


def test_scheduled_message_waits_for_its_time(tmp_path: Path) -> None:
    driver = ScriptedDriver()

    async def body(store: SqliteStore, dispatcher: Dispatcher) -> None:
        due = time.time() + 0.3
        await store.accept(message(1, schedule_at=due))
        dispatcher.wake()

        async def sent() -> bool:
            return bool(driver.sent)

        await until(sent)
        assert time.time() >= due

    run(tmp_path, driver, body)


def test_parts_make_one_state_and_one_receipt(tmp_path: Path) -> None:
    driver = ScriptedDriver(parts=3)

    async def body(store: SqliteStore, dispatcher: Dispatcher) -> None:
        await store.accept(message(1))
        await store.accept(message(2))
        dispatcher.wake()

        async def both_sent() -> bool:
            return all([await state_of(store, m) is MessageState.SENT for m in ("m0001", "m0002")])

        await until(both_sent)
        one, two = driver.ids["m0001"], driver.ids["m0002"]
        await driver.report(one[0], 2)
        await driver.report(one[2], 2)
        assert await state_of(store, "m0001") is MessageState.SENT  # part 2 still out
        await driver.report(one[1].lower(), 2)  # any spelling of the id
        assert await state_of(store, "m0001") is MessageState.DELIVERED
        for upstream_id, state in zip(two, (2, 5, 2), strict=True):
            await driver.report(upstream_id, state, error=1 if state == 5 else 0)
        assert await state_of(store, "m0002") is MessageState.UNDELIVERABLE
        stats = {
            (r := parse_receipt(app_receipt(d).short_message)).message_id: r.stat
            for d in await receipts_for(store)
        }
        assert stats == {"m0001": "DELIVRD", "m0002": "UNDELIV"}
        assert len(await store.receipts("m0002")) == 3

    run(tmp_path, driver, body)


def test_intermediate_notifications_when_asked(tmp_path: Path) -> None:
    driver = ScriptedDriver()

    async def body(store: SqliteStore, dispatcher: Dispatcher) -> None:
        await store.accept(message(1, registered_delivery=0x11))
        await store.accept(message(2, registered_delivery=0x01))
        dispatcher.wake()

        async def sent() -> bool:
            return len(driver.ids) == 2 and all(
                [await state_of(store, m) is MessageState.SENT for m in ("m0001", "m0002")]
            )

        await until(sent)
        await driver.report(driver.ids["m0001"][0], 1)  # ENROUTE: not final
        await driver.report(driver.ids["m0001"][0], 2)
        await driver.report(driver.ids["m0002"][0], 2)
        seen = [
            (pdu.esm_class, parse_receipt(pdu.short_message))
            for pdu in map(app_receipt, await receipts_for(store))
        ]
        mine = [(esm, r.stat) for esm, r in seen if r.message_id == "m0001"]
        assert mine == [(0x20, "ENROUTE"), (0x20, "ENROUTE"), (0x04, "DELIVRD")]
        assert [(esm, r.stat) for esm, r in seen if r.message_id == "m0002"] == [(0x04, "DELIVRD")]

    run(tmp_path, driver, body)


def test_receipt_before_the_send_is_recorded_is_held(tmp_path: Path) -> None:
    driver = ScriptedDriver(delay=0.2)

    async def body(store: SqliteStore, dispatcher: Dispatcher) -> None:
        await store.accept(message(1))
        dispatcher.wake()

        async def sending() -> bool:
            return driver.inflight == 1

        await until(sending)
        await driver.report("A000", 2)  # the id the driver is about to return

        async def delivered() -> bool:
            return await state_of(store, "m0001") is MessageState.DELIVERED

        await until(delivered)

    run(tmp_path, driver, body)


def test_late_response_is_recorded_not_resent(tmp_path: Path) -> None:
    driver = ScriptedDriver()
    driver.script.append(SendResult(False, error=0x08))  # the timeout
    settings = DispatchConfig(retry_backoff=2.0, max_attempts=3)

    async def body(store: SqliteStore, dispatcher: Dispatcher) -> None:
        await store.accept(message(1))
        dispatcher.wake()

        async def waiting() -> bool:
            record = await store.get("m0001")
            return record is not None and (record.state, record.error) == (
                MessageState.ACCEPTED,
                8,
            )

        await until(waiting)
        await dispatcher.late_result("carrier", "m0001", SendResult(True, "beef"))
        assert await state_of(store, "m0001") is MessageState.SENT
        await driver.report("BEEF", 2)
        assert await state_of(store, "m0001") is MessageState.DELIVERED
        await asyncio.sleep(0)  # let the loop run; the retry time has not come anyway
        assert len(driver.sent) == 1

    run(tmp_path, driver, body, settings)


def test_sends_run_concurrently(tmp_path: Path) -> None:
    driver = ScriptedDriver(delay=0.05)

    async def body(store: SqliteStore, dispatcher: Dispatcher) -> None:
        await asyncio.gather(*(store.accept(message(i)) for i in range(200)))
        dispatcher.wake()

        async def all_sent() -> bool:
            return len(driver.sent) == 200

        await until(all_sent)
        assert driver.max_inflight > 50  # not one round trip at a time
        assert len({r.message.id for r in driver.sent}) == 200

    run(tmp_path, driver, body)


def test_inflight_cap_holds(tmp_path: Path) -> None:
    driver = ScriptedDriver(delay=0.02)
    settings = DispatchConfig(max_inflight=7)

    async def body(store: SqliteStore, dispatcher: Dispatcher) -> None:
        await asyncio.gather(*(store.accept(message(i)) for i in range(60)))
        dispatcher.wake()

        async def all_sent() -> bool:
            return len(driver.sent) == 60

        await until(all_sent)
        assert driver.max_inflight == 7

    run(tmp_path, driver, body, settings)


def test_retention_purge_runs(tmp_path: Path) -> None:
    driver = ScriptedDriver()

    async def main() -> None:
        store = SqliteStore(tmp_path / "gw.sqlite3")
        await store.open()
        old = time.time() - 40 * 86_400
        await store.accept(message(1, accepted_at=old))
        await store.set_state("m0001", MessageState.DELIVERED, old)
        await store.accept(message(2, accepted_at=old))  # old but not final: kept
        dispatcher = Dispatcher(
            store, ROUTES, {"carrier": driver}, settings=FAST, retention=30 * 86_400.0
        )
        await dispatcher.start()
        try:

            async def purged() -> bool:
                return await store.get("m0001") is None

            await until(purged)
            assert await store.get("m0002") is not None
        finally:
            await dispatcher.stop()
            await store.close()

    asyncio.run(main())


def test_early_receipt_never_matches_another_message_by_a_numeric_spelling(
    tmp_path: Path,
) -> None:
    """ "0000000A" (hex) and "00000010" (decimal) are both 10: a receipt for the first, coming
    before its send is recorded, must wait for it rather than settle the other message."""
    driver = ScriptedDriver()
    driver.script.append(SendResult(True, "00000010"))

    async def body(store: SqliteStore, dispatcher: Dispatcher) -> None:
        await store.accept(message(1))
        dispatcher.wake()

        async def first_sent() -> bool:
            return await state_of(store, "m0001") is MessageState.SENT

        await until(first_sent)
        driver.delay = 0.3
        driver.script.append(SendResult(True, "0000000A"))
        await store.accept(message(2))
        dispatcher.wake()

        async def second_sending() -> bool:
            return driver.inflight == 1

        await until(second_sending)
        await driver.report("0000000A", 2)  # before m0002's send is recorded
        assert await state_of(store, "m0002") is MessageState.DELIVERED
        assert await state_of(store, "m0001") is MessageState.SENT
        await driver.report("00000010", 5)
        assert await state_of(store, "m0001") is MessageState.UNDELIVERABLE

    run(tmp_path, driver, body)


def mo_parts(text: str) -> list[Any]:
    """An inbound concatenated message as the deliver_sm parts a carrier sends."""
    segments = segment(text, ref=77)
    builder = SmBuilder(command_id=int(CommandId.deliver_sm))
    raws = builder.build(segments, "4915199999", "4930123", [1] * segments.total)
    return [decode_pdu(raw) for raw in raws]


def mo_dispatcher(store: SqliteStore, mo_timeout: float = 300.0) -> Dispatcher:
    return Dispatcher(
        store,
        ROUTES,
        {},
        settings=DispatchConfig(purge_interval=0.05),
        mo_router=MoRouter([MoRoute("shop", ("",), None)]),
        mo_timeout=mo_timeout,
    )


def delivered_text(deliveries: list[Delivery]) -> str:
    return "".join(message_content(decode_pdu(d.pdu)).text() for d in deliveries)


def test_inbound_parts_survive_a_restart(tmp_path: Path) -> None:
    text = "Your parcel is at the depot; pick it up with code 4711 before Friday. " * 3
    first, *rest = mo_parts(text)
    assert rest

    async def main() -> None:
        store = SqliteStore(tmp_path / "gw.sqlite3")
        await store.open()
        await mo_dispatcher(store).inbound(first)  # acknowledged: durable
        assert await store.pending_deliveries("shop", time.time(), 10) == []
        await store.close()  # the process dies here

        store = SqliteStore(tmp_path / "gw.sqlite3")
        await store.open()
        dispatcher = mo_dispatcher(store)
        for part in reversed(rest):  # any order
            await dispatcher.inbound(part)
        deliveries = await store.pending_deliveries("shop", time.time(), 10)
        assert delivered_text(deliveries) == text
        assert await store.stale_inbound(time.time() + 1) == []
        await store.close()

    asyncio.run(main())


def test_incomplete_inbound_is_delivered_after_the_timeout(tmp_path: Path) -> None:
    text = "Reply STOP to end marketing messages. Reply HELP for help, or call us. " * 2
    first, *_missing = mo_parts(text)

    async def main() -> None:
        store = SqliteStore(tmp_path / "gw.sqlite3")
        await store.open()
        dispatcher = mo_dispatcher(store, mo_timeout=0.2)
        await dispatcher.start()
        try:
            await dispatcher.inbound(first)

            async def delivered() -> bool:
                return bool(await store.pending_deliveries("shop", time.time(), 10))

            await until(delivered)
            deliveries = await store.pending_deliveries("shop", time.time(), 10)
            assert text.startswith(delivered_text(deliveries))
            assert await store.stale_inbound(time.time() + 1) == []
        finally:
            await dispatcher.stop()
            await store.close()

    asyncio.run(main())


def test_the_fast_receipt_text_is_what_format_receipt_writes() -> None:
    record = MessageRecord(
        NewMessage(
            id="06f9ff06b6000000",
            account="shop",
            source_addr="Shop",
            destination_addr="4915112345678",
            short_message="Zahlung über 12,50 € erhalten – danke!".encode("utf-16-be"),
            data_coding=8,
            accepted_at=1_795_600_000.5,
        ),
        MessageState.SENT,
        0.0,
        1,
        None,
    )
    now = 1_795_600_125.0
    for state, stat in (
        (MessageState.DELIVERED, ReceiptState.DELIVRD),
        (MessageState.UNDELIVERABLE, ReceiptState.UNDELIV),
        (MessageState.EXPIRED, ReceiptState.EXPIRED),
    ):
        pdu = _receipt_pdu(record, state, 34, now, intermediate=False)
        expected = Receipt(
            message_id="06f9ff06b6000000",
            stat=stat,
            sub=1,
            dlvrd=1 if state is MessageState.DELIVERED else 0,
            submit_date=datetime.fromtimestamp(1_795_600_000.5, UTC).replace(tzinfo=None),
            done_date=datetime.fromtimestamp(now, UTC).replace(tzinfo=None),
            err="034",
            text="Zahlung über 12,50 € erhalten – danke!",
        )
        assert pdu.short_message == format_receipt_bytes(expected, text_label="text")
        parsed = app_receipt(Delivery(1, "shop", "receipt", encode_pdu(pdu), 0.0, 0.0, 0))
        assert parsed.receipted_message_id == b"06f9ff06b6000000"
        assert parsed.message_state == stat.message_state
