"""Durable storage: the `Store` protocol, the embedded SQLite backend and message ids.
PostgreSQL follows with issue 3."""

from __future__ import annotations

from gateway.store.base import Delivery, MessageRecord, MessageState, NewMessage, Store
from gateway.store.ids import MessageIdGenerator, parse_id
from gateway.store.sqlite import SqliteStore

__all__ = [
    "Delivery",
    "MessageIdGenerator",
    "MessageRecord",
    "MessageState",
    "NewMessage",
    "SqliteStore",
    "Store",
    "parse_id",
]
