"""`smsgw agent`: a host's modems as remote banks of gateways it reaches only through MQTT.

Theory of operation
-------------------
The agent runs the gateway's own `ModemBank` for each bank of its agent.yaml (the same
selection, limits, TPDUs and status-report matching; SIM usage in a local `SqliteStore`),
and speaks the topics of `drivers.remote` (read its docstring first) with a persistent
session (a fixed client id, QoS 1).

Idempotency. A send command's key (the message id) is written to the local SQLite table
`agent_commands` in state ``sending`` the moment a modem is picked for it, before AT+CMGS
(`ModemBank.before_send`: a command waiting for a free modem is not "sending" yet, so a
crash then loses nothing and costs no "unknown"), and its result after, in state ``done``;
both commits wait for the disk. So:

- a key ``done``: the stored result is sent again, nothing else (a repeated command);
- a key being sent by this process: the answer goes to the new asker too when it comes;
- a key ``sending`` with no send under way here: a process died between asking the modem and
  recording its answer. The SMS may or may not have left, so it is never sent again: the
  answer is ``unknown`` (kept ``done`` so), and the gateway settles the message UNKNOWN.
  At most once wins over at least once: a second copy of a one-time password or an order
  notice costs more than an honest "unknown" receipt.
- a temporary failure (no modem free, +CMS error) forgets the key: the bank's own retry
  rules say it was not sent, and the gateway's retry may send it then.

A command past its `deadline` (it waited at the broker while the agent was away) is dropped
unsent and not kept: the gateway stopped waiting for it and may have routed it elsewhere.

Receipts and MO go into the `agent_outbox` table (committed) before the bank's sink returns
- so a modem deletes a stored SMS only once it is safe here - then out on the ``up`` topic;
a row leaves the outbox when a gateway acknowledges it, and is sent again on every
(re)connection and every heartbeat until then.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import structlog

from drivers.base import SendResult, UpstreamReceipt
from drivers.modem.bank import ModemBank
from drivers.remote import (
    message_from_json,
    pdu_to_hex,
    result_to_json,
)
from gateway.app import Emulated, emulated_ports, start_emulated, stop_emulated
from gateway.config import AgentConfig
from gateway.store.base import MessageRecord, MessageState, NewMessage
from gateway.store.sqlite import SqliteStore
from gateway.telemetry.mqtt import MqttLink, MqttMessage, link_for

__all__ = ["Agent", "AgentState", "run_agent"]

log = structlog.get_logger("smsgw.agent")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS agent_commands (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL,          -- sending | done
    result TEXT,                  -- the result as sent to the gateway (JSON), when done
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS agent_upstream (
    upstream_id TEXT PRIMARY KEY,  -- a part's id as receipts name it (TP-MR recurs: the latest)
    key TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS agent_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: gateways tell repeats by it
    body TEXT NOT NULL,
    at REAL NOT NULL
);
"""
_KEEP_KEYS = 14 * 86_400.0  # longer than any gateway's max_age: a retry finds its key
_BATCH = 500  # outbox rows sent again at once


