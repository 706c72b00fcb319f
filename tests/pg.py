"""PostgreSQL for tests that run gateways against it: the DSN, and a fresh schema per test.

Without a reachable server a test skips with the reason - except under CI (``CI=true``),
where it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

__all__ = ["DEFAULT_DSN", "fresh_schema", "under_ci"]

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


async def _execute(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close(timeout=5)


@contextlib.contextmanager
def fresh_schema(prefix: str) -> Iterator[str]:
    """A DSN whose search_path is a new schema (``SMSGW_TEST_POSTGRES_DSN``'s server, dropped
    afterwards): the tables of every store opened with it go there."""
    dsn = os.environ.get("SMSGW_TEST_POSTGRES_DSN", DEFAULT_DSN)
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(asyncio.wait_for(_execute(dsn, f'CREATE SCHEMA "{schema}"'), 10))
    except Exception as exc:
        reason = f"PostgreSQL (SMSGW_TEST_POSTGRES_DSN) not reachable: {exc!r}"
        if under_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    sep = "&" if "?" in dsn else "?"
    try:
        yield f"{dsn}{sep}search_path={schema}"
    finally:
        asyncio.run(
            asyncio.wait_for(_execute(dsn, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'), 30)
        )
