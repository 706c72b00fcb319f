"""A remote modem bank end to end: a gateway (in this process, on a loop thread) whose bank
`rb` is driven by `smsgw agent` - a subprocess with two emulated modems - through a real
Mosquitto; smpplib is the application.

What reached the network is read from the emulated network's journal (`sent.jsonl`, one
line per message, written with one write(2) each so a kill -9 loses none); MO are asked
for by dropping files in the same folder. Every text is unique, so a text twice in the
journal is a message sent twice. Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from gateway.app import Gateway
from gateway.config import load_config
from gateway.smpp.receipt import parse_receipt
from gateway.sms import Encoding, decode_text
from tests.broker import Broker
from tests.integration.loop import LoopThread
from tests.integration.test_modem_bank import App

ROOT = Path(__file__).resolve().parents[2]

GATEWAY = """
listen: {{host: 127.0.0.1, port: 0}}
accounts: [{{system_id: shop, password: secret}}]
mqtt: {{url: "{url}", client_id: gw-test, node: gw1}}
modem_banks:
  rb: {{remote: {{agent: a1, timeout: 8, start_within: 5, offline_after: 5}}}}
routes: [{{name: all, targets: ["bank:rb"]}}]
mo_routes: [{{account: shop, prefixes: ["49151"]}}]
dispatch: {{retry_backoff: 0.2, max_retry_backoff: 1.0, max_attempts: 50}}
store: {{path: "{db}"}}
control_socket: "{sock}"
"""

AGENT = """
name: a1
mqtt: {{url: "{url}"}}
heartbeat: 1
state: "{state}"
modem_banks:
  rb:
    emulate: 2
    emulator: {{report_delay: 0.2, journal: "{journal}"}}
    modems:
      - {{name: m1, number: "+4915100000001"}}
      - {{name: m2, number: "+4915100000002"}}
"""


class AgentProcess:
    """`python -m gateway.cli agent -c agent.yaml`, its output kept in a file."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "agent", "-c", str(self.config)],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.terminate()
        return self.proc.wait(30)


class GatewayOnLoop(LoopThread):
    def __init__(self, config: Path) -> None:
        super().__init__()
        self.gateway = Gateway(load_config(config))
        self.gateway.dispatcher.poll_interval = 0.05
        self.port: int = self.call(self.gateway.start("127.0.0.1", 0))
        self.bank = self.gateway.remote_banks["rb"]

    def ask(self, fn: Any) -> Any:
        async def read() -> Any:
            return fn()

        return self.call(read())

    def close(self) -> None:
        self.call(self.gateway.stop(), timeout=60)
        self.stop_loop()

    def freeze(self) -> None:
        """Die as a kill -9 would leave it: the loop stops where it is, nothing is stopped
        cleanly, nothing of it runs again (its broker session is taken over by the next)."""
        self.stop_loop()


def until(check: Any, timeout: float, what: str, app: App | None = None) -> None:
    """Poll `check` (reading the app's socket meanwhile, if given) until true or deadline."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        if app is not None:
            app.c.read_once()
        else:
            time.sleep(0.05)


def journal(folder: Path) -> list[dict[str, Any]]:
    path = folder / "sent.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ask_mo(folder: Path, modem: str, sender: str, text: str, n: int) -> None:
    tmp = folder / f".mo-{n}.tmp"
    tmp.write_text(json.dumps({"modem": modem, "sender": sender, "text": text}))
    tmp.replace(folder / f"mo-{n:04}.json")  # whole or not at all: the network reads it


class Traffic:
    """The app's side: each MT sent alone and acked before the next, so id i is text i."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.apps = [app]  # a gateway restart binds a new one: what each received counts
        self.texts: dict[str, str] = {}  # our message id -> its text

    def send(self, count: int, tag: str) -> None:
        for i in range(count):
            text = f"order {tag}-{i} shipped"
            before = len(self.app.acks)
            assert self.app.submit("4915112345678", text) == 1
            until(lambda b=before: len(self.app.acks) > b, 15, "submit_sm_resp", self.app)
            ack = self.app.acks[-1]
            assert ack.status == 0
            self.texts[ack.message_id.decode()] = text

    def receipts(self) -> dict[str, bytes]:
        out = {}
        for pdu in (p for app in self.apps for p in app.received):
            if pdu.esm_class & 0x04:
                out[parse_receipt(pdu.short_message).message_id] = pdu.short_message
        return out

    def mo_texts(self) -> list[str]:
        return [
            decode_text(p.short_message, Encoding.GSM7)
            for app in self.apps
            for p in app.received
            if not p.esm_class & 0x04
        ]