class AgentState:
    """The agent's durable state: idempotency keys and the outbox (see the module docstring).
    Small synchronous writes (a few per SMS, at a few SMS a second per modem)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a key is on disk before the modem sends
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def command(self, key: str) -> tuple[str, dict[str, Any] | None] | None:
        row = self.db.execute(
            "SELECT state, result FROM agent_commands WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        return str(row[0]), json.loads(row[1]) if row[1] else None

    def begin(self, key: str, now: float) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO agent_commands (key, state, at) VALUES (?, 'sending', ?)",
            (key, now),
        )

    def finish(self, key: str, result: dict[str, Any], now: float) -> None:
        ids = result.get("upstream_ids") or [result.get("upstream_id")]
        with self.db:  # one transaction
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT OR REPLACE INTO agent_commands (key, state, result, at)"
                " VALUES (?, 'done', ?, ?)",
                (key, json.dumps(result), now),
            )
            if result.get("status") == "sent":
                self.db.executemany(
                    "INSERT OR REPLACE INTO agent_upstream (upstream_id, key) VALUES (?, ?)",
                    [(str(i), key) for i in ids if i],
                )

    def sent_as(self, upstream_id: str) -> tuple[str, dict[str, Any]] | None:
        """The key and stored result of the latest send with this part id."""
        row = self.db.execute(
            "SELECT c.key, c.result FROM agent_upstream u JOIN agent_commands c ON c.key = u.key"
            " WHERE u.upstream_id = ?",
            (upstream_id,),
        ).fetchone()
        return (str(row[0]), json.loads(row[1])) if row is not None and row[1] else None

    def forget(self, key: str) -> None:
        self.db.execute("DELETE FROM agent_commands WHERE key = ?", (key,))

    def purge(self, before: float) -> None:
        self.db.execute("DELETE FROM agent_commands WHERE state = 'done' AND at < ?", (before,))
        self.db.execute(
            "DELETE FROM agent_upstream WHERE key NOT IN (SELECT key FROM agent_commands)"
        )

    def put(self, body: dict[str, Any], now: float) -> int:
        cursor = self.db.execute(
            "INSERT INTO agent_outbox (body, at) VALUES (?, ?)", (json.dumps(body), now)
        )
        return int(cursor.lastrowid or 0)

    def acked(self, ids: list[int]) -> None:
        self.db.executemany("DELETE FROM agent_outbox WHERE id = ?", [(i,) for i in ids])

    def unacked(self, older_than: float) -> list[tuple[int, dict[str, Any]]]:
        rows = self.db.execute(
            "SELECT id, body FROM agent_outbox WHERE at <= ? ORDER BY id LIMIT ?",
            (older_than, _BATCH),
        ).fetchall()
        return [(int(i), json.loads(body)) for i, body in rows]


class _Sink:
    """One bank's `ReceiptSink`: what comes back is kept in the outbox, then published."""

    def __init__(self, agent: Agent, bank: str) -> None:
        self.agent = agent
        self.bank = bank

    async def receipt(self, receipt: UpstreamReceipt) -> None:
        # With the send's key and result: a gateway that lost the result (it restarted)
        # records it first, so the receipt finds its message (see drivers.remote).
        sent = self.agent.state.sent_as(receipt.upstream_id)
        self.agent.up(
            {
                "kind": "receipt",
                "key": sent[0] if sent else None,
                "result": sent[1] if sent else None,
                "bank": self.bank,
                "upstream_id": receipt.upstream_id,
                "message_state": receipt.message_state,
                "error": receipt.error,
                "done_at": receipt.done_at,
                "raw": receipt.raw.decode("latin-1"),
                "intermediate": receipt.intermediate,
            }
        )

    async def inbound(self, pdu: Any) -> int | None:
        self.agent.up({"kind": "mo", "bank": self.bank, "pdu": pdu_to_hex(pdu)})
        return None

    async def late_result(self, upstream: str, message_id: str, result: SendResult) -> None:
        """The bank waits for its modems' answers: nothing comes late."""


