"""`smsgw serve` logs JSON lines off a terminal, and one line per lifecycle step of each
message only with `logging.messages: true` (the failed line: from the dispatcher itself)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
import smpplib.client
from structlog.testing import capture_logs

from drivers.base import SendResult
from gateway.dispatch import Dispatcher
from gateway.store.base import MessageState
from gateway.store.sqlite import SqliteStore
from gateway.telemetry import logging as telemetry
from tests.fakes.drivers import ScriptedDriver
from tests.integration.test_dispatch import message, run, state_of, until

CONFIG = """
node_id: 5
listen: {host: 127.0.0.1, port: 0}
accounts: [{system_id: demo, password: demo}]
simulated_carriers: {sim: {delivery_delay: 0.0}}
routes: [{name: all, targets: [sim]}]
store: {path: "%s"}
logging: {messages: %s}
"""


def _run(tmp_path: Path, messages: bool) -> list[dict[str, Any]]:
    """Serve, send one message with a receipt asked for, wait for the receipt, stop; every
    line of output parsed as JSON."""
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG % (tmp_path / "gw.sqlite3", str(messages).lower()))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[dict[str, Any]] = []
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.append(json.loads(raw))  # every line is JSON: no console text off a tty
            if lines[-1]["event"] == "listening":
                break
        port = int(lines[-1]["port"])
        receipts: list[Any] = []
        client = smpplib.client.Client("127.0.0.1", port, timeout=10, allow_unknown_opt_params=True)
        client.set_message_received_handler(lambda pdu: receipts.append(pdu))  # noqa: PLW0108 - called with pdu=
        client.connect()
        client.bind_transceiver(system_id="demo", password="demo")
        client.send_message(
            source_addr="Test",
            destination_addr="+4917012345678",
            short_message=b"hello",
            registered_delivery=1,  # a final receipt
        )
        client.read_once()  # submit_sm_resp
        deadline = time.monotonic() + 20
        while not receipts and time.monotonic() < deadline:
            client.read_once()  # bounded by the client's 10 s timeout
        assert receipts, "no receipt"
        client.unbind()
        client.disconnect()
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    lines += [json.loads(raw) for raw in rest.splitlines()]
    return lines


def test_json_lines_carry_timestamp_level_node_event(tmp_path: Path) -> None:
    lines = _run(tmp_path, messages=False)
    for line in lines:
        assert {"timestamp", "level", "node", "event"} <= set(line), line
        assert line["node"] == "5"
        assert line["level"] != "debug"
    assert {"listening", "stopping"} <= {line["event"] for line in lines}
    assert not {"accepted", "sent", "receipt"} & {line["event"] for line in lines}


def test_lifecycle_lines_when_asked(tmp_path: Path) -> None:
    lines = _run(tmp_path, messages=True)
    by_event = {line["event"]: line for line in lines}
    accepted, sent, receipt = by_event["accepted"], by_event["sent"], by_event["receipt"]
    for line in (accepted, sent, receipt):
        assert line["level"] == "info"
        assert line["account"] == "demo" and line["route"] == "all"
        assert line["message_id"] == accepted["message_id"]
    assert sent["target"] == "sim" and sent["upstream_id"]
    assert receipt["target"] == "sim" and receipt["upstream_id"] == sent["upstream_id"]
    assert receipt["state"] == "DELIVERED"


def test_failed_line_for_a_permanent_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    driver = ScriptedDriver()
    driver.script.append(SendResult(False, error=0x0B, permanent=True))
    monkeypatch.setattr(telemetry, "messages", True)
    seen: list[MutableMapping[str, Any]] = []

    async def body(store: SqliteStore, dispatcher: Dispatcher) -> None:
        with capture_logs() as logs:
            await store.accept(message(1))
            dispatcher.wake()

            async def failed() -> bool:
                return await state_of(store, "m0001") is MessageState.FAILED

            await until(failed)
            await until(lambda: _true(any(e["event"] == "failed" for e in logs)))
        seen.extend(logs)

    run(tmp_path, driver, body)
    (line,) = [e for e in seen if e["event"] == "failed"]
    assert line["message_id"] == "m0001" and line["account"] == "shop"
    assert line["route"] == "all" and line["state"] == "FAILED" and line["error"] == 0x0B
    assert line["log_level"] == "info"


async def _true(value: bool) -> bool:
    return value