def test_remote_bank_through_broker_restart_and_agent_kill(
    tmp_path: Path, mqtt_broker: Broker
) -> None:
    net = tmp_path / "net"
    agent_yaml = tmp_path / "agent.yaml"
    agent_yaml.write_text(
        AGENT.format(url=mqtt_broker.url, state=tmp_path / "agent.sqlite3", journal=net)
    )
    gateway_yaml = tmp_path / "gateway.yaml"
    gateway_yaml.write_text(
        GATEWAY.format(url=mqtt_broker.url, db=tmp_path / "gw.sqlite3", sock=tmp_path / "s.sock")
    )
    agent = AgentProcess(agent_yaml, tmp_path / "agent.log")
    agent.start()
    gw = GatewayOnLoop(gateway_yaml)
    app: App | None = None
    try:
        until(lambda: gw.ask(gw.bank.usable), 60, "the remote bank usable (agent's modems ready)")
        rows = gw.ask(gw.gateway.modems)
        assert sorted(r["name"] for r in rows) == ["m1", "m2"]
        assert {r["bank"] for r in rows} == {"rb"} and {r["agent"] for r in rows} == {"a1"}
        # USSD: a request/response over MQTT, answered by the agent's emulated network.
        answer = gw.call(gw.gateway.ussd("rb", "m1", "*100#", 10), timeout=20)
        assert "balance" in answer
        # ... and the commands an operator types, through the control socket.
        cli = [sys.executable, "-m", "gateway.cli", "modem"]
        sock = ["--socket", str(tmp_path / "s.sock")]
        listed = subprocess.run(
            [*cli, "list", "--json", *sock],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            check=False,
        )
        assert listed.returncode == 0, listed.stderr
        assert [(r["bank"], r["name"], r["state"]) for r in json.loads(listed.stdout)] == [
            ("rb", "m1", "READY"),
            ("rb", "m2", "READY"),
        ]
        ussd = subprocess.run(
            [*cli, "ussd", "rb/m2", "*100#", *sock],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert ussd.returncode == 0 and "balance" in ussd.stdout, ussd.stderr
        table = subprocess.run(
            [*cli, "list", *sock], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
        )
        assert table.returncode == 0 and "m2" in table.stdout, table.stderr

        app = App(gw.port)
        traffic = Traffic(app)
        mo_sent: list[str] = []

        def mo(n: int) -> None:
            text = f"please cancel order {n}"
            ask_mo(net, f"m{1 + n % 2}", "+4917612345678", text, n)
            mo_sent.append(text)

        # 1. Plain traffic both ways.
        traffic.send(6, "a")
        mo(1)
        mo(2)
        until(lambda: len(traffic.receipts()) >= 6, 60, "receipts of phase 1", app)
        until(lambda: len(traffic.mo_texts()) >= 2, 60, "MO of phase 1", app)

        # 2. The broker restarts with traffic under way (sessions and QoS 1 kept on disk).
        traffic.send(6, "b")
        mo(3)
        mqtt_broker.restart()
        mo(4)
        traffic.send(4, "c")

        # 3. The agent is killed (-9) mid-traffic, then started again.
        sent_before = len(journal(net))
        traffic.send(8, "d")
        until(lambda: len(journal(net)) > sent_before, 30, "phase 3 traffic at the network", app)
        agent.kill9()
        before_kill = {line["text"] for line in journal(net)}
        mo(5)  # asked while the agent is dead: the network picks it up when it is back
        agent.start()
        mo(6)

        # 4. The gateway dies with sends under way (MO all in first: an unanswered deliver_sm
        # is SMPP's to repeat, not what this checks) and starts again on the same store: the
        # interrupted messages are requeued and go out again with the same keys, and the
        # agent answers them from its table (or its send under way) instead of sending again.
        until(lambda: len(traffic.mo_texts()) >= len(mo_sent), 60, "MO before the restart", app)

        def mo_queued() -> int:  # deliver_sm the gateway has not seen answered yet
            with sqlite3.connect(tmp_path / "gw.sqlite3") as db:
                return int(
                    db.execute("SELECT count(*) FROM deliveries WHERE kind = 'mo'").fetchone()[0]
                )

        until(lambda: mo_queued() == 0, 30, "the MO deliver_sm_resp seen by the gateway", app)
        traffic.send(6, "e")
        gw.freeze()
        with contextlib.suppress(Exception):
            app.c.disconnect()
        gw = GatewayOnLoop(gateway_yaml)
        app = App(gw.port)
        traffic.app = app
        traffic.apps.append(app)
        mo(7)

        # No loss: every acked MT ends with a final receipt, or reached the network before the
        # kill and was recorded sent (its status report was still in the emulated network -
        # which lives in the agent's process - when the kill took it; a real SMSC reports it
        # again, and else the receipt timeout settles it UNKNOWN).
        def settled() -> bool:
            receipts = traffic.receipts()
            return all(
                message_id in receipts
                or (
                    text in before_kill
                    and gw.call(gw.gateway.store.get(message_id)).state.value == "sent"
                )
                for message_id, text in traffic.texts.items()
            )

        until(settled, 120, "every acked message with a final receipt or sent", app)
        until(lambda: len(traffic.mo_texts()) >= len(mo_sent), 60, "every MO", app)
        assert sorted(traffic.mo_texts()) == sorted(mo_sent)  # each once

        # No double send: every text reached the network at most once.
        reached = Counter(line["text"] for line in journal(net))
        assert max(reached.values()) == 1, [t for t, n in reached.items() if n > 1]
        receipts = traffic.receipts()
        unsettled = 0
        for message_id, text in traffic.texts.items():
            receipt = receipts.get(message_id)
            if receipt is None:
                unsettled += 1
                assert text in before_kill and reached[text] == 1
            elif b"stat:DELIVRD" in receipt:
                assert reached[text] == 1, f"{message_id} delivered but never sent"
            else:
                # Only a send the kill interrupted may end otherwise: UNKNOWN, never lost.
                assert b"stat:UNKNOWN" in receipt, receipt
        # What reached the network after the kill was all reported; what never reached it
        # can only be a send the kill interrupted between "sending" and the modem's answer,
        # answered UNKNOWN (maybe sent, never sent again) - here, never sent.
        wrong = {
            i: (t, reached[t], receipts[i][-40:])
            for i, t in traffic.texts.items()
            if t not in before_kill
            and b"stat:DELIVRD" not in receipts[i]
            and not (reached[t] == 0 and b"stat:UNKNOWN" in receipts[i])
        }
        assert not wrong, wrong
        # The idempotency keys: every message id the agent was asked for, kept.
        with sqlite3.connect(tmp_path / "agent.sqlite3.agent") as db:
            keys = dict(db.execute("SELECT key, state FROM agent_commands").fetchall())
        assert set(traffic.texts) <= set(keys)
        assert set(keys.values()) == {"done"}
    finally:
        if app is not None:
            app.close()
        gw.close()
        assert agent.stop() in (0, None), (tmp_path / "agent.log").read_text()[-3000:]


def test_agent_sends_a_key_once_and_never_resends_one_a_crash_left_sending(
    tmp_path: Path, mqtt_broker: Broker
) -> None:
    """The agent alone, commanded over MQTT as a gateway would: the same command three times
    is sent once (a copy that comes during the send shares its answer, a later one gets the
    stored result); a key a dead process left in
    "sending" is answered "unknown" and never sent; a command past its deadline is not sent."""
    from drivers.remote import message_to_json  # noqa: PLC0415
    from gateway.agent import AgentState  # noqa: PLC0415
    from gateway.store.base import NewMessage  # noqa: PLC0415
    from gateway.telemetry.mqtt import MqttLink  # noqa: PLC0415

    net = tmp_path / "net"
    state = tmp_path / "agent.sqlite3"
    crashed = AgentState(state.with_name(state.name + ".agent"))  # as a killed agent left it
    crashed.begin("k-crashed", time.time())
    crashed.close()
    (tmp_path / "agent.yaml").write_text(
        AGENT.format(url=mqtt_broker.url, state=state, journal=net)
    )
    agent = AgentProcess(tmp_path / "agent.yaml", tmp_path / "agent.log")
    agent.start()

    def command(key: str, text: str, deadline: float) -> dict[str, Any]:
        message = NewMessage(key, "shop", "Shop", "4915112345678", text.encode(), source_addr_ton=5)
        return {
            "op": "send",
            "key": key,
            "bank": "rb",
            "reply_to": "t1",
            "deadline": deadline,
            "message": message_to_json(message),
        }

    async def main() -> list[dict[str, Any]]:
        replies: list[dict[str, Any]] = []
        ready = asyncio.Event()
        link = MqttLink(mqtt_broker.url, node="t1", client_id="t1-test")
        link.start()

        def on_status(message: Any) -> None:
            rows = message.json().get("banks", {}).get("rb", [])
            if rows and all(r["state"] == "READY" for r in rows):
                ready.set()

        await link.subscribe("smsgw/agent/a1/status", on_status)
        await link.subscribe("smsgw/agent/a1/reply/t1", lambda m: replies.append(m.json()))
        async with asyncio.timeout(60):
            await ready.wait()
        now = time.time()
        link.publish("smsgw/agent/a1/cmd", command("k1", "key one", now + 30))
        link.publish("smsgw/agent/a1/cmd", command("k1", "key one", now + 30))
        link.publish("smsgw/agent/a1/cmd", command("k-crashed", "never", now + 30))
        link.publish("smsgw/agent/a1/cmd", command("k-late", "too late", now - 1))
        async with asyncio.timeout(30):
            while len(replies) < 3:  # the two k1 went to one node: one answer for both
                await asyncio.sleep(0.05)
        # Once k1's result is stored, a third copy gets it too, and nothing is sent.
        link.publish("smsgw/agent/a1/cmd", command("k1", "key one", now + 30))
        async with asyncio.timeout(30):
            while len(replies) < 4:
                await asyncio.sleep(0.05)
        await link.stop()
        return replies

    try:
        replies = asyncio.run(main())
    finally:
        assert agent.stop() in (0, None), (tmp_path / "agent.log").read_text()[-3000:]
    by_key: dict[str, list[str]] = {}
    for reply in replies:
        by_key.setdefault(reply["key"], []).append(reply["status"])
    assert by_key == {
        "k1": ["sent", "sent"],
        "k-crashed": ["unknown"],
        "k-late": ["expired"],
    }
    k1 = [r for r in replies if r["key"] == "k1"]
    assert len({r["upstream_id"] for r in k1}) == 1  # the same send, reported again
    assert [line["text"] for line in journal(net)] == ["key one"]
