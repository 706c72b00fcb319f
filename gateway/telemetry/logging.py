"""structlog configured once, for our loggers and the standard library's.

`configure` is called by `smsgw serve` before anything logs. Every line carries timestamp,
level, node and event; `format: auto` writes console lines on a terminal and JSON lines
otherwise (journald, files, pipes). Loggers of dependencies (asyncpg, uvicorn, asyncio) log
through the standard library: a `ProcessorFormatter` on the root logger sends their records
through the same processors, so one stream holds one format. (uvicorn: start it with
`log_config=None`, or it replaces these handlers with its own.)

Our own loggers stay native structlog (no stdlib hop per line) and are filtered by level at
the bound-logger: a `log.debug` at level info is a no-op method.

Per-message lifecycle lines (`logging.messages: true`) go through `message_event`, guarded at
each call site by the module attribute `messages` - one attribute read per message when off.
"""

from __future__ import annotations

import logging
import socket
import sys
from typing import TYPE_CHECKING, Any, TextIO

import structlog

if TYPE_CHECKING:
    from collections.abc import MutableMapping

    from gateway.config import LoggingConfig

__all__ = ["configure", "message_event", "messages", "node_name"]

# Read at each lifecycle call site (`if telemetry.messages:`); set by `configure`.
messages = False

_message_log = structlog.get_logger("smsgw.message")


def node_name(node_id: int | None) -> str:
    """The node field: the configured node id when there is one, else the host name."""
    return str(node_id) if node_id is not None else socket.gethostname()


def configure(
    config: LoggingConfig, *, node: str, stream: TextIO | None = None, cache: bool = True
) -> None:
    """Set up structlog and the standard library's root logger (idempotent: a second call
    replaces the first's handler). `cache=False` for tests: a cached logger keeps the
    configuration it first logged with."""
    global messages  # noqa: PLW0603 - the one switch the lifecycle call sites read
    out = stream if stream is not None else sys.stdout
    level = logging.getLevelNamesMapping()[config.level.upper()]
    fmt = config.format
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"

    def add_node(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
        event.setdefault("node", node)
        return event

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_node,
    ]
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        shared += [structlog.processors.format_exc_info, _leading]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=cache,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_smsgw", False)]:
        root.removeHandler(old)
    handler._smsgw = True  # type: ignore[attr-defined]  # ours, replaced on a second call
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    messages = config.messages


_FIRST = ("timestamp", "level", "node", "event")


def _leading(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
    """timestamp, level, node, event first: JSON lines read (and grep) like console lines."""
    first = {k: event[k] for k in _FIRST if k in event}
    return {**first, **{k: v for k, v in event.items() if k not in first}}


def message_event(event: str, **fields: Any) -> None:
    """One lifecycle line (accepted, sent, receipt, failed); call only when `messages`."""
    _message_log.info(event, **fields)
