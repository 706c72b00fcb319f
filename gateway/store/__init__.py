"""Durable storage: message ids today; the Store protocol and its SQLite / PostgreSQL backends
arrive with issue 3."""

from __future__ import annotations

from gateway.store.ids import MessageIdGenerator, parse_id

__all__ = ["MessageIdGenerator", "parse_id"]
