"""Durable storage: the `Store` protocol, the embedded SQLite backend, the shared PostgreSQL
backend and message ids."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.store.base import Delivery, MessageRecord, MessageState, NewMessage, Store
from gateway.store.ids import MessageIdGenerator, parse_id
from gateway.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from gateway.store.postgres import PostgresStore

__all__ = [
    "Delivery",
    "MessageIdGenerator",
    "MessageRecord",
    "MessageState",
    "NewMessage",
    "PostgresStore",
    "SqliteStore",
    "Store",
    "parse_id",
]


def __getattr__(name: str) -> object:
    # asyncpg is imported only by a gateway that uses PostgreSQL
    if name == "PostgresStore":
        from gateway.store.postgres import PostgresStore  # noqa: PLC0415

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
