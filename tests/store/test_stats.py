"""Delivery statistics (`Store.stats`), on every backend: counters kept with each state change
match a scan of the messages, and outlive a purge."""

from __future__ import annotations

from collections import Counter

import pytest

from gateway.store.base import OUTCOME, MessageState, StatsRow
from tests.store import T0, msg
from tests.store.conftest import AnyStore, Db

HOUR0 = T0 // 3600 * 3600


async def _scenario(store: AnyStore) -> None:
    """Eight messages on two routes and campaigns through every kind of end."""
    for i in range(1, 9):
        await store.accept(
            msg(
                i,
                route="de" if i <= 5 else "fr",
                campaign="A" if i % 2 else "B",
                msg_class="marketing",
                destination_addr="4915112345678" if i <= 5 else "33612345678",
            )
        )
    await store.record_sent("m0001", "up1", (("u1",),), T0 + 10)
    await store.record_sent("m0002", "up1", (("u2",),), T0 + 10)
    await store.record_sent("m0003", "up2", (("u3",),), T0 + 10)
    await store.record_sent("m0003", "up1", (("u3b",),), T0 + 11)  # re-sent elsewhere
    await store.record_sent("m0006", "up2", (("u6",),), T0 + 10)
    await store.settle("m0001", MessageState.DELIVERED, T0 + 13)  # 3 s
    await store.settle("m0002", MessageState.UNDELIVERABLE, T0 + 20)
    await store.settle("m0002", MessageState.DELIVERED, T0 + 21)  # already final: ignored
    await store.settle("m0006", MessageState.DELIVERED, T0 + 70)  # 60 s
    await store.set_state("m0004", MessageState.EXPIRED, T0 + 30)
    await store.set_state("m0005", MessageState.REJECTED, T0 + 2)
    assert await store.change_pending("m0007", "shop", T0 + 5)  # cancelled
    # m0003 sent (pending), m0008 accepted (pending)


def _scan(records: list[tuple[str, str, str, MessageState]]) -> dict[tuple[str, ...], Counter[str]]:
    out: dict[tuple[str, ...], Counter[str]] = {}
    for route, target, campaign, state in records:
        c = out.setdefault((route, target, campaign), Counter())
        c["accepted"] += 1
        if state in OUTCOME:
            c[OUTCOME[state]] += 1
        if target:
            c["sent"] += 1
    return out


def test_counts_match_a_scan_of_the_messages(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        await _scenario(store)
        records = []
        for i in range(1, 9):
            r = await store.get(f"m{i:04d}")
            assert r is not None
            target = {1: "up1", 2: "up1", 3: "up1", 6: "up2"}.get(i, "")
            records.append((r.message.route, target, r.message.campaign, r.state))
        expected = _scan(records)
        rows = await store.stats(T0 - 3600, T0 + 3600, ("route", "target", "campaign"))
        got = {
            tuple(str(v) for v in row.key.values()): Counter(
                {
                    k: v
                    for k, v in row.as_dict().items()
                    if isinstance(v, int) and v and k in _COUNTERS
                }
            )
            for row in rows
        }
        got = {k: v for k, v in got.items() if v}
        assert got == expected

    db.run(body)


_COUNTERS = {"accepted", "sent", "delivered", "failed", "expired", "rejected", "cancelled"}


def test_rates_pending_and_latency(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        await _scenario(store)
        (total,) = await store.stats(T0 - 3600, T0 + 3600, ())
        assert (total.accepted, total.sent, total.delivered, total.failed) == (8, 4, 2, 1)
        assert (total.expired, total.rejected, total.cancelled, total.pending) == (1, 1, 1, 2)
        assert total.delivery_rate == pytest.approx(2 / 4)
        assert total.latency_p50 is not None and 2 <= total.latency_p50 <= 5
        assert total.latency_p95 is not None and 30 <= total.latency_p95 <= 60
        by_route = {r.key["route"]: r for r in await store.stats(T0 - 3600, T0 + 3600, ("route",))}
        assert by_route["de"].delivery_rate == pytest.approx(1 / 3)
        assert by_route["fr"].delivery_rate == 1.0
        by_dest = await store.stats(T0 - 3600, T0 + 3600, ("country", "operator", "prefix"))
        assert {(r.key["country"], r.key["prefix"]) for r in by_dest} == {
            ("DE", "491"),
            ("FR", "336"),
        }
        assert all(r.key["operator"] for r in by_dest)  # phonenumbers knows both ranges
        (hour,) = await store.stats(T0 - 3600, T0 + 3600, ("hour",))
        assert hour.key == {"hour": HOUR0}
        only_b = await store.stats(T0 - 3600, T0 + 3600, ("campaign",), where={"campaign": "B"})
        assert [r.key for r in only_b] == [{"campaign": "B"}]
        assert await store.stats(T0 + 7200, T0 + 9000, ()) == []
        with pytest.raises(ValueError, match="valid: hour, account"):
            await store.stats(T0, T0 + 1, ("colour",))

    db.run(body)


def test_stats_outlive_a_purge_and_have_their_own_retention(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        await _scenario(store)
        before = await store.stats(T0 - 3600, T0 + 3600, ("route",))
        assert await store.purge(T0 + 10_000) > 0
        assert await store.get("m0001") is None
        assert await store.stats(T0 - 3600, T0 + 3600, ("route",)) == before
        assert await store.forget_stats(HOUR0 + 3599) == 0  # the hour is not over
        assert await store.forget_stats(HOUR0 + 3600) > 0
        assert await store.stats(T0 - 3600, T0 + 3600, ()) == []

    db.run(body)


def test_cancelled_batch_and_batch_accepts_count(db: Db) -> None:
    from gateway.store.base import NewBatch  # noqa: PLC0415

    async def body(store: AnyStore) -> None:
        await store.create_batch(
            NewBatch(
                "b1",
                "shop",
                T0,
                total=3,
                size=3,
                duplicates=0,
                invalid=0,
                request="{}",
                report="{}",
                recipients=b"",
            )
        )
        messages = [msg(i) for i in range(1, 4)]
        assert await store.accept_batch("b1", messages, (0, 3, 0), T0 + 1)
        assert await store.cancel_batch("b1", T0 + 2) == 3
        (row,) = await store.stats(T0 - 3600, T0 + 3600, ())
        assert (row.accepted, row.cancelled, row.pending) == (3, 3, 0)

    db.run(body)


def test_stats_row_of_nothing() -> None:
    row = StatsRow({})
    assert row.delivery_rate is None
    assert row.latency_p50 is None
    assert row.pending == 0


def test_prefix_digits_is_the_stores_setting(db: Db) -> None:
    async def body(store: AnyStore) -> None:
        await store.close()
        short = db.make(0)
        short.prefix_digits = 4  # as store.stats_prefix_digits sets it
        await short.open()
        db.opened.append(short)
        await short.accept(msg(1))
        await short.set_state("m0001", MessageState.FAILED, T0 + 2)
        rows = await short.stats(T0 - 3600, T0 + 3600, ("prefix",))
        assert [(r.key, r.accepted, r.failed) for r in rows] == [({"prefix": "4915"}, 1, 1)]

    db.run(body)
