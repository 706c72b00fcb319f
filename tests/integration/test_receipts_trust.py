"""Receipts you can trust (issue 8): no receipt settles the wrong message, no message gets two
final receipts, every message ends - parts reported in any carrier's way, receipts that never
come, targets that never take it - and nothing a carrier sends is lost or taken for an MO.

The dispatcher against the real SQLite store and a scripted driver first; then the whole path,
smpplib (the application) -> smsgw -> the fake SMSC, for what only a real carrier link shows.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from drivers.base import ReceiptPolicy, SendResult, UpstreamReceipt
from gateway.config import DispatchConfig
from gateway.dispatch import Dispatcher
from gateway.routing import Route, RouteTable, Target
from gateway.smpp.receipt import parse_receipt
from gateway.store.base import MessageRecord, MessageState
from gateway.store.sqlite import SqliteStore
from tests.fakes.drivers import DiagnosableDriver, ScriptedDriver
from tests.fakes.smsc import Behaviour
from tests.integration.test_dispatch import (
    FAST,
    ROUTES,
    app_receipt,
    message,
    receipts_for,
    run,
    state_of,
    until,
)
from tests.integration.test_upstream_ladder import App, Ladder


@dataclass
class PolicyDriver(ScriptedDriver):
    """A scripted driver that says how its upstream reports receipts, and may answer
    query_sm (`answers`: upstream id -> message_state)."""

    receipt_policy: ReceiptPolicy = field(default_factory=ReceiptPolicy)
    answers: dict[str, int] = field(default_factory=dict)
    queried: list[str] = field(default_factory=list)


@dataclass
class QueryingDriver(PolicyDriver):
    async def query(self, upstream_id: str, record: MessageRecord) -> UpstreamReceipt | None:
        self.queried.append(upstream_id)
        state = self.answers.get(upstream_id)
        return None if state is None else UpstreamReceipt(self.name, upstream_id, state)


def final_receipts(deliveries: list[Any]) -> list[tuple[str, str]]:
    """(our message id, stat) of every final receipt queued for the application."""
    out = []
    for delivery in deliveries:
        pdu = app_receipt(delivery)
        if pdu.esm_class & 0x04:
            r = parse_receipt(pdu.short_message)
            out.append((r.message_id, str(r.stat)))
    return out


async def sent(store: SqliteStore, *ids: str) -> None:
    async def all_sent() -> bool:
        return all([await state_of(store, i) is MessageState.SENT for i in ids])

    await until(all_sent)


# -- 7: id spellings; no receipt ever settles the wrong message -----------------------------


def test_an_unknown_id_is_never_read_in_another_base(tmp_path: Path) -> None:
    """After a crash a carrier reports sends the gateway lost: unknown hex id 484 must not
    settle the message the carrier numbered 1E4 (decimal 484); it is kept and counted."""
    driver = ScriptedDriver()
    driver.script.extend([SendResult(True, "1E4"), SendResult(True, "1E5")])

    async def body(store: SqliteStore, dispatcher: Dispatcher) -> None:
        await store.accept(message(1))
        await store.accept(message(2))
        dispatcher.wake()
        await sent(store, "m0001", "m0002")
        await driver.report("1e5", 2)  # the carrier's receipts spell ids in hex too
        assert await state_of(store, "m0002") is MessageState.DELIVERED
        await driver.report("484", 5)  # a send the gateway forgot: 0x484, not 0x1E4
        assert await state_of(store, "m0001") is MessageState.SENT
        assert dispatcher.unknown_receipts == 1
        (kept,) = await store.unknown_receipts()
        assert (kept.upstream_id, kept.message_state) == ("484", 5)
        await driver.report("01E4", 2)  # its own receipt, leading zero and all
        assert await state_of(store, "m0001") is MessageState.DELIVERED
        assert sorted(final_receipts(await receipts_for(store))) == [
            ("m0001", "DELIVRD"),
            ("m0002", "DELIVRD"),
        ]

    run(tmp_path, driver, body)


def test_learnt_spelling_survives_a_restart(tmp_path: Path) -> None:
    """What auto learnt is kept: right after a restart, before any new id is seen, an
    unknown id is still not read in another base."""
    driver = ScriptedDriver()
    driver.script.extend([SendResult(True, "1E4"), SendResult(True, "1E5")])

    async def main() -> None:
        store = SqliteStore(tmp_path / "gw.sqlite3")
        await store.open()
        first = Dispatcher(store, ROUTES, {"carrier": driver}, settings=FAST)
        first.poll_interval = 0.02
        await first.start()
        try:
            await store.accept(message(1))
            await store.accept(message(2))
            first.wake()
            await sent(store, "m0001", "m0002")
            await driver.report("1E5", 2)
        finally:
            await first.stop()
        again = Dispatcher(store, ROUTES, {"carrier": driver}, settings=FAST)
        await again.start()
        try:
            await driver.report("484", 5)
            assert await state_of(store, "m0001") is MessageState.SENT
            assert again.unknown_receipts == 1
        finally:
            await again.stop()
            await store.close()

    asyncio.run(main())


def test_configured_id_formats_ignore_case_and_leading_zeros(tmp_path: Path) -> None:
    driver = PolicyDriver(receipt_policy=ReceiptPolicy(id_format="uuid"))
    driver.script.extend(
        [
            SendResult(True, "0e999f21-5c1a-4b2e-9d3c-00ab12cd34ef"),
            SendResult(True, "1a2b3c4d-0000-4000-8000-000000000001"),
        ]
    )

    async def body(store: SqliteStore, dispatcher: Dispatcher) -> None:
        await store.accept(message(1))
        await store.accept(message(2))
        dispatcher.wake()
        await sent(store, "m0001", "m0002")
        await driver.report("E999F21-5C1A-4B2E-9D3C-AB12CD34EF", 2)
        await driver.report("1A2B3C4D-0-4000-8000-1", 5)
        assert await state_of(store, "m0001") is MessageState.DELIVERED
        assert await state_of(store, "m0002") is MessageState.UNDELIVERABLE

    run(tmp_path, driver, body)


def test_conflicting_receipts_give_one_final_receipt(tmp_path: Path) -> None:
    """UNDELIV and DELIVRD for one message arriving together (a carrier resending, a
    receipt from before a crash): the application hears exactly one final receipt, and the
    message's state is that receipt's."""
    driver = ScriptedDriver()

    async def body(store: SqliteStore, dispatcher: Dispatcher) -> None:
        for i in range(1, 21):
            await store.accept(message(i))
        dispatcher.wake()
        await sent(store, *(f"m{i:04d}" for i in range(1, 21)))
        reports = []
        for i in range(1, 21):
            upstream_id = driver.ids[f"m{i:04d}"][0]
            reports += [driver.report(upstream_id, 5, error=1), driver.report(upstream_id, 2)]
        await asyncio.gather(*reports)
        finals = final_receipts(await receipts_for(store))
        assert sorted(m for m, _ in finals) == [f"m{i:04d}" for i in range(1, 21)]
        for message_id, stat in finals:
            state = await state_of(store, message_id)
            assert (stat, state) in (
                ("UNDELIV", MessageState.UNDELIVERABLE),
                ("DELIVRD", MessageState.DELIVERED),
            )
            assert len(await store.receipts(message_id)) == 2  # both kept

    run(tmp_path, driver, body)


# -- 6: multipart messages always end ------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "reported", "expected"),
    [
        ("last", [(2, 2)], MessageState.DELIVERED),
        ("first", [(0, 5)], MessageState.UNDELIVERABLE),
        ("any", [(1, 2)], MessageState.DELIVERED),
        ("all", [(0, 2), (1, 8), (2, 2)], MessageState.REJECTED),
    ],
)
def test_multipart_receipts_per_upstream(
    tmp_path: Path, mode: str, reported: list[tuple[int, int]], expected: MessageState
) -> None:
    driver = PolicyDriver(parts=3, receipt_policy=ReceiptPolicy(multipart_receipts=mode))  # type: ignore[arg-type]

    async def body(store: SqliteStore, dispatcher: Dispatcher) -> None:
        await store.accept(message(1))
        dispatcher.wake()
        await sent(store, "m0001")
        ids = driver.ids["m0001"]
        for part, state in reported:
            await driver.report(ids[part], state)
        assert await state_of(store, "m0001") is expected
        for part in range(3):  # the other parts' receipts come after all: kept, no second end
            await driver.report(ids[part], 2)
        assert len(final_receipts(await receipts_for(store))) == 1

    run(tmp_path, driver, body)


def test_a_receipt_that_never_comes_ends_unknown(tmp_path: Path) -> None:
    """A carrier that answered and then dropped the link: after receipt_timeout the message
    ends UNKNOWN, and the application gets that final receipt - once."""
    driver = PolicyDriver(parts=2, receipt_policy=ReceiptPolicy(receipt_timeout=0.3))

    async def body(store: SqliteStore, dispatcher: Dispatcher) -> None:
        await store.accept(message(1))
        await store.accept(message(2))
        dispatcher.wake()
        await sent(store, "m0001", "m0002")
        await driver.report(driver.ids["m0002"][0], 2)
        await driver.report(driver.ids["m0002"][1], 2)

        async def unknown() -> bool:
            return await state_of(store, "m0001") is MessageState.UNKNOWN

        await until(unknown)
        assert sorted(final_receipts(await receipts_for(store))) == [
            ("m0001", "UNKNOWN"),
            ("m0002", "DELIVRD"),
        ]
        await driver.report(driver.ids["m0001"][0], 2)  # too late: kept, nothing more
        assert len(await store.receipts("m0001")) == 1
        assert len(final_receipts(await receipts_for(store))) == 2

    run(tmp_path, driver, body)


def test_a_late_receipt_is_asked_for_where_the_upstream_can(tmp_path: Path) -> None:
    driver = QueryingDriver(parts=2, receipt_policy=ReceiptPolicy(receipt_timeout=0.3))

    async def body(store: SqliteStore, dispatcher: Dispatcher) -> None:
        await store.accept(message(1))
        dispatcher.wake()
        await sent(store, "m0001")
        first, second = driver.ids["m0001"]
        await driver.report(first, 2)
        driver.answers[second] = 2

        async def delivered() -> bool:
            return await state_of(store, "m0001") is MessageState.DELIVERED

        await until(delivered)
        assert driver.queried == [second]  # only the part whose receipt is missing
        assert final_receipts(await receipts_for(store)) == [("m0001", "DELIVRD")]

    run(tmp_path, driver, body)


def test_a_message_no_target_takes_ends_failed_after_max_age(tmp_path: Path) -> None:
    """A bank whose modems all want another PIN: its messages do not wait for ever."""
    driver = ScriptedDriver(is_usable=False)
    settings = DispatchConfig(max_age=0.5, retry_backoff=0.02)

    async def body(store: SqliteStore, dispatcher: Dispatcher) -> None:
        await store.accept(message(1))
        dispatcher.wake()

        async def failed() -> bool:
            return await state_of(store, "m0001") is MessageState.FAILED

        await until(failed)
        assert driver.sent == []
        assert final_receipts(await receipts_for(store)) == [("m0001", "UNDELIV")]

    run(tmp_path, driver, body, settings)


def test_duplicates_after_a_crash_are_bounded_by_default() -> None:
    """A kill -9 may send again what was in flight: the default keeps that a few hundred."""
    assert DispatchConfig().max_inflight <= 256


# -- the whole path: carrier notifications, vendor stats, query_sm -------------------------


def carried(ladder: Ladder, count: int) -> list[str]:
    """Wait (bounded) until the carrier has `count` messages; their upstream ids."""
    for _ in range(500):
        if len(ladder.smsc.records) >= count:
            break
        ladder.call(asyncio.sleep(0.02))
    assert len(ladder.smsc.records) == count
    return [r.upstream_id for r in ladder.smsc.records]


def _receipt_fields(text: str, esm_class: int = 0x04, **extra: Any) -> dict[str, Any]:
    return {
        "esm_class": esm_class,
        "source_addr": "1",
        "destination_addr": "2",
        "short_message": text.encode(),
        **extra,
    }


@pytest.mark.parametrize(
    ("stat", "expected_stat", "expected_state"),
    [
        ("Xyzzy", "UNKNOWN", MessageState.UNKNOWN),  # junk
        ("DELIVERED_TO_HANDSET", "UNKNOWN", MessageState.UNKNOWN),  # a vendor's state
        ("undeliverable", "UNDELIV", MessageState.UNDELIVERABLE),  # lower case
        ("UNDELIVERABLE", "UNDELIV", MessageState.UNDELIVERABLE),
        ("delivrd", "DELIVRD", MessageState.DELIVERED),
    ],
)
def test_no_receipt_is_silently_dropped(
    tmp_path: Path, stat: str, expected_stat: str, expected_state: MessageState
) -> None:
    ladder = Ladder(tmp_path, Behaviour(send_receipts=False))
    app = App(ladder.port)
    try:
        app.submit(1)
        app.wait(1, 0)
        (message_id,) = app.ids()
        (upstream_id,) = carried(ladder, 1)
        text = f"id:{upstream_id} sub:001 dlvrd:000 stat:{stat} err:042 text:order 0"
        ladder.call(ladder.smsc.send_deliver(_receipt_fields(text)))
        app.wait(1, 1, timeout=10)
        (receipt,) = app.receipts
        assert parse_receipt(receipt.short_message).stat == expected_stat
        assert receipt.receipted_message_id.decode() == message_id
        assert ladder.state(message_id) is expected_state
        (kept,) = ladder.call(ladder.gateway.store.receipts(message_id))
        assert kept.raw == text.encode()
    finally:
        app.close()
        ladder.close()


def test_intermediate_notifications_are_never_mo(tmp_path: Path) -> None:
    """esm_class 0x20 from the carrier: an intermediate state, forwarded only to an
    application that asked (registered_delivery bit 4), never delivered as an MO, never an
    end; the final receipt after it still ends the message."""
    ladder = Ladder(tmp_path, Behaviour(send_receipts=False))
    app = App(ladder.port)
    try:
        for i, registered_delivery in enumerate((0x11, 0x01)):  # the first asks for them
            app.client.send_message(
                source_addr="Shop",
                destination_addr=f"49151000000{i}",
                short_message=b"order",
                registered_delivery=registered_delivery,
            )
        app.wait(2, 1, timeout=10)  # and hears when the upstream took it
        asked, plain = app.ids()
        first, second = carried(ladder, 2)
        for upstream_id in (first, second):
            note = f"id:{upstream_id} sub:001 dlvrd:000 stat:ENROUTE err:000 text:"
            ladder.call(ladder.smsc.send_deliver(_receipt_fields(note, esm_class=0x20)))
        app.wait(2, 2, timeout=10)
        notes = [p for p in app.receipts if p.esm_class == 0x20]
        assert [p.receipted_message_id.decode() for p in notes] == [asked, asked]
        assert ladder.state(asked) is MessageState.SENT
        for upstream_id in (first, second):
            done = f"id:{upstream_id} sub:001 dlvrd:001 stat:DELIVRD err:000 text:"
            ladder.call(ladder.smsc.send_deliver(_receipt_fields(done)))
        app.wait(2, 4, timeout=10)
        assert len(app.receipts) == 4
        assert all(p.esm_class in (0x04, 0x20) for p in app.receipts)  # nothing as an MO
        finals = [p.receipted_message_id.decode() for p in app.receipts if p.esm_class == 0x04]
        assert sorted(finals) == sorted([asked, plain])
    finally:
        app.close()
        ladder.close()


def test_receipts_without_the_flag_when_the_upstream_says_so(tmp_path: Path) -> None:
    ladder = Ladder(tmp_path, Behaviour(send_receipts=False), ", receipts_without_flag: true")
    app = App(ladder.port)
    try:
        app.submit(1)
        app.wait(1, 0)
        (message_id,) = app.ids()
        (upstream_id,) = carried(ladder, 1)
        text = f"id:{upstream_id} sub:001 dlvrd:001 stat:DELIVRD err:000 text:order 0"
        ladder.call(ladder.smsc.send_deliver(_receipt_fields(text, esm_class=0)))
        app.wait(1, 1, timeout=10)
        (receipt,) = app.receipts
        assert receipt.esm_class == 0x04
        assert receipt.receipted_message_id.decode() == message_id
        assert ladder.state(message_id) is MessageState.DELIVERED
    finally:
        app.close()
        ladder.close()


def test_query_sm_asks_for_a_receipt_that_never_came(tmp_path: Path) -> None:
    ladder = Ladder(
        tmp_path, Behaviour(send_receipts=False, query_state=2), ", receipt_timeout: 0.5"
    )
    app = App(ladder.port)
    try:
        app.submit(1)
        app.wait(1, 1, timeout=15)
        (message_id,) = app.ids()
        (receipt,) = app.receipts
        assert parse_receipt(receipt.short_message).stat == "DELIVRD"
        assert ladder.smsc.queries == [(ladder.smsc.records[0].upstream_id, "Shop")]
        assert ladder.state(message_id) is MessageState.DELIVERED
        (kept,) = ladder.call(ladder.gateway.store.receipts(message_id))
        assert kept.raw.startswith(b"query_sm")
    finally:
        app.close()
        ladder.close()


def test_an_upstream_that_cannot_answer_a_query_ends_unknown(tmp_path: Path) -> None:
    ladder = Ladder(tmp_path, Behaviour(send_receipts=False), ", receipt_timeout: 0.5")
    app = App(ladder.port)
    start = time.monotonic()
    try:
        app.submit(1)
        app.wait(1, 1, timeout=15)
        (receipt,) = app.receipts
        assert parse_receipt(receipt.short_message).stat == "UNKNOWN"
        assert len(ladder.smsc.queries) == 1  # asked (refused), then settled
        assert time.monotonic() - start >= 0.5
    finally:
        app.close()
        ladder.close()


def test_query_sm_off_for_an_upstream_that_has_none(tmp_path: Path) -> None:
    ladder = Ladder(
        tmp_path,
        Behaviour(send_receipts=False, query_state=2),
        ", receipt_timeout: 0.5, query_sm: false",
    )
    app = App(ladder.port)
    try:
        app.submit(1)
        app.wait(1, 1, timeout=15)
        (receipt,) = app.receipts
        assert parse_receipt(receipt.short_message).stat == "UNKNOWN"
        assert ladder.smsc.queries == []  # never asked
    finally:
        app.close()
        ladder.close()


# -- a target that can never send: its messages end at once ----------------------------------


def test_messages_whose_targets_can_never_send_fail_at_once_logged_once(tmp_path: Path) -> None:
    """A bank whose modems all want another PIN says why (`unusable_reason`): its route's
    messages end FAILED at once with a receipt (ESME_RSUBMITFAIL), not after max_age, and the
    reason is logged once for the route, not per message. A route with another target that
    can send still fails over to it; one whose other target is merely down still waits."""
    bank = DiagnosableDriver(name="bank:b", is_usable=False, reason="m1: the SIM refused the PIN")
    carrier = ScriptedDriver(name="carrier")
    down = ScriptedDriver(name="down", is_usable=False)  # no reason: may come back
    routes = RouteTable(
        [
            Route("modems", ("491",), (Target("bank:b"),)),
            Route("both", ("492",), (Target("bank:b"), Target("carrier"))),
            Route("mixed", ("493",), (Target("bank:b"), Target("down"))),
        ]
    )

    async def main() -> None:
        store = SqliteStore(tmp_path / "gw.sqlite3")
        await store.open()
        drivers = {"bank:b": bank, "carrier": carrier, "down": down}
        dispatcher = Dispatcher(store, routes, drivers, settings=FAST)
        dispatcher.poll_interval = 0.02
        await dispatcher.start()
        try:
            with capture_logs() as logs:
                for i in range(5):
                    await store.accept(message(i, route="modems"))
                await store.accept(message(5, route="both"))
                await store.accept(message(6, route="mixed"))
                dispatcher.wake()

                async def ended() -> bool:
                    states = [await state_of(store, f"m{i:04d}") for i in range(6)]
                    return states == [MessageState.FAILED] * 5 + [MessageState.SENT]

                await until(ended, timeout=5)
                for i in range(5):
                    record = await store.get(f"m{i:04d}")
                    assert record is not None and record.error == 0x45
                finals = final_receipts(await receipts_for(store))
                assert sorted(finals) == [(f"m{i:04d}", "UNDELIV") for i in range(5)]
                assert bank.sent == [] and [r.message.id for r in carrier.sent] == ["m0005"]
                mixed = await store.get("m0006")
                assert mixed is not None and not mixed.state.final  # waits for "down"
                assert down.sent == []
            told = [e for e in logs if e["log_level"] == "error"]
            assert len(told) == 1, told
            assert told[0]["route"] == "modems" and "PIN" in told[0]["reason"]
        finally:
            await dispatcher.stop()
            await store.close()

    asyncio.run(main())


def test_a_receipt_without_any_id_is_kept_raw_and_counted(tmp_path: Path) -> None:
    """A carrier's receipt (esm_class 0x04) with no receipted_message_id and no id: in its
    text cannot be matched, but it is not dropped: kept raw among the unknown receipts,
    counted, and acknowledged (the carrier stops offering it)."""
    ladder = Ladder(tmp_path, Behaviour(send_receipts=False))
    try:
        text = "sub:001 dlvrd:001 submit date:2601011200 done date:2601011201 stat:DELIVRD err:000"
        ladder.call(ladder.smsc.send_deliver(_receipt_fields(text)))
        for _ in range(500):  # bounded
            if ladder.smsc.delivered_ok:
                break
            ladder.call(asyncio.sleep(0.02))
        assert ladder.smsc.delivered_ok == 1
        (kept,) = ladder.call(ladder.gateway.store.unknown_receipts())
        assert (kept.upstream, kept.upstream_id, kept.raw) == ("carrier", "", text.encode())
        assert ladder.gateway.dispatcher.unknown_receipts == 1
    finally:
        ladder.close()