class Agent:
    """The agent process's parts and their lifecycle (`run_agent` serves one until a signal)."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.name = config.name
        offline = json.dumps({"online": False, "agent": config.name}).encode()
        # node "agent/<name>": its topics are <prefix>/agent/<name>/..., as drivers.remote says
        self.link: MqttLink = link_for(
            config.mqtt,
            f"agent/{config.name}",
            client_id=f"smsgw-agent-{config.name}",  # a persistent session, unless configured
            will=(f"{config.mqtt.topic_prefix.strip('/')}/agent/{config.name}/status", offline),
        )
        self.store = SqliteStore(config.state)
        self.state = AgentState(config.state.with_name(config.state.name + ".agent"))
        self.banks = {
            name: ModemBank(name, bank_config, self.store)
            for name, bank_config in config.modem_banks.items()
        }
        self.emulated: dict[str, Emulated] = {}
        self._running: dict[str, set[str]] = {}  # key being sent -> nodes to answer
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.open()
        for name, config in self.config.modem_banks.items():
            if config.emulate:
                emulated = await asyncio.to_thread(start_emulated, name, config)
                self.emulated[name] = emulated
                self.banks[name].ports.update(emulated_ports(emulated))
        for name, bank in self.banks.items():
            bank.before_send = self._before_send
            await bank.start(_Sink(self, name))
        await self.link.subscribe(self.link.topic("cmd"), self._on_command)
        await self.link.subscribe(self.link.topic("ack"), self._on_ack)
        self.link.on_connect = self._connected
        self.link.start()
        self._loop_task = asyncio.get_running_loop().create_task(self._heartbeat())

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for bank in self.banks.values():
            await bank.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.link.publish(self.link.topic("status"), self._status(online=False), retain=True)
        await self.link.stop(flush=3.0)
        await self.store.close()
        self.state.close()
        for emulated in self.emulated.values():
            await asyncio.to_thread(stop_emulated, emulated)
        self.emulated.clear()

    def _status(self, *, online: bool = True) -> dict[str, Any]:
        return {
            "online": online,
            "agent": self.name,
            "at": time.time(),
            "heartbeat": self.config.heartbeat,
            "banks": {name: bank.state() for name, bank in self.banks.items()} if online else {},
        }

    def _connected(self) -> None:
        self.link.publish(self.link.topic("status"), self._status(), retain=True)
        self._resend(time.time())

    async def _heartbeat(self) -> None:
        """Status (retained) every heartbeat - every second while a modem is not ready yet,
        so gateways see modems come up - the outbox's unacknowledged rows, old keys purged."""
        last_purge = 0.0
        while True:
            now = time.time()
            self.link.publish(self.link.topic("status"), self._status(), retain=True)
            self._resend(now - self.config.heartbeat)
            if now - last_purge > 3600:
                self.state.purge(now - _KEEP_KEYS)
                last_purge = now
            starting = any(
                row["state"] != "READY" for bank in self.banks.values() for row in bank.state()
            )
            await asyncio.sleep(
                min(1.0, self.config.heartbeat) if starting else self.config.heartbeat
            )

    def _resend(self, older_than: float) -> None:
        if not self.link.connected.is_set():
            return  # the next connection sends them all
        for outbox_id, body in self.state.unacked(older_than):
            self.link.publish(self.link.topic("up"), {**body, "id": outbox_id})

    # -- up: receipts and MO ------------------------------------------------------------------

    def up(self, body: dict[str, Any]) -> None:
        outbox_id = self.state.put(body, time.time())  # durable first: the modem may delete it
        self.link.publish(self.link.topic("up"), {**body, "id": outbox_id})

    def _on_ack(self, message: MqttMessage) -> None:
        ids = message.json().get("ids", [])
        self.state.acked([int(i) for i in ids])

    # -- commands -----------------------------------------------------------------------------

    def _on_command(self, message: MqttMessage) -> None:
        try:
            command = message.json()
        except ValueError:
            log.warning("command not JSON: dropped", topic=message.topic)
            return
        if not isinstance(command, dict):
            return
        if command.get("op") == "send":
            self._send_command(command)
        elif command.get("op") == "ussd":
            self._spawn(self._ussd(command))

    def _reply(self, node: str, reply: dict[str, Any]) -> None:
        self.link.publish(self.link.topic("reply", node), reply)

    def _send_command(self, command: dict[str, Any]) -> None:
        key, bank_name = str(command.get("key", "")), str(command.get("bank", ""))
        reply_to = str(command.get("reply_to", ""))
        base = {"op": "send", "key": key, "bank": bank_name}
        bank = self.banks.get(bank_name)
        if not key or bank is None:
            log.error("send command for no bank of ours", bank=bank_name, key=key)
            self._reply(reply_to, {**base, "status": "failed", "error": 0x08, "permanent": True})
            return
        waiting = self._running.get(key)
        if waiting is not None:  # a repeat of a command under way: it answers both
            waiting.add(reply_to)
            return
        known = self.state.command(key)
        now = time.time()
        if known is not None:
            state, result = known
            if state == "sending":
                # Left by a process that died mid-send: it may have gone, so never again.
                log.warning("send interrupted by a restart: outcome unknown", key=key)
                result = {"status": "unknown"}
                self.state.finish(key, result, now)
            self._reply(reply_to, {**base, **(result or {"status": "unknown"})})
            return
        if float(command.get("deadline", now)) < now:
            log.warning("send command came after its deadline: dropped", key=key)
            self._reply(reply_to, {**base, "status": "expired"})
            return
        message = message_from_json(command["message"])
        record = MessageRecord(message, MessageState.DISPATCHING, now, 0, None)
        self._running[key] = {reply_to}
        self._spawn(self._send(bank, key, base, record))

    def _before_send(self, message: NewMessage) -> None:
        if message.id in self._running:  # on disk before AT+CMGS (see the module docstring)
            self.state.begin(message.id, time.time())

    async def _send(
        self, bank: ModemBank, key: str, base: dict[str, Any], record: MessageRecord
    ) -> None:
        try:
            result = await bank.send(record)
        except Exception:  # a bank bug: not sent as far as we know, the gateway retries
            log.exception("send failed", key=key)
            result = SendResult(False, error=0x08)
        data = result_to_json(result)
        if result.ok or result.permanent:
            self.state.finish(key, data, time.time())
        else:
            self.state.forget(key)  # not sent: a retry may send it
        for node in self._running.pop(key, set()):
            self._reply(node, {**base, **data})

    async def _ussd(self, command: dict[str, Any]) -> None:
        bank_name = str(command.get("bank", ""))
        reply = {"op": "ussd", "corr": command.get("corr"), "bank": bank_name}
        bank = self.banks.get(bank_name)
        try:
            if bank is None:
                raise KeyError(bank_name)
            answer = await bank.ussd(
                str(command.get("modem", "")),
                str(command.get("code", "")),
                float(command.get("timeout", 30.0)),
            )
        except KeyError as exc:
            reply |= {"ok": False, "error": f"no such modem or bank: {exc}"}
        except Exception as exc:  # the modem's error goes back to the operator who asked
            reply |= {"ok": False, "error": str(exc) or type(exc).__name__}
        else:
            reply |= {"ok": True, "answer": answer}
        self._reply(str(command.get("reply_to", "")), reply)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def run_agent(config: AgentConfig) -> None:
    """Serve until SIGTERM or SIGINT, then stop cleanly (offline status published)."""
    agent = Agent(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await agent.start()
    log.info("agent started", agent=config.name, banks=list(agent.banks))
    await stop.wait()
    log.info("agent stopping")
    await agent.stop()
