"""Suppressions (opt-out) and dead numbers, on every backend: upsert keeping the latest time
and source, removal by scope or all, lookup, keyset pages, a bulk import in chunks, and dead
numbers counted per receipt batch."""

from __future__ import annotations

from gateway.store.base import Suppression
from tests.store import T0
from tests.store.conftest import AnyStore, Db


def test_suppress_upserts_with_the_latest_time_and_source(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        assert await store.suppress([("861", "", "mo:a"), ("861", "Shop", "api:x")], T0) == 2
        assert await store.suppress([("861", "", "cli")], T0 + 5) == 1
        assert await store.suppression("861") == [
            Suppression("861", "", T0 + 5, "cli"),
            Suppression("861", "Shop", T0, "api:x"),
        ]
        assert await store.suppression("862") == []
        # the same key twice in one call: the last one given wins
        await store.suppress([("862", "", "a"), ("862", "", "b")], T0)
        assert [s.source for s in await store.suppression("862")] == ["b"]
        assert await store.unsuppress([("861", "Shop")]) == 1
        assert await store.unsuppress([("861", "Shop")]) == 0
        await store.suppress([("861", "Shop", "x")], T0)
        assert await store.unsuppress([("861", None), ("999", None)]) == 2
        assert await store.suppression("861") == []

    db.run(body)


def test_bulk_import_and_keyset_pages_round_trip(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        entries = [(f"86138{i:08d}", "" if i % 3 else "Shop", "import") for i in range(25_003)]
        assert await store.suppress(entries, T0) == len(entries)
        seen: list[tuple[str, str, str]] = []
        after = None
        while page := await store.suppressions_page(after, 4096):
            seen.extend((s.number, s.scope, s.source) for s in page)
            after = (page[-1].number, page[-1].scope)
        assert seen == sorted(entries)

    db.run(body)


def test_dead_after_n_failures_until_the_period_ends_and_a_delivery_clears(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        rule = {"after": 3, "period": 100.0}
        assert await store.record_dead_failures(["861", "862"], T0, **rule) == []
        assert await store.record_dead_failures(["861", "861"], T0 + 1, **rule) == ["861"]
        page = await store.dead_numbers_page(None, 10)
        assert [(d.number, d.failures, d.last_at, d.dead_until) for d in page] == [
            ("861", 3, T0 + 1, T0 + 101),
            ("862", 1, T0, None),
        ]
        assert [d.number for d in await store.dead_numbers_page("861", 10)] == ["862"]
        # delivered clears; failures of the same batch count afterwards
        assert await store.record_dead_failures(["862"], T0 + 2, delivered=["861"], **rule) == []
        assert [d.number for d in await store.dead_numbers_page(None, 10)] == ["862"]
        # a number past its period is marked again by its next failure
        await store.record_dead_failures(["863"] * 3, T0, **rule)
        assert await store.record_dead_failures(["863"], T0 + 500, **rule) == ["863"]

    db.run(body)
