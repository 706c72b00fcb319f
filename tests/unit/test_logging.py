"""gateway.telemetry.logging: one pipeline, JSON lines with timestamp/level/node/event, levels
filtered, the standard library's loggers rendered the same way."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from gateway.config import LoggingConfig
from gateway.telemetry import logging as telemetry


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)
    telemetry.messages = False


def _configure(**settings: Any) -> io.StringIO:
    out = io.StringIO()
    telemetry.configure(LoggingConfig(**settings), node="node-7", stream=out, cache=False)
    return out


def _lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_line_has_timestamp_level_node_event_first() -> None:
    out = _configure(format="json")
    structlog.get_logger("smsgw.test").info("listening", port=2775)
    (line,) = _lines(out)
    assert list(line)[:4] == ["timestamp", "level", "node", "event"]
    assert line["level"] == "info"
    assert line["node"] == "node-7"
    assert line["event"] == "listening"
    assert line["port"] == 2775
    assert line["timestamp"].endswith("Z")


def test_auto_is_json_off_a_terminal() -> None:
    out = _configure()  # StringIO is not a tty
    structlog.get_logger().warning("hello")
    assert _lines(out)[0]["level"] == "warning"


def test_console_format_is_not_json() -> None:
    out = _configure(format="console")
    structlog.get_logger().info("hello", a=1)
    text = out.getvalue()
    assert "hello" in text and "a=1" in text and "node=node-7" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_no_debug_lines_at_info() -> None:
    out = _configure(format="json")
    log = structlog.get_logger()
    log.debug("chatter")
    log.info("kept")
    logging.getLogger("asyncio").debug("stdlib chatter")
    assert [line["event"] for line in _lines(out)] == ["kept"]


def test_level_warning_drops_info_and_debug_is_kept_at_debug() -> None:
    out = _configure(format="json", level="warning")
    log = structlog.get_logger()
    log.info("dropped")
    log.error("kept")
    assert [line["event"] for line in _lines(out)] == ["kept"]
    out = _configure(format="json", level="debug")
    structlog.get_logger().debug("now kept")
    assert [line["event"] for line in _lines(out)] == ["now kept"]


def test_a_stdlib_logger_comes_out_as_json() -> None:
    out = _configure(format="json")
    logging.getLogger("asyncpg.pool").warning("connection %s lost", "db1")
    (line,) = _lines(out)
    assert line["event"] == "connection db1 lost"
    assert line["level"] == "warning"
    assert line["node"] == "node-7"
    assert line["logger"] == "asyncpg.pool"
    assert "timestamp" in line


def test_a_second_configure_replaces_the_handler() -> None:
    _configure(format="json")
    out = _configure(format="json")
    logging.getLogger("uvicorn").warning("once")
    assert len(_lines(out)) == 1


def test_messages_switch_follows_the_config() -> None:
    _configure(format="json")
    assert telemetry.messages is False
    out = _configure(format="json", messages=True)
    assert telemetry.messages is True
    telemetry.message_event("accepted", message_id="m1", account="demo", route="all")
    (line,) = _lines(out)
    assert line["event"] == "accepted" and line["message_id"] == "m1"


def test_node_is_the_host_name_without_a_node_id() -> None:
    import socket  # noqa: PLC0415

    assert telemetry.node_name(None) == socket.gethostname()
    assert telemetry.node_name(3) == "3"


def test_logging_section_is_validated() -> None:
    from pydantic import ValidationError  # noqa: PLC0415

    from gateway.config import GatewayConfig  # noqa: PLC0415

    config = GatewayConfig.model_validate({"logging": {"format": "json", "messages": True}})
    assert config.logging == LoggingConfig(format="json", level="info", messages=True)
    for wrong in ({"format": "xml"}, {"level": "verbose"}, {"colour": True}):
        with pytest.raises(ValidationError):
            GatewayConfig.model_validate({"logging": wrong})


def test_auto_is_console_on_a_terminal() -> None:
    import os  # noqa: PLC0415

    leader, follower = os.openpty()
    with os.fdopen(follower, "w", encoding="utf-8") as terminal, os.fdopen(leader, "rb") as tty:
        telemetry.configure(LoggingConfig(), node="n", stream=terminal, cache=False)
        structlog.get_logger().info("on a terminal")
        terminal.flush()
        text = tty.read1(65536).decode(errors="replace")
    assert "on a terminal" in text
    assert not text.lstrip().startswith("{")
