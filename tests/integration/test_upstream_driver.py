"""The upstream driver on its own against the fake SMSC: what the dispatcher sees from `send`
and the `ReceiptSink` when a carrier throttles for too long or answers after the timeout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from drivers.base import SendResult, UpstreamReceipt
from drivers.smpp.upstream import SmppUpstream
from gateway.config import UpstreamConfig
from gateway.smpp.constants import CommandStatus
from gateway.store.base import MessageRecord, MessageState, NewMessage
from tests.fakes.smsc import Behaviour, FakeSmsc


class Sink:
    def __init__(self) -> None:
        self.receipts: list[UpstreamReceipt] = []
        self.late: list[tuple[str, str, SendResult]] = []
        self.late_event = asyncio.Event()

    async def receipt(self, receipt: UpstreamReceipt) -> None:
        self.receipts.append(receipt)

    async def inbound(self, pdu: Any) -> None:
        pass

    async def late_result(self, upstream: str, message_id: str, result: SendResult) -> None:
        self.late.append((upstream, message_id, result))
        self.late_event.set()


def record(message_id: str, destination: str = "491510000000") -> MessageRecord:
    message = NewMessage(message_id, "shop", "Shop", destination, b"hello")
    return MessageRecord(message, MessageState.DISPATCHING, 0.0, 0, None)


@asynccontextmanager
async def upstream(
    behaviour: Behaviour, **tune: Any
) -> AsyncIterator[tuple[SmppUpstream, Sink, FakeSmsc]]:
    smsc = FakeSmsc(behaviour)
    port = await smsc.start()
    config = UpstreamConfig(host="127.0.0.1", port=port, system_id="gw", password="pw")
    driver = SmppUpstream("carrier", config, backoff=0.05, **tune)
    sink = Sink()
    await driver.start(sink)
    try:
        await driver.wait_bound(10)
        yield driver, sink, smsc
    finally:
        await driver.stop()
        await smsc.stop()


def test_throttled_too_long_is_a_temporary_failure() -> None:
    async def main() -> None:
        behaviour = Behaviour(throttle_every=1)  # every submit_sm throttled
        async with upstream(behaviour, max_throttle_time=0.3, pause_min=0.02, pause_max=0.05) as (
            driver,
            _,
            smsc,
        ):
            seen_usable_false = False
            task = asyncio.create_task(driver.send(record("m1")))
            for _ in range(200):  # bounded
                if task.done():
                    break
                seen_usable_false |= not driver.usable()
                await asyncio.sleep(0.005)
            result = await asyncio.wait_for(task, 5)
            assert result == SendResult(False, error=CommandStatus.ESME_RTHROTTLED)
            assert smsc.seen >= 2  # resent while paused, then handed back
            assert smsc.records == []
            assert seen_usable_false  # paused: the dispatcher sends elsewhere meanwhile

    asyncio.run(main())


def test_late_response_goes_to_the_sink_and_a_resend_gets_it_too() -> None:
    async def main() -> None:
        behaviour = Behaviour(late_first=1, late_delay=0.6)
        async with upstream(behaviour, response_timeout=0.2, late_window=5.0) as (
            driver,
            sink,
            smsc,
        ):
            first = await driver.send(record("m1"))
            assert not first.ok and not first.permanent  # timed out: temporary
            await asyncio.wait_for(sink.late_event.wait(), 5)
            ((name, message_id, late),) = sink.late
            assert (name, message_id, late.ok) == ("carrier", "m1", True)
            assert late.upstream_ids == (smsc.records[0].upstream_id,)
            # The dispatcher may have re-claimed it meanwhile: the resend is not sent again.
            again = await driver.send(record("m1"))
            assert again.ok and again.upstream_id == late.upstream_id
            assert smsc.seen == 1

    asyncio.run(main())


def test_resend_waits_for_the_late_response_instead_of_sending_twice() -> None:
    async def main() -> None:
        behaviour = Behaviour(late_first=1, late_delay=0.6)
        async with upstream(behaviour, response_timeout=0.2, late_window=5.0) as (
            driver,
            sink,
            smsc,
        ):
            first = await driver.send(record("m1"))
            assert not first.ok
            again = await driver.send(record("m1"))  # before the late answer came
            assert again.ok and again.upstream_id == smsc.records[0].upstream_id
            assert smsc.seen == 1
            assert sink.late == []  # the waiting send had it; nothing to record twice

    asyncio.run(main())


def test_permanent_error_and_unusable_message() -> None:
    async def main() -> None:
        behaviour = Behaviour(fail_destinations={"491510000009": 0x0B})
        async with upstream(behaviour) as (driver, _, _smsc):
            result = await driver.send(record("m1", "491510000009"))
            assert result == SendResult(False, error=0x0B, permanent=True)

    asyncio.run(main())
