"""`RemoteBank` against a link that records what it publishes: availability from the agent's
status, results matched by key, an interrupted send settled UNKNOWN, a late result handed on,
receipts and MO acknowledged only once taken (an MO taken once however often it comes)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiomqtt
import pytest

from drivers.base import SendResult, UpstreamReceipt
from drivers.remote import RemoteBank, message_from_json, message_to_json, pdu_to_hex
from gateway.config import RemoteBankConfig
from gateway.smpp.pdu import DeliverSm
from gateway.store.base import MessageRecord, MessageState, NewMessage, state_of_smpp
from gateway.telemetry.mqtt import MqttLink, MqttMessage


class FakeLink(MqttLink):
    def __init__(self) -> None:
        super().__init__("mqtt://127.0.0.1:1", node="gw1")
        self.out: list[tuple[str, Any]] = []
        self.connected.set()

    def publish(self, topic: str, payload: Any, *, qos: int = 1, retain: bool = False) -> bool:
        self.out.append((topic, payload))
        return True

    async def deliver(self, topic: str, payload: Any) -> None:
        message = MqttMessage(topic, json.dumps(payload).encode())
        for topic_filter, (_, handlers) in self._subscriptions.items():
            if aiomqtt.Topic(topic).matches(topic_filter):  # as the link matches ($share too)
                for handler in handlers:
                    result = handler(message)
                    if result is not None:
                        await result


class Sink:
    def __init__(self) -> None:
        self.receipts: list[UpstreamReceipt] = []
        self.mo: list[Any] = []
        self.late: list[tuple[str, str, SendResult]] = []

    async def receipt(self, receipt: UpstreamReceipt) -> None:
        self.receipts.append(receipt)

    async def inbound(self, pdu: Any) -> int | None:
        self.mo.append(pdu)
        return None

    async def late_result(self, upstream: str, message_id: str, result: SendResult) -> None:
        self.late.append((upstream, message_id, result))


STATUS = "smsgw/agent/a1/status"
READY = {"online": True, "banks": {"rb": [{"name": "m1", "state": "READY"}]}}


def record(message_id: str) -> MessageRecord:
    message = NewMessage(message_id, "shop", "Shop", "4915112345678", b"hi", tlvs=b"\x00\x01")
    return MessageRecord(message, MessageState.DISPATCHING, 0.0, 0, None)


async def started(timeout: float = 5.0) -> tuple[RemoteBank, FakeLink, Sink]:
    link, sink = FakeLink(), Sink()
    bank = RemoteBank("rb", RemoteBankConfig(agent="a1", timeout=timeout), link)
    await bank.start(sink)
    return bank, link, sink


def test_the_message_survives_the_wire() -> None:
    message = record("m1").message
    assert message_from_json(message_to_json(message)) == message


def test_usable_only_while_the_agent_says_it_is_up_with_a_ready_modem() -> None:
    async def main() -> None:
        bank, link, _ = await started()
        assert not bank.usable()  # nothing heard yet
        await link.deliver(STATUS, READY)
        assert bank.usable()
        assert bank.state()[0]["bank"] == "rb"
        await link.deliver(STATUS, {"online": False, "agent": "a1"})  # its last will
        assert not bank.usable()
        await link.deliver(STATUS, {"online": True, "banks": {"rb": [{"state": "REGISTERING"}]}})
        assert not bank.usable()
        await link.deliver(STATUS, READY)
        bank._status_at = time.monotonic() - 3600  # silent for an hour: offline
        assert not bank.usable()
        assert bank.state()[0]["state"] == "OFFLINE"

    asyncio.run(main())


def test_send_result_by_key_and_unknown_settled_by_a_receipt_of_our_own() -> None:
    async def main() -> None:
        bank, link, sink = await started()
        await link.deliver(STATUS, READY)
        sending = asyncio.ensure_future(bank.send(record("m1")))
        await asyncio.sleep(0)
        topic, command = link.out[-1]
        assert topic == "smsgw/agent/a1/cmd" and command["key"] == "m1"
        assert command["reply_to"] == "gw1" and command["deadline"] > time.time()
        reply = {"op": "send", "key": "m1", "bank": "rb", "status": "sent", "upstream_id": "x/1"}
        await link.deliver("smsgw/agent/a1/reply/gw1", reply)
        assert await sending == SendResult(True, "x/1")

        sending = asyncio.ensure_future(bank.send(record("m2")))
        await asyncio.sleep(0)
        await link.deliver(
            "smsgw/agent/a1/reply/gw1",
            {"op": "send", "key": "m2", "bank": "rb", "status": "unknown"},
        )
        result = await sending
        assert result.ok and result.upstream_id == "unknown/m2"
        for _ in range(10):
            await asyncio.sleep(0)
        (receipt,) = sink.receipts
        assert receipt.upstream_id == "unknown/m2"
        assert state_of_smpp(receipt.message_state) is MessageState.UNKNOWN

    asyncio.run(main())


def test_no_answer_in_time_is_a_temporary_failure_and_a_late_one_is_handed_on() -> None:
    async def main() -> None:
        bank, link, sink = await started(timeout=0.05)
        await link.deliver(STATUS, READY)
        result = await bank.send(record("m3"))
        assert not result.ok and not result.permanent
        reply = {"op": "send", "key": "m3", "bank": "rb", "status": "sent", "upstream_id": "y"}
        await link.deliver("smsgw/agent/a1/reply/gw1", reply)
        for _ in range(10):
            await asyncio.sleep(0)
        assert sink.late == [("bank:rb", "m3", SendResult(True, "y"))]

    asyncio.run(main())


def test_receipts_and_mo_are_acknowledged_once_taken_and_an_mo_is_taken_once() -> None:
    async def main() -> None:
        _bank, link, sink = await started()
        mo = {"kind": "mo", "id": 7, "bank": "rb", "pdu": pdu_to_hex(DeliverSm(source_addr="1"))}
        receipt = {
            "kind": "receipt",
            "id": 8,
            "bank": "rb",
            "upstream_id": "x/1",
            "message_state": 2,
        }
        for item in (mo, mo, receipt, {**mo, "bank": "other"}):
            await link.deliver("smsgw/agent/a1/up", item)
            for _ in range(10):
                await asyncio.sleep(0)
        assert len(sink.mo) == 1 and sink.mo[0].source_addr == "1"
        assert [r.upstream_id for r in sink.receipts] == ["x/1"]
        acks = [payload["ids"] for topic, payload in link.out if topic.endswith("/ack")]
        assert acks == [[7], [7], [8]]  # the repeat acknowledged again, the other bank's not

    asyncio.run(main())


@pytest.mark.parametrize("answer", [{"ok": True, "answer": "12 EUR"}, {"ok": False, "error": "no"}])
def test_ussd_is_a_request_and_its_answer(answer: dict[str, Any]) -> None:
    async def main() -> None:
        bank, link, _ = await started()
        await link.deliver(STATUS, READY)
        with pytest.raises(KeyError):
            await bank.ussd("m9", "*100#")
        asking = asyncio.ensure_future(bank.ussd("m1", "*100#", timeout=5))
        await asyncio.sleep(0)
        corr = link.out[-1][1]["corr"]
        reply = {"op": "ussd", "corr": corr, "bank": "rb", **answer}
        await link.deliver("smsgw/agent/a1/reply/gw1", reply)
        if answer["ok"]:
            assert await asking == "12 EUR"
        else:
            with pytest.raises(RuntimeError, match="no"):
                await asking

    asyncio.run(main())
