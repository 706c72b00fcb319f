"""The suppression list's bulk import: N distinct numbers into an empty list, on each store.

Usage (from the repository root):

    .venv/bin/python bench/suppressions.py                        # 1,000,000 numbers, all stores
    .venv/bin/python bench/suppressions.py --count 100000 --only sqlite
    .venv/bin/python bench/suppressions.py --dsn postgresql://postgres@127.0.0.1:5432/test

Timed: `Store.suppress` with the whole list, as the HTTP import hands it over chunk by chunk
(SQLite: executemany in 10,000-row transactions through the writer thread or process, each
committed with synchronous=FULL; PostgreSQL: COPY into a temporary table and one upsert per
100,000 rows), then the same list again (every row an update), then a full export over
keyset pages. Each store is fresh (a temporary SQLite file; a PostgreSQL schema dropped after).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

# Run as a script, bench/ comes first on sys.path, where http.py would hide the standard
# library's http (asyncpg and httpx import it): the repository root instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from gateway.store.postgres import PostgresStore  # noqa: E402 - after the sys.path fix
from gateway.store.sqlite import SqliteStore  # noqa: E402

AnyStore = SqliteStore | PostgresStore


async def _run(store: AnyStore, count: int) -> dict[str, float]:
    entries = [(f"86138{i:08d}", "" if i % 5 else "Shop", "import") for i in range(count)]
    await store.open()
    try:
        started = time.perf_counter()
        written = await store.suppress(entries, time.time())
        first = time.perf_counter() - started
        assert written == count, written
        started = time.perf_counter()
        await store.suppress(entries, time.time())
        again = time.perf_counter() - started
        started = time.perf_counter()
        seen, after = 0, None
        while page := await store.suppressions_page(after, 10_000):
            seen += len(page)
            after = (page[-1].number, page[-1].scope)
        export = time.perf_counter() - started
        assert seen == count, seen
    finally:
        await store.close()
    return {"import": first, "again": again, "export": export}


async def _postgres(dsn: str, count: int) -> dict[str, float]:
    import asyncpg  # noqa: PLC0415

    schema = f"smsgw_bench_{uuid.uuid4().hex[:12]}"
    try:
        return await _run(PostgresStore(dsn, schema=schema, min_size=1, max_size=2), count)
    finally:
        conn = await asyncpg.connect(dsn)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--only", choices=["sqlite", "sqlite-process", "postgres"], action="append")
    parser.add_argument(
        "--dsn",
        default=os.environ.get(
            "SMSGW_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args()
    print(f"{args.count:,} numbers; load average {os.getloadavg()[0]:.2f}")
    for name in args.only or ["sqlite", "sqlite-process", "postgres"]:
        with tempfile.TemporaryDirectory() as tmp:
            if name == "postgres":
                figures = asyncio.run(_postgres(args.dsn, args.count))
            else:
                writer = "process" if name == "sqlite-process" else "thread"
                store = SqliteStore(Path(tmp) / "bench.sqlite3", writer=writer)
                figures = asyncio.run(_run(store, args.count))
        print(
            f"{name:15s} import {figures['import']:6.2f} s"
            f" ({args.count / figures['import']:,.0f}/s)"
            f"  again {figures['again']:6.2f} s  export {figures['export']:6.2f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
