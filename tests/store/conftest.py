"""One store contract, every backend: the `db` fixture runs each test against SQLite and
PostgreSQL.

PostgreSQL comes from ``SMSGW_TEST_POSTGRES_DSN`` (default: the local server's ``test``
database); each test gets a fresh schema, dropped afterwards. Without a reachable server the
PostgreSQL cases skip with the reason - except under CI (``CI=true``), where they fail.

Tests stay plain sync functions: the fixture owns an event loop (`asyncio.Runner`), opens the
store on it and `Db.run` runs a test's coroutine there with a time limit.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

import asyncpg
import pytest

from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from tests.pg import DEFAULT_DSN
from tests.pg import under_ci as _under_ci

T = TypeVar("T")
AnyStore = SqliteStore | PostgresStore

BACKENDS = ["sqlite", "sqlite-process", "postgres"]  # sqlite-process: writer="process"
TIMEOUT = 60.0  # seconds one test body may take: a hang fails, it never blocks the run


async def _ping(dsn: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=5)
    await conn.close(timeout=5)


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """The DSN of a reachable PostgreSQL; skips (fails under CI) when there is none."""
    dsn = os.environ.get("SMSGW_TEST_POSTGRES_DSN", DEFAULT_DSN)
    try:
        asyncio.run(asyncio.wait_for(_ping(dsn), timeout=10))
    except Exception as exc:
        reason = f"PostgreSQL (SMSGW_TEST_POSTGRES_DSN) not reachable: {exc!r}"
        if _under_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    return dsn


@dataclass
class Db:
    """One test's database and the event loop its stores live on."""

    backend: str
    runner: asyncio.Runner
    make: Callable[[int], AnyStore]  # a new, unopened store on this test's database
    integrity_error: type[Exception]  # what a duplicate id or a dangling reference raises
    store: AnyStore | None = None
    opened: list[AnyStore] = field(default_factory=list)

    @property
    def main(self) -> AnyStore:
        assert self.store is not None
        return self.store

    def run(self, body: Callable[[AnyStore], Awaitable[T]]) -> T:
        """Run `body(store)` on the fixture's loop, failing after `TIMEOUT` seconds."""

        async def bounded() -> T:
            return await asyncio.wait_for(body(self.main), timeout=TIMEOUT)

        return self.runner.run(bounded())

    async def open_store(self, node: int = 0) -> AnyStore:
        """Another open store on the same database (closed by the fixture)."""
        store = self.make(node)
        await store.open()
        self.opened.append(store)
        return store

    async def reopen(self) -> AnyStore:
        """Close the main store and open a new one on the same database in its place."""
        await self.main.close()
        self.store = await self.open_store(self.main.node)
        return self.store

    async def close_all(self) -> None:
        for store in self.opened:
            await store.close()


async def _drop_schema(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close(timeout=10)


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    """An open store (`db.main`, node 0) of each backend on a fresh database."""
    schema = ""
    dsn = ""
    if request.param == "postgres":
        dsn = request.getfixturevalue("postgres_dsn")
        schema = f"smsgw_test_{uuid.uuid4().hex[:16]}"

        def make(node: int) -> AnyStore:
            return PostgresStore(dsn, node=node, schema=schema, min_size=1, max_size=4)

        error: type[Exception] = asyncpg.IntegrityConstraintViolationError
    else:
        path = tmp_path / "db" / "smsgw.sqlite3"
        writer: Literal["thread", "process"] = (
            "process" if request.param == "sqlite-process" else "thread"
        )

        def make(node: int) -> AnyStore:
            return SqliteStore(path, node=node, writer=writer)

        error = sqlite3.IntegrityError
    with asyncio.Runner() as runner:
        case = Db(request.param, runner, make, error)
        try:
            case.store = runner.run(asyncio.wait_for(case.open_store(0), timeout=TIMEOUT))
            yield case
        finally:
            runner.run(asyncio.wait_for(case.close_all(), timeout=TIMEOUT))
            if schema:
                runner.run(asyncio.wait_for(_drop_schema(dsn, schema), timeout=TIMEOUT))
