"""A modem bank on another host, driven by its agent (`smsgw agent`) over MQTT: `RemoteBank`.

Theory of operation
-------------------
Topics, under the broker link's prefix (``smsgw`` by default), for agent A:

    <prefix>/agent/A/status        agent -> all   retained; the LWT sets it offline
    <prefix>/agent/A/cmd           gateway -> A   send and ussd commands
    <prefix>/agent/A/reply/<node>  A -> gateway   send results, ussd answers, to the asking node
    <prefix>/agent/A/up            A -> gateways  receipts and MO, each with an outbox id
    <prefix>/agent/A/ack           gateway -> A   outbox ids the gateway has kept durably

Everything is QoS 1 and both ends keep a persistent session (a fixed client id), so what is
published while one end is away waits at the broker. QoS 1 is at least once, so every
message may come twice, and both ends make that harmless:

- A send command carries an idempotency key, the message id. The agent keeps the key
  durably and sends a key once; a repeated command gets the stored result again (see
  `gateway.agent`). So the dispatcher may retry freely - after a timeout here or after a
  gateway restart (`Store.requeue_interrupted` puts the message back, the same key goes
  out again) - and the network still gets the message at most once.
- A command also carries `deadline`: an agent that gets it later (it was away, the
  broker held it) drops it unsent, so a message this gateway gave up waiting for and
  routed elsewhere is not sent by the agent as well. That needs the two clocks within
  `timeout - start_within` of each other (NTP).
- A receipt or MO is taken (the dispatcher's `receipt` / `inbound`, durable when they
  return), then acknowledged; the agent sends it again until then. A receipt taken twice
  is kept twice but ends its message once; an MO is recognised by its outbox id (the last
  `_SEEN_MO` in memory) and handed on once - after a gateway restart in the instant
  between taking an MO and its ack reaching the agent, the application could get it twice.

A receipt carries its send's key and result: after a gateway restart the receipts queued at
the broker come before the requeued messages are sent again, so a result not seen here is
recorded first (`late_result`), or the receipt would find no message.

A result "unknown" (the agent was killed between asking the modem to send and recording
what it said) cannot be retried without risking a second send: the message is recorded
sent and settled UNKNOWN by a receipt of our own, so its application hears the truth.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import structlog

from drivers.base import ReceiptSink, SendResult, UpstreamReceipt
from gateway.config import RemoteBankConfig
from gateway.smpp.codec import decode_pdu, encode_pdu
from gateway.smpp.constants import CommandStatus
from gateway.store.base import MessageRecord, MessageState, NewMessage
from gateway.telemetry.mqtt import MqttLink, MqttMessage

__all__ = [
    "RemoteBank",
    "agent_topic",
    "message_from_json",
    "message_to_json",
    "pdu_from_hex",
    "pdu_to_hex",
    "result_from_json",
    "result_to_json",
]

log = structlog.get_logger("smsgw.remote")

_SYSERR = int(CommandStatus.ESME_RSYSERR)
_SEEN_MO = 100_000  # outbox ids of MO remembered, so one sent twice is handed on once
_BYTES = ("short_message", "tlvs")


def agent_topic(link: MqttLink, agent: str, *parts: str) -> str:
    return link.topic_of(f"agent/{agent}", *parts)


# -- the wire: JSON both ends read ----------------------------------------------------------------


def message_to_json(message: NewMessage) -> dict[str, Any]:
    data = message._asdict()
    for name in _BYTES:
        data[name] = data[name].hex()
    return data


def message_from_json(data: dict[str, Any]) -> NewMessage:
    fields = {k: v for k, v in data.items() if k in NewMessage._fields}
    for name in _BYTES:
        fields[name] = bytes.fromhex(fields.get(name, ""))
    return NewMessage(**fields)


def result_to_json(result: SendResult) -> dict[str, Any]:
    return {
        "status": "sent" if result.ok else "failed",
        "upstream_id": result.upstream_id,
        "upstream_ids": list(result.upstream_ids),
        "error": result.error,
        "permanent": result.permanent,
    }


def result_from_json(data: dict[str, Any]) -> SendResult:
    return SendResult(
        data.get("status") == "sent",
        str(data.get("upstream_id", "")),
        error=int(data.get("error", 0)),
        permanent=bool(data.get("permanent", False)),
        upstream_ids=tuple(str(i) for i in data.get("upstream_ids", ())),
    )


def pdu_to_hex(pdu: Any) -> str:
    return encode_pdu(pdu).hex()


def pdu_from_hex(text: str) -> Any:
    return decode_pdu(bytes.fromhex(text))


# -- the gateway's side ---------------------------------------------------------------------------


class RemoteBank:
    """An agent's modem bank as a route target (``bank:<name>``); see the module docstring.

    Args:
        name: the bank's name in the gateway's configuration.
        config: its `remote:` section.
        link: the gateway's broker link (a fixed client id keeps results sent while away).
        clock: wall-clock seconds (command deadlines).
    """

    def __init__(
        self,
        name: str,
        config: RemoteBankConfig,
        link: MqttLink,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bank = name
        self.name = f"bank:{name}"
        self.config = config
        self.agent = config.agent
        self.remote_bank = config.bank or name
        self.link = link
        self.clock = clock
        self._sink: ReceiptSink | None = None
        self._waiting: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        self._status: dict[str, Any] = {}
        self._status_at: float | None = None  # monotonic, when the last status came
        self._seen_mo: OrderedDict[int, None] = OrderedDict()
        self._taking: set[int] = set()
        self._replied: OrderedDict[str, None] = OrderedDict()  # keys whose result came here
        self._tasks: set[asyncio.Task[None]] = set()

    def _topic(self, *parts: str) -> str:
        return agent_topic(self.link, self.agent, *parts)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, sink: ReceiptSink) -> None:
        self._sink = sink
        await self.link.subscribe(self._topic("status"), self._on_status)
        await self.link.subscribe(self._topic("reply", self.link.node), self._on_reply)
        # Shared among the gateway nodes (MQTT 5 / Mosquitto's $share): each receipt or MO of
        # the agent goes to one node, which keeps it and acks it, not to every node.
        group = f"{self.link.prefix}-{self.agent}".replace("/", "-")
        await self.link.subscribe(f"$share/{group}/{self._topic('up')}", self._on_up)

    async def stop(self) -> None:
        self._sink = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for futures in self._waiting.values():
            for future in futures:
                if not future.done():
                    future.cancel()
        self._waiting.clear()

    # -- availability -------------------------------------------------------------------------

    def online(self) -> bool:
        """The agent said it is up, recently enough (its LWT or silence say otherwise)."""
        if not self._status.get("online") or self._status_at is None:
            return False
        return time.monotonic() - self._status_at <= self.config.offline_after

    def _modems(self) -> list[dict[str, Any]]:
        rows = self._status.get("banks", {}).get(self.remote_bank, [])
        return rows if isinstance(rows, list) else []

    def usable(self) -> bool:
        """Online, with a modem of the bank ready: otherwise the dispatcher skips the bank
        (the message waits, or goes by the route's next target)."""
        return (
            self.link.connected.is_set()
            and self.online()
            and any(row.get("state") == "READY" for row in self._modems())
        )

    # -- sending ------------------------------------------------------------------------------

    async def send(self, record: MessageRecord) -> SendResult:
        message = record.message
        if not self.usable():
            return SendResult(False, error=_SYSERR)
        key = message.id
        command = {
            "op": "send",
            "key": key,
            "bank": self.remote_bank,
            "reply_to": self.link.node,
            "deadline": self.clock() + self.config.start_within,
            "message": message_to_json(message),
        }
        reply = await self._ask(key, command, self.config.timeout)
        if reply is None:
            # No answer in time: retried later with the same key, so the agent sends it at
            # most once; an answer that comes meanwhile is recorded through late_result.
            log.warning("no result from the agent in time", agent=self.agent, message_id=key)
            return SendResult(False, error=_SYSERR)
        return self._result(key, reply)

    def _result(self, key: str, reply: dict[str, Any]) -> SendResult:
        status = reply.get("status")
        if status == "unknown":
            upstream_id = f"unknown/{key}"
            self._spawn(self._settle_unknown(upstream_id))
            return SendResult(True, upstream_id)
        if status == "expired":  # not sent, not kept: a new command may send it
            return SendResult(False, error=_SYSERR)
        return result_from_json(reply)

    async def _settle_unknown(self, upstream_id: str) -> None:
        sink = self._sink
        if sink is not None:
            await sink.receipt(
                UpstreamReceipt(
                    self.name,
                    upstream_id,
                    MessageState.UNKNOWN.message_state,
                    done_at=self.clock(),
                    raw=f"agent {self.agent}: send interrupted, outcome unknown".encode(),
                )
            )

    async def _ask(
        self, key: str, command: dict[str, Any], timeout: float
    ) -> dict[str, Any] | None:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        self.link.publish(self._topic("cmd"), command)
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            return None
        finally:
            futures = self._waiting.get(key, [])
            if future in futures:
                futures.remove(future)
            if not futures:
                self._waiting.pop(key, None)

    # -- USSD and state -----------------------------------------------------------------------

    async def ussd(self, modem: str, code: str, timeout: float = 30.0) -> str:
        """USSD through one of the agent's modems.

        Raises:
            KeyError: no such modem in the bank (as the agent last said).
            TimeoutError: no answer within `timeout` (plus a few seconds for the trip).
            RuntimeError: the agent could not (its error).
        """
        if self._status and not any(row.get("name") == modem for row in self._modems()):
            raise KeyError(modem)
        corr = uuid.uuid4().hex
        command = {
            "op": "ussd",
            "corr": corr,
            "bank": self.remote_bank,
            "modem": modem,
            "code": code,
            "timeout": timeout,
            "reply_to": self.link.node,
        }
        reply = await self._ask(f"ussd:{corr}", command, timeout + 5.0)
        if reply is None:
            raise TimeoutError(f"no USSD answer from agent {self.agent} within {timeout:g} s")
        if not reply.get("ok"):
            raise RuntimeError(str(reply.get("error", "failed")))
        return str(reply.get("answer", ""))

    def state(self) -> list[dict[str, Any]]:
        """The agent's modems as its last status gave them, for `smsgw modem list`."""
        online = self.online()
        rows = []
        for row in self._modems():
            rows.append(
                {
                    **row,
                    "bank": self.bank,
                    "agent": self.agent,
                    "state": row.get("state") if online else "OFFLINE",
                }
            )
        return rows

    # -- from the agent -----------------------------------------------------------------------

    def _on_status(self, message: MqttMessage) -> None:
        try:
            status = message.json()
        except ValueError:
            return
        if isinstance(status, dict):
            was = self.online()
            self._status = status
            self._status_at = time.monotonic()
            if was != self.online():
                log.info("agent status", agent=self.agent, online=self.online())

    def _on_reply(self, message: MqttMessage) -> None:
        reply = message.json()
        if not isinstance(reply, dict):
            return
        key = str(reply.get("key") or f"ussd:{reply.get('corr', '')}")
        futures = self._waiting.get(key)
        self._replied[key] = None
        while len(self._replied) > _SEEN_MO:
            self._replied.popitem(last=False)
        if futures:
            for future in futures:
                if not future.done():
                    future.set_result(reply)
            return
        if reply.get("bank") != self.remote_bank:
            return  # another bank's, of the same agent
        if reply.get("op") == "send" and self._sink is not None and reply.get("key"):
            # The send had given up waiting (or the gateway restarted): if the agent sent it
            # after all, record that rather than send it again.
            result = self._result(str(reply["key"]), reply)
            self._spawn(self._sink.late_result(self.name, str(reply["key"]), result))

    def _on_up(self, message: MqttMessage) -> None:
        item = message.json()
        if self._sink is None or not isinstance(item, dict) or item.get("bank") != self.remote_bank:
            return
        # Not awaited in the link's handler: the dispatcher may hold a receipt until the
        # sends under way are recorded, and their results come through that same handler.
        self._spawn(self._take(item))

    async def _take(self, item: dict[str, Any]) -> None:
        sink = self._sink
        if sink is None:
            return
        kind, outbox_id = item.get("kind"), int(item.get("id", 0))
        if kind == "receipt":
            key, result = item.get("key"), item.get("result")
            if key and isinstance(result, dict) and key not in self._replied:
                # Its send's result may never have reached us (we restarted while the agent
                # sent it, and the message waits requeued): recorded first, as a late one,
                # or the receipt would find no message and be kept as unknown.
                await sink.late_result(self.name, str(key), self._result(str(key), result))
            await sink.receipt(
                UpstreamReceipt(
                    self.name,
                    str(item["upstream_id"]),
                    int(item["message_state"]),
                    error=int(item.get("error", 0)),
                    done_at=float(item.get("done_at", 0.0)),
                    raw=str(item.get("raw", "")).encode("latin-1"),
                    intermediate=bool(item.get("intermediate", False)),
                )
            )
        elif kind == "mo":
            if outbox_id in self._seen_mo:
                pass  # taken already: only the ack was lost
            elif outbox_id in self._taking:
                return  # a copy is being taken now: its ack will go
            else:
                self._taking.add(outbox_id)
                try:
                    # Raises when it could not be kept now: no ack, so it comes again.
                    await sink.inbound(pdu_from_hex(str(item["pdu"])))
                finally:
                    self._taking.discard(outbox_id)
                self._seen_mo[outbox_id] = None
                while len(self._seen_mo) > _SEEN_MO:
                    self._seen_mo.popitem(last=False)
        else:
            return
        self.link.publish(self._topic("ack"), {"ids": [outbox_id]})

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
